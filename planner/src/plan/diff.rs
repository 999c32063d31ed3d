//! `whittle plan diff OLD NEW`: what changed between two stored plans, so a reviewer reads
//! only what is new since the last review: roles added or dropped, a role's status, actions
//! newly removed and actions newly kept (with why).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use super::{KeptAction, Plan, RemovedAction, RolePlan, RoleStatus};

/// The difference between two plans, role by role (by ARN).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanDiff {
    pub old: String,
    pub new: String,
    /// Roles only the new plan has.
    pub roles_added: Vec<String>,
    /// Roles only the old plan has.
    pub roles_dropped: Vec<String>,
    /// Roles of both plans whose proposal differs.
    pub roles: Vec<RoleDiff>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleDiff {
    pub role_arn: String,
    pub status_before: RoleStatus,
    pub status_after: RoleStatus,
    /// Removed by the new plan, not by the old one.
    pub newly_removed: Vec<RemovedAction>,
    /// Kept by the new plan where the old one removed it (or did not list it), with why.
    pub newly_kept: Vec<KeptAction>,
}

impl PlanDiff {
    pub fn is_empty(&self) -> bool {
        self.roles_added.is_empty() && self.roles_dropped.is_empty() && self.roles.is_empty()
    }
}

/// Compares `old` with `new`.
pub fn compare(old: &Plan, new: &Plan) -> PlanDiff {
    let find = |plan: &'_ Plan, arn: &str| -> Option<RolePlan> {
        plan.roles.iter().find(|r| r.role_arn == arn).cloned()
    };
    let mut diff = PlanDiff {
        old: old.id.clone(),
        new: new.id.clone(),
        roles_added: Vec::new(),
        roles_dropped: Vec::new(),
        roles: Vec::new(),
    };
    for role in &new.roles {
        let Some(before) = find(old, &role.role_arn) else {
            diff.roles_added.push(role.role_arn.clone());
            continue;
        };
        let removed_before: BTreeSet<String> = before.removed.iter().map(|r| r.action).collect();
        let kept_before: BTreeSet<&str> = before.kept.iter().map(|k| k.action.as_str()).collect();
        let newly_removed: Vec<RemovedAction> = role
            .removed
            .iter()
            .filter(|r| !removed_before.contains(&r.action))
            .collect();
        let newly_kept: Vec<KeptAction> = role
            .kept
            .iter()
            .filter(|k| !kept_before.contains(k.action.as_str()))
            .cloned()
            .collect();
        if newly_removed.is_empty() && newly_kept.is_empty() && before.status == role.status {
            continue;
        }
        diff.roles.push(RoleDiff {
            role_arn: role.role_arn.clone(),
            status_before: before.status,
            status_after: role.status,
            newly_removed,
            newly_kept,
        });
    }
    for role in &old.roles {
        if find(new, &role.role_arn).is_none() {
            diff.roles_dropped.push(role.role_arn.clone());
        }
    }
    diff
}

fn status(status: RoleStatus) -> &'static str {
    match status {
        RoleStatus::Changes => "changes",
        RoleStatus::NoChange => "no change",
        RoleStatus::NotShrunk => "not shrunk",
        RoleStatus::Error => "error",
    }
}

fn kept_why(k: &KeptAction) -> String {
    if k.note.is_empty() {
        k.reason.as_str().to_owned()
    } else {
        format!("{}: {}", k.reason.as_str(), k.note)
    }
}

/// The text form.
pub fn text(diff: &PlanDiff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "plan {} -> {}", diff.old, diff.new);
    if diff.is_empty() {
        let _ = writeln!(out, "no difference");
        return out;
    }
    for arn in &diff.roles_added {
        let _ = writeln!(out, "+ role {arn} (new in {})", diff.new);
    }
    for arn in &diff.roles_dropped {
        let _ = writeln!(out, "- role {arn} (not in {})", diff.new);
    }
    for role in &diff.roles {
        let _ = writeln!(out, "role {}:", role.role_arn);
        if role.status_before != role.status_after {
            let _ = writeln!(
                out,
                "  status: {} -> {}",
                status(role.status_before),
                status(role.status_after)
            );
        }
        for k in &role.newly_kept {
            let _ = writeln!(out, "  + kept {} ({})", k.action, kept_why(k));
        }
        for r in &role.newly_removed {
            let _ = writeln!(
                out,
                "  - removed {} [{}] — {}",
                r.action, r.access_level, r.evidence
            );
        }
    }
    out
}

