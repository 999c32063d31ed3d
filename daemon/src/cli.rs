//! The command line. Every setting that also lives in the file is an argument with a
//! `WHITTLE_*` environment variable, and [`GlobalArgs::apply`] lays them over the file: that
//! one place gives the precedence flag > environment > file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use whittle_engine::commands::{
    ApplyCommand, MineCommand, PlanCommand as PlanWire, RollbackCommand, RotateCommand,
    StateCommand,
};
use whittle_engine::config::{Config, EndpointUrl, LogFormat as ConfigLogFormat, LoopbackAddr};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error: invalid configuration, state directory locked or unreadable, AWS unreachable or
     refusing, a failed check
  2  (whittle plan) changes are proposed

Files and environment:
  --config defaults to ./config.toml; every WHITTLE_* variable shown above overrides the file,
  and a flag overrides the variable. AWS credentials come from the standard chain
  (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, container or instance role), or from
  [aws] profile and [[aws.accounts]] role_arn.

While `whittle daemon` holds the state directory, status, usage, mine, plan, apply, rollback,
rotate and trial are run by the daemon (with the configuration it loaded; a command that read
a different file is refused), with the same output and exit code.

Data goes to stdout, logs and errors to stderr.";

/// Keeps AWS IAM roles at least privilege and credentials fresh, unattended.
#[derive(Debug, Parser)]
#[command(name = "whittle", version, about, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "WHITTLE_CONFIG",
        default_value = "config.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,

    /// The state directory (overrides [state] dir).
    #[arg(
        long = "state",
        global = true,
        env = "WHITTLE_STATE_DIR",
        value_name = "DIR"
    )]
    pub state_dir: Option<PathBuf>,

    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log output (-q warnings and errors only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// Log format (overrides [log] format).
    #[arg(
        long,
        global = true,
        env = "WHITTLE_LOG_FORMAT",
        value_enum,
        value_name = "FORMAT"
    )]
    pub log_format: Option<LogFormat>,

    /// Log filter such as `info` or `whittle=debug` (overrides [log] level).
    #[arg(
        long = "log-level",
        global = true,
        env = "WHITTLE_LOG",
        value_name = "FILTER",
        hide_short_help = true
    )]
    pub log_level: Option<String>,

    /// AWS region (overrides [aws] region).
    #[arg(long, global = true, env = "WHITTLE_AWS_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// Send AWS calls to this endpoint, e.g. a local emulator (overrides [aws] endpoint_url).
    #[arg(
        long,
        global = true,
        env = "WHITTLE_AWS_ENDPOINT_URL",
        value_name = "URL"
    )]
    pub endpoint_url: Option<String>,
}

