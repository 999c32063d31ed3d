//! The commands that work on the state directory (`mine`, `plan`, `apply`, `rollback`,
//! `rotate`) and the hand-over protocol to a running daemon, as wire types separate from
//! the command line's. A command runs in the calling process when no daemon holds the state;
//! while a daemon does, it is handed to it (`POST /command`) and the daemon runs it with its
//! own state, ports and configuration. Either way it produces the same output and exit code,
//! so a user (or a pipeline) sees no difference but a log line saying who ran it.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::plan::ApplyOutcome;
use crate::ports::Ports;
use crate::records::{ChangeStatus, TrialRecord, TrialStatus};
use crate::{Engine, mine, plan, rotate, trial};

/// Data formats of most commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    Text,
    Json,
}

/// The formats of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
    Terraform,
    Cloudformation,
    Serverless,
    /// One self-contained HTML page (`whittle_planner::plan::html`).
    Html,
}

/// `whittle mine`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MineCommand {
    /// Only this local copy of a trail instead of the configured sources (absolute).
    pub from_dir: Option<PathBuf>,
    pub lookback_days: Option<u32>,
    /// Only these configured sources.
    pub sources: Vec<String>,
    pub format: OutputFormat,
    pub no_progress: bool,
}

/// `whittle plan` (make one) or `whittle plan show ID`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanCommand {
    Make {
        roles: Vec<String>,
        format: PlanFormat,
        /// Markdown: the most bytes of one part (a pull-request comment).
        #[serde(default)]
        max_bytes: Option<usize>,
    },
    Show {
        id: String,
        format: PlanFormat,
        #[serde(default)]
        max_bytes: Option<usize>,
        /// Only these roles of the plan, in full.
        #[serde(default)]
        roles: Vec<String>,
        /// Every role in full, even in a plan that text and JSON would summarise.
        #[serde(default)]
        full: bool,
    },
    /// What changed from one stored plan to another.
    Diff {
        old: String,
        new: String,
        format: PlanFormat,
    },
}

/// Between two Markdown parts of a plan in one output (`--output-dir` writes each to its
/// own file instead).
pub const MARKDOWN_PART_SEPARATOR: &str = "\n<!-- whittle: next part -->\n";

/// `whittle apply`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyCommand {
    pub plan_id: String,
    pub force: bool,
    pub roles: Vec<String>,
    pub format: OutputFormat,
}

/// `whittle rollback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackCommand {
    pub change_id: Option<String>,
    pub role: Option<String>,
    pub format: OutputFormat,
}

/// `whittle rotate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotateCommand {
    pub secrets: Vec<String>,
    pub now: bool,
    pub dry_run: bool,
    pub format: OutputFormat,
}

/// A command on the state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", content = "args", rename_all = "kebab-case")]
pub enum StateCommand {
    /// `whittle discover`: the discover job, once.
    Discover,
    Mine(MineCommand),
    Plan(PlanCommand),
    Apply(ApplyCommand),
    Rollback(RollbackCommand),
    Rotate(RotateCommand),
}

impl StateCommand {
    /// Whether the command changes roles or secrets, and so first finishes any apply,
    /// rollback, trial or rotation a crashed whittle left unfinished.
    pub fn reconciles_first(&self) -> bool {
        match self {
            StateCommand::Apply(_) | StateCommand::Rollback(_) => true,
            StateCommand::Rotate(args) => !args.dry_run,
            StateCommand::Discover | StateCommand::Mine(_) | StateCommand::Plan(_) => false,
        }
    }
}

/// What the person running the command is looking at.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Terminal {
    /// stdout is a terminal: text plans are coloured.
    pub color: bool,
    /// stderr is a terminal: long work draws a progress bar.
    pub progress: bool,
}

/// What a command printed and how it ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct Output {
    pub stdout: String,
    pub exit_code: u8,
}

/// `POST /command`: a command on the state that a `whittle` process hands to the daemon.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommandRequest {
    pub command: StateCommand,
    /// The configuration text the command loaded; it must be the daemon's.
    pub config_text: String,
    pub terminal: Terminal,
}

/// `POST /usage`: what `whittle usage` asks a running daemon.
#[derive(Debug, Serialize, Deserialize)]
pub struct UsageQuery {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub since_ms: i64,
    /// Every principal in full, however many (`--full`).
    #[serde(default)]
    pub full: bool,
    /// Only the principals with unmapped calls (`--unmapped`).
    #[serde(default)]
    pub unmapped: bool,
}

