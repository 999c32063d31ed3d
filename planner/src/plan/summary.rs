//! A large plan at a glance: what `whittle plan show ID` prints for a plan of more than
//! [`SUMMARISE_ABOVE`] roles, in text and JSON.
//!
//! A plan's full text or JSON lists every removed action of every role with its evidence:
//! for 10,000 roles granted ReadOnlyAccess-like policies that is hundreds of megabytes of text
//! and gigabytes of JSON, which nobody reads and which take far longer than a second to
//! write. The summary gives one line (one object) per role — its status and how many actions
//! it keeps and loses, and its risks counted — and says how to see any role in full
//! (`--role ARN`) or every role (`--full`), so a reviewer can still reach every detail.
//!
//! [`PlanDigest`] is everything a summary shows, owned: the daemon stores it beside each
//! plan, so that `plan show` of 10,000 roles reads a record of about a megabyte instead of
//! inflating and rebuilding the whole plan.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{AccountRead, Plan, PlanStatus, RoleStatus};

/// Plans of more roles than this are summarised by `whittle plan show` (text and JSON).
pub const SUMMARISE_ABOVE: usize = 100;

/// The JSON of a summarised plan (docs/plan-schema.md, "Plan summary"). It has no `roles`
/// array, so a reader of the full schema fails on it instead of reading a plan without
/// roles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSummary<'p> {
    pub schema: u32,
    /// Always true: this is a summary, not the plan.
    pub summary: bool,
    pub id: &'p str,
    pub created_at: &'p str,
    pub catalog: &'p str,
    pub lookback_days: u32,
    pub status: PlanStatus,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub accounts: &'p [AccountRead],
    /// Roles per status (`changes`, `no-change`, `not-shrunk`, `error`).
    pub counts: BTreeMap<&'static str, usize>,
    pub role_summaries: Vec<RoleSummary<'p>>,
    /// The commands that show roles in full.
    pub detail: String,
}

/// One role of a summarised plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleSummary<'p> {
    pub role_arn: &'p str,
    pub status: RoleStatus,
    /// Catalog actions the proposal removes (a `service:*` entry counts each action).
    pub removed: usize,
    /// Actions the proposal keeps, each with its reason in the full plan.
    pub kept: usize,
    pub risks: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'p str>,
}

/// The summary of `plan`.
pub fn summarise(plan: &Plan) -> PlanSummary<'_> {
    let head = Head {
        id: &plan.id,
        created_at: &plan.created_at,
        catalog: &plan.catalog,
        lookback_days: plan.lookback_days,
        status: plan.status,
        accounts: &plan.accounts,
    };
    head.summary(
        plan.roles
            .iter()
            .map(|role| RoleSummary {
                role_arn: &role.role_arn,
                status: role.status,
                removed: role.removed.actions(),
                kept: role.kept.len(),
                risks: role.risks.len(),
                error: role.error.as_deref(),
            })
            .collect(),
    )
}

/// What a summary takes from the plan besides its roles.
struct Head<'p> {
    id: &'p str,
    created_at: &'p str,
    catalog: &'p str,
    lookback_days: u32,
    status: PlanStatus,
    accounts: &'p [AccountRead],
}

impl<'p> Head<'p> {
    fn summary(self, role_summaries: Vec<RoleSummary<'p>>) -> PlanSummary<'p> {
        let mut counts = BTreeMap::new();
        for role in &role_summaries {
            *counts.entry(role.status.as_str()).or_default() += 1;
        }
        PlanSummary {
            schema: super::PLAN_SCHEMA,
            summary: true,
            id: self.id,
            created_at: self.created_at,
            catalog: self.catalog,
            lookback_days: self.lookback_days,
            status: self.status,
            accounts: self.accounts,
            counts,
            role_summaries,
            detail: detail_hint(self.id),
        }
    }
}

/// Everything [`summarise`] shows of a plan and `whittle plan show`'s exit code needs, owned
/// and serialisable: what the daemon stores beside each plan (tens of bytes per role instead
/// of the role's documents, kept actions and removed set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDigest {
    pub id: String,
    pub created_at: String,
    pub catalog: String,
    pub lookback_days: u32,
    pub status: PlanStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountRead>,
    pub roles: Vec<RoleDigest>,
}