impl GlobalArgs {
    /// Lays the flags and environment over the file's values.
    pub fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        if let Some(dir) = &self.state_dir {
            config.state.dir.clone_from(dir);
        }
        if let Some(format) = self.log_format {
            config.log.format = match format {
                LogFormat::Human => ConfigLogFormat::Human,
                LogFormat::Json => ConfigLogFormat::Json,
            };
        }
        if let Some(level) = &self.log_level {
            config.log.level.clone_from(level);
        }
        if let Some(region) = &self.region {
            config.aws.region.clone_from(region);
        }
        if let Some(url) = &self.endpoint_url {
            let url: EndpointUrl = url.parse().map_err(|e: String| {
                anyhow::anyhow!("--endpoint-url / WHITTLE_AWS_ENDPOINT_URL: {e}")
            })?;
            config.aws.endpoint_url = Some(url);
        }
        Ok(())
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines, coloured on a terminal.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration file and report every problem as PATH:LINE:COLUMN: message.
    Validate,
    /// Run the scheduler: reconcile unfinished work, then run the configured jobs until
    /// SIGTERM or SIGINT (which let the running step finish, then exit 0).
    Daemon(DaemonArgs),
    /// Show jobs, their last and next runs, unfinished journals and discovered targets. Asks
    /// the running daemon when there is one, otherwise reads the state directory.
    Status(StatusArgs),
    /// List each account's roles and Lambda functions once, as the `discover` job does: the
    /// target roles (and protected ones, with why) for mining and planning, and which
    /// functions run under which role, so that `whittle usage` shows a shared role's usage
    /// per function. Read-only on AWS. Exits 1 when an account could not be read.
    Discover,
    /// Mine CloudTrail into the usage store: the [mining] sources, or one local directory.
    ///
    /// Incremental: a file, S3 object or time window read by an earlier run is not read again.
    /// Exits 0 when anything could be read (malformed records and files are skipped with a
    /// located warning and counted), 1 when nothing could.
    Mine(MineArgs),
    /// Show which IAM actions each principal used, on which resources, and what was denied
    /// or could not be mapped (from the usage store; run `whittle mine` first).
    ///
    /// In text and JSON, the usage of more than 100 principals is summarised: per principal
    /// how many actions it used, how many were denied or unmapped, its sessions and
    /// functions counted, and when it was first and last seen (JSON: an object with
    /// `"summary": true` and `principal_summaries`, no `roles`; docs/usage-schema.md).
    /// `--role ARN` shows chosen principals in full, `--full` every principal.
    Usage(UsageArgs),
    /// Propose least-privilege policies for the target roles, as a stored dry-run plan.
    ///
    /// Reads each target role's policies (inline, attached, boundary) and the usage store,
    /// keeps what is used (plus [planner] keep and the permissions CloudTrail cannot show),
    /// and renders the proposal. Changes nothing on AWS. Exits 0 when nothing would change,
    /// 2 when changes are proposed, 1 on an error (a role that could not be planned included).
    Plan(PlanArgs),
    /// Apply a stored plan to its roles: only configured targets, never protected roles, at
    /// most [planner] max_roles_per_apply (a split counts each function it moves). A role
    /// whose policies changed since the plan is refused. Each role's policies are snapshotted
    /// first, for `whittle rollback`.
    Apply(ApplyArgs),
    /// Try a plan on its staging roles: apply it (as a permissions boundary with a dead-man
    /// statement, or by replacing the policies), exercise the workload, watch for denials, and
    /// roll back the moment one appears. Runs until the verdict (or hands the trial to a
    /// running daemon; see --wait); exits 0 when every tried role passed, 1 when one was rolled
    /// back or refused. A passed plan applies without --force.
    Trial(TrialArgs),
    /// Restore a role to its snapshot: the policies from before an apply (CHANGE_ID), or a
    /// running trial's (TRIAL_ID); --role takes the role's running trial or latest change.
    Rollback(RollbackArgs),
    /// Rotate the secrets of [[rotation]] that are due (or, with --now, the selected ones).
    ///
    /// Each rotation is journaled before every side effect and resumes where it stopped if
    /// whittle is killed. Exits 0 when every selected rotation rotated or was not due, 1 when
    /// one was parked (the old value stays in use), refused or failed.
    Rotate(RotateArgs),
    /// Print the IAM policies whittle itself needs for this configuration, one per account.
    ///
    /// Derived from what the configuration (and the playbooks it names) turns on, one
    /// statement per feature, each with a Sid naming it: IAM reads for discovery and
    /// planning; role changes only on the target roles (the ARN patterns as resources, the
    /// tags as iam:ResourceTag conditions) and never on protected roles (an explicit Deny);
    /// the trail bucket and prefix, LookupEvents, Athena and last-accessed jobs for the
    /// configured mining sources; trial boundaries in staging accounts (Lambda and
    /// CloudWatch only when the trial playbook invokes a function or reads its error metric);
    /// exactly the configured secrets, parameters and KMS keys for rotation; and
    /// sts:AssumeRole on the accounts' role_arn for the base credentials. Offline: reads the
    /// configuration only. Attach the output to the role whittle runs as (README, "Install").
    #[command(name = "self-policy")]
    SelfPolicy(SelfPolicyArgs),
    /// IAM policies offline (no configuration or AWS needed).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The IAM action catalog: show its version, or refresh it from AWS's Service Reference.
    #[command(name = "iam-data", subcommand)]
    IamData(IamDataCommand),
    /// Print the version.
    Version,
}