/// `POST /trial`: what `whittle trial` hands to a running daemon.
#[derive(Debug, Serialize, Deserialize)]
pub struct TrialRequest {
    pub plan_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// An absolute playbook path.
    #[serde(default)]
    pub playbook: Option<PathBuf>,
}

/// The answer to [`TrialRequest`]: the roles the daemon will try.
#[derive(Debug, Serialize, Deserialize)]
pub struct TrialAccepted {
    pub plan_id: String,
    /// The roles whose own tightening is tried.
    pub roles: Vec<String>,
    /// The roles whose split (one role per function) is tried.
    #[serde(default)]
    pub splits: Vec<String>,
}

impl TrialAccepted {
    /// What a trial of `plan` on the chosen roles will try.
    pub fn of(plan_id: &str, chosen: &[whittle_planner::plan::RolePlan]) -> TrialAccepted {
        let arns = |f: fn(&whittle_planner::plan::RolePlan) -> bool| {
            chosen
                .iter()
                .filter(|r| f(r))
                .map(|r| r.role_arn.clone())
                .collect()
        };
        TrialAccepted {
            plan_id: plan_id.to_owned(),
            roles: arns(|r| r.status == whittle_planner::plan::RoleStatus::Changes),
            splits: arns(|r| r.split.is_some()),
        }
    }

    /// Every role tried, for `trial::run`.
    pub fn all_roles(&self) -> Vec<String> {
        let mut all: Vec<String> = self.roles.iter().chain(&self.splits).cloned().collect();
        all.sort();
        all.dedup();
        all
    }
}

/// The latest finished trial of each accepted role (its split and its own tightening, as
/// accepted) started at or after `since`, if every one has finished (what
/// `whittle trial --wait` polls `GET /trials/{plan}` for). A trial that is settling has not
/// finished.
pub fn verdicts(
    trials: &[TrialRecord],
    accepted: &TrialAccepted,
    since: whittle_state::Timestamp,
) -> Option<Vec<TrialRecord>> {
    let splits = accepted.splits.iter().map(|role| (role, true));
    let roles = accepted.roles.iter().map(|role| (role, false));
    splits
        .chain(roles)
        .map(|(role, split)| {
            trials
                .iter()
                .filter(|t| &t.role_arn == role && t.split == split && t.started_at >= since)
                .filter(|t| !t.status.is_open())
                .max_by_key(|t| t.started_at)
                .cloned()
        })
        .collect()
}

/// Runs `command` with `ctx`'s configuration, state and AWS clients. `cancel` stops long
/// work (mining) after the step under way, keeping what was done.
pub async fn run<P: Ports>(
    engine: &Engine<P>,
    command: &StateCommand,
    terminal: Terminal,
    cancel: &CancellationToken,
) -> anyhow::Result<Output> {
    match command {
        StateCommand::Discover => Ok(match crate::jobs::discover(engine, cancel).await {
            Ok(summary) => Output {
                stdout: format!("{}\n", summary.replace("; ", "\n")),
                exit_code: 0,
            },
            Err(error) => {
                tracing::error!(error = %crate::one_line(&error), "Discovery failed");
                Output {
                    stdout: String::new(),
                    exit_code: 1,
                }
            }
        }),
        StateCommand::Mine(args) => mine_command(engine, args, terminal, cancel).await,
        StateCommand::Plan(PlanCommand::Show {
            id,
            format,
            max_bytes,
            roles,
            full,
        }) => show_stored_plan(
            &engine.state,
            id,
            &ShowOptions {
                format: *format,
                max_bytes: *max_bytes,
                roles,
                full: *full,
            },
            terminal,
        ),
        StateCommand::Plan(PlanCommand::Diff { old, new, format }) => {
            use whittle_planner::plan::diff;
            let changes = diff::compare(
                &plan::load_plan(&engine.state, old)?,
                &plan::load_plan(&engine.state, new)?,
            );
            let stdout = match format {
                PlanFormat::Json => json(&changes)?,
                PlanFormat::Markdown => diff::markdown(&changes),
                PlanFormat::Text => diff::text(&changes),
                other => anyhow::bail!(
                    "`plan diff` writes text, json or markdown, not {other:?}; `whittle plan show ID --format html` renders one plan as HTML"
                ),
            };
            Ok(Output {
                stdout,
                exit_code: 0,
            })
        }
        StateCommand::Plan(PlanCommand::Make {
            roles,
            format,
            max_bytes,
        }) => render_plan(
            &plan::make_plan(engine, roles).await?,
            *format,
            *max_bytes,
            terminal,
        ),
        StateCommand::Apply(args) => apply_command(engine, args).await,
        StateCommand::Rollback(args) => rollback_command(engine, args).await,
        StateCommand::Rotate(args) => rotate_command(engine, args).await,
    }
}

