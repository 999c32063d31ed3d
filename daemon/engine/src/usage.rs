//! `whittle usage`: the usage store as a report (JSON schema 1, docs/usage-schema.md) or as
//! text for people; for more than [`SUMMARISE_ABOVE`] principals, a summary of one line (one
//! object) per principal.
//!
//! The full report of 10,000 principals is 22 MB of text or 72 MB of JSON and takes one to
//! two seconds to build, because it inflates and parses every principal's usage. The summary
//! reads only the principals' [`UsageHead`]s, which the mining fold writes beside their usage,
//! and says how to see any principal in full (`--role ARN`) or all of them (`--full`), as
//! `whittle plan show` does for a plan of many roles.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::Engine;
use crate::commands::UsageQuery;
use crate::ports::Ports;
use crate::records::{LastAccessed, StoredUsage, UsageHead};
use whittle_planner::trail::{PrincipalKind, format_time, parse_time};
use whittle_planner::usage::{LastAccessedReport, RoleReport, UsageReport};

/// `whittle usage` summarises the usage of more principals than this (text and JSON), unless
/// `--full` or `--role` asks for the detail.
pub const SUMMARISE_ABOVE: usize = 100;

/// What `whittle usage` shows: the report, or its summary. Untagged: each is printed as its
/// own JSON (a summary has `"summary": true` and `principal_summaries`, a report `roles`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UsageView {
    Summary(UsageSummary),
    Report(UsageReport),
}

/// The JSON of a summarised usage store (docs/usage-schema.md, "Usage summary"). It has no
/// `roles` array, so a reader of the full report fails on it instead of reading no usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSummary {
    pub schema: u32,
    /// Always true: this is a summary, not the report.
    pub summary: bool,
    pub generated_at: String,
    pub lookback_days: u32,
    /// `--since`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// One per principal with anything in the window, sorted by ARN.
    pub principal_summaries: Vec<PrincipalSummary>,
    /// The commands that show principals in full.
    pub detail: String,
}

/// One principal of a summary: the counts of the report's lists for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalSummary {
    pub arn: String,
    pub kind: PrincipalKind,
    /// Session names remembered (at most 64).
    pub sessions: usize,
    /// Sessions matched to a discovered Lambda function of the role, with calls in the window.
    pub functions: usize,
    /// Actions used in the window.
    pub actions: usize,
    /// Actions denied in the window.
    pub denied: usize,
    /// Calls mapped to no action in the window (by event source and name).
    pub unmapped: usize,
    pub first_seen: String,
    pub last_seen: String,
}

/// What `whittle usage` (and a daemon's `POST /usage`) answers: `--role` principals and
/// `--full` in full; with `--unmapped`, the full report of just the principals whose heads
/// have unmapped calls; otherwise the summary when more than [`SUMMARISE_ABOVE`] principals
/// have usage in the window, else their full report (read by key).
pub fn view<P: Ports>(engine: &Engine<P>, query: &UsageQuery) -> anyhow::Result<UsageView> {
    if query.full || !query.roles.is_empty() {
        return Ok(UsageView::Report(build(
            engine,
            &query.roles,
            query.since_ms,
        )?));
    }
    let summary = summarise(engine, query.since_ms)?;
    if query.unmapped {
        let arns: Vec<String> = summary
            .principal_summaries
            .into_iter()
            .filter(|p| p.unmapped > 0)
            .map(|p| p.arn)
            .collect();
        return report_of(engine, &arns, query.since_ms).map(UsageView::Report);
    }
    if summary.principal_summaries.len() > SUMMARISE_ABOVE {
        return Ok(UsageView::Summary(summary));
    }
    let arns: Vec<String> = summary
        .principal_summaries
        .into_iter()
        .map(|p| p.arn)
        .collect();
    report_of(engine, &arns, query.since_ms).map(UsageView::Report)
}

/// The full report of `arns`, each known to have usage in the window (the pending usage
/// already folded by [`summarise`]).
fn report_of<P: Ports>(
    engine: &Engine<P>,
    arns: &[String],
    since_ms: i64,
) -> anyhow::Result<UsageReport> {
    report(engine, Some(arns), since_ms)
}

