//! Every record the engine keeps in the state, in one place. Each is versioned
//! ([`Record::VERSION`]); an older version is upgraded when read, so a newer whittle reads an
//! older state directory.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use whittle_planner::plan::{Plan, RolePolicies, stored};
use whittle_playbooks::trial::{Mode, OnRestart};
use whittle_state::{JournalEntry, Record, RecordKey, State, StateError, Timestamp};

/// A scheduled job of the daemon. Stored by its name (`discover`, `rotate:NAME`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobName {
    /// Checks every account's credentials.
    CheckAws,
    /// Lists every account's roles and records which are targets.
    Discover,
    /// Mines the configured CloudTrail sources.
    Mine,
    /// Tries the newest untried plan in staging.
    Trial,
    /// Advances unfinished rotations (grace periods, retries).
    RotationUpkeep,
    /// One `[[rotation]]`'s timetable, by the rotation's name.
    Rotate(String),
}

impl JobName {
    const ROTATE_PREFIX: &'static str = "rotate:";
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobName::CheckAws => f.write_str("check-aws"),
            JobName::Discover => f.write_str("discover"),
            JobName::Mine => f.write_str("mine"),
            JobName::Trial => f.write_str("trial"),
            JobName::RotationUpkeep => f.write_str("rotation-upkeep"),
            JobName::Rotate(name) => write!(f, "{}{name}", JobName::ROTATE_PREFIX),
        }
    }
}

impl FromStr for JobName {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "check-aws" => JobName::CheckAws,
            "discover" => JobName::Discover,
            "mine" => JobName::Mine,
            "trial" => JobName::Trial,
            "rotation-upkeep" => JobName::RotationUpkeep,
            other => match other.strip_prefix(JobName::ROTATE_PREFIX) {
                Some(name) => JobName::Rotate(name.to_owned()),
                None => return Err(format!("unknown job `{other}`")),
            },
        })
    }
}

impl Serialize for JobName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The kinds of journal the engine writes: each kind has its recovery in the reconcile pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalKind {
    /// `whittle apply` changing one role; its intent holds the role's snapshot.
    Apply,
    /// A rollback restoring a role's snapshot.
    Rollback,
    /// A trial of one role; its intent holds the snapshot and the trial's settings.
    Trial,
    /// A rotation (the playbooks crate writes these).
    Rotation,
    /// `whittle apply` giving the functions of a shared role roles of their own; its intent
    /// (a [`SplitIntent`]) names every role it may create and every function it may switch.
    Split,
    /// `whittle rollback` of an applied split.
    SplitRollback,
}

impl JournalKind {
    pub const ALL: [JournalKind; 6] = [
        JournalKind::Apply,
        JournalKind::Rollback,
        JournalKind::Trial,
        JournalKind::Rotation,
        JournalKind::Split,
        JournalKind::SplitRollback,
    ];

    /// The kind as the journal stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalKind::Apply => "apply",
            JournalKind::Rollback => "rollback",
            JournalKind::Trial => "trial",
            JournalKind::Rotation => whittle_playbooks::rotation::machine::ROTATION_JOURNAL,
            JournalKind::Split => "split",
            JournalKind::SplitRollback => "split-rollback",
        }
    }

    /// The kind of a stored journal; None for a kind this build does not write.
    pub fn of(stored: &str) -> Option<JournalKind> {
        JournalKind::ALL.into_iter().find(|k| k.as_str() == stored)
    }
}

/// What an apply or rollback journal's intent holds: enough to restore the role without
/// anything else from the state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreIntent {
    pub change_id: String,
    pub account: String,
    pub before: RolePolicies,
}

/// What a trial journal's intent holds: enough to undo the trial with nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialIntent {
    pub trial_id: String,
    pub plan_id: String,
    pub account: String,
    pub role_arn: String,
    pub mode: Mode,
    pub on_restart: OnRestart,
    /// The trial boundary policy's name (boundary mode).
    pub policy_name: String,
    pub before: RolePolicies,
    pub window_ms: u64,
    pub detection_interval_ms: u64,
    pub max_denials: u64,
    #[serde(default)]
    pub error_metric: Option<whittle_playbooks::trial::ErrorMetric>,
    /// Denial events earlier trials of the role already accounted for. CloudTrail times are
    /// to the second, so the watch starts at the second of the apply and may see them.
    #[serde(default)]
    pub known_events: Vec<String>,
    /// How long after the window the watch may wait for CloudTrail to show the window whole
    /// (journals of earlier builds: 0, they passed at the window's end).
    #[serde(default)]
    pub max_settle_ms: u64,
    /// Whether a trial whose evidence stayed incomplete after `max_settle` still passes.
    #[serde(default)]
    pub pass_without_complete_evidence: bool,
    /// Calls of the role the window must show; None: at least one, or an exercise that ran.
    #[serde(default)]
    pub min_role_calls: Option<u64>,
    /// A trial of the role's split: the functions switched to roles of their own, watched
    /// under those roles, and switched back at the end. None: a trial of the role's own
    /// tightening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitIntent>,
}

