//! `whittle policy eval`: the planner's evaluator over policy files.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use whittle_planner::catalog::Catalog;
use whittle_planner::policy::{Context, Evaluation, PolicyDocument, Request, evaluate, named};

use crate::cli::{OutputFormat, PolicyEvalArgs};

/// Reads and checks one policy file; errors name the file and the element.
pub fn read_policy(path: &Path) -> anyhow::Result<PolicyDocument> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    let document = PolicyDocument::from_iam(&text)
        .with_context(|| format!("{} is not a valid policy", path.display()))?;
    document
        .check_identity_policy()
        .with_context(|| format!("{} is not an identity-based policy", path.display()))?;
    Ok(document)
}

#[derive(Debug, Serialize)]
struct EvalOutput<'a> {
    action: &'a str,
    resource: &'a str,
    #[serde(flatten)]
    evaluation: &'a Evaluation,
    /// Set when the action is not in the IAM action catalog (a typo matches nothing real).
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

pub fn eval_command(args: &PolicyEvalArgs) -> anyhow::Result<()> {
    let load = |paths: &[PathBuf]| -> anyhow::Result<Vec<(String, PolicyDocument)>> {
        paths
            .iter()
            .map(|p| Ok((p.display().to_string(), read_policy(p)?)))
            .collect()
    };
    let identity = load(&args.identity)?;
    let boundary = load(&args.boundary)?;
    let mut context = if args.partial_context {
        Context::partial()
    } else {
        Context::complete()
    };
    for pair in &args.context {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--context `{pair}`: write KEY=VALUE, e.g. aws:SourceIp=10.0.0.1")
        })?;
        if key.is_empty() {
            anyhow::bail!("--context `{pair}`: the key is empty");
        }
        context.insert(key, value);
    }
    if let Some(principal) = &args.principal {
        context = context.with_principal(principal);
    }
    if !args.action.contains(':') {
        anyhow::bail!(
            "--action `{}`: write service:Action, e.g. s3:GetObject",
            args.action
        );
    }
    let evaluation = evaluate(
        &named(&identity),
        &named(&boundary),
        &Request {
            action: &args.action,
            resource: &args.resource,
            principal: args.principal.as_deref(),
            context: &context,
        },
    );
    let warning = Catalog::embedded().lookup(&args.action).is_none().then(|| {
        format!(
            "`{}` is not in the IAM action catalog; check its spelling",
            args.action
        )
    });
    match args.format {
        OutputFormat::Text => {
            outln!("{}", evaluation.decision)?;
            outln!("  {}", evaluation.reason)?;
            if let Some(warning) = &warning {
                eprintln!("warning: {warning}");
            }
        }
        OutputFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&EvalOutput {
                action: &args.action,
                resource: &args.resource,
                evaluation: &evaluation,
                warning,
            })?
        )?,
    }
    Ok(())
}
