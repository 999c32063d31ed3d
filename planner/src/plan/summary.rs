//! A large plan at a glance: what `whittle plan show ID` prints for a plan of more than
//! [`SUMMARISE_ABOVE`] roles, in text and JSON.
//!
//! A plan's full text or JSON lists every removed action of every role with its evidence:
//! for 10,000 roles granted ReadOnlyAccess-like policies that is hundreds of megabytes of text
//! and gigabytes of JSON, which nobody reads and which take far longer than a second to
//! write. The summary gives one line (one object) per role — its status and how many actions
//! it keeps and loses, and its risks counted — and says how to see any role in full
//! (`--role ARN`) or every role (`--full`), so a reviewer can still reach every detail.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

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
    let mut counts = BTreeMap::new();
    for role in &plan.roles {
        *counts.entry(role.status.as_str()).or_default() += 1;
    }
    PlanSummary {
        schema: super::PLAN_SCHEMA,
        summary: true,
        id: &plan.id,
        created_at: &plan.created_at,
        catalog: &plan.catalog,
        lookback_days: plan.lookback_days,
        status: plan.status,
        accounts: &plan.accounts,
        counts,
        role_summaries: plan
            .roles
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
        detail: detail_hint(&plan.id),
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