fn json(value: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

async fn mine_command<P: Ports>(
    engine: &Engine<P>,
    args: &MineCommand,
    terminal: Terminal,
    cancel: &CancellationToken,
) -> anyhow::Result<Output> {
    let mut config = (*engine.config).clone();
    if let Some(days) = args.lookback_days {
        config.mining.lookback_days = days;
    }
    let engine = engine.with_config(config);
    let request = mine::MineRequest {
        from_dir: args.from_dir.clone(),
        only: args.sources.clone(),
        progress: !args.no_progress && args.format == OutputFormat::Text && terminal.progress,
    };
    let report = mine::mine(&engine, &request, cancel).await?;
    Ok(Output {
        stdout: match args.format {
            OutputFormat::Text => mine::render_text(&report),
            OutputFormat::Json => json(&report)?,
        },
        exit_code: u8::from(report.nothing_read()),
    })
}

/// A plan in one of its formats, and the exit code `whittle plan` gives it: 1 when a role
/// or an account could not be read or planned, else 2 when anything would change, else 0.
/// Accounts that could not be read are named in the text and Markdown forms (the JSON has
/// them in `accounts`), since none of their roles is in the plan.
pub fn render_plan(
    plan: &whittle_planner::plan::Plan,
    format: PlanFormat,
    max_bytes: Option<usize>,
    terminal: Terminal,
) -> anyhow::Result<Output> {
    use whittle_planner::plan::render;
    let unread: Vec<(&str, &str)> = plan
        .accounts
        .iter()
        .filter_map(|a| a.error.as_deref().map(|e| (a.account.as_str(), e)))
        .collect();
    let stdout = match format {
        PlanFormat::Text => {
            let mut text = render::text(plan, terminal.color);
            for (account, error) in &unread {
                let _ = writeln!(
                    text,
                    "account {account} not read, its roles are not in this plan: {error}"
                );
            }
            text
        }
        PlanFormat::Json => json(plan)?,
        PlanFormat::Markdown => {
            let mut parts =
                render::markdown_parts(plan, max_bytes.unwrap_or(render::GITHUB_COMMENT_LIMIT));
            if let Some(first) = parts.first_mut() {
                let notes: String = unread
                    .iter()
                    .map(|(account, error)| {
                        format!(
                            "> **Account `{account}` not read**, its roles are not in this plan: {error}\n\n"
                        )
                    })
                    .collect();
                first.insert_str(0, &notes);
            }
            parts.join(MARKDOWN_PART_SEPARATOR)
        }
        PlanFormat::Terraform => render::terraform(plan),
        PlanFormat::Cloudformation => render::cloudformation(plan),
        PlanFormat::Serverless => render::serverless(plan),
        PlanFormat::Html => whittle_planner::plan::html::html(plan),
    };
    Ok(Output {
        stdout,
        exit_code: render_plan_exit_code(plan),
    })
}

/// 1 when a role or an account could not be read or planned, else 2 when anything would
/// change, else 0.
fn render_plan_exit_code(plan: &whittle_planner::plan::Plan) -> u8 {
    use whittle_planner::plan::RoleStatus;
    plan_exit_code(
        &plan.accounts,
        plan.roles.iter().any(|r| r.status == RoleStatus::Error),
        plan.has_changes(),
    )
}

fn plan_exit_code(
    accounts: &[whittle_planner::plan::AccountRead],
    role_failed: bool,
    changes: bool,
) -> u8 {
    if role_failed || accounts.iter().any(|a| a.error.is_some()) {
        1
    } else if changes {
        2
    } else {
        0
    }
}

/// What `whittle plan show` was asked for.
#[derive(Debug)]
pub struct ShowOptions<'a> {
    pub format: PlanFormat,
    pub max_bytes: Option<usize>,
    /// Only these roles, in full.
    pub roles: &'a [String],
    /// Every role in full.
    pub full: bool,
}

