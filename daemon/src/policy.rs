//! `whittle policy eval`: the planner's evaluator over policy files, every layer of them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use whittle_planner::catalog::Catalog;
use whittle_planner::policy::rules::resource_account;
use whittle_planner::policy::{
    AccessRequest, Caller, Context, Evaluation, NamedPolicy, Policies, PolicyDocument, PolicyKind,
    ResourcePolicies, decide, named,
};

use crate::cli::{OutputFormat, PolicyEvalArgs};

/// Reads and checks one policy file; errors name the file and the element.
pub fn read_policy(path: &Path) -> anyhow::Result<PolicyDocument> {
    let document = read_document(path)?;
    document
        .check_identity_policy()
        .with_context(|| format!("{} is not an identity-based policy", path.display()))?;
    Ok(document)
}

fn read_document(path: &Path) -> anyhow::Result<PolicyDocument> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    PolicyDocument::from_iam(&text)
        .with_context(|| format!("{} is not a valid policy", path.display()))
}

/// Reads a policy file of another kind than identity-based, checked as that kind.
fn read_kind(path: &Path, kind: PolicyKind) -> anyhow::Result<PolicyDocument> {
    let document = read_document(path)?;
    let what = match kind {
        PolicyKind::Resource => "a resource-based policy",
        PolicyKind::ServiceControl => "a service control policy",
        PolicyKind::ResourceControl => "a resource control policy",
    };
    document
        .check_kind(kind)
        .with_context(|| format!("{} is not {what}", path.display()))?;
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

type Loaded = Vec<(String, PolicyDocument)>;

/// Organization policies given one file per level: each file is a level of its own.
fn levels(loaded: &Loaded) -> Vec<Vec<NamedPolicy<'_>>> {
    loaded
        .iter()
        .map(|(name, document)| vec![NamedPolicy { name, document }])
        .collect()
}

fn load(
    paths: &[PathBuf],
    read: impl Fn(&Path) -> anyhow::Result<PolicyDocument>,
) -> anyhow::Result<Loaded> {
    paths
        .iter()
        .map(|p| Ok((p.display().to_string(), read(p)?)))
        .collect()
}

pub fn eval_command(args: &PolicyEvalArgs) -> anyhow::Result<()> {
    if !args.action.contains(':') {
        anyhow::bail!(
            "--action `{}`: write service:Action, e.g. s3:GetObject",
            args.action
        );
    }
    let caller = Caller::parse_optional(args.principal.as_deref()).context("--principal")?;
    let identity = load(&args.identity, read_policy)?;
    let boundary = load(&args.boundary, read_policy)?;
    let session = load(&args.session, read_policy)?;
    let resource = load(&args.resource_policy, |p| {
        read_kind(p, PolicyKind::Resource)
    })?;
    let scp = load(&args.scp, |p| read_kind(p, PolicyKind::ServiceControl))?;
    let rcp = load(&args.rcp, |p| read_kind(p, PolicyKind::ResourceControl))?;
    if !session.is_empty()
        && matches!(
            caller,
            Caller::Root { .. } | Caller::User { .. } | Caller::Service(_) | Caller::WebIdentity(_)
        )
    {
        anyhow::bail!(
            "--session-policy: session policies belong to a role session or a federated user session, not to {caller} (give --principal arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION)"
        );
    }
    let arn_account = resource_account(&args.resource);
    if let Some(account) = &args.resource_account {
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            anyhow::bail!("--resource-account `{account}`: write a 12-digit account id");
        }
        if let Some(named) = arn_account
            && named != account
        {
            anyhow::bail!("--resource-account {account}: the resource's ARN names account {named}");
        }
    }

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
    context = context.with_caller(&caller);
    let account = match args.resource.as_str() {
        "*" => None,
        arn => resource_account(arn).or(args.resource_account.as_deref()),
    };
    if let Some(account) = account.or(caller.account()) {
        context = context.with_resource_account(account);
    }

    let policies = Policies {
        identity: named(&identity),
        boundary: named(&boundary),
        session: named(&session),
        resource: ResourcePolicies::Known(named(&resource)),
        scp: levels(&scp),
        rcp: levels(&rcp),
    };
    let evaluation = decide(
        &policies,
        &AccessRequest {
            action: &args.action,
            resource: &args.resource,
            caller: &caller,
            resource_account: args.resource_account.as_deref(),
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
            for note in &evaluation.notes {
                outln!("  note: {note}")?;
            }
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
