//! The status report: built from the state, served by the daemon at `/status`, printed by
//! `whittle status` (which asks the daemon when one holds the state).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use whittle_state::{State, Timestamp};

use crate::config::Config;
use crate::ports::Identity;
use crate::records::{
    AthenaRun, ChangeRecord, ChangeStatus, JobHistory, JobRun, RoleInventory, RotationOutcome,
    RotationRecord, SplitRecord, StoredPlanHead, StoredUsage, TrialRecord, TrialStatus,
};
use crate::time::format;

/// Version of the JSON shape of [`StatusReport`].
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub schema: u32,
    pub version: String,
    pub state_dir: String,
    /// The daemon that holds the state, when one runs.
    pub daemon: Option<DaemonInfo>,
    pub jobs: Vec<JobStatus>,
    pub unfinished_journals: Vec<JournalView>,
    pub accounts: Vec<RoleInventory>,
    /// What the usage store holds (`whittle usage` shows it).
    #[serde(default)]
    pub usage: UsageSummary,
    /// The latest plans, newest first.
    #[serde(default)]
    pub plans: Vec<PlanSummary>,
    /// The latest changes to roles (applies), newest first, with their rollback state.
    #[serde(default)]
    pub changes: Vec<ChangeSummary>,
    /// Each configured rotation: last rotation, next due time, state.
    #[serde(default)]
    pub rotations: Vec<RotationStatus>,
    /// The latest trials, newest first: running, passed, rolled back (with why).
    #[serde(default)]
    pub trials: Vec<TrialSummary>,
    /// Present with `--check-aws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<Vec<AwsCheck>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialSummary {
    pub id: String,
    pub plan_id: String,
    pub role_arn: String,
    pub started_at: String,
    pub status: TrialStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The denied actions that made the trial roll back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<String>,
    /// The signal that ended a trial that did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<crate::records::Signal>,
    /// While settling: until when, at the latest (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_until: Option<String>,
    /// A trial of the role's split (its functions on roles of their own).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split: bool,
}

/// Where a rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RotationState {
    Idle,
    /// An unfinished journal; `step` says where.
    InProgress,
    /// The new value is in use; `reason` says what the old credential's revocation waits for.
    RevokingOld,
    /// Given up before promotion; `reason` says why. The old value stays in use.
    Parked,
    /// Not started; `reason` says why.
    Refused,
}