/// One function of a split: the role it gets, and its `RevisionId` when the plan was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitFunction {
    pub function: String,
    pub function_arn: String,
    pub role_name: String,
    pub role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// What a split's apply, rollback or trial journals as its intent, before any change: enough
/// to undo it with nothing else from the state (switch every listed function that runs under
/// its new role back to the shared role, then delete every listed role that carries the
/// split's tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitIntent {
    /// The split's id (`split-…`), the value of the `whittle:split` tag on the roles it makes.
    pub id: String,
    pub plan_id: String,
    pub account: String,
    pub shared_role_arn: String,
    pub functions: Vec<SplitFunction>,
}

/// One split of a shared role (an apply), keyed by its id; `whittle rollback ID` undoes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    pub intent: SplitIntent,
    pub started_at: Timestamp,
    pub status: ChangeStatus,
    /// Why it was rolled back, when it failed part-way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The revisions whittle itself gave a function by switching its role, keyed by the
/// function's ARN: each `(from, to)`, the latest last. Lambda gives a function a new
/// `RevisionId` on every configuration change, whittle's own too, so a trial of a split
/// (switch, then switch back) moves every function past the revision its plan saw; an apply
/// follows these to tell whittle's own changes from another deploy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionRevisions {
    pub made: Vec<(String, String)>,
}

impl FunctionRevisions {
    /// How many are kept per function (a trial makes two).
    pub const KEEP: usize = 32;

    /// Whether whittle's own switches lead from revision `from` to `to`.
    pub fn leads(&self, from: &str, to: &str) -> bool {
        let mut at = from;
        for _ in 0..=self.made.len() {
            if at == to {
                return true;
            }
            match self.made.iter().rev().find(|(f, _)| f == at) {
                Some((_, next)) => at = next,
                None => return false,
            }
        }
        false
    }
}

impl Record for FunctionRevisions {
    const TREE: &'static str = "function-revisions";
    const VERSION: u16 = 1;
    type Key = String;
}

impl Record for SplitRecord {
    const TREE: &'static str = "splits";
    const VERSION: u16 = 1;
    type Key = String;
}

/// The running trials: their unfinished journals, with the intents read.
pub fn open_trials(
    state: &State,
) -> Result<impl Iterator<Item = (JournalEntry, TrialIntent)>, StateError> {
    Ok(state
        .journal_unfinished()?
        .into_iter()
        .filter(|e| JournalKind::of(&e.kind) == Some(JournalKind::Trial))
        .filter_map(|e| {
            let intent = serde_json::from_value::<TrialIntent>(e.intent.clone()).ok()?;
            Some((e, intent))
        }))
}

/// A stored plan, keyed by its id. Version 2 is the planner's stored form
/// (`whittle_planner::plan::stored`: each shared document, removed-action table and risk
/// sentence once); version 1 was the plan as `whittle plan --format json` writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPlan(pub Plan);

impl Serialize for StoredPlan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        stored::StoredPlan::from_plan(&self.0).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StoredPlan {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<StoredPlan, D::Error> {
        stored::StoredPlan::deserialize(deserializer)?
            .into_plan()
            .map(StoredPlan)
            .map_err(serde::de::Error::custom)
    }
}

impl Record for StoredPlan {
    const TREE: &'static str = "plans";
    const VERSION: u16 = 2;
    type Key = String;

    fn upgrade(version: u16, data: serde_json::Value) -> Result<serde_json::Value, String> {
        match version {
            1 => {
                let plan: Plan = serde_json::from_value(data)
                    .map_err(|e| format!("a version-1 plan that does not parse: {e}"))?;
                serde_json::to_value(stored::StoredPlan::from_plan(&plan))
                    .map_err(|e| e.to_string())
            }
            _ => Err(format!(
                "no upgrade path from plan record version {version}"
            )),
        }
    }
}

/// What `whittle plan show` summarises of a stored plan (`summary::PlanDigest`: per role its
/// status and counts, tens of bytes), keyed by the plan's id in a tree of its own, so that the
/// summary of a 10,000-role plan reads about a megabyte instead of inflating and rebuilding
/// the whole plan (hundreds of megabytes in memory).
///
/// Written only by [`store_plan`], in the same transaction as the plan, so the two never
/// disagree; plans stored before this record existed have none, and `plan show` then
/// summarises the plan itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPlanDigest(pub whittle_planner::plan::summary::PlanDigest);

