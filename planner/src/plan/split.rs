//! One role per function for a role that several Lambda functions share.
//!
//! Lambda names the session of a function's execution role after the function, and mining
//! keeps what each such session used (`PrincipalUsage::by_session`). For a shared role with
//! two or more functions that discovery listed under it, each function gets the proposal the
//! planner would make for the shared role if that function were its only caller: the same
//! policies tightened to what the function used (with every Deny and Condition, the keep
//! list and the unobservable permissions, each kept with its reason). What the role's other
//! callers used stays on the shared role, and the proposal's notes say for whom and why
//! (see [`propose_split`]). Nothing here is applied; `whittle plan` shows it beside the
//! shared role's own tightening.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{
    Evidence, KeptAction, ProposedInline, RolePlan, RolePolicies, RoleStatus, Settings, propose,
};
use crate::catalog::Catalog;
use crate::usage::{ActionUsage, MAX_FUNCTION_SESSIONS, PrincipalUsage, SessionKind, session_kind};

/// IAM's limit on a role name (IAM API reference, CreateRole `RoleName`).
const MAX_ROLE_NAME: usize = 64;

/// From this many functions on, the text and Markdown give each function one short line
/// (counts, the first few kept actions) instead of every action: a service of 120 functions
/// must still read as a table, and fit a pull-request comment with the rest of the plan.
/// The JSON, the HTML report and the IaC carry every action of every function.
pub const COMPACT_FROM: usize = 20;

/// Actions named per cell of the text and Markdown (kept, or lost) before the rest are
/// counted, in the full form; the compact form names [`COMPACT_KEPT_NAMED`] kept actions
/// and counts what is lost.
const NAMED_PER_CELL: usize = 24;
const COMPACT_KEPT_NAMED: usize = 3;

/// Names listed in one note (sessions, functions) before the rest are counted.
const NAMED_PER_NOTE: usize = 8;

/// A function that discovery listed with the shared role as its execution role.
#[derive(Debug, Clone, Copy)]
pub struct ListedFunction<'a> {
    pub name: &'a str,
    pub arn: &'a str,
    /// The function's `RevisionId` when listed: an apply refuses a function changed since.
    pub revision: Option<&'a str>,
}

/// The proposal to give each function of a shared role a role of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitProposal {
    pub functions: Vec<FunctionRole>,
    /// Actions that stay on the shared role, whose own tightening is the rest of the role's
    /// plan: what its callers other than these functions used (sessions that are not
    /// functions, sessions named like functions discovery does not list with the role, the
    /// role's functions that get no role of their own). The notes say who they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_keeps: Vec<String>,
    /// What a reviewer should know: who stays on the shared role and why, renamed roles.
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
    /// The new role's name: `{shared}-{function}`, or, when that is longer than IAM's 64
    /// characters or names another function's role too (IAM role names are unique
    /// regardless of case), a prefix of it and 8 hex digits of a hash. Unique in the split.
    pub role_name: String,
    /// `{shared}-{function}` when `role_name` is not that name (see `role_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_role_name: Option<String>,
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

/// The account id of an ARN (`arn:aws:lambda:us-east-1:123456789012:function:x`).
fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or_default()
}

/// `items` joined with ", ", the first `named` of them by name and the rest counted.
fn named_list<T: AsRef<str>>(items: &[T], named: usize) -> String {
    let mut out = items
        .iter()
        .take(named)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > named {
        let _ = write!(out, " and {} more", items.len() - named);
    }
    out
}