/// The Markdown form, for a pull-request comment.
pub fn markdown(diff: &PlanDiff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## whittle plan `{}` since `{}`\n", diff.new, diff.old);
    if diff.is_empty() {
        let _ = writeln!(out, "No difference.");
        return out;
    }
    for arn in &diff.roles_added {
        let _ = writeln!(out, "- new role `{arn}`");
    }
    for arn in &diff.roles_dropped {
        let _ = writeln!(out, "- role `{arn}` is no longer planned");
    }
    if !diff.roles_added.is_empty() || !diff.roles_dropped.is_empty() {
        let _ = writeln!(out);
    }
    for role in &diff.roles {
        let _ = writeln!(out, "### `{}`\n", role.role_arn);
        if role.status_before != role.status_after {
            let _ = writeln!(
                out,
                "status: {} → **{}**\n",
                status(role.status_before),
                status(role.status_after)
            );
        }
        if !role.newly_kept.is_empty() || !role.newly_removed.is_empty() {
            let _ = writeln!(out, "| | action | why |\n|---|---|---|");
            for k in &role.newly_kept {
                let _ = writeln!(out, "| kept | `{}` | {} |", k.action, kept_why(k));
            }
            for r in &role.newly_removed {
                let _ = writeln!(
                    out,
                    "| removed | `{}` | {} ({}) |",
                    r.action, r.evidence, r.access_level
                );
            }
            let _ = writeln!(out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::KeepReason;

    fn removed(action: &str) -> RemovedAction {
        RemovedAction {
            action: action.to_owned(),
            actions: 1,
            access_level: "Read".to_owned(),
            evidence: "not seen in 90 days of trail".to_owned(),
        }
    }

    fn kept(action: &str, reason: KeepReason) -> KeptAction {
        KeptAction {
            action: action.to_owned(),
            reason,
            count: None,
            last_seen: None,
            sample_event_id: None,
            resources: Vec::new(),
            note: String::new(),
        }
    }

    fn plan(id: &str, roles: Vec<RolePlan>) -> Plan {
        Plan {
            schema: crate::plan::PLAN_SCHEMA,
            id: id.to_owned(),
            created_at: "2026-12-01T00:00:00Z".to_owned(),
            catalog: "test".to_owned(),
            lookback_days: 90,
            status: crate::plan::PlanStatus::Proposed,
            accounts: Vec::new(),
            roles,
        }
    }

    fn role(
        arn: &str,
        kept_actions: Vec<KeptAction>,
        removed_actions: Vec<RemovedAction>,
    ) -> RolePlan {
        let current = crate::plan::RolePolicies {
            role_arn: arn.to_owned(),
            role_name: arn.rsplit('/').next().unwrap_or(arn).to_owned(),
            inline: Vec::new(),
            managed: Vec::new(),
            boundary: None,
        };
        let mut role = RolePlan::failed(&current, String::new());
        role.status = RoleStatus::Changes;
        role.error = None;
        role.kept = kept_actions;
        role.removed = removed_actions.into();
        role
    }

    #[test]
    fn a_diff_shows_only_what_changed_and_why() {
        let old = plan(
            "p-1",
            vec![
                role(
                    "arn:aws:iam::1:role/a",
                    vec![kept("ssm:GetParameter", KeepReason::Used)],
                    vec![
                        removed("secretsmanager:GetSecretValue"),
                        removed("s3:GetObject"),
                    ],
                ),
                role(
                    "arn:aws:iam::1:role/gone",
                    vec![],
                    vec![removed("s3:GetObject")],
                ),
            ],
        );
        let new = plan(
            "p-2",
            vec![
                role(
                    "arn:aws:iam::1:role/a",
                    vec![
                        kept("ssm:GetParameter", KeepReason::Used),
                        kept("secretsmanager:GetSecretValue", KeepReason::Needed),
                    ],
                    vec![removed("s3:GetObject")],
                ),
                role(
                    "arn:aws:iam::1:role/new",
                    vec![],
                    vec![removed("s3:GetObject")],
                ),
            ],
        );
        let diff = compare(&old, &new);
        assert_eq!(diff.roles_added, ["arn:aws:iam::1:role/new"]);
        assert_eq!(diff.roles_dropped, ["arn:aws:iam::1:role/gone"]);
        assert_eq!(diff.roles.len(), 1);
        let kept: Vec<&str> = diff.roles[0]
            .newly_kept
            .iter()
            .map(|k| k.action.as_str())
            .collect();
        assert_eq!(kept, ["secretsmanager:GetSecretValue"]);
        assert!(diff.roles[0].newly_removed.is_empty());
        let text = text(&diff);
        assert!(
            text.contains("+ kept secretsmanager:GetSecretValue (needed"),
            "{text}"
        );
        assert!(markdown(&diff).contains("| kept | `secretsmanager:GetSecretValue` |"));
        assert!(compare(&new, &new).is_empty());
        assert!(self::text(&compare(&new, &new)).contains("no difference"));
    }
}