/// The summary of every principal with usage since `since_ms`, from the heads alone.
pub fn summarise<P: Ports>(engine: &Engine<P>, since_ms: i64) -> anyhow::Result<UsageSummary> {
    let state = &*engine.state;
    // The fold also gives a state from an older whittle its heads.
    crate::mine::fold_pending(engine)?;
    let functions = crate::split::discovered_functions(state)?;
    let mut principals = Vec::new();
    for item in state.tree::<UsageHead>()?.iter() {
        let (arn, head) = item?;
        // As in the full report: a principal is listed when anything of it was last seen on
        // or after `since`, and an entry counts when it was.
        if head.last_seen < since_ms {
            continue;
        }
        let since = |lasts: &[i64]| lasts.len() - lasts.partition_point(|t| *t < since_ms);
        let of_role = functions.get(&arn).map_or(&[][..], Vec::as_slice);
        let functions = head
            .function_sessions
            .iter()
            .filter(|(session, last)| {
                **last >= since_ms && of_role.iter().any(|f| &f.name == *session)
            })
            .count();
        principals.push(PrincipalSummary {
            kind: head.kind,
            sessions: head.sessions,
            functions,
            actions: since(&head.actions),
            denied: since(&head.denied),
            unmapped: since(&head.unmapped),
            first_seen: format_time(head.first_seen.max(since_ms)),
            last_seen: format_time(head.last_seen),
            arn,
        });
    }
    Ok(UsageSummary {
        schema: 1,
        summary: true,
        generated_at: crate::time::format(engine.now()),
        lookback_days: engine.config.mining.lookback_days,
        since: (since_ms > 0).then(|| format_time(since_ms)),
        principal_summaries: principals,
        detail: "`whittle usage --role ARN` shows a principal in full (repeatable); `--full` shows every principal".to_owned(),
    })
}

/// The summary as text: a header, one line per principal, and how to see principals in full.
pub fn render_summary(summary: &UsageSummary) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the results of writeln! are ignored below.
    let _ = writeln!(
        out,
        "usage of {} principal(s){} (look-back {} days): summary of more than {SUMMARISE_ABOVE} principals",
        summary.principal_summaries.len(),
        summary
            .since
            .as_deref()
            .map(|s| format!(" since {s}"))
            .unwrap_or_default(),
        summary.lookback_days,
    );
    let _ = writeln!(out);
    let width = summary
        .principal_summaries
        .iter()
        .map(|p| p.arn.len())
        .max()
        .unwrap_or(0);
    for p in &summary.principal_summaries {
        let _ = write!(
            out,
            "{:width$}  {:<4}  {:>4} actions  {:>3} denied",
            p.arn,
            p.kind.as_str(),
            p.actions,
            p.denied,
        );
        if p.unmapped > 0 {
            let _ = write!(out, "  {} unmapped", p.unmapped);
        }
        if p.sessions > 0 {
            let _ = write!(out, "  {} session(s)", p.sessions);
        }
        if p.functions > 0 {
            let _ = write!(out, "  {} function(s)", p.functions);
        }
        let _ = writeln!(out, "  seen {} .. {}", p.first_seen, p.last_seen);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}.", summary.detail);
    out
}

/// The view as text.
pub fn render_view(view: &UsageView) -> String {
    match view {
        UsageView::Summary(summary) => render_summary(summary),
        UsageView::Report(report) => render_text(report),
    }
}

/// Reads `--since`: a day (`2026-11-01`, midnight UTC) or an RFC 3339 time.
pub fn parse_since(text: &str) -> anyhow::Result<i64> {
    let candidate = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    parse_time(&candidate).ok_or_else(|| {
        anyhow::anyhow!(
            "--since `{text}`: write a day as YYYY-MM-DD or a time as 2026-11-01T12:00:00Z"
        )
    })
}

/// The report over every principal (or the `only` ones), usage since `since_ms`.
pub fn build<P: Ports>(
    engine: &Engine<P>,
    only: &[String],
    since_ms: i64,
) -> anyhow::Result<UsageReport> {
    crate::mine::fold_pending(engine)?;
    report(engine, (!only.is_empty()).then_some(only), since_ms)
}

