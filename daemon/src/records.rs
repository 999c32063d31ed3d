//! The daemon's own records in the state.

use std::fmt;

use serde::{Deserialize, Serialize};
use whittle_state::{Record, RecordKey, State, StateError, Timestamp};

/// How many runs of each job the history keeps.
pub const RUNS_KEPT_PER_JOB: usize = 100;

/// One run of a scheduled job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    pub job: String,
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
    pub job: String,
    pub started_at: Timestamp,
}

impl JobRunKey {
    fn prefix(job: &str) -> Vec<u8> {
        let mut bytes = job.as_bytes().to_vec();
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
        let job = String::from_utf8(bytes[..split].to_vec()).ok()?;
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
    pub fn last(&self, job: &str) -> Result<Option<JobRun>, StateError> {
        let tree = self.state.tree::<JobRun>()?;
        tree.scan_prefix(&JobRunKey::prefix(job))
            .next_back()
            .transpose()
            .map(|found| found.map(|(_, run)| run))
    }

    /// Counts of `job`'s kept runs per outcome.
    pub fn outcome_counts(&self, job: &str) -> Result<Vec<(RunOutcome, u64)>, StateError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn run(job: &str, at: u64, outcome: RunOutcome) -> JobRun {
        JobRun {
            job: job.to_owned(),
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
        // "disc" is a prefix of "discover": the key separator keeps them apart.
        history
            .record(&run("disc", 5, RunOutcome::Failed))
            .expect("record");
        for at in 0..(RUNS_KEPT_PER_JOB as u64 + 5) {
            history
                .record(&run("discover", 1000 + at, RunOutcome::Succeeded))
                .expect("record");
        }
        let last = history.last("discover").expect("last").expect("some");
        assert_eq!(
            last.started_at,
            Timestamp(1000 + RUNS_KEPT_PER_JOB as u64 + 4)
        );
        assert_eq!(
            history.outcome_counts("discover").expect("counts"),
            [(RunOutcome::Succeeded, RUNS_KEPT_PER_JOB as u64)]
        );
        assert_eq!(
            history.last("disc").expect("last").map(|r| r.outcome),
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
        let run = history.last("discover").expect("last").expect("some");
        assert_eq!(
            (run.outcome, run.ended_at),
            (RunOutcome::Interrupted, Some(Timestamp(9)))
        );
        assert_eq!(
            history.last("check-aws").expect("last").map(|r| r.outcome),
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