impl Record for StoredPlanDigest {
    const TREE: &'static str = "plan-digests";
    const VERSION: u16 = 1;
    type Key = String;
}

/// Stores `plan` and its digest together (one transaction, flushed): every write of a plan,
/// the first and each change of its status, goes through here. The plan is taken and given
/// back rather than borrowed so that storing a 10,000-role plan does not copy it first.
pub fn store_plan(state: &State, plan: Plan) -> Result<Plan, StateError> {
    let digest = StoredPlanDigest(whittle_planner::plan::summary::PlanDigest::of(&plan));
    let id = plan.id.clone();
    let plan = StoredPlan(plan);
    let mut batch = whittle_state::WriteBatch::new();
    batch.put(&id, &plan)?;
    batch.put(&id, &digest)?;
    state.commit(batch)?;
    Ok(plan.0)
}

/// What `whittle status` shows of a stored plan, read from the `plans` tree without the rest
/// of the record: serde skips the documents, removed sets, evidence and every role's detail
/// unparsed, so a status does not rebuild a 10,000-role plan to count its roles.
///
/// A read-only view of [`StoredPlan`]'s records, never stored itself: serialising one fails,
/// so `put` of a head cannot overwrite a plan.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredPlanHead {
    pub id: String,
    pub created_at: String,
    pub status: whittle_planner::plan::PlanStatus,
    pub roles: Vec<StoredRoleHead>,
}

/// A stored plan's role as [`StoredPlanHead`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredRoleHead {
    pub status: whittle_planner::plan::RoleStatus,
}

impl Serialize for StoredPlanHead {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "a plan head is a view of a stored plan and is never stored",
        ))
    }
}

impl Record for StoredPlanHead {
    const TREE: &'static str = StoredPlan::TREE;
    const VERSION: u16 = StoredPlan::VERSION;
    type Key = String;

    /// A version-1 record (the plan as `whittle plan --format json` writes it) has the same
    /// `id`, `created_at`, `status` and `roles[].status` as the stored form.
    fn upgrade(version: u16, data: serde_json::Value) -> Result<serde_json::Value, String> {
        match version {
            1 => Ok(data),
            _ => Err(format!(
                "no upgrade path from plan record version {version}"
            )),
        }
    }
}

/// Actions a failed trial recorded as needed by a role (keyed by role ARN): the next plan
/// keeps them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NeededActions {
    /// Action -> when it was recorded.
    pub actions: BTreeMap<String, Timestamp>,
}

impl Record for NeededActions {
    const TREE: &'static str = "needed_actions";
    const VERSION: u16 = 1;
    type Key = String;
}

/// One change to one role (an apply), with the snapshot a rollback restores; keyed by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub id: String,
    pub plan_id: String,
    pub role_arn: String,
    pub account: String,
    pub started_at: Timestamp,
    pub status: ChangeStatus,
    /// The role's policies before the change.
    pub before: RolePolicies,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeStatus {
    InProgress,
    Applied,
    RolledBack,
}

impl ChangeStatus {
    /// The name JSON uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStatus::InProgress => "in-progress",
            ChangeStatus::Applied => "applied",
            ChangeStatus::RolledBack => "rolled-back",
        }
    }
}

impl Record for ChangeRecord {
    const TREE: &'static str = "changes";
    const VERSION: u16 = 1;
    type Key = String;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrialStatus {
    /// Applied; the window is open.
    Running,
    /// The window has ended; the watch waits for CloudTrail to show all of it (see
    /// [`TrialRecord::settle_until`]).
    Settling,
    Passed,
    /// Nothing failed, but CloudTrail had not shown the whole window by `max_settle`: the
    /// change is undone and the plan is not marked trialled.
    PassedWithoutCompleteEvidence,
    /// The role made too few calls during the window to prove anything: undone, not trialled.
    Inconclusive,
    RolledBack,
    Refused,
}

impl TrialStatus {
    /// Still under way: applied and watched (the window, or settling after it).
    pub fn is_open(self) -> bool {
        matches!(self, TrialStatus::Running | TrialStatus::Settling)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Running => "running",
            TrialStatus::Settling => "settling",
            TrialStatus::Passed => "passed",
            TrialStatus::PassedWithoutCompleteEvidence => "passed-without-complete-evidence",
            TrialStatus::Inconclusive => "inconclusive",
            TrialStatus::RolledBack => "rolled-back",
            TrialStatus::Refused => "refused",
        }
    }
}

