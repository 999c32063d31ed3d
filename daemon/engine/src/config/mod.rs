//! The configuration file: its types, one doc comment per field, and its validation.
//!
//! Every struct denies unknown keys, and nearly every field has a default, so that
//! [`load`] can keep going after an error and report every mistake at once (see
//! [`validate`]). Values that have a syntax of their own (cron expressions, durations, ARN
//! patterns, account ids, addresses) are parsed into types while deserializing, so an error
//! points at the exact value.

mod types;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use whittle_planner::policy::{PolicyDocument, PolicyKind};

use crate::records::JobName;

pub use types::{AccountId, CronSchedule, EndpointUrl, HumanDuration, LoopbackAddr};
pub use validate::{ConfigError, Diagnostic, load, parse_in};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How whittle reaches AWS.
    #[serde(default)]
    pub aws: AwsConfig,
    /// Where whittle keeps its state.
    #[serde(default)]
    pub state: StateConfig,
    /// The daemon's loopback HTTP endpoint (`/healthz`, `/metrics`, `/status`).
    #[serde(default)]
    pub status: StatusConfig,
    /// Logging defaults (overridden by `--log-format`, `-v`, `-q`).
    #[serde(default)]
    pub log: LogConfig,
    /// Which roles whittle may touch.
    #[serde(default)]
    pub targets: TargetsConfig,
    /// The daemon's scheduled jobs, by name.
    #[serde(default)]
    pub jobs: JobsConfig,
    /// CloudTrail mining.
    #[serde(default)]
    pub mining: MiningConfig,
    /// Policy proposals.
    #[serde(default)]
    pub planner: PlannerConfig,
    /// Permission trials.
    #[serde(default)]
    pub trial: TrialConfig,
    /// Secrets to rotate, one table each.
    #[serde(default)]
    pub rotation: Vec<RotationConfig>,
    /// Where alerts go.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// The directory of the configuration file: relative paths in it (playbooks) start here.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file's text as loaded. A command handed to a running daemon runs with the
    /// daemon's configuration, so it is refused when the daemon loaded a different text.
    #[serde(skip)]
    pub text: String,
}