/// The report of the `only` principals (every one when `None`) from the folded store.
fn report<P: Ports>(
    engine: &Engine<P>,
    only: Option<&[String]>,
    since_ms: i64,
) -> anyhow::Result<UsageReport> {
    let state = &*engine.state;
    let lookback_days = engine.config.mining.lookback_days;
    let catalog = crate::iam_data::catalog(state.dir())?;
    let usage = state.tree::<StoredUsage>()?;
    let last_accessed = state.tree::<LastAccessed>()?;
    let functions = crate::split::discovered_functions(state)?;
    let mut roles = Vec::new();
    // Named principals are read by key: iterating the store decodes (inflates and parses)
    // every principal's usage, which with 10,000 principals cost half a second for one role.
    // In key order either way, as the whole store iterates.
    let named: std::collections::BTreeSet<&String> = only.unwrap_or_default().iter().collect();
    let records: Box<dyn Iterator<Item = Result<(String, StoredUsage), _>>> = if only.is_none() {
        Box::new(usage.iter())
    } else {
        Box::new(named.iter().filter_map(|arn| {
            usage
                .get(*arn)
                .transpose()
                .map(|record| record.map(|r| ((*arn).clone(), r)))
        }))
    };
    for item in records {
        let (arn, StoredUsage { usage: stored, .. }) = item?;
        if let Some(mut report) = RoleReport::build(&arn, &stored, since_ms, &catalog) {
            report.last_accessed = last_accessed.get(&arn)?.map(|l| {
                LastAccessedReport::build(i64::try_from(l.fetched_at.0).unwrap_or(0), &l.services)
            });
            let of_role = functions.get(&arn).map_or(&[][..], Vec::as_slice);
            for session in &mut report.session_usage {
                session.function = of_role
                    .iter()
                    .find(|f| f.name == session.session)
                    .map(|f| f.arn.clone());
            }
            roles.push(report);
        }
    }
    for name in only.unwrap_or_default() {
        if !roles.iter().any(|r| &r.arn == name) && usage.get(name)?.is_none() {
            tracing::warn!(arn = %name, "No usage recorded for this principal");
        }
    }
    Ok(UsageReport {
        schema: 1,
        generated_at: crate::time::format(engine.now()),
        lookback_days,
        catalog: catalog.version.to_string(),
        roles,
    })
}

/// Up to `n` items joined, with a count of the rest.
fn some<T: AsRef<str>>(items: &[T], n: usize) -> String {
    let mut out: Vec<&str> = items.iter().take(n).map(AsRef::as_ref).collect();
    let more = items.len().saturating_sub(n);
    let tail = format!("+{more} more");
    if more > 0 {
        out.push(&tail);
    }
    out.join(", ")
}

/// One unmapped call, over every principal: what the plans are blind to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnmappedSummary {
    pub event_source: String,
    pub event_name: String,
    /// Calls over all principals.
    pub count: u64,
    /// Principals that made it.
    pub principals: usize,
    pub reason: String,
}

/// `whittle usage --unmapped`: the report's unmapped calls summed over its principals, most
/// frequent first.
pub fn unmapped(report: &UsageReport) -> Vec<UnmappedSummary> {
    let mut by_call: std::collections::BTreeMap<(&str, &str), UnmappedSummary> =
        std::collections::BTreeMap::new();
    for role in &report.roles {
        for u in &role.unmapped {
            let entry = by_call
                .entry((&u.event_source, &u.event_name))
                .or_insert_with(|| UnmappedSummary {
                    event_source: u.event_source.clone(),
                    event_name: u.event_name.clone(),
                    count: 0,
                    principals: 0,
                    reason: u.reason.clone(),
                });
            entry.count += u.count;
            entry.principals += 1;
        }
    }
    let mut out: Vec<UnmappedSummary> = by_call.into_values().collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.event_name.cmp(&b.event_name))
    });
    out
}

pub fn render_unmapped(summary: &[UnmappedSummary]) -> String {
    if summary.is_empty() {
        return "no unmapped calls: every mined event maps to IAM actions (or needs none)\n"
            .to_owned();
    }
    let mut out = format!(
        "{} unmapped call(s): no plan can keep or remove what they need\n",
        summary.len()
    );
    for u in summary {
        let _ = writeln!(
            out,
            "  {:>8}  {} {}  ({} principal(s)): {}",
            u.count, u.event_source, u.event_name, u.principals, u.reason
        );
    }
    out
}