impl RotationState {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationState::Idle => "idle",
            RotationState::InProgress => "in-progress",
            RotationState::RevokingOld => "revoking-old",
            RotationState::Parked => "parked",
            RotationState::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationStatus {
    pub name: String,
    pub secret: String,
    pub store: String,
    pub last_rotated: Option<String>,
    pub next_due: Option<String>,
    pub state: RotationState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How many plans and changes status lists.
const RECENT: usize = 5;

/// At least the [`RECENT`] newest records of a tree keyed by `plan::new_id` ids (which start
/// with their UTC second), read newest first: all of the last second read are kept, so the
/// caller's own ordering (by start time) picks the same ones as over the whole tree. A
/// status (and every `/healthz`) then decodes a few records, not the whole history.
fn newest<R: whittle_state::Record<Key = String>>(state: &State) -> anyhow::Result<Vec<R>> {
    let mut out = Vec::new();
    let mut last_second: Option<String> = None;
    for item in state.tree::<R>()?.iter().rev() {
        let (id, record) = item?;
        let second = id.rsplit_once('-').map(|(head, _)| head.to_owned());
        if out.len() >= RECENT && second != last_second {
            break;
        }
        last_second = second;
        out.push(record);
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanSummary {
    pub id: String,
    pub created_at: String,
    pub status: whittle_planner::plan::PlanStatus,
    pub roles: usize,
    pub roles_changed: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeSummary {
    pub id: String,
    pub plan_id: String,
    pub role_arn: String,
    pub started_at: String,
    pub status: ChangeStatus,
    /// A split (`split-…`): the functions moved to roles of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsageSummary {
    /// Principals (roles, users, root) with mined usage.
    pub principals: usize,
    /// Trail log files (local or S3) mined so far.
    pub mined_files: u64,
    /// The last run of each Athena source, by source name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub athena: Vec<AthenaRunView>,
}

/// The last run of one Athena source: the window it read and what it cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AthenaRunView {
    pub source: String,
    pub at: String,
    /// The event times read, `[window_start, window_end)`.
    pub window_start: String,
    pub window_end: String,
    /// `Statistics.DataScannedInBytes` of the query: what Athena billed for it.
    pub bytes_scanned: u64,
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub started_at: String,
    pub uptime_seconds: u64,
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub cron: String,
    pub enabled: bool,
    pub last_run: Option<RunView>,
    pub next_run: Option<String>,
    /// Kept runs per outcome (the history keeps the last 100 of each job).
    pub runs: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    pub started_at: String,
    pub ended_at: Option<String>,
    pub outcome: String,
    pub duration_ms: Option<u64>,
    pub detail: String,
}

impl From<&JobRun> for RunView {
    fn from(run: &JobRun) -> Self {
        RunView {
            started_at: format(run.started_at),
            ended_at: run.ended_at.map(format),
            outcome: run.outcome.to_string(),
            duration_ms: run
                .ended_at
                .map(|end| end.0.saturating_sub(run.started_at.0)),
            detail: run.detail.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalView {
    pub id: String,
    pub kind: String,
    pub subject: String,
    pub created_at: String,
    pub last_step: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwsCheck {
    pub account: String,
    pub identity: Option<Identity>,
    pub error: Option<String>,
}

/// Each scheduled job of `config`: its last run, its next, its kept runs per outcome. This is
/// all the daemon's `/healthz` reads, so that a health check costs the same whatever the
/// plans and the usage store hold.
pub fn jobs(config: &Config, state: &State, now: Timestamp) -> anyhow::Result<Vec<JobStatus>> {
    let history = JobHistory::new(state);
    let now = crate::time::to_chrono(now);
    let mut jobs = Vec::new();
    for (name, schedule) in config.scheduled_jobs() {
        let last_run = history.last(&name)?;
        let runs = history
            .outcome_counts(&name)?
            .into_iter()
            .map(|(outcome, n)| (outcome.to_string(), n))
            .collect();
        jobs.push(JobStatus {
            name: name.to_string(),
            cron: schedule.cron.as_str().to_owned(),
            enabled: schedule.enabled,
            last_run: last_run.as_ref().map(RunView::from),
            next_run: schedule
                .enabled
                .then(|| schedule.cron.next_after(now))
                .flatten()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            runs,
        });
    }
    Ok(jobs)
}

/// Builds the report from the state.
pub fn build(
    config: &Config,
    state: &State,
    daemon: Option<DaemonInfo>,
    now: Timestamp,
) -> anyhow::Result<StatusReport> {
    let jobs = jobs(config, state, now)?;
    let now = crate::time::to_chrono(now);
    let unfinished_journals = state
        .journal_unfinished()?
        .into_iter()
        .map(|entry| JournalView {
            id: entry.id.to_string(),
            last_step: entry.last_step().map(str::to_owned),
            kind: entry.kind,
            subject: entry.subject,
            created_at: format(entry.created_at),
        })
        .collect();
    // The plans' heads only: decoding a 10,000-role plan whole took most of a second.
    let mut plans: Vec<PlanSummary> = newest::<StoredPlanHead>(state)?
        .into_iter()
        .map(|plan| PlanSummary {
            roles: plan.roles.len(),
            roles_changed: plan
                .roles
                .iter()
                .filter(|r| r.status == whittle_planner::plan::RoleStatus::Changes)
                .count(),
            id: plan.id,
            created_at: plan.created_at,
            status: plan.status,
        })
        .collect();
    // Ids begin with their UTC time, so they sort by age.
    plans.sort_by(|a, b| b.id.cmp(&a.id));
    plans.truncate(RECENT);
    let mut changes: Vec<(Timestamp, ChangeSummary)> = newest::<ChangeRecord>(state)?
        .into_iter()
        .map(|c| {
            (
                c.started_at,
                ChangeSummary {
                    id: c.id,
                    plan_id: c.plan_id,
                    role_arn: c.role_arn,
                    started_at: format(c.started_at),
                    status: c.status,
                    functions: Vec::new(),
                },
            )
        })
        .chain(newest::<SplitRecord>(state)?.into_iter().map(|s| {
            (
                s.started_at,
                ChangeSummary {
                    functions: s.intent.functions.into_iter().map(|f| f.function).collect(),
                    id: s.intent.id,
                    plan_id: s.intent.plan_id,
                    role_arn: s.intent.shared_role_arn,
                    started_at: format(s.started_at),
                    status: s.status,
                },
            )
        }))
        .collect();
    changes.sort_by_key(|c| std::cmp::Reverse(c.0));
    let changes = changes.into_iter().take(RECENT).map(|(_, c)| c).collect();
    let mut trials = newest::<TrialRecord>(state)?;
    trials.sort_by_key(|t| std::cmp::Reverse(t.started_at));
    let trials = trials
        .into_iter()
        .take(RECENT)
        .map(|t| TrialSummary {
            id: t.id,
            plan_id: t.plan_id,
            role_arn: t.role_arn,
            started_at: format(t.started_at),
            status: t.status,
            reason: t.reason,
            denied: t
                .denied
                .into_iter()
                .map(|d| d.action)
                .filter(|a| !a.is_empty())
                .collect(),
            signal: t.signal,
            settle_until: t.settle_until.map(format),
            split: t.split,
        })
        .collect();
    let mut rotations = Vec::new();
    let records = state.tree::<RotationRecord>()?;
    for rotation in &config.rotation {
        let record = records.get(&rotation.name)?;
        let open = whittle_playbooks::rotation::machine::open_journal(state, &rotation.name)?;
        let (state_name, step, reason) = match (&open, &record) {
            // Promoted: the new value is in use, the old credential's revocation waits.
            (Some(entry), Some(r))
                if entry.steps.iter().any(|s| s.name == "promoted")
                    && r.last_outcome == RotationOutcome::Rotated
                    && r.reason.is_some() =>
            {
                (
                    RotationState::RevokingOld,
                    Some(entry.last_step().unwrap_or("promoted").to_owned()),
                    r.reason.clone(),
                )
            }
            (Some(entry), _) => (
                RotationState::InProgress,
                Some(entry.last_step().unwrap_or("begin").to_owned()),
                None,
            ),
            (None, Some(r)) if r.last_outcome == RotationOutcome::Parked => {
                (RotationState::Parked, None, r.reason.clone())
            }
            (None, Some(r)) if r.last_outcome == RotationOutcome::Refused => {
                (RotationState::Refused, None, r.reason.clone())
            }
            _ => (RotationState::Idle, None, None),
        };
        let last = record.as_ref().and_then(|r| r.last_rotated_at);
        let next_due = match last {
            Some(last) => rotation.cron.next_after(crate::time::to_chrono(last)),
            None => Some(now),
        };
        rotations.push(RotationStatus {
            name: rotation.name.clone(),
            secret: rotation.secret.clone(),
            store: rotation.store.as_str().to_owned(),
            last_rotated: last.map(format),
            next_due: next_due.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            state: state_name,
            step,
            reason,
        });
    }
    let accounts = state
        .tree::<RoleInventory>()?
        .iter()
        .map(|item| item.map(|(_, inventory)| inventory))
        .collect::<Result<_, _>>()?;
    Ok(StatusReport {
        schema: SCHEMA,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        state_dir: state.dir().display().to_string(),
        daemon,
        jobs,
        unfinished_journals,
        accounts,
        usage: UsageSummary {
            principals: state.tree::<StoredUsage>()?.len(),
            mined_files: crate::mine::mined_file_count(state)?,
            athena: state
                .tree::<AthenaRun>()?
                .iter()
                .map(|item| {
                    item.map(|(source, run)| AthenaRunView {
                        source,
                        at: format(run.at),
                        window_start: whittle_planner::trail::format_time(run.window_start_ms),
                        window_end: whittle_planner::trail::format_time(run.window_end_ms),
                        bytes_scanned: run.bytes_scanned,
                        rows: run.rows,
                    })
                })
                .collect::<Result<_, _>>()?,
        },
        plans,
        changes,
        rotations,
        trials,
        aws: None,
    })
}

/// The report as text for a terminal.
pub fn render_text(report: &StatusReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the results of writeln! are ignored below.
    let _ = match &report.daemon {
        Some(d) => writeln!(
            out,
            "whittle {}: daemon running (pid {}, up {}, status on {})",
            report.version,
            d.pid,
            humantime::format_duration(std::time::Duration::from_secs(d.uptime_seconds)),
            d.listen
        ),
        None => writeln!(out, "whittle {}: no daemon running", report.version),
    };
    let _ = writeln!(out, "state: {}", report.state_dir);

    let _ = writeln!(out, "\njobs:");
    if report.jobs.is_empty() {
        let _ = writeln!(out, "  none configured ([jobs.NAME] in the configuration)");
    }
    for job in &report.jobs {
        let last = match &job.last_run {
            Some(run) => format!(
                "{} at {}{}{}",
                run.outcome,
                run.started_at,
                run.duration_ms
                    .map(|ms| format!(" ({ms} ms)"))
                    .unwrap_or_default(),
                if run.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", run.detail)
                }
            ),
            None => "never run".to_owned(),
        };
        let next = if job.enabled {
            job.next_run.clone().unwrap_or_else(|| "-".to_owned())
        } else {
            "disabled".to_owned()
        };
        let runs = job
            .runs
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out, "  {:<10} cron `{}`  next {}", job.name, job.cron, next);
        let _ = writeln!(out, "  {:<10} last {}", "", last);
        if !runs.is_empty() {
            let _ = writeln!(out, "  {:<10} history {}", "", runs);
        }
    }

    let _ = writeln!(
        out,
        "\nusage: {} principal(s) from {} mined trail file(s); `whittle usage` shows them",
        report.usage.principals, report.usage.mined_files
    );
    for run in &report.usage.athena {
        let _ = writeln!(
            out,
            "  athena source {}: last run {}, read {} to {}, {} row(s), {} bytes scanned",
            run.source, run.at, run.window_start, run.window_end, run.rows, run.bytes_scanned
        );
    }
    if !report.trials.is_empty() {
        let _ = writeln!(
            out,
            "\ntrials (latest first; `whittle rollback TRIAL_ID` undoes a running one):"
        );
        for t in &report.trials {
            let _ = writeln!(
                out,
                "  {}  {}  {}  {}{} (plan {}){}{}",
                t.id,
                t.started_at,
                t.status.as_str(),
                if t.split { "split of " } else { "" },
                t.role_arn,
                t.plan_id,
                t.settle_until
                    .as_ref()
                    .map(|u| format!(
                        ": waiting for CloudTrail to show the whole window, until {u} at the latest"
                    ))
                    .unwrap_or_default(),
                t.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            if let Some(signal) = &t.signal {
                let _ = writeln!(out, "      signal: {signal}");
            }
        }
    }
    if !report.rotations.is_empty() {
        let _ = writeln!(out, "\nrotations:");
        for r in &report.rotations {
            let _ = writeln!(
                out,
                "  {} ({} {}): {}{}{}; last rotated {}, next due {}",
                r.name,
                r.store,
                r.secret,
                r.state.as_str(),
                r.step
                    .as_ref()
                    .map(|s| format!(" after {s}"))
                    .unwrap_or_default(),
                r.reason
                    .as_ref()
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default(),
                r.last_rotated.as_deref().unwrap_or("never"),
                r.next_due.as_deref().unwrap_or("never"),
            );
        }
    }
    if !report.plans.is_empty() {
        let _ = writeln!(out, "\nplans (latest first; `whittle plan show ID`):");
        for p in &report.plans {
            let _ = writeln!(
                out,
                "  {}  {}  {}  {} of {} role(s) would change",
                p.id,
                p.created_at,
                p.status.as_str(),
                p.roles_changed,
                p.roles
            );
        }
    }
    if !report.changes.is_empty() {
        let _ = writeln!(out, "\nchanges (latest first; `whittle rollback ID`):");
        for c in &report.changes {
            let _ = writeln!(
                out,
                "  {}  {}  {}  {} (plan {}){}",
                c.id,
                c.started_at,
                c.status.as_str(),
                c.role_arn,
                c.plan_id,
                if c.functions.is_empty() {
                    String::new()
                } else {
                    format!(": split, {} on roles of their own", c.functions.join(", "))
                }
            );
        }
    }
    let _ = writeln!(
        out,
        "\nunfinished journals: {}",
        report.unfinished_journals.len()
    );
    for j in &report.unfinished_journals {
        let _ = writeln!(
            out,
            "  {} {} {} (since {}, last step {})",
            j.id,
            j.kind,
            j.subject,
            j.created_at,
            j.last_step.as_deref().unwrap_or("none")
        );
    }

    let _ = writeln!(out, "\ntargets:");
    if report.accounts.is_empty() {
        let _ = writeln!(
            out,
            "  not discovered yet (the `discover` job lists each account's roles)"
        );
    }
    for a in &report.accounts {
        let _ = writeln!(
            out,
            "  {} ({}): {} target(s), {} protected, {} not selected, as of {}",
            a.account,
            a.account_id,
            a.targets.len(),
            a.protected.len(),
            a.not_selected,
            format(a.refreshed_at)
        );
        for arn in &a.targets {
            let _ = writeln!(out, "    target     {arn}");
        }
        for p in &a.protected {
            let _ = writeln!(out, "    protected  {} ({})", p.arn, p.reason);
        }
    }

    if let Some(checks) = &report.aws {
        let _ = writeln!(out, "\naws:");
        for check in checks {
            let _ = match (&check.identity, &check.error) {
                (Some(id), _) => writeln!(
                    out,
                    "  {:<10} ok     {} (account {})",
                    check.account, id.arn, id.account
                ),
                (None, Some(error)) => writeln!(out, "  {:<10} FAILED {}", check.account, error),
                (None, None) => Ok(()),
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Item(u32);

    impl whittle_state::Record for Item {
        const TREE: &'static str = "test_status_items";
        const VERSION: u16 = 1;
        type Key = String;
    }

    #[test]
    fn newest_reads_the_latest_records_and_the_whole_last_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let owner = whittle_state::LockOwner::this_process();
        let state = State::open(dir.path(), &owner).expect("state");
        let tree = state.tree::<Item>().expect("tree");
        // Nine records over seconds 01..=07; the 5th newest is in second 03, which has three.
        let ids = [
            "plan-20261124000001-aaaa",
            "plan-20261124000002-aaaa",
            "plan-20261124000003-0000",
            "plan-20261124000003-7777",
            "plan-20261124000003-ffff",
            "plan-20261124000004-aaaa",
            "plan-20261124000005-aaaa",
            "plan-20261124000006-aaaa",
            "plan-20261124000007-aaaa",
        ];
        for (n, id) in ids.iter().enumerate() {
            tree.put(&(*id).to_owned(), &Item(n as u32)).expect("put");
        }
        let read: Vec<u32> = newest::<Item>(&state)
            .expect("newest")
            .into_iter()
            .map(|i| i.0)
            .collect();
        assert_eq!(read, [8, 7, 6, 5, 4, 3, 2]);
    }
}