/// `whittle plan show ID` of the state's plan `id`. The summary of a large plan is read from
/// its digest (`records::StoredPlanDigest`) without decoding the plan; anything else, and a
/// plan stored before digests were (it has none), is shown from the whole plan by
/// [`show_plan`], whose summary is the same.
pub fn show_stored_plan(
    state: &whittle_state::State,
    id: &str,
    options: &ShowOptions<'_>,
    terminal: Terminal,
) -> anyhow::Result<Output> {
    use whittle_planner::plan::summary;
    let summarised_format = matches!(options.format, PlanFormat::Text | PlanFormat::Json);
    if options.roles.is_empty() && !options.full && summarised_format {
        let digest = state
            .tree::<crate::records::StoredPlanDigest>()?
            .get(&id.to_owned())?;
        if let Some(crate::records::StoredPlanDigest(digest)) = digest
            && digest.roles.len() > summary::SUMMARISE_ABOVE
        {
            let summarised = digest.summary();
            let stdout = match options.format {
                PlanFormat::Json => json(&summarised)?,
                _ => summary::text(&summarised),
            };
            let role_failed = digest
                .roles
                .iter()
                .any(|r| r.status == whittle_planner::plan::RoleStatus::Error);
            let exit_code = plan_exit_code(&digest.accounts, role_failed, digest.has_changes());
            return Ok(Output { stdout, exit_code });
        }
    }
    show_plan(plan::load_plan(state, id)?, options, terminal)
}

/// `whittle plan show`: the roles asked for in full; else, in text and JSON, a plan of more
/// than `summary::SUMMARISE_ABOVE` roles as its summary (its full text or JSON would be
/// hundreds of megabytes for 10,000 roles); else the whole plan. The exit code is
/// [`render_plan`]'s, of the roles shown (a summary: of the whole plan).
pub fn show_plan(
    mut plan: whittle_planner::plan::Plan,
    options: &ShowOptions<'_>,
    terminal: Terminal,
) -> anyhow::Result<Output> {
    use whittle_planner::plan::summary;
    if !options.roles.is_empty() {
        let missing: Vec<&str> = options
            .roles
            .iter()
            .filter(|arn| !plan.roles.iter().any(|r| &r.role_arn == *arn))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "plan {} has no role {}: `whittle plan show {}` lists its roles",
                plan.id,
                missing.join(", "),
                plan.id
            );
        }
        plan.roles
            .retain(|r| options.roles.iter().any(|arn| arn == &r.role_arn));
    } else if !options.full && plan.roles.len() > summary::SUMMARISE_ABOVE {
        let summarised = summary::summarise(&plan);
        let stdout = match options.format {
            PlanFormat::Text => summary::text(&summarised),
            PlanFormat::Json => json(&summarised)?,
            _ => return render_plan(&plan, options.format, options.max_bytes, terminal),
        };
        let exit_code = render_plan_exit_code(&plan);
        return Ok(Output { stdout, exit_code });
    }
    render_plan(&plan, options.format, options.max_bytes, terminal)
}

/// Why a file could not be read as a plan (`whittle plan render FILE`).
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error(
        "cannot read {path}: {source}; give the path of a plan saved with `whittle plan --format json > plan.json`"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a whittle plan ({reason}); give the output of `whittle plan --format json` or `whittle plan show ID --format json` (docs/plan-schema.md)"
    )]
    NotAPlan { path: PathBuf, reason: String },
    #[error(
        "{path} is a plan of schema {schema}, newer than this whittle reads ({known}); render it with the whittle that made it"
    )]
    NewerSchema {
        path: PathBuf,
        schema: u64,
        known: u32,
    },
}