/// One denial seen during a trial: the evidence of a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedEvent {
    /// The IAM action (from the catalog; empty when neither the message nor the event's
    /// mapping gives one, and then never recorded as needed).
    pub action: String,
    pub event_id: String,
    pub time: String,
    /// Where the action came from when not from the denial's message, e.g. "the denial names
    /// `s3:ListObjects`, which is not an IAM action; the actions are the event's".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The signal that ended a trial that did not pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Signal {
    /// Denials of the role after the apply (the events are the record's `denied`).
    Denial { count: usize },
    /// The exercise failed: its exit status and the last lines of its stderr (redacted), or
    /// the function error.
    Exercise { detail: String },
    /// The function's error metric rose.
    ErrorMetric {
        function: String,
        before: f64,
        after: f64,
        max_increase: f64,
    },
    /// A signal could not be read at the end, so nothing was proven.
    Unreadable { what: String },
    /// Applying the trial's change failed.
    ApplyFailed,
    /// Rolled back by hand.
    ByHand,
    /// whittle stopped during the trial and rolled it back on restart.
    Interrupted,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signal::Denial { count } => write!(f, "{count} denial(s)"),
            Signal::Exercise { detail } => write!(f, "exercise failed: {detail}"),
            Signal::ErrorMetric {
                function,
                before,
                after,
                max_increase,
            } => write!(
                f,
                "{after} errors of function {function} since the apply, against {before} before it (at most {max_increase} more allowed)"
            ),
            Signal::Unreadable { what } => write!(f, "could not read {what}"),
            Signal::ApplyFailed => f.write_str("the apply failed"),
            Signal::ByHand => f.write_str("rolled back by hand"),
            Signal::Interrupted => f.write_str("whittle stopped during the trial"),
        }
    }
}

/// What a trial's watch saw of the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Every watched CloudTrail source showed an event at or after the window's end.
    pub complete: bool,
    /// Calls of the role seen since the apply (denials included).
    pub role_calls: u64,
    /// An exercise ran to its end without failing.
    pub exercised: bool,
}

/// A trial of one role, keyed by its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub id: String,
    pub plan_id: String,
    pub role_arn: String,
    pub account: String,
    pub mode: Mode,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub status: TrialStatus,
    pub reason: Option<String>,
    #[serde(default)]
    pub denied: Vec<DeniedEvent>,
    /// What ended a trial that did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
    /// While settling: the latest time the watch waits for complete evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_until: Option<Timestamp>,
    /// What the watch saw, once it ended without a failure signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// A trial of the role's split (its functions on roles of their own), not of its own
    /// tightening.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split: bool,
}

impl Record for TrialRecord {
    const TREE: &'static str = "trials";
    const VERSION: u16 = 1;
    type Key = String;
}

/// The last outcome of one rotation, keyed by its name. Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotationRecord {
    pub last_attempt_at: Timestamp,
    /// The last successful rotation, which the timetable counts from.
    pub last_rotated_at: Option<Timestamp>,
    pub last_version: Option<String>,
    pub last_outcome: RotationOutcome,
    /// Why the last attempt was parked or refused.
    pub reason: Option<String>,
}

impl Record for RotationRecord {
    const TREE: &'static str = "rotations";
    const VERSION: u16 = 1;
    type Key = String;
}

/// How the last attempt of a rotation ended, as [`RotationRecord`] stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RotationOutcome {
    Rotated,
    Parked,
    Refused,
}

impl RotationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationOutcome::Rotated => "rotated",
            RotationOutcome::Parked => "parked",
            RotationOutcome::Refused => "refused",
        }
    }
}

/// How many runs of each job the history keeps.
pub const RUNS_KEPT_PER_JOB: usize = 100;

/// One run of a scheduled job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    pub job: JobName,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub outcome: RunOutcome,
    /// A one-line summary of what the run did, or its error.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    Running,
    Succeeded,
    Failed,
    /// The daemon stopped (crash or kill) while the run was in progress.
    Interrupted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Runs are keyed by job name, then start time, so one job's runs are a contiguous range in
/// time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRunKey {
    pub job: JobName,
    pub started_at: Timestamp,
}

impl JobRunKey {
    fn prefix(job: &JobName) -> Vec<u8> {
        let mut bytes = job.to_string().into_bytes();
        bytes.push(0);
        bytes
    }
}

impl fmt::Display for JobRunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.job, self.started_at.0)
    }
}

impl RecordKey for JobRunKey {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Self::prefix(&self.job);
        bytes.extend_from_slice(&self.started_at.0.to_be_bytes());
        bytes
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let split = bytes.iter().position(|&b| b == 0)?;
        let job = std::str::from_utf8(&bytes[..split]).ok()?.parse().ok()?;
        let millis = <[u8; 8]>::try_from(&bytes[split + 1..]).ok()?;
        Some(JobRunKey {
            job,
            started_at: Timestamp(u64::from_be_bytes(millis)),
        })
    }
}

impl Record for JobRun {
    const TREE: &'static str = "job_runs";
    const VERSION: u16 = 1;
    type Key = JobRunKey;
}