/// One role of a [`PlanDigest`]: its [`RoleSummary`], and whether it would be split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDigest {
    pub role_arn: String,
    pub status: RoleStatus,
    pub removed: usize,
    pub kept: usize,
    pub risks: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The plan splits this shared role among its functions (a change even when the role's
    /// own status is not `changes`, as [`Plan::has_changes`] counts it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split: bool,
}

impl PlanDigest {
    /// The digest of `plan`.
    pub fn of(plan: &Plan) -> PlanDigest {
        let summary = summarise(plan);
        PlanDigest {
            id: plan.id.clone(),
            created_at: plan.created_at.clone(),
            catalog: plan.catalog.clone(),
            lookback_days: plan.lookback_days,
            status: plan.status,
            accounts: plan.accounts.clone(),
            roles: summary
                .role_summaries
                .iter()
                .zip(&plan.roles)
                .map(|(line, role)| RoleDigest {
                    role_arn: line.role_arn.to_owned(),
                    status: line.status,
                    removed: line.removed,
                    kept: line.kept,
                    risks: line.risks,
                    error: line.error.map(str::to_owned),
                    split: role.split.is_some(),
                })
                .collect(),
        }
    }

    /// The plan's summary, exactly as [`summarise`] makes it of the plan.
    pub fn summary(&self) -> PlanSummary<'_> {
        let head = Head {
            id: &self.id,
            created_at: &self.created_at,
            catalog: &self.catalog,
            lookback_days: self.lookback_days,
            status: self.status,
            accounts: &self.accounts,
        };
        head.summary(
            self.roles
                .iter()
                .map(|role| RoleSummary {
                    role_arn: &role.role_arn,
                    status: role.status,
                    removed: role.removed,
                    kept: role.kept,
                    risks: role.risks,
                    error: role.error.as_deref(),
                })
                .collect(),
        )
    }

    /// Whether any role would change or be split ([`Plan::has_changes`]).
    pub fn has_changes(&self) -> bool {
        self.roles
            .iter()
            .any(|r| r.status == RoleStatus::Changes || r.split)
    }
}

fn detail_hint(id: &str) -> String {
    format!(
        "`whittle plan show {id} --role ARN` shows a role in full (repeatable); `--full` shows every role"
    )
}