pub fn render_text(report: &UsageReport) -> String {
    let mut out = String::new();
    if report.roles.is_empty() {
        out.push_str("no usage recorded: run `whittle mine` first (or widen --since / --role)\n");
        return out;
    }
    for role in &report.roles {
        let _ = writeln!(
            out,
            "{}  ({}; seen {} .. {}{})",
            role.arn,
            role.kind.as_str(),
            role.first_seen.as_deref().unwrap_or("?"),
            role.last_seen.as_deref().unwrap_or("?"),
            if role.sessions.is_empty() {
                String::new()
            } else {
                format!("; sessions: {}", some(&role.sessions, 5))
            }
        );
        let width = role
            .actions
            .iter()
            .map(|a| a.action.len())
            .chain(role.denied.iter().map(|d| d.action.len()))
            .max()
            .unwrap_or(0);
        let level_width = role
            .actions
            .iter()
            .filter_map(|a| a.access_level.as_deref().map(str::len))
            .max()
            .unwrap_or(1);
        if !role.actions.is_empty() {
            let _ = writeln!(out, "  actions ({}):", role.actions.len());
            for a in &role.actions {
                let _ = writeln!(
                    out,
                    "    {:width$}  {:<level_width$} {:>8}  last {}{}",
                    a.action,
                    a.access_level.as_deref().unwrap_or("?"),
                    a.count,
                    a.last_seen,
                    if a.resources.is_empty() {
                        String::new()
                    } else {
                        format!("  on {}", some(&a.resources, 2))
                    }
                );
            }
        }
        if !role.denied.is_empty() {
            let _ = writeln!(out, "  denied ({}):", role.denied.len());
            for d in &role.denied {
                let _ = writeln!(
                    out,
                    "    {:width$}  {:>8}  last {}",
                    d.action, d.count, d.last_seen
                );
            }
        }
        if !role.unmapped.is_empty() {
            let _ = writeln!(out, "  unmapped ({}):", role.unmapped.len());
            for u in &role.unmapped {
                let _ = writeln!(
                    out,
                    "    {} {}  {}  ({})",
                    u.event_source, u.event_name, u.count, u.reason
                );
            }
        }
        render_functions(&mut out, role);
        if let Some(last) = &role.last_accessed {
            let services: Vec<String> = last
                .services
                .iter()
                .map(|s| {
                    format!(
                        "{} {}",
                        s.namespace,
                        s.last_authenticated
                            .as_deref()
                            .map_or("never", |t| &t[..10])
                    )
                })
                .collect();
            let _ = writeln!(out, "  IAM last accessed: {}", some(&services, 8));
        }
    }
    out
}

/// A shared role's functions (the sessions discovery matched to a function of the role) and
/// what each used; then what every other session used, counted together. Nothing when no
/// function of the role is known (run `whittle discover`).
fn render_functions(out: &mut String, role: &RoleReport) {
    let functions: Vec<_> = role
        .session_usage
        .iter()
        .filter(|s| s.function.is_some())
        .collect();
    if functions.is_empty() {
        return;
    }
    let _ = writeln!(out, "  functions ({}):", functions.len());
    for f in &functions {
        let _ = writeln!(out, "    {}  ({} actions)", f.session, f.actions.len());
        for a in &f.actions {
            let _ = writeln!(out, "      {}  {}  last {}", a.action, a.count, a.last_seen);
        }
    }
    // Sessions that are no function of this role pool with the other sessions.
    let mut others: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    let pooled = role
        .session_usage
        .iter()
        .filter(|s| s.function.is_none())
        .flat_map(|s| &s.actions)
        .chain(&role.other_sessions);
    for a in pooled {
        *others.entry(a.action.as_str()).or_default() += a.count;
    }
    if !others.is_empty() {
        let _ = writeln!(out, "    other sessions  ({} actions)", others.len());
        for (action, count) in others {
            let _ = writeln!(out, "      {action}  {count}");
        }
    }
}