impl JobRun {
    pub fn key(&self) -> JobRunKey {
        JobRunKey {
            job: self.job.clone(),
            started_at: self.started_at,
        }
    }
}

/// The job history in the state.
#[derive(Debug)]
pub struct JobHistory<'a> {
    state: &'a State,
}

impl<'a> JobHistory<'a> {
    pub fn new(state: &'a State) -> Self {
        JobHistory { state }
    }

    /// Records a run (its start or its end) durably, and trims the job's history.
    pub fn record(&self, run: &JobRun) -> Result<(), StateError> {
        let tree = self.state.tree::<JobRun>()?;
        tree.put(&run.key(), run)?;
        let keys: Vec<JobRunKey> = tree
            .scan_prefix(&JobRunKey::prefix(&run.job))
            .map(|item| item.map(|(key, _)| key))
            .collect::<Result<_, _>>()?;
        if keys.len() > RUNS_KEPT_PER_JOB {
            for key in &keys[..keys.len() - RUNS_KEPT_PER_JOB] {
                tree.remove(key)?;
            }
        }
        self.state.flush()
    }

    /// The most recent run of `job`.
    pub fn last(&self, job: &JobName) -> Result<Option<JobRun>, StateError> {
        let tree = self.state.tree::<JobRun>()?;
        tree.scan_prefix(&JobRunKey::prefix(job))
            .next_back()
            .transpose()
            .map(|found| found.map(|(_, run)| run))
    }

    /// Counts of `job`'s kept runs per outcome.
    pub fn outcome_counts(&self, job: &JobName) -> Result<Vec<(RunOutcome, u64)>, StateError> {
        let tree = self.state.tree::<JobRun>()?;
        let mut counts: Vec<(RunOutcome, u64)> = Vec::new();
        for item in tree.scan_prefix(&JobRunKey::prefix(job)) {
            let (_, run) = item?;
            match counts
                .iter_mut()
                .find(|(outcome, _)| *outcome == run.outcome)
            {
                Some((_, n)) => *n += 1,
                None => counts.push((run.outcome, 1)),
            }
        }
        Ok(counts)
    }