/// The summary as text: the plan's line, the roles counted per status, one line per role,
/// and how to see roles in full.
pub fn text(summary: &PlanSummary<'_>) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the results of writeln! are ignored below.
    let _ = writeln!(
        out,
        "plan {} ({}, {} role(s), catalog {}): summary of a plan of more than {SUMMARISE_ABOVE} roles",
        summary.id,
        summary.created_at,
        summary.role_summaries.len(),
        summary.catalog
    );
    let counts: Vec<String> = summary
        .counts
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    let _ = writeln!(out, "roles: {}", counts.join(", "));
    for account in summary.accounts {
        match (&account.read_at, &account.error) {
            (_, Some(error)) => {
                let _ = writeln!(
                    out,
                    "account {} not read, its roles are not in this plan: {error}",
                    account.account
                );
            }
            (Some(at), None) => {
                let _ = writeln!(out, "account {} read at {at}", account.account);
            }
            (None, None) => {}
        }
    }
    let _ = writeln!(out);
    let width = summary
        .role_summaries
        .iter()
        .map(|r| r.role_arn.len())
        .max()
        .unwrap_or(0);
    for role in &summary.role_summaries {
        let _ = write!(
            out,
            "{:width$}  {:<10} -{:<6} ={:<4}",
            role.role_arn,
            role.status.as_str(),
            role.removed,
            role.kept
        );
        if role.risks > 0 {
            let _ = write!(out, " {} risk(s)", role.risks);
        }
        if let Some(error) = role.error {
            let _ = write!(out, " {error}");
        }
        out.push('\n');
    }
    let changed = summary.counts.get("changes").copied().unwrap_or(0);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{changed} of {} role(s) would change (-removed actions, =kept actions per role). {}.",
        summary.role_summaries.len(),
        summary.detail
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::benchgen::{BenchRole, bench_roles, bench_settings};
    use crate::catalog::Catalog;
    use crate::plan::{PLAN_SCHEMA, RoleInput, RolePlan, plan_roles};

    const NOW_MS: i64 = 1_780_000_000_000;

    /// Planned roles of every bench shape, one that could not be planned, and an account
    /// that could not be read.
    fn plan() -> Plan {
        let catalog = Catalog::embedded();
        let inputs = bench_roles(catalog, 9, NOW_MS, 7);
        let settings = bench_settings(NOW_MS);
        let role_inputs: Vec<RoleInput<'_>> = inputs.iter().map(BenchRole::input).collect();
        let mut roles = plan_roles(&role_inputs, &settings, catalog);
        roles.push(RolePlan::failed(
            &inputs[0].policies,
            "AccessDenied: iam:GetRolePolicy".to_owned(),
        ));
        Plan {
            schema: PLAN_SCHEMA,
            id: "plan-digest".to_owned(),
            created_at: "2026-12-03T10:00:00Z".to_owned(),
            catalog: catalog.version.to_string(),
            lookback_days: 90,
            status: PlanStatus::Proposed,
            accounts: vec![
                AccountRead {
                    account: "prod".to_owned(),
                    read_at: Some("2026-12-03T09:59:00Z".to_owned()),
                    error: None,
                },
                AccountRead {
                    account: "dev".to_owned(),
                    read_at: None,
                    error: Some("ExpiredToken".to_owned()),
                },
            ],
            roles,
        }
    }

    /// The digest stored beside a plan gives the summary of the plan itself, field for field,
    /// in text and JSON, after a round trip through its stored JSON.
    #[test]
    fn a_plans_digest_summarises_it_exactly_as_the_plan_does() {
        let plan = plan();
        let statuses: std::collections::BTreeSet<_> =
            plan.roles.iter().map(|r| r.status.as_str()).collect();
        assert!(statuses.len() >= 2, "{statuses:?}");
        assert!(plan.roles.iter().any(|r| !r.risks.is_empty()));

        let digest = PlanDigest::of(&plan);
        let stored = serde_json::to_string(&digest).expect("JSON");
        let digest: PlanDigest = serde_json::from_str(&stored).expect("reads back");
        let (from_digest, from_plan) = (digest.summary(), summarise(&plan));
        assert_eq!(from_digest, from_plan);
        assert_eq!(text(&from_digest), text(&from_plan));
        assert_eq!(
            serde_json::to_string(&from_digest).expect("JSON"),
            serde_json::to_string(&from_plan).expect("JSON")
        );
        assert_eq!(digest.has_changes(), plan.has_changes());
        assert!(
            from_digest
                .role_summaries
                .iter()
                .any(|r| r.removed > 1000 && r.kept > 0),
            "the counts are the plan's: {from_digest:?}"
        );
    }

    /// A role the plan splits among its functions is a change even when its own status is
    /// not, in the digest as in the plan (`whittle plan show`'s exit code depends on it).
    #[test]
    fn a_split_role_counts_as_a_change_in_the_digest() {
        let mut plan = plan();
        for role in &mut plan.roles {
            role.status = RoleStatus::NoChange;
        }
        assert!(!PlanDigest::of(&plan).has_changes());
        plan.roles[0].split = Some(crate::plan::split::SplitProposal {
            functions: Vec::new(),
            shared_keeps: Vec::new(),
            notes: Vec::new(),
        });
        assert!(plan.has_changes());
        assert!(PlanDigest::of(&plan).has_changes());
    }
}
