//! One role per function for a role that several Lambda functions share.
//!
//! Lambda names the session of a function's execution role after the function, and mining
//! keeps what each such session used (`PrincipalUsage::by_session`). For a shared role with
//! two or more functions that discovery listed under it, each function gets the proposal the
//! planner would make for the shared role if that function were its only caller: the same
//! policies tightened to what the function used (with every Deny and Condition, the keep
//! list and the unobservable permissions, each kept with its reason). What the role's other
//! sessions used stays on the shared role. Nothing here is applied; `whittle plan` shows it
//! beside the shared role's own tightening.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{
    Evidence, KeptAction, ProposedInline, RolePlan, RolePolicies, RoleStatus, Settings, propose,
};
use crate::catalog::Catalog;
use crate::usage::PrincipalUsage;

/// IAM's limit on a role name (IAM API reference, CreateRole `RoleName`).
const MAX_ROLE_NAME: usize = 64;

/// A function of the shared role, as discovery listed it, and what its session used.
#[derive(Debug)]
pub struct FunctionUse<'a> {
    pub name: &'a str,
    pub arn: &'a str,
    /// The function's `RevisionId` when listed: an apply refuses a function changed since.
    pub revision: Option<&'a str>,
    /// The function's session's use (its actions; no denials, sessions or secrets).
    pub usage: PrincipalUsage,
}

/// The proposal to give each function of a shared role a role of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitProposal {
    pub functions: Vec<FunctionRole>,
    /// Actions the role's other sessions (not one of these functions) used: they stay on
    /// the shared role, whose own tightening is the rest of the role's plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_keeps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The role proposed for one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRole {
    pub function: String,
    pub function_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The new role's name: the shared role's and the function's, shortened to IAM's 64
    /// characters with a hash of the whole when longer.
    pub role_name: String,
    /// Its inline policies: the shared role's, tightened to what the function used.
    pub inline: Vec<ProposedInline>,
    /// Managed policies (ARNs) of the shared role the function's role keeps attached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed: Vec<String>,
    /// The shared role's permissions boundary, which the new role carries too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary: Option<String>,
    pub kept: Vec<KeptAction>,
    /// Actions the shared role's proposal keeps that this function's role does not have.
    pub loses: Vec<String>,
}