    /// Marks runs left `running` by a previous process as interrupted. Returns how many.
    pub fn mark_interrupted(&self, at: Timestamp) -> Result<usize, StateError> {
        let tree = self.state.tree::<JobRun>()?;
        let stale: Vec<JobRun> = tree
            .iter()
            .filter_map(|item| match item {
                Ok((_, run)) if run.outcome == RunOutcome::Running => Some(Ok(run)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        for mut run in stale.iter().cloned() {
            run.outcome = RunOutcome::Interrupted;
            run.ended_at = Some(at);
            run.detail = "the daemon stopped during this run".to_owned();
            tree.put(&run.key(), &run)?;
        }
        self.state.flush()?;
        Ok(stale.len())
    }
}

/// What the last `discover` run found in one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleInventory {
    pub account: String,
    pub account_id: String,
    pub refreshed_at: Timestamp,
    /// Roles whittle may manage.
    pub targets: Vec<String>,
    /// Roles that match the selector but are protected, with the reason.
    pub protected: Vec<ProtectedRole>,
    /// How many other roles the account has.
    pub not_selected: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtectedRole {
    pub arn: String,
    pub reason: String,
}

impl Record for RoleInventory {
    const TREE: &'static str = "role_inventory";
    const VERSION: u16 = 1;
    type Key = String;
}

/// The Lambda functions the last `discover` run listed in one account, for telling which
/// sessions of a role are its functions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionInventory {
    pub account: String,
    pub listed_at: Timestamp,
    pub functions: Vec<crate::ports::FunctionSummary>,
}

impl Record for FunctionInventory {
    const TREE: &'static str = "function_inventory";
    const VERSION: u16 = 1;
    type Key = String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_stored_before_accounts_were_read_whole_still_reads() {
        // A role entry as whittle wrote it before `read_at` and the plan's `accounts`.
        let older = serde_json::json!({
            "schema": 1, "id": "plan-1", "created_at": "2026-11-24T10:00:00Z",
            "catalog": "test", "lookback_days": 90, "status": "proposed",
            "roles": [{
                "role_arn": "arn:aws:iam::111111111111:role/app", "status": "no-change",
                "observed_days": 3,
                "current": {"role_arn": "arn:aws:iam::111111111111:role/app", "role_name": "app",
                            "inline": [], "managed": [], "boundary": null},
                "proposal": {"put_inline": [], "delete_inline": [], "detach": []},
                "kept": [], "removed": [], "risks": [], "notes": [], "inline_size": 0
            }]
        });
        let upgraded = StoredPlan::upgrade(1, older.clone()).expect("upgrades");
        let plan: StoredPlan = serde_json::from_value(upgraded).expect("an older plan");
        assert!(plan.0.accounts.is_empty());
        assert_eq!(plan.0.roles[0].read_at, None);
        // Written back as a plan, it has the same fields: nothing is invented for it.
        assert_eq!(serde_json::to_value(&plan.0).expect("JSON"), older);
    }

    /// A plan stored by whittle before the stored form (record version 1: the plan as
    /// `whittle plan --format json` writes it, committed in `testdata/plan-record-v1.json`)
    /// upgrades to the same plan, and is stored again in the new form.
    #[test]
    fn a_version_1_plan_record_still_loads() {
        let older: serde_json::Value =
            serde_json::from_str(include_str!("testdata/plan-record-v1.json")).expect("JSON");
        let upgraded = StoredPlan::upgrade(1, older.clone()).expect("upgrades");
        assert_eq!(upgraded["schema"], 2);
        let plan: StoredPlan = serde_json::from_value(upgraded).expect("reads");
        assert_eq!(serde_json::to_value(&plan.0).expect("JSON"), older);
        assert_eq!(plan.0.roles[0].removed.actions(), 59);

        let dir = tempfile::tempdir().expect("dir");
        let state = open(dir.path());
        let plans = state.tree::<StoredPlan>().expect("tree");
        plans.put(&plan.0.id, &plan).expect("stored");
        let again = plans.get(&plan.0.id).expect("reads").expect("present");
        assert_eq!(again, plan);
    }

    /// A plan's head reads what status shows, from plans stored in the current form and in
    /// version 1, and can never be stored over a plan.
    #[test]
    fn a_plan_head_reads_the_ids_status_and_role_statuses_of_a_stored_plan() {
        let older: serde_json::Value =
            serde_json::from_str(include_str!("testdata/plan-record-v1.json")).expect("JSON");
        let plan: StoredPlan =
            serde_json::from_value(StoredPlan::upgrade(1, older.clone()).expect("upgrades"))
                .expect("reads");
        let head: StoredPlanHead =
            serde_json::from_value(StoredPlanHead::upgrade(1, older).expect("upgrades"))
                .expect("a version-1 head");
        let statuses =
            |head: &StoredPlanHead| -> Vec<_> { head.roles.iter().map(|r| r.status).collect() };
        let expected: Vec<_> = plan.0.roles.iter().map(|r| r.status).collect();
        assert_eq!(statuses(&head), expected);
        assert_eq!(
            (head.id.as_str(), head.created_at.as_str(), head.status),
            (
                plan.0.id.as_str(),
                plan.0.created_at.as_str(),
                plan.0.status
            )
        );

        let dir = tempfile::tempdir().expect("dir");
        let state = open(dir.path());
        state
            .tree::<StoredPlan>()
            .expect("tree")
            .put(&plan.0.id, &plan)
            .expect("stored");
        let heads = state.tree::<StoredPlanHead>().expect("tree");
        let read = heads.get(&plan.0.id).expect("reads").expect("present");
        assert_eq!(read, head);
        assert!(heads.put(&plan.0.id, &read).is_err());
        let again = state.tree::<StoredPlan>().expect("tree").get(&plan.0.id);
        assert_eq!(again.expect("reads"), Some(plan));
    }

    fn open(dir: &std::path::Path) -> State {
        State::open(
            dir,
            &whittle_state::LockOwner {
                pid: 1,
                status_address: None,
                token: None,
            },
        )
        .expect("open")
    }

    fn job(name: &str) -> JobName {
        name.parse().expect("a job name")
    }

    fn run(name: &str, at: u64, outcome: RunOutcome) -> JobRun {
        JobRun {
            job: job(name),
            started_at: Timestamp(at),
            ended_at: None,
            outcome,
            detail: String::new(),
        }
    }

    #[test]
    fn history_keeps_jobs_apart_and_trims() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = open(tmp.path());
        let history = JobHistory::new(&state);
        // "rotate:api" is a prefix of "rotate:api-key": the key separator keeps them apart.
        history
            .record(&run("rotate:api", 5, RunOutcome::Failed))
            .expect("record");
        for at in 0..(RUNS_KEPT_PER_JOB as u64 + 5) {
            history
                .record(&run("rotate:api-key", 1000 + at, RunOutcome::Succeeded))
                .expect("record");
        }
        let last = history
            .last(&job("rotate:api-key"))
            .expect("last")
            .expect("some");
        assert_eq!(
            last.started_at,
            Timestamp(1000 + RUNS_KEPT_PER_JOB as u64 + 4)
        );
        assert_eq!(
            history
                .outcome_counts(&job("rotate:api-key"))
                .expect("counts"),
            [(RunOutcome::Succeeded, RUNS_KEPT_PER_JOB as u64)]
        );
        assert_eq!(
            history
                .last(&job("rotate:api"))
                .expect("last")
                .map(|r| r.outcome),
            Some(RunOutcome::Failed)
        );
    }

    #[test]
    fn stale_running_runs_become_interrupted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = open(tmp.path());
        let history = JobHistory::new(&state);
        history
            .record(&run("discover", 1, RunOutcome::Running))
            .expect("record");
        history
            .record(&run("check-aws", 2, RunOutcome::Succeeded))
            .expect("record");
        assert_eq!(history.mark_interrupted(Timestamp(9)).expect("mark"), 1);
        let run = history
            .last(&JobName::Discover)
            .expect("last")
            .expect("some");
        assert_eq!(
            (run.outcome, run.ended_at),
            (RunOutcome::Interrupted, Some(Timestamp(9)))
        );
        assert_eq!(
            history
                .last(&JobName::CheckAws)
                .expect("last")
                .map(|r| r.outcome),
            Some(RunOutcome::Succeeded)
        );
    }
}