/// Reads a plan saved as JSON (`whittle plan --format json`, docs/plan-schema.md), for
/// rendering it again without AWS or the state: CI keeps the JSON and renders Markdown and
/// HTML from it.
pub fn read_plan_file(
    path: &std::path::Path,
) -> Result<whittle_planner::plan::Plan, PlanFileError> {
    use whittle_planner::plan::{PLAN_SCHEMA, Plan};
    let text = std::fs::read_to_string(path).map_err(|source| PlanFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let not_a_plan = |reason: String| PlanFileError::NotAPlan {
        path: path.to_owned(),
        reason,
    };
    // The schema first: a newer plan may not parse as this one, and saying so is the
    // useful answer. Only the number is decoded (the rest skipped): a plan of thousands of
    // roles is gigabytes, read once more below straight into the plan.
    #[derive(Deserialize)]
    struct Schema {
        schema: Option<u64>,
    }
    let Schema { schema } =
        serde_json::from_str(&text).map_err(|e| not_a_plan(format!("not a JSON object: {e}")))?;
    match schema {
        None => Err(not_a_plan("no `schema` number at the top level".to_owned())),
        Some(schema) if schema > u64::from(PLAN_SCHEMA) => Err(PlanFileError::NewerSchema {
            path: path.to_owned(),
            schema,
            known: PLAN_SCHEMA,
        }),
        Some(_) => serde_json::from_str::<Plan>(&text).map_err(|e| not_a_plan(e.to_string())),
    }
}

async fn apply_command<P: Ports>(
    engine: &Engine<P>,
    args: &ApplyCommand,
) -> anyhow::Result<Output> {
    let outcomes = plan::apply(engine, &args.plan_id, &args.roles, args.force).await?;
    let mut stdout = String::new();
    match args.format {
        OutputFormat::Text => {
            for o in &outcomes {
                writeln!(
                    stdout,
                    "{} {}: {}{}",
                    o.outcome.as_str(),
                    o.role_arn,
                    o.detail,
                    o.change_id
                        .as_ref()
                        .map(|id| format!(" (undo: whittle rollback {id})"))
                        .unwrap_or_default()
                )?;
            }
        }
        OutputFormat::Json => stdout = json(&outcomes)?,
    }
    Ok(Output {
        stdout,
        exit_code: u8::from(outcomes.iter().any(|o| o.outcome == ApplyOutcome::Failed)),
    })
}

async fn rollback_command<P: Ports>(
    engine: &Engine<P>,
    args: &RollbackCommand,
) -> anyhow::Result<Output> {
    let done = |stdout: String| Output {
        stdout,
        exit_code: 0,
    };
    // A running trial first (by id, or the role's); otherwise a change.
    let trial_id = args
        .change_id
        .as_deref()
        .filter(|id| id.starts_with("trial-"));
    if trial_id.is_some() || args.role.is_some() {
        if let Some(record) = trial::rollback(engine, trial_id, args.role.as_deref()).await? {
            return Ok(done(match args.format {
                OutputFormat::Text => format!(
                    "restored {} to its snapshot before trial {} (plan {})\n",
                    record.role_arn, record.id, record.plan_id
                ),
                OutputFormat::Json => json(&record)?,
            }));
        }
        if let Some(id) = trial_id {
            // Not running: already finished (a restart rolls an interrupted trial back).
            return match engine.state.tree::<TrialRecord>()?.get(&id.to_owned())? {
                Some(record) => Ok(done(format!(
                    "trial {id} is not running: it {} {}\n",
                    match record.status {
                        TrialStatus::RolledBack => "was already rolled back;",
                        TrialStatus::Passed => "passed;",
                        TrialStatus::Refused => "was refused;",
                        TrialStatus::Running | TrialStatus::Settling => "is running elsewhere;",
                        TrialStatus::PassedWithoutCompleteEvidence =>
                            "passed without complete evidence;",
                        TrialStatus::Inconclusive => "was inconclusive;",
                    },
                    record.reason.as_deref().unwrap_or("")
                ))),
                None => anyhow::bail!("no trial `{id}` (`whittle status` lists trials)"),
            };
        }
    }
    // A split, by its id, or the role's latest change when it is a split.
    let split_id = match (&args.change_id, &args.role) {
        (Some(id), _) => Some(id.clone()).filter(|id| id.starts_with("split-")),
        (None, Some(role)) => {
            let latest_change = engine
                .state
                .tree::<crate::records::ChangeRecord>()?
                .iter()
                .filter_map(|item| item.ok().map(|(_, c)| c))
                .filter(|c| &c.role_arn == role && c.status != ChangeStatus::RolledBack)
                .map(|c| c.started_at)
                .max();
            crate::switch::latest_applied(&engine.state, role)?
                .filter(|split| latest_change.is_none_or(|at| split.started_at > at))
                .map(|split| split.intent.id)
        }
        (None, None) => None,
    };
    if let Some(id) = split_id.as_deref() {
        let record = crate::switch::rollback(engine, id).await?;
        return Ok(done(match args.format {
            OutputFormat::Text => format!(
                "moved the functions of split {id} ({}) back to {} and deleted their roles (plan {})\n",
                record
                    .intent
                    .functions
                    .iter()
                    .map(|f| f.function.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                record.intent.shared_role_arn,
                record.intent.plan_id
            ),
            OutputFormat::Json => json(&record)?,
        }));
    }
    let change = plan::rollback(engine, args.change_id.as_deref(), args.role.as_deref()).await?;
    Ok(done(match args.format {
        OutputFormat::Text => format!(
            "restored {} to its policies before change {} (plan {})\n",
            change.role_arn, change.id, change.plan_id
        ),
        OutputFormat::Json => json(&change)?,
    }))
}

async fn rotate_command<P: Ports>(
    engine: &Engine<P>,
    args: &RotateCommand,
) -> anyhow::Result<Output> {
    let reports = rotate::run(engine, &args.secrets, args.now, args.dry_run).await?;
    let mut stdout = String::new();
    match args.format {
        OutputFormat::Text => {
            if reports.is_empty() {
                writeln!(
                    stdout,
                    "no rotations configured ([[rotation]] in {})",
                    engine.config.base_dir.display()
                )?;
            }
            for r in &reports {
                writeln!(
                    stdout,
                    "{} {} ({} {}, {}): {}{}{}",
                    r.outcome.as_str(),
                    r.name,
                    r.store.as_str(),
                    r.secret,
                    r.kind,
                    r.when,
                    r.version
                        .as_ref()
                        .map(|v| format!("; version {v}"))
                        .unwrap_or_default(),
                    r.reason
                        .as_ref()
                        .map(|v| format!("; {v}"))
                        .unwrap_or_default(),
                )?;
                for (i, step) in r.steps.iter().enumerate() {
                    writeln!(stdout, "    {}. {step}", i + 1)?;
                }
            }
        }
        OutputFormat::Json => stdout = json(&reports)?,
    }
    Ok(Output {
        stdout,
        exit_code: u8::from(reports.iter().any(|r| r.outcome.is_failure())),
    })
}

/// Compares a shown token with the daemon's in a time that does not depend on where they
/// differ, so that timing the answers cannot reveal the token byte by byte. (Its length is
/// not secret: always 32 hexadecimal digits.)
pub fn same_token(shown: &[u8], token: &[u8]) -> bool {
    if shown.len() != token.len() {
        return false;
    }
    let difference = shown
        .iter()
        .zip(token)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b));
    // Keeps the compiler from turning the fold into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::{TrialAccepted, same_token};

    #[test]
    fn a_settling_trial_is_not_a_verdict_yet() {
        use crate::records::{TrialRecord, TrialStatus};
        let record = |status: TrialStatus| TrialRecord {
            id: "trial-1".to_owned(),
            plan_id: "plan-1".to_owned(),
            role_arn: "arn:aws:iam::1:role/r".to_owned(),
            account: "staging".to_owned(),
            mode: whittle_playbooks::trial::Mode::Boundary,
            started_at: whittle_state::Timestamp(10),
            ended_at: None,
            status,
            reason: None,
            denied: Vec::new(),
            signal: None,
            settle_until: None,
            evidence: None,
            split: false,
        };
        let accepted = TrialAccepted {
            plan_id: "plan-1".to_owned(),
            roles: vec!["arn:aws:iam::1:role/r".to_owned()],
            splits: Vec::new(),
        };
        let since = whittle_state::Timestamp(0);
        for open in [TrialStatus::Running, TrialStatus::Settling] {
            assert!(super::verdicts(&[record(open)], &accepted, since).is_none());
        }
        for done in [TrialStatus::Passed, TrialStatus::Inconclusive] {
            assert!(super::verdicts(&[record(done)], &accepted, since).is_some());
        }
        // A role whose split is tried too: done only when both trials are.
        let both = TrialAccepted {
            splits: accepted.roles.clone(),
            ..accepted
        };
        let split = TrialRecord {
            split: true,
            ..record(TrialStatus::Passed)
        };
        assert!(super::verdicts(std::slice::from_ref(&split), &both, since).is_none());
        let all = super::verdicts(&[split, record(TrialStatus::Passed)], &both, since);
        assert_eq!(all.map(|v| v.len()), Some(2));
    }

    /// A plan of more than a hundred roles (the bench's shapes), stored as `whittle plan`
    /// stores it.
    fn stored_plan(state: &whittle_state::State) -> whittle_planner::plan::Plan {
        use whittle_planner::benchgen::{BenchRole, bench_roles, bench_settings};
        use whittle_planner::plan::{PLAN_SCHEMA, Plan, PlanStatus, RoleInput, plan_roles};
        const NOW_MS: i64 = 1_780_000_000_000;
        let catalog = whittle_planner::catalog::Catalog::embedded();
        let inputs = bench_roles(catalog, 105, NOW_MS, 3);
        let settings = bench_settings(NOW_MS);
        let role_inputs: Vec<RoleInput<'_>> = inputs.iter().map(BenchRole::input).collect();
        let plan = Plan {
            schema: PLAN_SCHEMA,
            id: "plan-1".to_owned(),
            created_at: "2026-12-03T10:00:00Z".to_owned(),
            catalog: catalog.version.to_string(),
            lookback_days: 90,
            status: PlanStatus::Proposed,
            accounts: Vec::new(),
            roles: plan_roles(&role_inputs, &settings, catalog),
        };
        crate::records::store_plan(state, plan).expect("stored")
    }

    /// `plan show` of a large stored plan prints the plan's own summary (text and JSON, and
    /// its exit code) from the digest stored with it, without reading the plan; a plan stored
    /// without a digest (by an older whittle) is summarised from the whole plan, the same.
    #[test]
    fn plan_show_summarises_a_stored_plan_from_its_digest() {
        use super::{PlanFormat, ShowOptions, Terminal, show_plan, show_stored_plan};
        use crate::records::{StoredPlan, StoredPlanDigest};
        let dir = tempfile::tempdir().expect("dir");
        let state = whittle_state::State::open(
            dir.path(),
            &whittle_state::LockOwner {
                pid: 1,
                status_address: None,
                token: None,
            },
        )
        .expect("open");
        let plan = stored_plan(&state);
        assert!(plan.roles.len() > whittle_planner::plan::summary::SUMMARISE_ABOVE);
        let terminal = Terminal {
            color: false,
            progress: false,
        };
        let options = |format| ShowOptions {
            format,
            max_bytes: None,
            roles: &[],
            full: false,
        };
        let formats = [PlanFormat::Text, PlanFormat::Json];
        let expected: Vec<_> = formats
            .iter()
            .map(|f| show_plan(plan.clone(), &options(*f), terminal).expect("shown"))
            .collect();
        assert!(expected[1].stdout.contains("\"summary\": true"));
        assert_eq!(expected[0].exit_code, 2);
        let shown = |state: &whittle_state::State| -> Vec<_> {
            formats
                .iter()
                .map(|f| show_stored_plan(state, "plan-1", &options(*f), terminal).expect("shown"))
                .map(|o| (o.stdout, o.exit_code))
                .collect()
        };
        let expected: Vec<_> = expected
            .into_iter()
            .map(|o| (o.stdout, o.exit_code))
            .collect();
        assert_eq!(shown(&state), expected);

        // Without its plan the digest still answers: the summary never decodes the plan.
        let plans = state.tree::<StoredPlan>().expect("tree");
        plans.remove(&plan.id).expect("removed");
        assert_eq!(shown(&state), expected);
        // A full view needs the plan.
        let full = ShowOptions {
            full: true,
            ..options(PlanFormat::Json)
        };
        assert!(show_stored_plan(&state, "plan-1", &full, terminal).is_err());

        // A plan stored before digests: summarised from the plan itself.
        plans
            .put(&plan.id, &StoredPlan(plan.clone()))
            .expect("stored");
        let digests = state.tree::<StoredPlanDigest>().expect("tree");
        digests.remove(&plan.id).expect("removed");
        assert_eq!(shown(&state), expected);

        // A change of the plan's status is a new write of the plan and of its digest.
        let mut applied = plan;
        applied.status = whittle_planner::plan::PlanStatus::Applied;
        crate::records::store_plan(&state, applied).expect("stored");
        plans.remove(&"plan-1".to_owned()).expect("removed");
        let json = &shown(&state)[1].0;
        assert!(json.contains("\"status\": \"applied\""), "{json}");
    }

    #[test]
    fn same_token_is_equality() {
        assert!(same_token(b"0123abcd", b"0123abcd"));
        assert!(!same_token(b"0123abce", b"0123abcd"));
        assert!(!same_token(b"1123abcd", b"0123abcd"));
        assert!(!same_token(b"0123abc", b"0123abcd"));
        assert!(!same_token(b"", b"0123abcd"));
    }
}