/// The split of `shared`'s role among `functions`, or `None` when fewer than two of them
/// can be given a role (a function observed too briefly, or whose proposal failed, stays on
/// the shared role, and a note says why). `other_sessions` is what every other session of
/// the role used.
pub fn propose_split(
    shared: &RolePlan,
    functions: &[FunctionUse<'_>],
    other_sessions: &BTreeSet<String>,
    needed: &[String],
    settings: &Settings,
    catalog: &Catalog,
) -> Option<SplitProposal> {
    if functions.len() < 2 || !matches!(shared.status, RoleStatus::Changes | RoleStatus::NoChange) {
        return None;
    }
    let current: &RolePolicies = &shared.current;
    let shared_kept: BTreeSet<&str> = shared.kept.iter().map(|k| k.action.as_str()).collect();
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for f in functions {
        let plan = propose(
            current,
            &Evidence {
                usage: Some(&f.usage),
                // A failed trial's denials are the role's, not a session's: every function
                // keeps them. IAM's last-accessed data is the role's too and says nothing
                // about which function used a service, so it is not used here.
                needed,
                ..Evidence::default()
            },
            settings,
            catalog,
        );
        match plan.status {
            RoleStatus::Changes | RoleStatus::NoChange => {}
            _ => {
                notes.push(format!(
                    "function {} stays on the shared role: {}",
                    f.name,
                    plan.error
                        .clone()
                        .or_else(|| plan.notes.first().cloned())
                        .unwrap_or_else(|| plan.status.as_str().to_owned())
                ));
                continue;
            }
        }
        let documents = match plan.proposed_documents() {
            Ok(documents) => documents,
            Err(error) => {
                notes.push(format!(
                    "function {} stays on the shared role: {error}",
                    f.name
                ));
                continue;
            }
        };
        let mut inline = Vec::new();
        let mut managed = Vec::new();
        for (name, document) in documents {
            match name.strip_prefix("inline ") {
                Some(name) => inline.push(ProposedInline {
                    name: name.to_owned(),
                    document,
                }),
                None => managed.push(name),
            }
        }
        let kept: BTreeSet<&str> = plan.kept.iter().map(|k| k.action.as_str()).collect();
        let (role_name, shortened) = role_name(&current.role_name, f.name);
        if shortened {
            notes.push(format!(
                "the role of {} is named {role_name}: `{}-{}` is longer than IAM's {MAX_ROLE_NAME} characters",
                f.name, current.role_name, f.name
            ));
        }
        out.push(FunctionRole {
            function: f.name.to_owned(),
            function_arn: f.arn.to_owned(),
            revision: f.revision.map(str::to_owned),
            role_name,
            inline,
            managed,
            boundary: current.boundary.as_ref().map(|b| b.arn.clone()),
            loses: shared_kept
                .difference(&kept)
                .map(|a| (*a).to_owned())
                .collect(),
            kept: plan.kept,
        });
    }
    if out.len() < 2 {
        return None;
    }
    Some(SplitProposal {
        functions: out,
        shared_keeps: other_sessions.iter().cloned().collect(),
        notes,
    })
}

/// `{shared}-{function}` when it fits IAM's 64 characters, else a prefix of it and 8 hex
/// digits of a hash of the whole (FNV-1a: stable across releases and machines), so that two
/// long names that share a prefix still differ. Returns whether it was shortened.
fn role_name(shared: &str, function: &str) -> (String, bool) {
    let full = format!("{shared}-{function}");
    if full.len() <= MAX_ROLE_NAME {
        return (full, false);
    }
    let hash = full.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    // Role names are ASCII (`[\w+=,.@-]`), so byte offsets are character offsets.
    let keep = MAX_ROLE_NAME - 9;
    (format!("{}-{hash:08x}", &full[..keep]), true)
}

/// The trust policy of a function's new role in CloudFormation: Lambda assumes it
/// (Terraform copies the shared role's own trust policy; the serverless plugin writes its own).
const LAMBDA_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

impl SplitProposal {
    /// The text plan's lines for the split (indented under the role).
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  split: one role per function ({} functions){}",
            self.functions.len(),
            if self.shared_keeps.is_empty() {
                String::new()
            } else {
                format!(
                    "; the role's other sessions keep {} on it",
                    self.shared_keeps.join(", ")
                )
            }
        );
        for f in &self.functions {
            let _ = writeln!(
                out,
                "    + role {} for function {}: {}",
                f.role_name,
                f.function,
                f.kept
                    .iter()
                    .map(|k| format!("{} ({})", k.action, k.reason.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if !f.loses.is_empty() {
                let _ = writeln!(out, "      loses {}", f.loses.join(", "));
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "    note: {note}");
        }
        out
    }

    /// The Markdown section for the split (under the role's heading).
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "**One role per function** ({} functions share this role):

| function | new role | keeps | loses compared with the shared role |
|---|---|---|---|",
            self.functions.len()
        );
        for f in &self.functions {
            let code = |items: Vec<&str>| {
                if items.is_empty() {
                    "—".to_owned()
                } else {
                    items
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} | {} |",
                f.function,
                f.role_name,
                code(f.kept.iter().map(|k| k.action.as_str()).collect()),
                code(f.loses.iter().map(String::as_str).collect())
            );
        }
        let _ = writeln!(out);
        if !self.shared_keeps.is_empty() {
            let _ = writeln!(
                out,
                "The role's other sessions keep {} on the shared role.
",
                self.shared_keeps
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }

    /// Terraform: per function an `aws_iam_role` with the shared role's trust policy and
    /// tags (read with `data "aws_iam_role"`), its policies, and the function's `role`.
    pub fn terraform(&self, shared_name: &str) -> String {
        use super::render::{identifier, terraform_role_policy};
        use std::fmt::Write as _;
        let shared = identifier(&[shared_name], "_");
        let mut out = format!(
            "
# One role per function of {shared_name}: set each function's `role` to its role's arn.
data \"aws_iam_role\" \"{shared}\" {{\n  name = \"{shared_name}\"\n}}\n"
        );
        for f in &self.functions {
            let id = identifier(&[&f.role_name], "_");
            let _ = writeln!(
                out,
                "\n# aws_lambda_function of {}: role = aws_iam_role.{id}.arn\nresource \"aws_iam_role\" \"{id}\" {{\n  name               = \"{}\"\n  assume_role_policy = data.aws_iam_role.{shared}.assume_role_policy\n  tags               = data.aws_iam_role.{shared}.tags{}\n}}",
                f.function,
                f.role_name,
                f.boundary
                    .as_ref()
                    .map(|b| format!("\n  permissions_boundary = \"{b}\""))
                    .unwrap_or_default()
            );
            for inline in &f.inline {
                out.push_str(&terraform_role_policy(
                    &identifier(&[&f.role_name, &inline.name], "__"),
                    &inline.name,
                    &format!("aws_iam_role.{id}.id"),
                    &inline.document,
                ));
                out.push('\n');
            }
            for arn in &f.managed {
                let _ = writeln!(
                    out,
                    "resource \"aws_iam_role_policy_attachment\" \"{}\" {{\n  role       = aws_iam_role.{id}.name\n  policy_arn = \"{arn}\"\n}}",
                    identifier(&[&f.role_name, arn.rsplit('/').next().unwrap_or(arn)], "__")
                );
            }
        }
        out
    }

    /// CloudFormation: per function an `AWS::IAM::Role` (Lambda's trust policy, the tightened
    /// policies inline, the managed policies and boundary), and the function's `Role`.
    pub fn cloudformation(&self) -> String {
        use super::render::{camel, indent, yaml_string};
        use std::fmt::Write as _;
        let mut out = String::new();
        for f in &self.functions {
            let id = camel(&[&f.role_name, "Role"]);
            let trust: serde_json::Value = serde_json::from_str(LAMBDA_TRUST).unwrap_or_default();
            let _ = writeln!(
                out,
                "  # The function {}: set its Role to !GetAtt {id}.Arn\n  {id}:\n    Type: AWS::IAM::Role\n    Properties:\n      RoleName: {}\n      AssumeRolePolicyDocument:\n{}",
                f.function,
                yaml_string(&f.role_name),
                indent(
                    &serde_json::to_string_pretty(&trust).unwrap_or_default(),
                    "        "
                )
            );
            if let Some(boundary) = &f.boundary {
                let _ = writeln!(out, "      PermissionsBoundary: {}", yaml_string(boundary));
            }
            if !f.managed.is_empty() {
                let _ = writeln!(out, "      ManagedPolicyArns:");
                for arn in &f.managed {
                    let _ = writeln!(out, "        - {}", yaml_string(arn));
                }
            }
            if !f.inline.is_empty() {
                let _ = writeln!(out, "      Policies:");
                for inline in &f.inline {
                    let _ = writeln!(
                        out,
                        "        - PolicyName: {}\n          PolicyDocument:\n{}",
                        yaml_string(&inline.name),
                        indent(&inline.document.to_pretty(), "              ")
                    );
                }
            }
        }
        out
    }

    /// serverless.yml in the form of the `serverless-iam-roles-per-function` plugin (3.2.0,
    /// Serverless Framework v3 and later): per function `iamRoleStatementsName` and
    /// `iamRoleStatements`. The plugin adds the logging permissions of the framework's
    /// default role itself.
    pub fn serverless(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::from(
            "# One role per function: plugins: [serverless-iam-roles-per-function] (3.2.0)\nfunctions:\n",
        );
        for f in &self.functions {
            let _ = writeln!(
                out,
                "  {}:\n    iamRoleStatementsName: {}\n    iamRoleStatements:",
                f.function, f.role_name
            );
            for inline in &f.inline {
                super::render::yaml_statements(&mut out, &inline.document, "      ");
            }
            if !f.managed.is_empty() {
                let _ = writeln!(
                    out,
                    "    # also attach: {} (iamManagedPolicies is not part of the plugin's form)",
                    f.managed.join(", ")
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::InlinePolicy;
    use crate::plan::tests::{settings, usage};

    /// What one session used: `actions`, `days_ago` days before the tests' now.
    fn used(actions: &[&str], days_ago: i64) -> PrincipalUsage {
        let list: Vec<(&str, i64, &[&str])> =
            actions.iter().map(|a| (*a, days_ago, &[][..])).collect();
        usage(&list)
    }

    /// A service's role shared by three functions, a Deny on it, and what they did.
    fn shared() -> (RolePlan, Vec<(&'static str, PrincipalUsage)>) {
        let current = RolePolicies {
            role_arn: "arn:aws:iam::123456789012:role/svc-shared".to_owned(),
            role_name: "svc-shared".to_owned(),
            inline: vec![InlinePolicy {
                name: "svc".to_owned(),
                document: r#"{"Version":"2012-10-17","Statement":[
                  {"Effect":"Allow","Action":["ssm:GetParameter","ssm:PutParameter","s3:ListAllMyBuckets","kms:ListKeys"],"Resource":"*"},
                  {"Effect":"Deny","Action":"ssm:DeleteParameter","Resource":"*"}]}"#
                    .into(),
            }],
            managed: Vec::new(),
            boundary: None,
        };
        let functions = vec![
            ("svc-read", used(&["ssm:GetParameter"], 20)),
            ("svc-write", used(&["ssm:PutParameter"], 20)),
            ("svc-list", used(&["s3:ListAllMyBuckets"], 20)),
        ];
        let mut all = used(&["kms:ListKeys"], 20);
        for (_, u) in &functions {
            all.merge(u);
        }
        let plan = propose(
            &current,
            &Evidence {
                usage: Some(&all),
                ..Evidence::default()
            },
            &settings(),
            Catalog::embedded(),
        );
        (plan, functions)
    }

    fn uses<'a>(functions: &'a [(&'static str, PrincipalUsage)]) -> Vec<FunctionUse<'a>> {
        functions
            .iter()
            .map(|(name, usage)| FunctionUse {
                name,
                arn: "arn:aws:lambda:us-east-1:123456789012:function:x",
                revision: Some("r1"),
                usage: usage.clone(),
            })
            .collect()
    }

    #[test]
    fn each_function_gets_exactly_what_it_used_and_the_rest_stays_shared() {
        let (plan, functions) = shared();
        let others = BTreeSet::from(["kms:ListKeys".to_owned()]);
        let split = propose_split(
            &plan,
            &uses(&functions),
            &others,
            &[],
            &settings(),
            Catalog::embedded(),
        )
        .expect("a split");
        let per: Vec<(&str, &str, Vec<&str>, Vec<&str>)> = split
            .functions
            .iter()
            .map(|f| {
                (
                    f.function.as_str(),
                    f.role_name.as_str(),
                    f.kept.iter().map(|k| k.action.as_str()).collect(),
                    f.loses.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            per,
            [
                (
                    "svc-read",
                    "svc-shared-svc-read",
                    vec!["ssm:GetParameter"],
                    vec!["kms:ListKeys", "s3:ListAllMyBuckets", "ssm:PutParameter"]
                ),
                (
                    "svc-write",
                    "svc-shared-svc-write",
                    vec!["ssm:PutParameter"],
                    vec!["kms:ListKeys", "s3:ListAllMyBuckets", "ssm:GetParameter"]
                ),
                (
                    "svc-list",
                    "svc-shared-svc-list",
                    vec!["s3:ListAllMyBuckets"],
                    vec!["kms:ListKeys", "ssm:GetParameter", "ssm:PutParameter"]
                ),
            ]
        );
        assert_eq!(split.shared_keeps, ["kms:ListKeys"]);
        // Every Deny of the shared role stays on each function's role.
        for f in &split.functions {
            let text = serde_json::to_string(&f.inline).expect("json");
            assert!(text.contains("ssm:DeleteParameter"), "{text}");
        }
        // Every format shows it.
        let terraform = split.terraform("svc-shared");
        assert!(
            terraform.contains("data \"aws_iam_role\" \"svc_shared\""),
            "{terraform}"
        );
        assert!(terraform.contains("resource \"aws_iam_role\" \"svc_shared_svc_read\""));
        assert!(
            terraform
                .contains("assume_role_policy = data.aws_iam_role.svc_shared.assume_role_policy")
        );
        assert!(terraform.contains("role   = aws_iam_role.svc_shared_svc_read.id"));
        let serverless = split.serverless();
        assert!(serverless.contains("  svc-read:\n    iamRoleStatementsName: svc-shared-svc-read\n    iamRoleStatements:\n      - {"), "{serverless}");
        let cloudformation = split.cloudformation();
        assert!(
            cloudformation.contains("  SvcSharedSvcReadRole:\n    Type: AWS::IAM::Role"),
            "{cloudformation}"
        );
        assert!(cloudformation.contains("lambda.amazonaws.com"));
        let markdown = split.markdown();
        assert!(markdown.contains("| `svc-read` | `svc-shared-svc-read` | `ssm:GetParameter` | `kms:ListKeys`, `s3:ListAllMyBuckets`, `ssm:PutParameter` |"), "{markdown}");
        assert!(split.text().contains("    + role svc-shared-svc-write for function svc-write: ssm:PutParameter (used)\n      loses kms:ListKeys, s3:ListAllMyBuckets, ssm:GetParameter\n"));
    }

    #[test]
    fn a_function_observed_too_briefly_stays_shared_and_one_function_is_no_split() {
        let (plan, mut functions) = shared();
        functions[2].1 = used(&["s3:ListAllMyBuckets"], 2);
        let split = propose_split(
            &plan,
            &uses(&functions),
            &BTreeSet::new(),
            &[],
            &settings(),
            Catalog::embedded(),
        )
        .expect("two functions still split");
        assert_eq!(split.functions.len(), 2);
        assert!(
            split.notes[0].starts_with("function svc-list stays on the shared role"),
            "{:?}",
            split.notes
        );
        assert!(
            propose_split(
                &plan,
                &uses(&functions[..1]),
                &BTreeSet::new(),
                &[],
                &settings(),
                Catalog::embedded()
            )
            .is_none()
        );
    }

    #[test]
    fn long_role_names_are_shortened_deterministically_within_iams_limit() {
        assert_eq!(role_name("svc", "read"), ("svc-read".to_owned(), false));
        let long = "x".repeat(60);
        let (a, shortened) = role_name(&long, "orders-read");
        let (b, _) = role_name(&long, "orders-write");
        assert!(shortened);
        assert_eq!(a.len(), MAX_ROLE_NAME);
        assert_ne!(a, b, "names that share a prefix still differ");
        assert_eq!(
            role_name(&long, "orders-read").0,
            a,
            "the same name every time"
        );
    }
}