/// One principal's mined usage (see [`whittle_planner::usage`]), keyed by its ARN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUsage {
    pub usage: whittle_planner::usage::PrincipalUsage,
    /// The last [`PendingUsage`] chunk merged into `usage`: folding a chunk again after a
    /// crash skips principals that already hold it, so each chunk counts exactly once.
    #[serde(default)]
    pub folded_through: Option<u64>,
}

impl Record for StoredUsage {
    const TREE: &'static str = "usage";
    /// 2: the usage moved under `usage`, beside `folded_through`.
    const VERSION: u16 = 2;
    type Key = String;

    fn upgrade(version: u16, data: serde_json::Value) -> Result<serde_json::Value, String> {
        match version {
            1 => Ok(serde_json::json!({ "usage": data, "folded_through": null })),
            _ => Err(format!(
                "no upgrade path from usage record version {version}"
            )),
        }
    }
}

/// One principal's usage at a glance, keyed by its ARN like its [`StoredUsage`]: what the
/// summary of `whittle usage` prints for many principals, read without inflating and
/// parsing the whole usage (10,000 principals' usage took 1-2 s to decode).
///
/// Written in the same batch as the usage record it describes, wherever one is written or
/// removed (`mine::store::put_usage`, `remove_usage`), so a crash leaves both or neither.
/// A state whose usage was written before heads existed gets them all at once, before they
/// are first read ([`UsageHeadsBuilt`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageHead {
    pub kind: whittle_planner::trail::PrincipalKind,
    /// Session names remembered (the report's `sessions`).
    pub sessions: usize,
    /// Each used action's last use (ms since the epoch), sorted: how many actions were used
    /// since any `--since` is a search, as in the full report, where an action counts when
    /// it was last used on or after `--since`.
    pub actions: Vec<i64>,
    /// Each denied action's last denial, sorted.
    pub denied: Vec<i64>,
    /// Each unmapped call's last call, sorted.
    pub unmapped: Vec<i64>,
    /// Sessions whose calls are kept one by one (names a Lambda function can have) -> the
    /// last of their calls: those that discovery matched to a function of the role are its
    /// functions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub function_sessions: BTreeMap<String, i64>,
    /// The first and last event over all actions, denials and unmapped calls.
    pub first_seen: i64,
    pub last_seen: i64,
}

impl UsageHead {
    /// The head of `usage`; `None` when it holds nothing (such usage is never stored).
    pub fn of(usage: &whittle_planner::usage::PrincipalUsage) -> Option<UsageHead> {
        let (first_seen, last_seen) = usage.observed()?;
        let last = |counts: &whittle_planner::usage::Counted| counts.0.iter().map(|d| d.3).max();
        let lasts = |map: &BTreeMap<String, whittle_planner::usage::ActionUsage>| {
            let mut out: Vec<i64> = map.values().filter_map(|u| last(&u.counts)).collect();
            out.sort_unstable();
            out
        };
        let mut unmapped: Vec<i64> = usage
            .unmapped
            .values()
            .filter_map(|u| last(&u.counts))
            .collect();
        unmapped.sort_unstable();
        Some(UsageHead {
            kind: usage.kind,
            sessions: usage.sessions.len(),
            actions: lasts(&usage.actions),
            denied: lasts(&usage.denied),
            unmapped,
            function_sessions: usage
                .by_session
                .iter()
                .filter_map(|(session, actions)| {
                    let last = actions.values().filter_map(|u| last(&u.counts)).max()?;
                    Some((session.clone(), last))
                })
                .collect(),
            first_seen,
            last_seen,
        })
    }
}

impl Record for UsageHead {
    const TREE: &'static str = "usage_heads";
    const VERSION: u16 = 1;
    type Key = String;
}

