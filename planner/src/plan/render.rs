//! Plans rendered for people and for infrastructure as code: a (coloured) text diff, Markdown
//! for a pull-request comment, and Terraform, CloudFormation and serverless.yml snippets.

use std::fmt::Write as _;

use super::{Plan, PolicyDocument, RolePlan, RoleStatus};

/// Beyond this many removed actions of one service, the text form shows a summary line.
const SUMMARISE_ABOVE: usize = 8;

/// One policy's change, as the renderers show it.
pub(super) struct Change {
    /// `inline NAME` or a managed policy ARN.
    pub(super) title: String,
    /// The document before and after, pretty-printed; `None` when the policy is created or
    /// goes.
    pub(super) before: Option<String>,
    pub(super) after: Option<String>,
}

fn pretty_text(text: &str) -> String {
    PolicyDocument::from_iam(text).map_or_else(|_| text.to_owned(), |d| d.to_pretty())
}

pub(super) fn changes(role: &RolePlan) -> Vec<Change> {
    let mut out = Vec::new();
    for name in &role.proposal.delete_inline {
        let before = role
            .current
            .inline
            .iter()
            .find(|i| &i.name == name)
            .map(|i| pretty_text(&i.document));
        out.push(Change {
            title: format!("inline {name} (deleted)"),
            before,
            after: None,
        });
    }
    for arn in &role.proposal.detach {
        let before = role
            .current
            .managed
            .iter()
            .find(|m| &m.arn == arn)
            .map(|m| pretty_text(&m.document));
        out.push(Change {
            title: format!("{arn} (detached)"),
            before,
            after: None,
        });
    }
    for put in &role.proposal.put_inline {
        let before = role
            .current
            .inline
            .iter()
            .find(|i| i.name == put.name)
            .map(|i| pretty_text(&i.document));
        let title = if before.is_some() {
            format!("inline {}", put.name)
        } else {
            format!("inline {} (new)", put.name)
        };
        out.push(Change {
            title,
            before,
            after: Some(put.document.to_pretty()),
        });
    }
    out
}

/// A line diff (longest common subsequence): `' '`, `'-'` or `'+'` with each line.
fn diff_lines<'a>(before: &'a str, after: &'a str) -> Vec<(char, &'a str)> {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Deletions before insertions, as diff(1) shows a replaced run.
            out.push(('-', a[i]));
            i += 1;
        } else {
            out.push(('+', b[j]));
            j += 1;
        }
    }
    out
}

fn diff(change: &Change) -> Vec<(char, String)> {
    let before = change.before.as_deref().unwrap_or("");
    let after = change.after.as_deref().unwrap_or("");
    diff_lines(before, after)
        .into_iter()
        .map(|(c, l)| (c, l.to_owned()))
        .collect()
}

fn status_line(role: &RolePlan) -> String {
    let kept = role.kept.len();
    let removed = role.removed.actions();
    match role.status {
        RoleStatus::Changes => {
            format!("{kept} action(s) kept, {removed} removed")
        }
        RoleStatus::NoChange => format!("no change: all {kept} granted action(s) are kept"),
        RoleStatus::NotShrunk => format!(
            "not shrunk (would keep {kept}, remove {removed}; observed {} day(s))",
            role.observed_days
        ),
        RoleStatus::Error => format!("error: {}", role.error.as_deref().unwrap_or("unknown")),
    }
}