/// Alerts: a parked or refused rotation, a failed scheduled job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// POST each alert as JSON to this URL (http or https; TLS verified against the system's
    /// roots). Alerts always go to the log too, as `ALERT` lines.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// One secret to rotate on a timetable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// A unique name; `whittle rotate --secret NAME` and `whittle status` use it.
    #[serde(default)]
    pub name: String,
    /// The account (by name, from `[[aws.accounts]]`) that holds the secret.
    #[serde(default)]
    pub account: String,
    /// `secrets-manager` or `ssm`.
    pub store: whittle_playbooks::rotation::machine::Store,
    /// The Secrets Manager secret id (name or ARN), or the SSM parameter name.
    #[serde(default)]
    pub secret: String,
    /// The playbook file (TOML with `kind = ...`), relative to this configuration file.
    #[serde(default)]
    pub playbook: PathBuf,
    /// When to rotate: a cron expression with seconds, in UTC.
    pub cron: CronSchedule,
    /// Start a random time up to this long after each tick, to spread load.
    #[serde(default)]
    pub jitter: Option<HumanDuration>,
    /// The rotation window: a rotation not promoted within this long after it started is
    /// parked (the current value stays in use). Default: one hour.
    #[serde(default = "default_rotation_window")]
    pub window: HumanDuration,
    /// How long the old credential stays valid after promotion, for playbooks that revoke it
    /// (`iam-access-key`: deactivated after this, and only once IAM shows it unused since).
    #[serde(default = "default_grace")]
    pub grace: HumanDuration,
    /// KMS key (id, ARN or alias) for the SSM SecureString and for the pending value in the
    /// journal; required for `store = "ssm"`.
    #[serde(default)]
    pub kms_key: Option<String>,
    /// Attempts per step before the rotation is parked.
    #[serde(default = "default_rotation_attempts")]
    pub attempts: u32,
    /// The first back-off between attempts; it doubles each time.
    #[serde(default = "default_retry_delay")]
    pub retry_delay: HumanDuration,
    /// Set to false to keep the entry without rotating it.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl RotationConfig {
    /// The playbook file, resolved against the configuration file's directory.
    pub fn playbook_path(&self, base_dir: &Path) -> PathBuf {
        if self.playbook.is_absolute() {
            self.playbook.clone()
        } else {
            base_dir.join(&self.playbook)
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// The region whittle's API calls go to (IAM and STS are global but still signed for one).
    #[serde(default = "default_region")]
    pub region: String,
    /// Send every API call to this endpoint instead of AWS: for a local emulator.
    #[serde(default)]
    pub endpoint_url: Option<EndpointUrl>,
    /// A named profile from `~/.aws/config` for the base credentials; default: the standard
    /// chain (environment, profile, container, instance).
    #[serde(default)]
    pub profile: Option<String>,
    /// Attempts per API call, including the first (standard retry mode with back-off).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long to wait for a TCP/TLS connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// How long one API call may take in all, retries included.
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout: HumanDuration,
    /// How many accounts `discover` and `plan` read at the same time (one
    /// iam:GetAccountAuthorizationDetails read each); each account's calls keep their own
    /// pace and back-off, so this bounds the connections and memory in use at once.
    #[serde(default = "default_concurrent_accounts")]
    pub concurrent_accounts: usize,
    /// The accounts whittle works in.
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: default_region(),
            endpoint_url: None,
            profile: None,
            max_attempts: default_max_attempts(),
            connect_timeout: default_connect_timeout(),
            operation_timeout: default_operation_timeout(),
            concurrent_accounts: default_concurrent_accounts(),
            accounts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// A short name used everywhere else in this file and in output.
    #[serde(default)]
    pub name: String,
    /// The 12-digit account id; whittle checks the credentials really are in this account.
    #[serde(default)]
    pub id: Option<AccountId>,
    /// A named profile for this account instead of the base credentials.
    #[serde(default)]
    pub profile: Option<String>,
    /// A role to assume in this account (from the base or profile credentials).
    #[serde(default)]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires, if any.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The session name for the assumed role; it appears in CloudTrail.
    #[serde(default = "default_session_name")]
    pub session_name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The state directory (created 0700 if missing; one whittle per directory).
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: default_state_dir(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// Loopback address and port of the status endpoint; port 0 picks a free one.
    #[serde(default = "default_listen")]
    pub listen: LoopbackAddr,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            listen: default_listen(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines, coloured on a terminal.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `whittle=debug,aws=warn`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsConfig {
    /// Roles whose ARN matches any of these globs (`*`, `?`) may be managed.
    #[serde(default)]
    pub arn_patterns: Vec<types::Pattern>,
    /// Roles must also carry every one of these tags (value `*`: any value).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Roles matching any of these are never touched (service-linked roles and whittle's own
    /// role are always protected).
    #[serde(default)]
    pub protected_patterns: Vec<types::Pattern>,
    /// The most roles one trial run may change; a split counts each function it gives a role
    /// of its own.
    #[serde(default = "default_max_roles_per_run")]
    pub max_roles_per_run: u32,
}

impl Default for TargetsConfig {
    fn default() -> Self {
        TargetsConfig {
            arn_patterns: Vec::new(),
            tags: BTreeMap::new(),
            protected_patterns: Vec::new(),
            max_roles_per_run: default_max_roles_per_run(),
        }
    }
}

/// One scheduled job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSchedule {
    /// When to run: a cron expression with seconds, `sec min hour day-of-month month
    /// day-of-week`, in UTC.
    pub cron: CronSchedule,
    /// Wait a random time up to this long before each run, to spread load.
    #[serde(default)]
    pub jitter: Option<HumanDuration>,
    /// Set to false to keep the schedule in the file without running it.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// The jobs the daemon knows; each is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Checks the credentials of every account (sts:GetCallerIdentity).
    #[serde(default, rename = "check-aws")]
    pub check_aws: Option<JobSchedule>,
    /// Lists the IAM roles of every account and records which are targets.
    #[serde(default)]
    pub discover: Option<JobSchedule>,
    /// Mines the configured CloudTrail sources into the usage store.
    #[serde(default)]
    pub mine: Option<JobSchedule>,
    /// Tries the newest proposed plan that has not been tried yet in staging.
    #[serde(default)]
    pub trial: Option<JobSchedule>,
}

impl JobsConfig {
    /// The configured jobs in a stable order, with their names.
    pub fn iter(&self) -> impl Iterator<Item = (JobName, &JobSchedule)> {
        [
            (JobName::CheckAws, &self.check_aws),
            (JobName::Discover, &self.discover),
            (JobName::Mine, &self.mine),
            (JobName::Trial, &self.trial),
        ]
        .into_iter()
        .filter_map(|(name, schedule)| schedule.as_ref().map(|s| (name, s)))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiningConfig {
    /// How far back usage evidence counts; older usage ages out.
    #[serde(default = "default_lookback_days")]
    pub lookback_days: u32,
    /// Threads that decompress and parse trail files; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
    /// Log files larger than this many MiB (uncompressed) are streamed record by record
    /// instead of read whole, so memory stays bounded for any file size.
    #[serde(default = "default_stream_above_mib")]
    pub stream_above_mib: u64,
    /// Trail files read between two commits to the state. Memory holds one chunk's
    /// aggregate; a crash or Ctrl-C loses at most one chunk's work (read again next run).
    #[serde(default = "default_chunk_files")]
    pub chunk_files: usize,
    /// Also ask IAM for each target role's last-accessed data (action level where AWS has
    /// it), a second signal: an action AWS saw used is never removed.
    #[serde(default = "default_true")]
    pub last_accessed: bool,
    /// Where the events come from; several may be listed.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

impl Default for MiningConfig {
    fn default() -> Self {
        MiningConfig {
            lookback_days: default_lookback_days(),
            workers: 0,
            stream_above_mib: default_stream_above_mib(),
            chunk_files: default_chunk_files(),
            last_accessed: true,
            sources: Vec::new(),
        }
    }
}

/// The kinds of CloudTrail source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Trail log files in a local directory (any depth of `AWSLogs/...`, or loose files).
    Directory,
    /// Trail log files in an S3 bucket, as CloudTrail delivers them.
    S3,
    /// The CloudTrail LookupEvents API (management events, last 90 days).
    LookupEvents,
    /// One aggregating Athena query over a CloudTrail table.
    Athena,
}

impl SourceConfig {
    /// A directory source that is not in the file (`whittle mine --from-dir`).
    pub fn directory(name: String, path: PathBuf) -> SourceConfig {
        SourceConfig {
            name,
            kind: SourceKind::Directory,
            path: Some(path),
            account: None,
            bucket: None,
            prefix: None,
            regions: Vec::new(),
            database: None,
            table: None,
            workgroup: None,
            output_location: None,
            date_partition: None,
            region_partition: None,
            delivery_delay_minutes: None,
        }
    }
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Directory => "directory",
            SourceKind::S3 => "s3",
            SourceKind::LookupEvents => "lookup-events",
            SourceKind::Athena => "athena",
        }
    }
}

/// One CloudTrail source. Which keys apply depends on `kind`; `whittle validate` says which
/// are missing or do not apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A unique name; the source's checkpoint is kept under it.
    #[serde(default)]
    pub name: String,
    /// `directory`, `s3`, `lookup-events` or `athena`.
    pub kind: SourceKind,
    /// directory: the folder to read.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// s3, lookup-events, athena: the account (by name) whose credentials are used.
    #[serde(default)]
    pub account: Option<String>,
    /// s3: the trail's bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// s3: the key prefix the trail writes under (before `AWSLogs/`), if any.
    #[serde(default)]
    pub prefix: Option<String>,
    /// lookup-events: the regions to query (default: the `[aws]` region). athena: with
    /// `region_partition`, the regions whose partitions the query reads (default: all).
    #[serde(default)]
    pub regions: Vec<String>,
    /// athena: the database and table of the CloudTrail table.
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub table: Option<String>,
    /// athena: the workgroup to run the query in.
    #[serde(default)]
    pub workgroup: Option<String>,
    /// athena: where Athena writes results (`s3://bucket/prefix/`).
    #[serde(default)]
    pub output_location: Option<String>,
    /// athena: the partition-projection column holding the date as `yyyy/MM/dd`, if the
    /// table has one; the query then reads only the look-back window's partitions.
    #[serde(default)]
    pub date_partition: Option<String>,
    /// athena: the partition-projection column holding the region, if the table has one;
    /// with `regions` the query then reads only those regions' partitions.
    #[serde(default)]
    pub region_partition: Option<String>,
    /// athena: how long CloudTrail may take to deliver an event's log file, in minutes
    /// (default 15). Each run reads up to this long before now, so an event delivered late
    /// is still read by the next run instead of falling behind the checkpoint.
    #[serde(default)]
    pub delivery_delay_minutes: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerConfig {
    /// A role observed for fewer days than this is reported, never shrunk.
    #[serde(default = "default_min_observation_days")]
    pub min_observation_days: u32,
    /// Narrow `Resource: "*"` to the resources the trail saw each action used on (for
    /// actions that support resource-level permissions and were seen on at most 32).
    #[serde(default)]
    pub scope_resources: bool,
    /// Action patterns always kept when a role has them (`service:Action`, wildcards allowed).
    #[serde(default)]
    pub keep: Vec<String>,
    /// Keep permissions CloudTrail cannot show being used (`iam:PassRole`, KMS calls AWS makes
    /// on the caller's behalf, the Lambda runtime's logging and tracing).
    #[serde(default = "default_true")]
    pub keep_unobservable: bool,
    /// The most roles one `whittle apply` changes; a split counts each function it gives a
    /// role of its own.
    #[serde(default = "default_max_roles_per_run")]
    pub max_roles_per_apply: u32,
    /// Per account name (from `[[aws.accounts]]`): the SCP files of its organization chain,
    /// one JSON file per level from the root down to the account (several SCPs of one level
    /// merged into one file), relative to this file. What they close to the account is not
    /// kept for the keep-list or as unobservable: it could never be used.
    #[serde(default)]
    pub organization_policies: BTreeMap<String, Vec<PathBuf>>,
    /// An account name (from `[[aws.accounts]]`) whose credentials may read the
    /// organization's policies (the management account, or a delegated administrator): the
    /// SCPs above every planned account without files in `organization_policies` are read
    /// through AWS Organizations (ListParents, ListPoliciesForTarget, DescribePolicy) at each
    /// plan.
    #[serde(default)]
    pub organization_from: Option<String>,
}

impl PlannerConfig {
    /// Reads and checks one SCP file of `[planner.organization_policies]`; the error names
    /// the file.
    pub fn read_scp(base_dir: &Path, path: &Path) -> Result<PolicyDocument, String> {
        let full = base_dir.join(path);
        let text = std::fs::read_to_string(&full)
            .map_err(|e| format!("cannot read SCP file {}: {e}", full.display()))?;
        let document = PolicyDocument::from_iam(&text)
            .map_err(|e| format!("{} is not a valid policy: {e}", full.display()))?;
        document
            .check_kind(PolicyKind::ServiceControl)
            .map_err(|e| format!("{} is not a service control policy: {e}", full.display()))?;
        Ok(document)
    }

    /// Every account's SCP levels, read: account name -> (file, document) per level.
    pub fn organization(
        &self,
        base_dir: &Path,
    ) -> Result<BTreeMap<String, Vec<(String, PolicyDocument)>>, String> {
        self.organization_policies
            .iter()
            .map(|(account, paths)| {
                let levels = paths
                    .iter()
                    .map(|path| {
                        Ok((
                            path.display().to_string(),
                            PlannerConfig::read_scp(base_dir, path)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok((account.clone(), levels))
            })
            .collect()
    }
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            min_observation_days: default_min_observation_days(),
            scope_resources: false,
            keep: Vec::new(),
            keep_unobservable: true,
            max_roles_per_apply: default_max_roles_per_run(),
            organization_policies: BTreeMap::new(),
            organization_from: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialConfig {
    /// Names of accounts (from `[[aws.accounts]]`) where trials may change roles. Any other
    /// account is refused before a change.
    #[serde(default)]
    pub staging_accounts: Vec<String>,
    /// The trial playbook (TOML, `kind = "trial"`), relative to this file; default: the
    /// built-in defaults (15 min window, 30 s detection, boundary mode, no exercise).
    #[serde(default)]
    pub playbook: Option<PathBuf>,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}
fn default_max_attempts() -> u32 {
    3
}
fn default_concurrent_accounts() -> usize {
    4
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3))
}
fn default_operation_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}
fn default_session_name() -> String {
    "whittle".to_owned()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/whittle")
}
fn default_listen() -> LoopbackAddr {
    LoopbackAddr(std::net::SocketAddr::from(([127, 0, 0, 1], 9187)))
}
fn default_log_format() -> LogFormat {
    LogFormat::Human
}
fn default_log_level() -> String {
    "info".to_owned()
}
fn default_max_roles_per_run() -> u32 {
    5
}
fn default_true() -> bool {
    true
}
fn default_lookback_days() -> u32 {
    90
}
fn default_stream_above_mib() -> u64 {
    64
}
fn default_chunk_files() -> usize {
    1000
}
fn default_min_observation_days() -> u32 {
    14
}
fn default_rotation_window() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}
fn default_grace() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(24 * 3600))
}
fn default_rotation_attempts() -> u32 {
    3
}
fn default_retry_delay() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2))
}