#[derive(Debug, Clone, Args)]
pub struct MineArgs {
    /// Read only this local copy of a trail (any depth of AWSLogs/... folders, or loose
    /// .json.gz / .json files) instead of the configured sources.
    #[arg(long, value_name = "PATH")]
    pub from_dir: Option<PathBuf>,
    /// Count usage this many days back instead of [mining] lookback_days, e.g. to study an
    /// old copy of a trail (stored usage older than that ages out as usual).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub lookback_days: Option<u32>,
    /// Mine only the configured source with this name (repeatable).
    #[arg(long = "source", value_name = "NAME", conflicts_with = "from_dir")]
    pub sources: Vec<String>,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Never draw a progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this principal (a role, user or root ARN; repeatable), in full.
    #[arg(long = "role", value_name = "ARN")]
    pub roles: Vec<String>,
    /// Show every principal in full, however many there are (for 10,000 principals: tens of
    /// megabytes of text, more of JSON).
    #[arg(long, conflicts_with_all = ["roles", "unmapped"])]
    pub full: bool,
    /// Only usage on or after this day (YYYY-MM-DD) or time (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Instead of per-principal usage: the calls that map to no IAM action, summed over
    /// every principal with their reasons (what the plans are blind to).
    #[arg(long)]
    pub unmapped: bool,
    /// Output format; JSON follows docs/usage-schema.md.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(subcommand)]
    pub show: Option<PlanCommand>,
    /// Only this target role (repeatable); default: every target of every account.
    #[arg(long = "role", value_name = "ARN")]
    pub roles: Vec<String>,
    /// whittle's own permissions instead of the targets': compare what `whittle self-policy`
    /// grants with what whittle's own principal (in each account: the role of its session, or
    /// its user) used in the mined trail, and name the statements it did not use in the
    /// look-back. Exits 0 when every statement was used, 2 when some were not.
    #[arg(long = "self", conflicts_with = "roles")]
    pub own: bool,
    /// Output: text (a coloured diff on a terminal), json (docs/plan-schema.md), markdown
    /// (a pull-request comment), html (one self-contained report page), or terraform /
    /// cloudformation / serverless snippets.
    #[arg(long, value_enum, default_value = "text")]
    pub format: PlanFormat,
    /// Markdown: the most bytes of one comment (GitHub's limit by default). A bigger plan is
    /// split into parts, the summary in the first, never mid-section.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 65_536)]
    pub max_bytes: usize,
    /// Markdown: write the parts to DIR/plan-1.md, plan-2.md, … and print their paths
    /// (otherwise the parts go to stdout, separated by `<!-- whittle: next part -->`);
    /// HTML: write DIR/plan.html.
    #[arg(long, global = true, value_name = "DIR")]
    pub output_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PlanCommand {
    /// Render a stored plan again. In text and JSON, a plan of more than 100 roles is
    /// summarised: per role its status, how many actions it loses and keeps and its risks
    /// counted (JSON: an object with `"summary": true` and `role_summaries`, no `roles`;
    /// docs/plan-schema.md). `--role ARN` shows chosen roles in full, `--full` every role.
    /// Markdown, HTML and the IaC formats render every role.
    Show {
        /// The plan id `whittle plan` printed.
        id: String,
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
        /// Show only this role of the plan, in full (repeatable).
        #[arg(long = "role", value_name = "ARN")]
        roles: Vec<String>,
        /// Show every role in full, however many the plan has (for 10,000 roles: hundreds of
        /// megabytes of text, gigabytes of JSON).
        #[arg(long, conflicts_with = "roles")]
        full: bool,
    },
    /// What changed between two stored plans: roles added or dropped, actions newly removed
    /// or newly kept (and why), so a review reads only what is new since the last one.
    Diff {
        /// The older plan's id.
        old: String,
        /// The newer plan's id.
        new: String,
        /// text, json or markdown.
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
    },
    /// Render a plan saved as JSON (`whittle plan --format json > plan.json`) in any format,
    /// offline: needs neither AWS, the configuration nor the state. CI keeps the JSON as an
    /// artifact and renders Markdown and HTML from it. Exits as `whittle plan` would have.
    Render {
        /// The plan's JSON file (docs/plan-schema.md).
        file: std::path::PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
    Terraform,
    Cloudformation,
    Serverless,
    Html,
}

#[derive(Debug, Clone, Args)]
pub struct SelfPolicyArgs {
    /// Only the policy of this account (a name from [[aws.accounts]]); with --format json
    /// the output is then the bare policy document.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// json (the policy document; several are wrapped in {"policies": [...]}), terraform
    /// (aws_iam_role_policy on aws_iam_role.whittle) or cloudformation (AWS::IAM::RolePolicy
    /// on WhittleRole).
    #[arg(long, value_enum, default_value = "json")]
    pub format: SelfPolicyFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SelfPolicyFormat {
    Json,
    Terraform,
    Cloudformation,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The plan id.
    pub plan_id: String,
    /// Apply a plan that has not passed a trial in staging.
    #[arg(long)]
    pub force: bool,
    /// Only this role of the plan (repeatable).
    #[arg(long = "role", value_name = "ARN")]
    pub roles: Vec<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct TrialArgs {
    /// The plan id.
    pub plan_id: String,
    /// Only this role of the plan (repeatable).
    #[arg(long = "role", value_name = "ARN")]
    pub roles: Vec<String>,
    /// The trial playbook (overrides [trial] playbook).
    #[arg(long, value_name = "PATH")]
    pub playbook: Option<PathBuf>,
    /// When a daemon holds the state, the trial is handed to it and this command returns at
    /// once; with --wait it waits for the verdicts. Without a daemon the trial runs here, to
    /// its verdict, either way.
    #[arg(long)]
    pub wait: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The change id `whittle apply` printed, or a trial id.
    #[arg(required_unless_present = "role")]
    pub change_id: Option<String>,
    /// Roll back the latest change of this role instead.
    #[arg(long, value_name = "ARN", conflicts_with = "change_id")]
    pub role: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct RotateArgs {
    /// Only this rotation (its name, or its secret id / parameter name; repeatable).
    #[arg(long = "secret", value_name = "NAME|ID")]
    pub secrets: Vec<String>,
    /// Rotate now even if not due by the timetable.
    #[arg(long)]
    pub now: bool,
    /// Show what is due and each step a rotation would take; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Every policy layer of `whittle policy eval`, each with an example, for its --help.
const POLICY_EVAL_HELP: &str = "\
Layers (each flag takes JSON policy files; URL-encoded text as IAM returns it is accepted):
  --identity FILE...         the principal's identity-based policies; none: it has no
                             permissions (the root user needs none in its own account)
      whittle policy eval --identity app.json --action s3:GetObject \\
        --resource arn:aws:s3:::orders/2026/1.json
  --boundary FILE...         the principal's permissions boundary: caps identity policies
      whittle policy eval --identity app.json --boundary boundary.json \\
        --action iam:CreateUser --resource arn:aws:iam::111122223333:user/new
  --session-policy FILE...   session policies of a role or federated user session
      whittle policy eval --principal arn:aws:sts::111122223333:assumed-role/app/ci \\
        --identity app.json --session-policy narrow.json --action s3:PutObject \\
        --resource arn:aws:s3:::orders/k --resource-account 111122223333
  --resource-policy FILE...  the resource's policy: bucket, queue, key or trust policy;
                             none: the resource has none (a KMS key or a role to assume
                             then refuses everyone)
      whittle policy eval --principal arn:aws:iam::111111111111:role/app \\
        --identity app.json --resource-policy queue-policy.json \\
        --action sqs:SendMessage --resource arn:aws:sqs:us-east-1:222222222222:orders
  --scp FILE                 an SCP of the principal's account; repeat once per level,
                             from the organization root down to the account (merge the
                             SCPs of one level into one file)
      whittle policy eval --identity app.json --scp root.json --scp ou.json \\
        --scp account.json --action ec2:RunInstances --context aws:RequestedRegion=us-east-1
  --rcp FILE                 an RCP of the resource's account, once per level likewise
      whittle policy eval --principal arn:aws:iam::999999999999:user/partner \\
        --identity partner.json --resource-policy bucket.json --rcp root-rcp.json \\
        --action s3:GetObject --resource arn:aws:s3:::exchange/k \\
        --resource-account 111122223333 --context aws:PrincipalOrgID=o-other

Accounts: the principal's comes from --principal, the resource's from its ARN, or from
--resource-account when the ARN has none (S3); unknown, it is taken to be the principal's.
In different accounts, both the principal's policies and the resource's policy must allow.

AWS's own rules come first: operations that need no permission (sts:GetCallerIdentity,
sts:GetSessionToken) are Allowed, and changes to what AWS owns (AWS managed policies,
service-linked roles, alias/aws/ KMS aliases) are ExplicitlyDenied, whatever the policies say.

The JSON answer names the deciding layer (\"layer\": scp, rcp, resource, identity, boundary,
session or aws), the deciding statements with their policy and layer, and notes on what was
assumed or left out.";

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide one request with IAM's whole evaluation logic, like a local
    /// `aws iam simulate-custom-policy` that also knows resource-based policies, SCPs, RCPs,
    /// session policies and cross-account requests: prints Allowed, ImplicitlyDenied or
    /// ExplicitlyDenied, why, and the deciding statement and layer (or DependsOnCondition
    /// with --partial-context).
    ///
    /// A condition key not given with --context is absent from the request, and IAM's rules
    /// for a missing key apply (StringEquals false, StringNotEquals true, ...IfExists true).
    /// Exits 0 whatever the decision, 1 when a file cannot be read or is not a valid policy.
    #[command(after_help = POLICY_EVAL_HELP)]
    Eval(PolicyEvalArgs),
}

#[derive(Debug, Args)]
pub struct PolicyEvalArgs {
    /// An identity-based policy of the principal (zero or more).
    #[arg(long = "identity", value_name = "FILE", num_args = 1..)]
    pub identity: Vec<PathBuf>,
    /// A permissions boundary document; the request must be allowed by it too.
    #[arg(long = "boundary", value_name = "FILE", num_args = 1..)]
    pub boundary: Vec<PathBuf>,
    /// A session policy of the role or federated user session making the request.
    #[arg(long = "session-policy", value_name = "FILE", num_args = 1..)]
    pub session: Vec<PathBuf>,
    /// A resource-based policy of the resource (bucket, queue, key or role trust policy).
    #[arg(long = "resource-policy", value_name = "FILE", num_args = 1..)]
    pub resource_policy: Vec<PathBuf>,
    /// An SCP of the principal's account, one per level from the root to the account.
    #[arg(long = "scp", value_name = "FILE")]
    pub scp: Vec<PathBuf>,
    /// An RCP of the resource's account, one per level from the root to the account.
    #[arg(long = "rcp", value_name = "FILE")]
    pub rcp: Vec<PathBuf>,
    /// The action, `service:Action` (any case).
    #[arg(long, value_name = "ACTION")]
    pub action: String,
    /// The resource ARN; `*` for actions without resource-level permissions.
    #[arg(long, value_name = "ARN", default_value = "*")]
    pub resource: String,
    /// The resource's account, for an ARN that names none (S3 buckets and objects).
    #[arg(long, value_name = "ACCOUNT")]
    pub resource_account: Option<String>,
    /// The calling principal: a user, role, assumed-role session, federated user or root
    /// ARN, or a service (sns.amazonaws.com). Also sets aws:PrincipalArn (a session's role),
    /// aws:PrincipalAccount, aws:PrincipalIsAWSService and, for an IAM user, aws:username
    /// (unless given with --context).
    #[arg(long, value_name = "ARN")]
    pub principal: Option<String>,
    /// A condition key's value in the request; repeat a key for a multivalued key.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Treat condition keys not given as unknown rather than absent: a decision that turns
    /// on them is DependsOnCondition (the view whittle's planner takes).
    #[arg(long)]
    pub partial_context: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum IamDataCommand {
    /// Show the catalog in use: its source, version, and size.
    Info {
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Fetch AWS's Service Reference and install it as the catalog (kept in the state
    /// directory; delete iam-catalog.txt there to go back to the shipped snapshot).
    Refresh {
        /// The Service Reference index.
        #[arg(
            long,
            env = "WHITTLE_SERVICE_REFERENCE_URL",
            default_value = whittle_engine::iam_data::SERVICE_REFERENCE_URL,
            value_name = "URL"
        )]
        url: String,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Loopback address of the status endpoint (overrides [status] listen).
    #[arg(long, env = "WHITTLE_STATUS_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
}

impl DaemonArgs {
    pub fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        if let Some(listen) = &self.listen {
            config.status.listen = listen
                .parse::<LoopbackAddr>()
                .map_err(|e| anyhow::anyhow!("--listen / WHITTLE_STATUS_LISTEN: {e}"))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Also call sts:GetCallerIdentity for each configured account and show the identity or
    /// the exact error; exits 1 if any account fails.
    #[arg(long)]
    pub check_aws: bool,
}

impl From<OutputFormat> for whittle_engine::commands::OutputFormat {
    fn from(format: OutputFormat) -> Self {
        match format {
            OutputFormat::Text => Self::Text,
            OutputFormat::Json => Self::Json,
        }
    }
}

impl From<PlanFormat> for whittle_engine::commands::PlanFormat {
    fn from(format: PlanFormat) -> Self {
        match format {
            PlanFormat::Text => Self::Text,
            PlanFormat::Json => Self::Json,
            PlanFormat::Markdown => Self::Markdown,
            PlanFormat::Terraform => Self::Terraform,
            PlanFormat::Cloudformation => Self::Cloudformation,
            PlanFormat::Serverless => Self::Serverless,
            PlanFormat::Html => Self::Html,
        }
    }
}

impl MineArgs {
    /// The command as the engine (or a running daemon) takes it. A relative `--from-dir`
    /// is made absolute here: the daemon that may run it has another working directory.
    pub fn to_command(&self) -> StateCommand {
        StateCommand::Mine(MineCommand {
            from_dir: self
                .from_dir
                .clone()
                .map(|dir| std::fs::canonicalize(&dir).unwrap_or(dir)),
            lookback_days: self.lookback_days,
            sources: self.sources.clone(),
            format: self.format.into(),
            no_progress: self.no_progress,
        })
    }
}

impl PlanArgs {
    pub fn to_command(&self) -> anyhow::Result<StateCommand> {
        Ok(StateCommand::Plan(match &self.show {
            Some(PlanCommand::Show {
                id,
                format,
                roles,
                full,
            }) => {
                if !self.roles.is_empty() {
                    anyhow::bail!(
                        "--role before `show` chooses the roles of a new plan; to show some roles of a stored plan, put it after the id: `whittle plan show ID --role ARN`"
                    );
                }
                PlanWire::Show {
                    id: id.clone(),
                    format: (*format).into(),
                    max_bytes: Some(self.max_bytes),
                    roles: roles.clone(),
                    full: *full,
                }
            }
            Some(PlanCommand::Diff { old, new, format }) => PlanWire::Diff {
                old: old.clone(),
                new: new.clone(),
                format: (*format).into(),
            },
            Some(PlanCommand::Render { .. }) => {
                anyhow::bail!("`whittle plan render` reads a file, not the state")
            }
            None => PlanWire::Make {
                roles: self.roles.clone(),
                format: self.format.into(),
                max_bytes: Some(self.max_bytes),
            },
        }))
    }
}

impl PlanArgs {
    /// The format the output is in, for naming the file `--output-dir` writes.
    pub fn output_format(&self) -> PlanFormat {
        match &self.show {
            Some(
                PlanCommand::Show { format, .. }
                | PlanCommand::Diff { format, .. }
                | PlanCommand::Render { format, .. },
            ) => *format,
            None => self.format,
        }
    }
}

impl ApplyArgs {
    pub fn to_command(&self) -> StateCommand {
        StateCommand::Apply(ApplyCommand {
            plan_id: self.plan_id.clone(),
            force: self.force,
            roles: self.roles.clone(),
            format: self.format.into(),
        })
    }
}

impl RollbackArgs {
    pub fn to_command(&self) -> StateCommand {
        StateCommand::Rollback(RollbackCommand {
            change_id: self.change_id.clone(),
            role: self.role.clone(),
            format: self.format.into(),
        })
    }
}

impl RotateArgs {
    pub fn to_command(&self) -> StateCommand {
        StateCommand::Rotate(RotateCommand {
            secrets: self.secrets.clone(),
            now: self.now,
            dry_run: self.dry_run,
            format: self.format.into(),
        })
    }
}