/// The text form: a summary per role and a diff of every changed policy; `colour` adds
/// ANSI colours for a terminal.
pub fn text(plan: &Plan, colour: bool) -> String {
    let paint = |code: &str, s: &str| {
        if colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} ({}, {} role(s), catalog {})",
        paint("1", "plan"),
        plan.id,
        plan.created_at,
        plan.roles.len(),
        plan.catalog
    );
    for role in &plan.roles {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{} {}: {}",
            paint("1", "role"),
            role.role_arn,
            status_line(role)
        );
        for risk in &role.risks {
            let _ = writeln!(out, "  {} {risk}", paint("33", "risk:"));
        }
        for note in &role.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        if role.status == RoleStatus::Error {
            continue;
        }
        // Long lists are summarised per service here; JSON and Markdown list every action.
        // Borrowed entries: a role granted ReadOnlyAccess loses ~9,000 actions, and copying
        // each into an owned `RemovedAction` made rendering thousands of roles slow.
        let removed_list: Vec<super::RemovedRef<'_>> = role.removed.entries().collect();
        let mut by_service: Vec<(&str, Vec<&super::RemovedRef<'_>>)> = Vec::new();
        for removed in &removed_list {
            let service = removed.action.split(':').next().unwrap_or_default();
            match by_service.last_mut() {
                Some((s, list)) if *s == service => list.push(removed),
                _ => by_service.push((service, vec![removed])),
            }
        }
        for (service, list) in by_service {
            if list.len() <= SUMMARISE_ABOVE {
                for removed in list {
                    let _ = writeln!(
                        out,
                        "  {} {} [{}] — {}",
                        paint("31", "-"),
                        removed.action,
                        removed.access_level,
                        removed.evidence
                    );
                }
                continue;
            }
            let mut levels: std::collections::BTreeMap<&str, usize> = Default::default();
            for removed in &list {
                *levels.entry(removed.access_level).or_default() += removed.actions;
            }
            let _ = writeln!(
                out,
                "  {} {service}: {} actions [{}], e.g. {} — {}",
                paint("31", "-"),
                list.iter().map(|r| r.actions).sum::<usize>(),
                levels
                    .iter()
                    .map(|(level, n)| format!("{level} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                list.iter()
                    .take(3)
                    .map(|r| r.action.as_ref())
                    .collect::<Vec<_>>()
                    .join(", "),
                list[0].evidence
            );
        }
        for kept in &role.kept {
            let detail = match (&kept.count, &kept.last_seen) {
                (Some(count), Some(last)) => format!(
                    "{count} call(s), last {last}{}",
                    kept.sample_event_id
                        .as_ref()
                        .map(|id| format!(", e.g. event {id}"))
                        .unwrap_or_default()
                ),
                _ => kept.note.clone(),
            };
            let _ = writeln!(
                out,
                "  {} {} ({}: {detail})",
                paint("32", "="),
                kept.action,
                kept.reason.as_str()
            );
        }
        if let Some(split) = &role.split {
            out.push_str(&split.text());
        }
        if role.status != RoleStatus::Changes {
            continue;
        }
        for change in changes(role) {
            let _ = writeln!(out, "  {}", paint("1", &format!("--- {}", change.title)));
            for (sign, line) in diff(&change) {
                let text = format!("  {sign} {line}");
                let _ = writeln!(
                    out,
                    "{}",
                    match sign {
                        '-' => paint("31", &text),
                        '+' => paint("32", &text),
                        _ => text,
                    }
                );
            }
        }
    }
    let changed = plan
        .roles
        .iter()
        .filter(|r| r.status == RoleStatus::Changes)
        .count();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{changed} of {} role(s) would change. Apply with `whittle apply {}` (after a trial, or with --force).",
        plan.roles.len(),
        plan.id
    );
    out
}

/// A GitHub comment's limit, in characters: the default budget of a Markdown part.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;

/// The most a part's closing "part i of n" line takes.
const PART_FOOTER: usize = 160;

/// Removed actions named per service and evidence in Markdown; the rest are counted (a
/// wildcard's hundreds of actions say nothing a reviewer reads).
const NAMES_PER_SERVICE: usize = 24;

/// Markdown for a pull-request comment, in one piece (see [`markdown_parts`]).
pub fn markdown(plan: &Plan) -> String {
    markdown_parts(plan, usize::MAX).concat()
}