/// Actions with their calls (`kms:ListKeys (3 calls)`), the first `named` of them.
fn calls_list(actions: &BTreeMap<String, u64>, named: usize) -> String {
    let items: Vec<String> = actions
        .iter()
        .map(|(action, calls)| format!("{action} ({calls} call{})", plural(*calls)))
        .collect();
    named_list(&items, named)
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Adds each action of `from` and its calls to `into`.
fn add_calls(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, ActionUsage>) {
    for (action, u) in from {
        *into.entry(action.clone()).or_default() += u.counts.since(0).map_or(0, |(n, _, _)| n);
    }
}

/// Who the role's pooled sessions are, from the session names mining remembers (the most
/// recent [`crate::usage::MAX_SESSIONS`]): those that are not kept one by one.
fn pooled_callers(usage: &PrincipalUsage) -> String {
    let mut by_kind: BTreeMap<SessionKind, Vec<&str>> = BTreeMap::new();
    for name in usage.sessions.keys() {
        if !usage.by_session.contains_key(name) {
            by_kind.entry(session_kind(name)).or_default().push(name);
        }
    }
    let parts: Vec<String> = by_kind
        .iter()
        .map(|(kind, names)| {
            let what = match kind {
                SessionKind::Ec2Instance => "EC2 instance session",
                SessionKind::EcsTask => "ECS task session",
                SessionKind::SdkDefault => "session with an SDK's default name",
                SessionKind::NotAFunctionName | SessionKind::Other => "other session",
            };
            format!(
                "{} {what}{} ({})",
                names.len(),
                plural(names.len() as u64),
                named_list(names, 3)
            )
        })
        .collect();
    if parts.is_empty() {
        // Mining kept their calls but no longer their names (the session names are bounded).
        "sessions that are not functions".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The split of `shared`'s role among the functions discovery `listed` with it, from what
/// each function's session used (`usage.by_session`, `usage` being the role's), or `None`
/// when fewer than two of them can be given a role. Whatever does not move to a function's
/// role stays on the shared role, and a note says for whom and why: the role's sessions
/// that are not functions, sessions named like functions that discovery does not list with
/// the role (renamed or deleted since mining), and functions that get no role (in another
/// account, no calls of their own, observed too briefly, a failed proposal).
pub fn propose_split(
    shared: &RolePlan,
    usage: &PrincipalUsage,
    listed: &[ListedFunction<'_>],
    needed: &[String],
    settings: &Settings,
    catalog: &Catalog,
) -> Option<SplitProposal> {
    if listed.len() < 2 || !matches!(shared.status, RoleStatus::Changes | RoleStatus::NoChange) {
        return None;
    }
    let current: &RolePolicies = &shared.current;
    let role_account = account_of(&shared.role_arn);
    let mut listed: Vec<ListedFunction<'_>> = listed.to_vec();
    listed.sort_by_key(|f| (f.name, f.arn));
    listed.dedup_by_key(|f| f.arn);
    // Action -> calls that stay on the shared role.
    let mut stays: BTreeMap<String, u64> = BTreeMap::new();
    let mut notes = Vec::new();

    let mut candidates = Vec::new();
    let mut silent = Vec::new();
    for f in &listed {
        let calls = usage.by_session.get(f.name);
        // IAM lets a principal pass a role only to a service in the role's own account (IAM
        // User Guide, "Grant a user permissions to pass a role to an AWS service": "You can
        // only use the PassRole permission to pass an IAM role to a service that shares the
        // same AWS account"), and Lambda's CreateFunction and UpdateFunctionConfiguration
        // take the execution role that way. A function listed with a role of another
        // account (inventories of several accounts read together, an emulator that does not
        // check) cannot be given a new role in the shared role's account, and whittle does
        // not guess at one in the function's.
        if account_of(f.arn) != role_account {
            notes.push(format!(
                "function {} stays on the shared role: it is in account {} and the role in account {role_account}, and IAM passes a role only to a service of its own account, so no role of this account can be the function's",
                f.name,
                account_of(f.arn)
            ));
            if let Some(calls) = calls {
                add_calls(&mut stays, calls);
            }
            continue;
        }
        match calls {
            Some(calls) => candidates.push((*f, calls)),
            None => silent.push(f.name),
        }
    }
    if !silent.is_empty() {
        let bound = if usage.by_session.len() >= MAX_FUNCTION_SESSIONS {
            format!(
                " (mining keeps the calls of {MAX_FUNCTION_SESSIONS} sessions of a role one by one and pools the rest with its other sessions, so some of these may have called)"
            )
        } else {
            String::new()
        };
        notes.push(format!(
            "{} function(s) listed with this role have no calls of their own in the look-back window{bound} and stay on the shared role: {}",
            silent.len(),
            named_list(&silent, NAMED_PER_NOTE)
        ));
    }

    // Sessions named like a function that discovery does not list with this role.
    let mut unlisted = Vec::new();
    for (session, actions) in &usage.by_session {
        if listed.iter().any(|f| f.name == session) {
            continue;
        }
        add_calls(&mut stays, actions);
        unlisted.push(format!(
            "{session} ({})",
            named_list(&actions.keys().collect::<Vec<_>>(), 4)
        ));
    }
    if !unlisted.is_empty() {
        notes.push(format!(
            "{} session(s) named like a function that discovery does not list with this role (renamed or deleted since mining, moved to another role, or a caller that is not a function) keep what they used on the shared role: {}",
            unlisted.len(),
            named_list(&unlisted, NAMED_PER_NOTE)
        ));
    }

    // Sessions that cannot be functions, pooled by mining.
    if !usage.other_sessions.is_empty() {
        let mut pooled = BTreeMap::new();
        add_calls(&mut pooled, &usage.other_sessions);
        notes.push(format!(
            "the role's callers that are not functions ({}) keep {} on the shared role",
            pooled_callers(usage),
            calls_list(&pooled, NAMED_PER_NOTE)
        ));
        for (action, calls) in pooled {
            *stays.entry(action).or_default() += calls;
        }
    }

    let shared_kept: BTreeSet<&str> = shared.kept.iter().map(|k| k.action.as_str()).collect();
    let mut out = Vec::new();
    for (f, calls) in candidates {
        let mut function_usage = PrincipalUsage::new(usage.kind);
        function_usage.actions = calls.clone();
        let plan = propose(
            current,
            &Evidence {
                usage: Some(&function_usage),
                // A failed trial's denials are the role's, not a session's: every function
                // keeps them. IAM's last-accessed data is the role's too and says nothing
                // about which function used a service, so it is not used here.
                needed,
                ..Evidence::default()
            },
            settings,
            catalog,
        );
        let documents = match plan.status {
            RoleStatus::Changes | RoleStatus::NoChange => {
                plan.proposed_documents().map_err(|e| e.to_string())
            }
            _ => Err(plan
                .error
                .clone()
                .or_else(|| plan.notes.first().cloned())
                .unwrap_or_else(|| plan.status.as_str().to_owned())),
        };
        let documents = match documents {
            Ok(documents) => documents,
            Err(why) => {
                notes.push(format!(
                    "function {} stays on the shared role: {why}",
                    f.name
                ));
                add_calls(&mut stays, calls);
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
        out.push(FunctionRole {
            function: f.name.to_owned(),
            function_arn: f.arn.to_owned(),
            revision: f.revision.map(str::to_owned),
            role_name: String::new(),
            full_role_name: None,
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
    let names: Vec<(&str, &str)> = out
        .iter()
        .map(|f| (f.function.as_str(), f.function_arn.as_str()))
        .collect();
    let named = role_names(&current.role_name, &names);
    for (f, (role_name, renamed)) in out.iter_mut().zip(named) {
        let full = format!("{}-{}", current.role_name, f.function);
        match renamed {
            None => {}
            Some(Renamed::TooLong) => notes.push(format!(
                "the role of {} is named {role_name}: `{full}` is longer than IAM's {MAX_ROLE_NAME} characters",
                f.function
            )),
            Some(Renamed::SameAs(other)) => notes.push(format!(
                "the role of {} is named {role_name}: `{full}` would also name the role of {other} (IAM role names are unique regardless of case)",
                f.function
            )),
        }
        if role_name != full {
            f.full_role_name = Some(full);
        }
        f.role_name = role_name;
    }
    Some(SplitProposal {
        functions: out,
        shared_keeps: stays.into_keys().collect(),
        notes,
    })
}

/// Why a function's role is not named `{shared}-{function}`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Renamed {
    TooLong,
    /// The name would be another function's role's too (this function's name).
    SameAs(String),
}

/// FNV-1a of `parts` (each followed by a NUL): stable across releases and machines.
fn fnv(parts: &[&[u8]]) -> u32 {
    parts.iter().fold(0x811c_9dc5_u32, |h, part| {
        part.iter()
            .chain(std::iter::once(&0u8))
            .fold(h, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
    })
}

/// The longest prefix of `text` that has at most `bytes` bytes and ends on a character.
fn prefix(text: &str, bytes: usize) -> &str {
    let end = text
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|end| *end <= bytes)
        .last()
        .unwrap_or(0);
    &text[..end]
}

/// `{shared}-{function}` when it fits IAM's 64 characters, else a prefix of it and 8 hex
/// digits of a hash of the whole, so that two long names that share a prefix still differ.
/// Returns whether it was shortened.
fn role_name(shared: &str, function: &str) -> (String, bool) {
    let full = format!("{shared}-{function}");
    if full.len() <= MAX_ROLE_NAME {
        return (full, false);
    }
    let hash = fnv(&[full.as_bytes()]);
    (
        format!("{}-{hash:08x}", prefix(&full, MAX_ROLE_NAME - 9)),
        true,
    )
}

/// Makes `names` unique under `key` (the comparison that counts: IAM's, or an IaC tool's):
/// each name whose key another name shares is replaced by `rename(i, round)`, with the
/// round in the hash so that a collision of the hash itself (one in 2^32 per pair) is gone
/// the round after. Returns which names were replaced. `rename` must hash something that
/// differs between any two names (a function's ARN, a role name unique in the split), or
/// two equal inputs would be renamed alike round after round.
fn make_unique(
    names: &mut [String],
    key: impl Fn(&str) -> String,
    rename: impl Fn(usize, u32) -> String,
) -> Vec<bool> {
    let mut replaced = vec![false; names.len()];
    for round in 0u32.. {
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            by_key.entry(key(name)).or_default().push(i);
        }
        let taken: Vec<usize> = by_key
            .into_values()
            .filter(|v| v.len() > 1)
            .flatten()
            .collect();
        if taken.is_empty() {
            break;
        }
        for i in taken {
            names[i] = rename(i, round);
            replaced[i] = true;
        }
    }
    replaced
}

/// The role names of `functions` (`(name, ARN)`): [`role_name`] for each, except that names
/// IAM would take for the same role (role names are unique regardless of case: IAM User
/// Guide, "IAM object names") are each given a hash of the function's ARN instead. With the
/// functions in the same order, the same names.
fn role_names(shared: &str, functions: &[(&str, &str)]) -> Vec<(String, Option<Renamed>)> {
    let first: Vec<(String, bool)> = functions
        .iter()
        .map(|(function, _)| role_name(shared, function))
        .collect();
    let mut names: Vec<String> = first.iter().map(|(name, _)| name.clone()).collect();
    let replaced = make_unique(&mut names, str::to_ascii_lowercase, |i, round| {
        let (function, arn) = functions[i];
        let full = format!("{shared}-{function}");
        let hash = fnv(&[full.as_bytes(), arn.as_bytes(), &round.to_le_bytes()]);
        format!("{}-{hash:08x}", prefix(&full, MAX_ROLE_NAME - 9))
    });
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let (first_name, shortened) = &first[i];
            let renamed = if *shortened {
                Some(Renamed::TooLong)
            } else if replaced[i] {
                // Whose role would have had the same name.
                let other = (0..first.len())
                    .find(|&j| j != i && first[j].0.eq_ignore_ascii_case(first_name))
                    .map(|j| functions[j].0.to_owned())
                    .unwrap_or_default();
                Some(Renamed::SameAs(other))
            } else {
                None
            };
            (name, renamed)
        })
        .collect()
}

/// IaC identifiers for the functions' roles, `make` applied to each role name, made unique:
/// role names that differ only in characters an identifier cannot hold (`svc-a-b` and
/// `svc-a_b` are both `svc_a_b` in Terraform) get 8 hex digits of a hash of the role name.
fn unique_identifiers(
    functions: &[FunctionRole],
    make: impl Fn(&str) -> String,
    separator: &str,
) -> Vec<String> {
    let mut ids: Vec<String> = functions.iter().map(|f| make(&f.role_name)).collect();
    let base = ids.clone();
    make_unique(&mut ids, str::to_owned, |i, round| {
        let hash = fnv(&[functions[i].role_name.as_bytes(), &round.to_le_bytes()]);
        format!("{}{separator}{hash:08x}", base[i])
    });
    ids
}

/// The trust policy of a function's new role in CloudFormation: Lambda assumes it
/// (Terraform copies the shared role's own trust policy; the serverless plugin writes its own).
const LAMBDA_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

impl SplitProposal {
    /// Whether the text and Markdown give each function one short line (see
    /// [`COMPACT_FROM`]).
    fn compact(&self) -> bool {
        self.functions.len() >= COMPACT_FROM
    }

    /// The text plan's lines for the split (indented under the role).
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  split: one role per function ({} functions){}",
            self.functions.len(),
            if self.shared_keeps.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} stay{} on the shared role",
                    named_list(&self.shared_keeps, NAMED_PER_CELL),
                    if self.shared_keeps.len() == 1 {
                        "s"
                    } else {
                        ""
                    }
                )
            }
        );
        let compact = self.compact();
        for f in &self.functions {
            let renamed = f
                .full_role_name
                .as_ref()
                .map(|full| format!(" (not {full})"))
                .unwrap_or_default();
            if compact {
                let kept: Vec<&str> = f.kept.iter().map(|k| k.action.as_str()).collect();
                let _ = writeln!(
                    out,
                    "    + role {}{renamed} for function {}: keeps {} ({}), loses {}",
                    f.role_name,
                    f.function,
                    kept.len(),
                    named_list(&kept, COMPACT_KEPT_NAMED),
                    f.loses.len()
                );
                continue;
            }
            let kept: Vec<String> = f
                .kept
                .iter()
                .map(|k| format!("{} ({})", k.action, k.reason.as_str()))
                .collect();
            let _ = writeln!(
                out,
                "    + role {}{renamed} for function {}: {}",
                f.role_name,
                f.function,
                named_list(&kept, NAMED_PER_CELL)
            );
            if !f.loses.is_empty() {
                let _ = writeln!(out, "      loses {}", named_list(&f.loses, NAMED_PER_CELL));
            }
        }
        if compact {
            let _ = writeln!(
                out,
                "    (every action of every function: `whittle plan show ID --format json`, or --format html)"
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "    note: {note}");
        }
        out
    }

    /// The Markdown section for the split (under the role's heading): a table with one row
    /// per function. A split of [`COMPACT_FROM`] functions or more counts what each loses
    /// and names only its first kept actions, so that 128 functions take some 25 KB, well
    /// within a pull-request comment with the rest of the role's section.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let compact = self.compact();
        let _ = writeln!(
            out,
            "**One role per function** ({} functions share this role):\n",
            self.functions.len(),
        );
        let code = |items: &[&str], named: usize| {
            if items.is_empty() {
                "—".to_owned()
            } else {
                let listed: Vec<String> = items.iter().map(|a| format!("`{a}`")).collect();
                named_list(&listed, named)
            }
        };
        if compact {
            let _ = writeln!(
                out,
                "| function | new role | keeps | loses |\n|---|---|---|---|"
            );
        } else {
            let _ = writeln!(
                out,
                "| function | new role | keeps | loses compared with the shared role |\n|---|---|---|---|"
            );
        }
        for f in &self.functions {
            let kept: Vec<&str> = f.kept.iter().map(|k| k.action.as_str()).collect();
            let role = match &f.full_role_name {
                Some(_) => format!("`{}` ¹", f.role_name),
                None => format!("`{}`", f.role_name),
            };
            if compact {
                let _ = writeln!(
                    out,
                    "| `{}` | {role} | {}: {} | {} |",
                    f.function,
                    kept.len(),
                    code(&kept, COMPACT_KEPT_NAMED),
                    f.loses.len()
                );
            } else {
                let loses: Vec<&str> = f.loses.iter().map(String::as_str).collect();
                let _ = writeln!(
                    out,
                    "| `{}` | {role} | {} | {} |",
                    f.function,
                    code(&kept, NAMED_PER_CELL),
                    code(&loses, NAMED_PER_CELL)
                );
            }
        }
        let _ = writeln!(out);
        if self.functions.iter().any(|f| f.full_role_name.is_some()) {
            let _ = writeln!(out, "¹ not `SHARED-FUNCTION`: see the notes below.\n");
        }
        if compact {
            let _ = writeln!(
                out,
                "Every action of every function: `whittle plan show ID --format json`, or `--format html`.\n"
            );
        }
        if !self.shared_keeps.is_empty() {
            let listed: Vec<String> = self.shared_keeps.iter().map(|a| format!("`{a}`")).collect();
            let _ = writeln!(
                out,
                "Stay on the shared role: {}.\n",
                named_list(&listed, NAMED_PER_CELL)
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
        }
        out
    }

    /// The notes as comment lines of an IaC snippet (`prefix` is `#` in HCL and YAML).
    fn comment_notes(&self, out: &mut String, indent: &str) {
        for note in &self.notes {
            let _ = writeln!(out, "{indent}# note: {note}");
        }
    }

    /// A comment line saying a function's role is not named `{shared}-{function}`.
    fn comment_renamed(f: &FunctionRole, out: &mut String, indent: &str) {
        if let Some(full) = &f.full_role_name {
            let _ = writeln!(
                out,
                "{indent}# named {}, not {full} (see the notes)",
                f.role_name
            );
        }
    }

    /// Terraform: per function an `aws_iam_role` with the shared role's trust policy and
    /// tags (read with `data "aws_iam_role"`), its policies, and the function's `role`.
    pub fn terraform(&self, shared_name: &str) -> String {
        use super::render::{identifier, terraform_role_policy};

        let shared = identifier(&[shared_name], "_");
        let mut out = format!(
            "
# One role per function of {shared_name}: set each function's `role` to its role's arn.
"
        );
        self.comment_notes(&mut out, "");
        let _ = writeln!(
            out,
            "data \"aws_iam_role\" \"{shared}\" {{\n  name = \"{shared_name}\"\n}}"
        );
        let ids = unique_identifiers(&self.functions, |n| identifier(&[n], "_"), "_");
        for (f, id) in self.functions.iter().zip(&ids) {
            out.push('\n');
            Self::comment_renamed(f, &mut out, "");
            let _ = writeln!(
                out,
                "# aws_lambda_function of {}: role = aws_iam_role.{id}.arn\nresource \"aws_iam_role\" \"{id}\" {{\n  name               = \"{}\"\n  assume_role_policy = data.aws_iam_role.{shared}.assume_role_policy\n  tags               = data.aws_iam_role.{shared}.tags{}\n}}",
                f.function,
                f.role_name,
                f.boundary
                    .as_ref()
                    .map(|b| format!("\n  permissions_boundary = \"{b}\""))
                    .unwrap_or_default()
            );
            for inline in &f.inline {
                out.push_str(&terraform_role_policy(
                    &format!("{id}__{}", identifier(&[&inline.name], "_")),
                    &inline.name,
                    &format!("aws_iam_role.{id}.id"),
                    &inline.document,
                ));
                out.push('\n');
            }
            for arn in &f.managed {
                let _ = writeln!(
                    out,
                    "resource \"aws_iam_role_policy_attachment\" \"{id}__{}\" {{\n  role       = aws_iam_role.{id}.name\n  policy_arn = \"{arn}\"\n}}",
                    identifier(&[arn.rsplit('/').next().unwrap_or(arn)], "_")
                );
            }
        }
        out
    }

    /// CloudFormation: per function an `AWS::IAM::Role` (Lambda's trust policy, the tightened
    /// policies inline, the managed policies and boundary), and the function's `Role`.
    pub fn cloudformation(&self) -> String {
        use super::render::{camel, indent, yaml_string};

        let mut out = String::new();
        self.comment_notes(&mut out, "  ");
        let ids = unique_identifiers(&self.functions, |n| camel(&[n, "Role"]), "");
        for (f, id) in self.functions.iter().zip(&ids) {
            Self::comment_renamed(f, &mut out, "  ");
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
        let mut out = String::from(
            "# One role per function: plugins: [serverless-iam-roles-per-function] (3.2.0)\n",
        );
        self.comment_notes(&mut out, "");
        out.push_str("functions:\n");
        for f in &self.functions {
            Self::comment_renamed(f, &mut out, "  ");
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
    use crate::plan::tests::{NOW, settings, usage};
    use crate::trail::PrincipalKind;

    const ACCOUNT: &str = "123456789012";

    /// What one session used: `actions`, `days_ago` days before the tests' now.
    fn used(actions: &[&str], days_ago: i64) -> PrincipalUsage {
        let list: Vec<(&str, i64, &[&str])> =
            actions.iter().map(|a| (*a, days_ago, &[][..])).collect();
        usage(&list)
    }

    /// The shared role `name` granted `allow` (plus a Deny), planned from the union of what
    /// `sessions` (function-like names, kept one by one) and `pooled` (other sessions, each
    /// `(session, actions)`) used; returns its plan and its usage as mining keeps it.
    fn shared_role(
        name: &str,
        allow: &[&str],
        sessions: &[(&str, &[&str])],
        pooled: &[(&str, &[&str])],
    ) -> (RolePlan, PrincipalUsage) {
        let current = RolePolicies {
            role_arn: format!("arn:aws:iam::{ACCOUNT}:role/{name}"),
            role_name: name.to_owned(),
            inline: vec![InlinePolicy {
                name: "svc".to_owned(),
                document: format!(
                    r#"{{"Version":"2012-10-17","Statement":[
                  {{"Effect":"Allow","Action":{},"Resource":"*"}},
                  {{"Effect":"Deny","Action":"ssm:DeleteParameter","Resource":"*"}}]}}"#,
                    serde_json::to_string(allow).expect("json")
                )
                .as_str()
                .into(),
            }],
            managed: Vec::new(),
            boundary: None,
        };
        let mut all = PrincipalUsage::new(PrincipalKind::Role);
        for (session, actions) in sessions {
            let u = used(actions, 20);
            all.merge(&u);
            all.by_session.insert((*session).to_owned(), u.actions);
            all.sessions.insert((*session).to_owned(), NOW);
        }
        for (session, actions) in pooled {
            let u = used(actions, 20);
            all.merge(&u);
            for (action, u) in u.actions {
                all.other_sessions.insert(action, u);
            }
            all.sessions.insert((*session).to_owned(), NOW);
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
        (plan, all)
    }

    /// A service's role shared by three functions and an EC2 instance, a Deny on it.
    fn shared() -> (RolePlan, PrincipalUsage) {
        shared_role(
            "svc-shared",
            &[
                "ssm:GetParameter",
                "ssm:PutParameter",
                "s3:ListAllMyBuckets",
                "kms:ListKeys",
            ],
            &[
                ("svc-read", &["ssm:GetParameter"]),
                ("svc-write", &["ssm:PutParameter"]),
                ("svc-list", &["s3:ListAllMyBuckets"]),
            ],
            &[("i-0123456789abcdef0", &["kms:ListKeys"])],
        )
    }

    fn function_arn(account: &str, name: &str) -> String {
        format!("arn:aws:lambda:us-east-1:{account}:function:{name}")
    }

    /// Functions of the account, as discovery lists them.
    fn listed<'a>(arns: &'a [(String, String)]) -> Vec<ListedFunction<'a>> {
        arns.iter()
            .map(|(name, arn)| ListedFunction {
                name,
                arn,
                revision: Some("r1"),
            })
            .collect()
    }

    fn names(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), function_arn(ACCOUNT, n)))
            .collect()
    }

    fn split_of(
        plan: &RolePlan,
        usage: &PrincipalUsage,
        functions: &[(String, String)],
    ) -> Option<SplitProposal> {
        propose_split(
            plan,
            usage,
            &listed(functions),
            &[],
            &settings(),
            Catalog::embedded(),
        )
    }

    /// Every rendering of the split, one after the other.
    fn every_format(split: &SplitProposal) -> [(&'static str, String); 5] {
        [
            ("text", split.text()),
            ("markdown", split.markdown()),
            ("terraform", split.terraform("svc-shared")),
            ("cloudformation", split.cloudformation()),
            ("serverless", split.serverless()),
        ]
    }

    #[test]
    fn each_function_gets_exactly_what_it_used_and_the_rest_stays_shared() {
        let (plan, usage) = shared();
        let split = split_of(
            &plan,
            &usage,
            &names(&["svc-read", "svc-write", "svc-list"]),
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
                    "svc-list",
                    "svc-shared-svc-list",
                    vec!["s3:ListAllMyBuckets"],
                    vec!["kms:ListKeys", "ssm:GetParameter", "ssm:PutParameter"]
                ),
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
            ]
        );
        assert_eq!(split.shared_keeps, ["kms:ListKeys"]);
        assert!(split.functions.iter().all(|f| f.full_role_name.is_none()));
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
    fn callers_that_are_not_functions_keep_their_actions_on_the_shared_role_and_are_named() {
        let (plan, usage) = shared_role(
            "svc-shared",
            &[
                "ssm:GetParameter",
                "ssm:PutParameter",
                "kms:ListKeys",
                "sqs:ReceiveMessage",
                "sqs:SendMessage",
            ],
            &[
                ("svc-read", &["ssm:GetParameter"]),
                ("svc-write", &["ssm:PutParameter"]),
            ],
            &[
                ("i-0123456789abcdef0", &["kms:ListKeys"]),
                ("0123456789abcdef0123456789abcdef", &["sqs:ReceiveMessage"]),
                ("alice@example.com", &["sqs:SendMessage"]),
            ],
        );
        let split = split_of(&plan, &usage, &names(&["svc-read", "svc-write"])).expect("a split");
        // Only the functions are split; what the others used stays, with its calls.
        assert_eq!(split.functions.len(), 2);
        assert_eq!(
            split.shared_keeps,
            ["kms:ListKeys", "sqs:ReceiveMessage", "sqs:SendMessage"]
        );
        assert_eq!(
            split.notes,
            [
                "the role's callers that are not functions (1 EC2 instance session (i-0123456789abcdef0), 1 ECS task session (0123456789abcdef0123456789abcdef), 1 other session (alice@example.com)) keep kms:ListKeys (3 calls), sqs:ReceiveMessage (3 calls), sqs:SendMessage (3 calls) on the shared role"
            ]
        );
        for (format, text) in every_format(&split) {
            assert!(
                text.contains("1 EC2 instance session (i-0123456789abcdef0)"),
                "{format}: {text}"
            );
        }
    }

    #[test]
    fn a_session_of_a_function_no_longer_listed_with_the_role_stays_on_it() {
        // `svc-old` called under the role, but discovery (after it was renamed to `svc-list`,
        // or deleted) no longer lists it.
        let (plan, usage) = shared_role(
            "svc-shared",
            &[
                "ssm:GetParameter",
                "ssm:PutParameter",
                "s3:ListAllMyBuckets",
            ],
            &[
                ("svc-read", &["ssm:GetParameter"]),
                ("svc-write", &["ssm:PutParameter"]),
                ("svc-old", &["s3:ListAllMyBuckets"]),
            ],
            &[],
        );
        let split = split_of(
            &plan,
            &usage,
            &names(&["svc-read", "svc-write", "svc-list"]),
        )
        .expect("a split");
        let functions: Vec<&str> = split
            .functions
            .iter()
            .map(|f| f.function.as_str())
            .collect();
        assert_eq!(functions, ["svc-read", "svc-write"]);
        assert_eq!(split.shared_keeps, ["s3:ListAllMyBuckets"]);
        assert_eq!(
            split.notes,
            [
                "1 function(s) listed with this role have no calls of their own in the look-back window and stay on the shared role: svc-list",
                "1 session(s) named like a function that discovery does not list with this role (renamed or deleted since mining, moved to another role, or a caller that is not a function) keep what they used on the shared role: svc-old (s3:ListAllMyBuckets)",
            ]
        );
        for (format, text) in every_format(&split) {
            assert!(
                text.contains("svc-old (s3:ListAllMyBuckets)"),
                "{format}: {text}"
            );
        }
    }

    #[test]
    fn a_function_whose_role_is_in_another_account_gets_no_role() {
        let (plan, usage) = shared();
        let mut functions = names(&["svc-read", "svc-write"]);
        functions.push((
            "svc-list".to_owned(),
            function_arn("210987654321", "svc-list"),
        ));
        let split = split_of(&plan, &usage, &functions).expect("a split");
        let split_functions: Vec<&str> = split
            .functions
            .iter()
            .map(|f| f.function.as_str())
            .collect();
        assert_eq!(split_functions, ["svc-read", "svc-write"]);
        // What it used stays on the shared role, as the instance's calls do.
        assert_eq!(split.shared_keeps, ["kms:ListKeys", "s3:ListAllMyBuckets"]);
        assert!(
            split.notes[0].starts_with("function svc-list stays on the shared role: it is in account 210987654321 and the role in account 123456789012"),
            "{:?}",
            split.notes
        );
        // One function of the role's own account left: no split.
        let functions = vec![
            functions[0].clone(),
            (
                "svc-list".to_owned(),
                function_arn("210987654321", "svc-list"),
            ),
        ];
        assert!(split_of(&plan, &usage, &functions).is_none());
    }

    #[test]
    fn a_function_observed_too_briefly_stays_shared_and_one_function_is_no_split() {
        let (plan, mut usage) = shared();
        usage.by_session.insert(
            "svc-list".to_owned(),
            used(&["s3:ListAllMyBuckets"], 2).actions,
        );
        let split = split_of(
            &plan,
            &usage,
            &names(&["svc-read", "svc-write", "svc-list"]),
        )
        .expect("two functions still split");
        assert_eq!(split.functions.len(), 2);
        assert!(
            split
                .notes
                .iter()
                .any(|n| n.starts_with("function svc-list stays on the shared role")),
            "{:?}",
            split.notes
        );
        assert!(
            split
                .shared_keeps
                .contains(&"s3:ListAllMyBuckets".to_owned())
        );
        assert!(split_of(&plan, &usage, &names(&["svc-read"])).is_none());
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

    #[test]
    fn no_two_functions_get_the_same_role_name_even_regardless_of_case() {
        // IAM takes `svc-Orders` and `svc-orders` for the same role.
        let functions = [
            (
                "Orders",
                "arn:aws:lambda:us-east-1:123456789012:function:Orders",
            ),
            (
                "orders",
                "arn:aws:lambda:us-east-1:123456789012:function:orders",
            ),
            (
                "other",
                "arn:aws:lambda:us-east-1:123456789012:function:other",
            ),
        ];
        let named = role_names("svc", &functions);
        assert_eq!(named[2], ("svc-other".to_owned(), None));
        assert!(named[0].0.starts_with("svc-Orders-") && named[1].0.starts_with("svc-orders-"));
        assert_ne!(
            named[0].0.to_ascii_lowercase(),
            named[1].0.to_ascii_lowercase()
        );
        assert_eq!(named[0].1, Some(Renamed::SameAs("orders".to_owned())));
        assert_eq!(named[1].1, Some(Renamed::SameAs("Orders".to_owned())));
        assert_eq!(
            role_names("svc", &functions),
            named,
            "the same names every time"
        );
        // Many long names with one prefix: all within the limit, no two alike.
        let long = "service-with-a-rather-long-name-for-its-shared-role";
        let many: Vec<(String, String)> = (0..2_000)
            .map(|i| {
                let name = format!("handler-{i}");
                let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
                (name, arn)
            })
            .collect();
        let pairs: Vec<(&str, &str)> = many.iter().map(|(n, a)| (n.as_str(), a.as_str())).collect();
        let named = role_names(long, &pairs);
        let distinct: BTreeSet<String> =
            named.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        assert_eq!(distinct.len(), many.len());
        assert!(named.iter().all(|(n, _)| n.len() <= MAX_ROLE_NAME));
    }

    #[test]
    fn a_renamed_role_is_said_in_every_format_and_iac_identifiers_stay_distinct() {
        let long = "a-shared-role-whose-name-already-takes-most-of-the-room";
        // `svc-a-b` and `svc-a_b` differ as role names, not as Terraform identifiers.
        let (plan, usage) = shared_role(
            long,
            &["ssm:GetParameter", "ssm:PutParameter", "kms:ListKeys"],
            &[
                ("orders-read-handler", &["ssm:GetParameter"]),
                ("a-b", &["ssm:PutParameter"]),
                ("a_b", &["kms:ListKeys"]),
            ],
            &[],
        );
        let split = split_of(
            &plan,
            &usage,
            &names(&["orders-read-handler", "a-b", "a_b"]),
        )
        .expect("a split");
        let read = split
            .functions
            .iter()
            .find(|f| f.function == "orders-read-handler")
            .expect("the function");
        assert_eq!(read.role_name.len(), MAX_ROLE_NAME);
        let full = format!("{long}-orders-read-handler");
        assert_eq!(read.full_role_name.as_deref(), Some(full.as_str()));
        for (format, text) in every_format(&split) {
            assert!(
                text.contains(&read.role_name) && text.contains(&full),
                "{format} does not say the name was shortened: {text}"
            );
        }
        let json = serde_json::to_value(&split).expect("json");
        assert_eq!(json["functions"][2]["full_role_name"], full.as_str());
        // One `aws_iam_role` resource and one CloudFormation role per function.
        let terraform = split.terraform(long);
        let mut resources: Vec<&str> = terraform
            .lines()
            .filter(|l| l.starts_with("resource \"aws_iam_role\""))
            .collect();
        resources.dedup();
        assert_eq!(resources.len(), 3, "{terraform}");
        let cloudformation = split.cloudformation();
        let ids: BTreeSet<&str> = cloudformation
            .lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.ends_with(':'))
            .collect();
        assert_eq!(ids.len(), 3, "{cloudformation}");
    }

    #[test]
    fn a_role_of_120_functions_gives_each_its_role_and_its_markdown_fits_a_comment() {
        let services = [
            "ssm:GetParameter",
            "ssm:PutParameter",
            "s3:GetObject",
            "s3:PutObject",
            "sqs:SendMessage",
            "sqs:ReceiveMessage",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
        ];
        let function_names: Vec<String> =
            (0..120).map(|i| format!("orders-handler-{i:03}")).collect();
        let sessions: Vec<(&str, Vec<&str>)> = function_names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_str(), vec![services[i % 8], services[(i / 8) % 8]]))
            .collect();
        let sessions: Vec<(&str, &[&str])> =
            sessions.iter().map(|(n, a)| (*n, a.as_slice())).collect();
        let (plan, usage) = shared_role(
            "orders-service",
            &["ssm:*", "s3:*", "sqs:*", "dynamodb:*"],
            &sessions,
            &[],
        );
        let listed_names: Vec<&str> = function_names.iter().map(String::as_str).collect();
        let split = split_of(&plan, &usage, &names(&listed_names)).expect("a split");
        assert_eq!(split.functions.len(), 120);
        let distinct: BTreeSet<&str> = split
            .functions
            .iter()
            .map(|f| f.role_name.as_str())
            .collect();
        assert_eq!(distinct.len(), 120);
        // Text: one line per function, with counts.
        let text = split.text();
        assert!(text.lines().count() < 125, "{text}");
        assert!(
            text.contains("    + role orders-service-orders-handler-010 for function orders-handler-010: keeps 2 (s3:GetObject, ssm:PutParameter), loses 6\n"),
            "{text}"
        );
        // Markdown: the same in a table, and the whole plan in one comment.
        let markdown = split.markdown();
        assert!(
            markdown.contains("| `orders-handler-010` | `orders-service-orders-handler-010` | 2: `s3:GetObject`, `ssm:PutParameter` | 6 |"),
            "{markdown}"
        );
        let mut role = plan.clone();
        role.split = Some(split.clone());
        let whole = crate::plan::Plan {
            schema: crate::plan::PLAN_SCHEMA,
            id: "plan-120".to_owned(),
            created_at: "2026-11-18T00:00:00Z".to_owned(),
            catalog: "test".to_owned(),
            lookback_days: 90,
            status: crate::plan::PlanStatus::Proposed,
            accounts: Vec::new(),
            roles: vec![role],
        };
        let parts =
            crate::plan::render::markdown_parts(&whole, crate::plan::render::GITHUB_COMMENT_LIMIT);
        assert_eq!(parts.len(), 1);
        assert!(parts[0].len() < 40_000, "{} bytes", parts[0].len());
        for f in &split.functions {
            assert!(parts[0].contains(&format!("| `{}` | `{}` |", f.function, f.role_name)));
        }
        // The IaC has every function's role.
        assert_eq!(
            split.serverless().matches("iamRoleStatementsName:").count(),
            120
        );
    }

    #[test]
    fn functions_beyond_minings_bound_of_sessions_stay_shared_and_the_note_says_why() {
        let function_names: Vec<String> = (0..MAX_FUNCTION_SESSIONS + 2)
            .map(|i| format!("fn-{i:03}"))
            .collect();
        // Mining kept the first 128 functions' sessions one by one, pooled the rest.
        let sessions: Vec<(&str, &[&str])> = function_names[..MAX_FUNCTION_SESSIONS]
            .iter()
            .map(|n| (n.as_str(), &["ssm:GetParameter"][..]))
            .collect();
        let (plan, usage) = shared_role(
            "svc",
            &["ssm:GetParameter", "ssm:PutParameter"],
            &sessions,
            &[("fn-128", &["ssm:PutParameter"])],
        );
        let listed_names: Vec<&str> = function_names.iter().map(String::as_str).collect();
        let split = split_of(&plan, &usage, &names(&listed_names)).expect("a split");
        assert_eq!(split.functions.len(), MAX_FUNCTION_SESSIONS);
        assert_eq!(split.shared_keeps, ["ssm:PutParameter"]);
        assert_eq!(
            split.notes[0],
            "2 function(s) listed with this role have no calls of their own in the look-back window (mining keeps the calls of 128 sessions of a role one by one and pools the rest with its other sessions, so some of these may have called) and stay on the shared role: fn-128, fn-129"
        );
    }
}