impl Config {
    /// The account with this name.
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.aws.accounts.iter().find(|a| a.name == name)
    }

    /// The configured account names, sorted.
    pub fn account_names(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self.aws.accounts.iter().map(|a| a.name.as_str()).collect();
        names.sort_unstable();
        names.into_iter()
    }

    /// Every scheduled job with its name: the `[jobs]` tables, then one `rotate:NAME` job per
    /// `[[rotation]]`.
    pub fn scheduled_jobs(&self) -> Vec<(JobName, JobSchedule)> {
        let mut jobs: Vec<(JobName, JobSchedule)> = self
            .jobs
            .iter()
            .map(|(name, schedule)| (name, schedule.clone()))
            .collect();
        // Revoking an old credential waits for its grace period; this job finishes those
        // rotations (and any other interrupted one) between their own ticks.
        if !self.rotation.is_empty() {
            jobs.push((
                JobName::RotationUpkeep,
                JobSchedule {
                    cron: "0 * * * * *"
                        .parse()
                        .expect("a constant cron expression parses"),
                    jitter: None,
                    enabled: true,
                },
            ));
        }
        jobs.extend(self.rotation.iter().map(|r| {
            (
                JobName::Rotate(r.name.clone()),
                JobSchedule {
                    cron: r.cron.clone(),
                    jitter: r.jitter,
                    enabled: r.enabled,
                },
            )
        }));
        jobs
    }

    /// The target selector the planner uses.
    pub fn target_selector(&self) -> whittle_planner::targets::TargetSelector {
        whittle_planner::targets::TargetSelector {
            arn_patterns: self
                .targets
                .arn_patterns
                .iter()
                .map(|p| p.0.clone())
                .collect(),
            tags: self.targets.tags.clone(),
            protected_patterns: self
                .targets
                .protected_patterns
                .iter()
                .map(|p| p.0.clone())
                .collect(),
        }
    }
}

/// The largest configuration file read: a mistaken path such as `/dev/zero` must not fill
/// memory.
const CONFIG_MAX_BYTES: u64 = 16 << 20;

/// Reads the file at `path` (at most [`CONFIG_MAX_BYTES`]), or says exactly why not.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    use std::io::{Error, ErrorKind, Read};
    let failed = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(CONFIG_MAX_BYTES + 1).read_to_end(&mut bytes))
        .map_err(failed)?;
    if bytes.len() as u64 > CONFIG_MAX_BYTES {
        return Err(failed(Error::new(
            ErrorKind::InvalidData,
            "larger than 16 MiB, so not a configuration file",
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| failed(Error::new(ErrorKind::InvalidData, "not UTF-8 text")))
}