/// Markdown for pull-request comments, read top-down: a summary table (one row per role)
/// first, then per role its risks, the removed actions counted per service and access level,
/// every removed action and the policy diff folded in `<details>`, and what is kept.
///
/// Split into parts of at most `max_bytes` each, the summary in the first; a role's section is
/// never cut (a section too big for any part loses its folded lists first, with a line that
/// says where to find them: `whittle plan show ID`).
pub fn markdown_parts(plan: &Plan, max_bytes: usize) -> Vec<String> {
    let mut head = String::new();
    let changed = plan
        .roles
        .iter()
        .filter(|r| r.status == RoleStatus::Changes)
        .count();
    let _ = writeln!(head, "## whittle plan `{}`\n", plan.id);
    let _ = writeln!(
        head,
        "{changed} of {} role(s) would change · {} · catalog {} · look-back {} days\n",
        plan.roles.len(),
        plan.created_at,
        plan.catalog,
        plan.lookback_days
    );
    // The summary: one row per role, those that change with the most write and permissions
    // removals first; rows beyond half the budget are left to the roles' own sections.
    let risky = |role: &RolePlan| -> usize {
        role.removed
            .entries()
            .filter(|r| is_risky(r.access_level))
            .map(|r| r.actions)
            .sum()
    };
    let mut order: Vec<&RolePlan> = plan.roles.iter().collect();
    order.sort_by_key(|r| (r.status != RoleStatus::Changes, std::cmp::Reverse(risky(r))));
    let _ = writeln!(
        head,
        "| role | status | kept | removed | write / permissions removed | to look at |\n|---|---|---|---|---|---|"
    );
    let room = max_bytes / 2;
    let mut listed = 0;
    for role in &order {
        let removed = role.removed.actions();
        let status = match role.status {
            RoleStatus::Changes => "changes",
            RoleStatus::NoChange => "no change",
            RoleStatus::NotShrunk => "not shrunk",
            RoleStatus::Error => "error",
        };
        let mut look = role.risks.len() + role.notes.len();
        if role.status == RoleStatus::Error {
            look += 1;
        }
        let row = format!(
            "| `{}` | {status} | {} | {removed} | {} | {} |\n",
            role_name(&role.role_arn),
            role.kept.len(),
            risky(role),
            if look == 0 {
                String::new()
            } else {
                format!("{look} note(s)")
            }
        );
        if head.len() + row.len() > room {
            break;
        }
        head.push_str(&row);
        listed += 1;
    }
    if listed < order.len() {
        let _ = writeln!(
            head,
            "\n…and {} more role(s), each in its section below (`whittle plan show {} --format json` has them all).",
            order.len() - listed,
            plan.id
        );
    }
    let _ = writeln!(head);
    let sections: Vec<String> = plan
        .roles
        .iter()
        .map(|role| {
            let full = role_section(plan, role, true);
            if full.len() <= max_bytes.saturating_sub(PART_FOOTER) {
                full
            } else {
                role_section(plan, role, false)
            }
        })
        .collect();
    // Room for the "part i of n" line each part ends with.
    let budget = max_bytes.saturating_sub(PART_FOOTER);
    let mut parts = vec![head];
    for section in sections {
        let filled = parts.last().map_or(0, String::len);
        if filled > 0 && filled + section.len() > budget {
            parts.push(String::new());
        }
        if let Some(part) = parts.last_mut() {
            part.push_str(&section);
        }
    }
    let total = parts.len();
    if total > 1 {
        for (i, part) in parts.iter_mut().enumerate() {
            let _ = writeln!(
                part,
                "<sub>part {} of {total} of plan `{}`</sub>",
                i + 1,
                plan.id
            );
        }
    }
    parts
}

/// Write and permissions-management removals are the ones a reviewer must see.
pub(super) fn is_risky(level: &str) -> bool {
    level == "Write" || level.starts_with("Permissions")
}

fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// One role's Markdown; `folded` adds the `<details>` lists (every removed action, the diff).
fn role_section(plan: &Plan, role: &RolePlan, folded: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### `{}`\n", role.role_arn);
    let _ = writeln!(out, "**{}**\n", status_line(role));
    for risk in &role.risks {
        let _ = writeln!(out, "- ⚠️ {risk}");
    }
    for note in &role.notes {
        let _ = writeln!(out, "- {note}");
    }
    if !role.risks.is_empty() || !role.notes.is_empty() {
        let _ = writeln!(out);
    }
    if role.status == RoleStatus::Error {
        return out;
    }
    if let Some(split) = &role.split {
        out.push_str(&split.markdown());
    }
    if !role.removed.is_empty() {
        let removed_list = role.removed.to_vec();
        // service -> level -> (count, names)
        let mut by_service: std::collections::BTreeMap<
            &str,
            std::collections::BTreeMap<&str, (usize, Vec<&str>)>,
        > = Default::default();
        for r in &removed_list {
            let (service, name) = r.action.split_once(':').unwrap_or((&r.action, ""));
            let entry = by_service
                .entry(service)
                .or_default()
                .entry(r.access_level.as_str())
                .or_default();
            entry.0 += r.actions;
            entry.1.push(name);
        }
        let _ = writeln!(
            out,
            "| removed from | actions | by access level |\n|---|---|---|"
        );
        for (service, levels) in &by_service {
            let total: usize = levels.values().map(|(n, _)| n).sum();
            let _ = writeln!(
                out,
                "| `{service}` | {total} | {} |",
                levels
                    .iter()
                    .map(|(level, (n, _))| if is_risky(level) {
                        format!("**{level} {n}**")
                    } else {
                        format!("{level} {n}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(out);
        if folded {
            let removed = role.removed.actions();
            let _ = writeln!(
                out,
                "<details><summary>every removed action ({removed}) and its evidence</summary>\n"
            );
            let mut by_evidence: std::collections::BTreeMap<&str, Vec<&super::RemovedAction>> =
                Default::default();
            for r in &removed_list {
                by_evidence.entry(r.evidence.as_str()).or_default().push(r);
            }
            for (evidence, list) in by_evidence {
                let _ = writeln!(out, "{evidence}:\n");
                let mut by_service: Vec<(&str, Vec<&str>)> = Vec::new();
                for r in list {
                    let (s, name) = r.action.split_once(':').unwrap_or((&r.action, ""));
                    match by_service.last_mut() {
                        Some((service, names)) if *service == s => names.push(name),
                        _ => by_service.push((s, vec![name])),
                    }
                }
                for (service, names) in by_service {
                    let shown: Vec<&str> = names.iter().take(NAMES_PER_SERVICE).copied().collect();
                    let more = names.len() - shown.len();
                    let _ = writeln!(
                        out,
                        "- `{service}`: {}{}",
                        shown.join(", "),
                        if more > 0 {
                            format!(
                                " and {more} more (`whittle plan show {} --format json` lists them)",
                                plan.id
                            )
                        } else {
                            String::new()
                        }
                    );
                }
                let _ = writeln!(out);
            }
            let _ = writeln!(out, "</details>\n");
        } else {
            let _ = writeln!(
                out,
                "(every removed action and the policy diff: `whittle plan show {}`)\n",
                plan.id
            );
        }
    }
    if !role.kept.is_empty() {
        let _ = writeln!(
            out,
            "| kept | why | calls | last seen | sample event |\n|---|---|---|---|---|"
        );
        for k in &role.kept {
            let why = k.reason.as_str();
            let why = if k.note.is_empty() {
                why.to_owned()
            } else {
                format!("{why}: {}", k.note)
            };
            let _ = writeln!(
                out,
                "| `{}` | {why} | {} | {} | {} |",
                k.action,
                k.count.map(|c| c.to_string()).unwrap_or_default(),
                k.last_seen.as_deref().unwrap_or(""),
                k.sample_event_id
                    .as_deref()
                    .map(|id| format!("`{id}`"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(out);
    }
    if role.status == RoleStatus::Changes && folded {
        let _ = writeln!(out, "<details><summary>policy diff</summary>\n\n```diff");
        for change in changes(role) {
            let _ = writeln!(out, "--- {}", change.title);
            // Changed lines with one line of context; unchanged runs are elided.
            let lines = diff(&change);
            if lines.iter().all(|(sign, _)| *sign == '-') {
                let _ = writeln!(out, "-(the whole policy, {} lines)", lines.len());
                continue;
            }
            let near_change = |i: usize| {
                lines[i.saturating_sub(1)..(i + 2).min(lines.len())]
                    .iter()
                    .any(|(sign, _)| *sign != ' ')
            };
            let mut elided = false;
            for (i, (sign, line)) in lines.iter().enumerate() {
                if *sign == ' ' && !near_change(i) {
                    if !elided {
                        let _ = writeln!(out, " …");
                        elided = true;
                    }
                    continue;
                }
                elided = false;
                let _ = writeln!(out, "{sign}{line}");
            }
        }
        let _ = writeln!(out, "```\n\n</details>\n");
    }
    out
}

/// An identifier for IaC: letters, digits and `_` (Terraform) or alphanumerics (CFN).
pub(super) fn identifier(parts: &[&str], separator: &str) -> String {
    parts
        .iter()
        .map(|p| {
            p.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(separator)
}

pub(super) fn camel(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

fn changed_roles(plan: &Plan) -> impl Iterator<Item = &RolePlan> {
    plan.roles
        .iter()
        .filter(|r| r.status == RoleStatus::Changes)
}

/// Terraform: one `aws_iam_role_policy` per proposed inline policy, with what to delete or
/// detach as comments (those are resources elsewhere in the configuration).
pub fn terraform(plan: &Plan) -> String {
    let mut out = format!("# whittle plan {} ({})\n", plan.id, plan.created_at);
    for role in changed_roles(plan) {
        let name = crate::targets::role_name(&role.role_arn);
        let _ = writeln!(out, "\n# {}", role.role_arn);
        for deleted in &role.proposal.delete_inline {
            let _ = writeln!(
                out,
                "# remove the aws_iam_role_policy \"{deleted}\" of this role"
            );
        }
        for arn in &role.proposal.detach {
            let _ = writeln!(
                out,
                "# remove the aws_iam_role_policy_attachment of {arn} to this role"
            );
        }
        for put in &role.proposal.put_inline {
            out.push_str(&terraform_role_policy(
                &identifier(&[name, &put.name], "__"),
                &put.name,
                &format!("\"{name}\""),
                &put.document,
            ));
            out.push('\n');
        }
    }
    for (role, split) in splits(plan) {
        out.push_str(&split.terraform(crate::targets::role_name(&role.role_arn)));
    }
    out
}

/// The roles with a split proposal, whatever their own status.
fn splits(plan: &Plan) -> impl Iterator<Item = (&RolePlan, &super::split::SplitProposal)> {
    plan.roles
        .iter()
        .filter_map(|r| r.split.as_ref().map(|s| (r, s)))
}

/// One `aws_iam_role_policy` resource: `role` is an HCL expression (a quoted name, or a
/// reference such as `aws_iam_role.whittle.id`). Plans and `whittle self-policy` share it.
pub fn terraform_role_policy(
    resource: &str,
    name: &str,
    role: &str,
    document: &PolicyDocument,
) -> String {
    // `${` starts an interpolation in HCL strings; policy variables need `$${`.
    let json = document.to_pretty().replace("${", "$${");
    format!(
        "resource \"aws_iam_role_policy\" \"{resource}\" {{\n  name   = \"{name}\"\n  role   = {role}\n  policy = <<-EOT\n{}\n  EOT\n}}",
        indent(&json, "    ")
    )
}

/// A Terraform resource name from parts: letters, digits and `_`.
pub fn terraform_identifier(parts: &[&str]) -> String {
    identifier(parts, "_")
}

pub(super) fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// CloudFormation (YAML): one `AWS::IAM::RolePolicy` per proposed inline policy.
pub fn cloudformation(plan: &Plan) -> String {
    let mut out = format!(
        "# whittle plan {} ({})\n# Add these to the template's Resources; remove what the comments name.\nResources:\n",
        plan.id, plan.created_at
    );
    for role in changed_roles(plan) {
        let name = crate::targets::role_name(&role.role_arn);
        let _ = writeln!(out, "  # {}", role.role_arn);
        for deleted in &role.proposal.delete_inline {
            let _ = writeln!(out, "  # remove the inline policy {deleted} of this role");
        }
        for arn in &role.proposal.detach {
            let _ = writeln!(out, "  # remove {arn} from the role's ManagedPolicyArns");
        }
        for put in &role.proposal.put_inline {
            out.push_str(&cloudformation_role_policy(
                &camel(&[name, &put.name, "Policy"]),
                &yaml_string(name),
                &put.name,
                &put.document,
            ));
            out.push('\n');
        }
    }
    for (role, split) in splits(plan) {
        let _ = writeln!(out, "  # one role per function of {}", role.role_arn);
        out.push_str(&split.cloudformation());
    }
    out
}

/// One `AWS::IAM::RolePolicy` resource of a template's `Resources`, indented for it: `role`
/// is a YAML value (a quoted name, or `!Ref WhittleRole`). Plans and `whittle self-policy`
/// share it.
pub fn cloudformation_role_policy(
    logical_id: &str,
    role: &str,
    name: &str,
    document: &PolicyDocument,
) -> String {
    format!(
        "  {logical_id}:\n    Type: AWS::IAM::RolePolicy\n    Properties:\n      RoleName: {role}\n      PolicyName: {}\n      PolicyDocument:\n{}",
        yaml_string(name),
        indent(&document.to_pretty(), "        ")
    )
}

/// A CloudFormation logical id from parts: alphanumeric, each part capitalised.
pub fn cloudformation_logical_id(parts: &[&str]) -> String {
    camel(parts)
}

/// A YAML scalar: JSON strings are valid YAML.
pub(super) fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// `document`'s statements as items of a YAML list indented by `indent` (JSON flow style,
/// which YAML reads as it is), for serverless.yml's `iamRoleStatements`.
pub(super) fn yaml_statements(out: &mut String, document: &PolicyDocument, indent: &str) {
    for statement in document.statements() {
        let json = serde_json::to_string_pretty(statement).unwrap_or_default();
        let mut lines = json.lines();
        if let Some(first) = lines.next() {
            let _ = writeln!(out, "{indent}- {first}");
        }
        for line in lines {
            let _ = writeln!(out, "{indent}  {line}");
        }
    }
}

/// serverless.yml: the role's statements for `iamRoleStatements` (Serverless Framework v3 and
/// later: `provider.iam.role.statements`).
pub fn serverless(plan: &Plan) -> String {
    let mut out = format!(
        "# whittle plan {} ({})\n# Serverless Framework v3+: put the statements under provider.iam.role.statements.\n",
        plan.id, plan.created_at
    );
    for role in changed_roles(plan) {
        let _ = writeln!(out, "\n# {}", role.role_arn);
        let Ok(documents) = role.proposed_documents() else {
            continue;
        };
        let _ = writeln!(out, "iamRoleStatements:");
        for (_, document) in &documents {
            yaml_statements(&mut out, document, "  ");
        }
    }
    for (role, split) in splits(plan) {
        let _ = writeln!(out, "\n# {}", role.role_arn);
        out.push_str(&split.serverless());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diffs_keep_common_lines() {
        let d = diff_lines("a\nb\nc\n", "a\nc\nd\n");
        assert_eq!(d, [(' ', "a"), ('-', "b"), (' ', "c"), ('+', "d")]);
        assert_eq!(
            diff_lines("x\ny", "z\ny"),
            [('-', "x"), ('+', "z"), (' ', "y")]
        );
        assert_eq!(diff_lines("", "x"), [('+', "x")]);
        assert_eq!(diff_lines("x", ""), [('-', "x")]);
    }

    #[test]
    fn identifiers_for_iac() {
        assert_eq!(
            identifier(&["app-orders", "whittle-Read"], "__"),
            "app_orders__whittle_Read"
        );
        assert_eq!(
            camel(&["app-orders", "whittle-Read", "Policy"]),
            "AppOrdersWhittleReadPolicy"
        );
    }
}