/// Says that every [`StoredUsage`] has its [`UsageHead`] (key `heads`). A whittle older than
/// the heads wrote usage without them; the first fold of a newer one builds them all and
/// then writes this, so a crash while building builds them again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageHeadsBuilt {
    /// The [`UsageHead`] version they were built at: a later version that needs what an
    /// upgrade cannot compute builds them again.
    pub version: u16,
}

impl Record for UsageHeadsBuilt {
    const TREE: &'static str = "usage_heads_built";
    const VERSION: u16 = 1;
    type Key = String;
}

/// The usage one commit of a mining run produced (a chunk of files, a LookupEvents window,
/// an Athena result), keyed by a number that grows with every commit. It is written as one
/// record, with the checkpoint of its input, then folded into [`StoredUsage`] a few
/// principals per transaction and deleted (see `mine/store.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUsage {
    pub principals: std::collections::BTreeMap<String, whittle_planner::usage::PrincipalUsage>,
}

impl Record for PendingUsage {
    const TREE: &'static str = "usage_pending";
    const VERSION: u16 = 1;
    type Key = u64;
}

/// The trail log files (local or S3) of one folder already mined, keyed
/// `SOURCE\u{0}FOLDER` (FOLDER is the location up to its last `/`). CloudTrail puts a day of
/// one account and region in a folder, so a chunk of files updates a few of these records,
/// not one per file. Written in the same transaction as the usage the files produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinedFolder {
    /// File name -> size in bytes when mined.
    pub files: std::collections::BTreeMap<String, u64>,
}

impl Record for MinedFolder {
    const TREE: &'static str = "mined_folders";
    const VERSION: u16 = 1;
    type Key = String;
}

impl MinedFolder {
    /// The record key and the file name of `location` in `source`.
    pub fn split<'a>(source: &str, location: &'a str) -> (String, &'a str) {
        let (folder, name) = location.rsplit_once('/').unwrap_or(("", location));
        (format!("{source}\u{0}{folder}"), name)
    }
}

/// How many file names the [`MinedFolder`] records hold in all, written in the same
/// transactions as they are, so that `whittle status` and `/healthz` read one record instead
/// of every folder. One record, keyed `files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinedFileCount {
    pub files: u64,
}

impl Record for MinedFileCount {
    const TREE: &'static str = "mined_file_count";
    const VERSION: u16 = 1;
    type Key = String;
}

/// A mined file as state directories written before [`MinedFolder`] kept it, one record per
/// file, keyed
/// `SOURCE\u{0}LOCATION`. Read only to move it into [`MinedFolder`] records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinedFile {
    pub size: u64,
    pub mined_at: Timestamp,
}

impl Record for MinedFile {
    const TREE: &'static str = "mined_files";
    const VERSION: u16 = 1;
    type Key = String;
}

/// How far a time-windowed source (LookupEvents per account and region, Athena) has read,
/// keyed `SOURCE/ACCOUNT/REGION` or `SOURCE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeCheckpoint {
    /// Events up to this time (ms) are mined.
    pub until_ms: i64,
    /// Event ids seen in the overlap before `until_ms`, re-read next time to catch late
    /// deliveries without counting an event twice.
    #[serde(default)]
    pub recent_ids: Vec<String>,
}

impl Record for TimeCheckpoint {
    const TREE: &'static str = "mining_checkpoints";
    const VERSION: u16 = 1;
    type Key = String;
}

/// The last run of an Athena source, keyed by the source's name: what it read and what it
/// cost (`whittle status` shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AthenaRun {
    pub at: Timestamp,
    /// The window of event times read, `[start, end)`, in ms.
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// The date partitions the query named, first and last (`yyyy/MM/dd`), when the source
    /// has a `date_partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<(String, String)>,
    /// `Statistics.DataScannedInBytes` of the query: what Athena billed.
    pub bytes_scanned: u64,
    /// Result rows read.
    pub rows: u64,
}

impl Record for AthenaRun {
    const TREE: &'static str = "athena_runs";
    const VERSION: u16 = 1;
    type Key = String;
}

/// IAM's last-accessed data for one role, keyed by role ARN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastAccessed {
    pub fetched_at: Timestamp,
    pub services: Vec<whittle_planner::usage::ServiceLastAccessed>,
}

impl Record for LastAccessed {
    const TREE: &'static str = "last_accessed";
    const VERSION: u16 = 1;
    type Key = String;
}

/// Bookkeeping of the usage store: when it was last aged out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageMeta {
    /// The UTC day (days since the epoch) of the last full age-out pass.
    pub aged_out_day: u32,
}

impl Record for UsageMeta {
    const TREE: &'static str = "usage_meta";
    const VERSION: u16 = 1;
    type Key = String;
}
