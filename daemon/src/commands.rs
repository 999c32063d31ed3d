//! The commands that work on the state directory: `mine`, `plan`, `apply`, `rollback` and
//! `rotate`. They run in this process when no daemon holds the state; while a daemon does,
//! they are handed to it (`POST /command`) and it runs them with its own state, AWS clients
//! and configuration. Either way they produce the same output and exit code, so a user (or a
//! pipeline) sees no difference but a log line saying who ran it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cli::{
    ApplyArgs, MineArgs, OutputFormat, PlanArgs, PlanCommand, PlanFormat, RollbackArgs, RotateArgs,
};
use crate::jobs::JobContext;
use crate::{mine, plan, rotate, trial};

/// A command on the state, as the command line gave it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", content = "args", rename_all = "kebab-case")]
pub enum StateCommand {
    Mine(MineArgs),
    Plan(PlanArgs),
    Apply(ApplyArgs),
    Rollback(RollbackArgs),
    Rotate(RotateArgs),
}

impl StateCommand {
    /// Whether the command changes roles or secrets, and so first finishes any apply,
    /// rollback, trial or rotation a crashed whittle left unfinished.
    pub fn reconciles_first(&self) -> bool {
        match self {
            StateCommand::Apply(_) | StateCommand::Rollback(_) => true,
            StateCommand::Rotate(args) => !args.dry_run,
            StateCommand::Mine(_) | StateCommand::Plan(_) => false,
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

/// Runs `command` with `ctx`'s configuration, state and AWS clients. `cancel` stops long
/// work (mining) after the step under way, keeping what was done.
pub async fn run(
    ctx: &JobContext,
    command: &StateCommand,
    terminal: Terminal,
    cancel: &CancellationToken,
) -> anyhow::Result<Output> {
    match command {
        StateCommand::Mine(args) => mine_command(ctx, args, terminal, cancel).await,
        StateCommand::Plan(args) => plan_command(ctx, args, terminal).await,
        StateCommand::Apply(args) => apply_command(ctx, args).await,
        StateCommand::Rollback(args) => rollback_command(ctx, args).await,
        StateCommand::Rotate(args) => rotate_command(ctx, args).await,
    }
}

fn json(value: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

async fn mine_command(
    ctx: &JobContext,
    args: &MineArgs,
    terminal: Terminal,
    cancel: &CancellationToken,
) -> anyhow::Result<Output> {
    let mut config = (*ctx.config).clone();
    if let Some(days) = args.lookback_days {
        config.mining.lookback_days = days;
    }
    let ctx = JobContext {
        config: std::sync::Arc::new(config),
        aws: ctx.aws.clone(),
        state: std::sync::Arc::clone(&ctx.state),
    };
    let request = mine::MineRequest {
        from_dir: args.from_dir.clone(),
        only: args.sources.clone(),
        progress: !args.no_progress && args.format == OutputFormat::Text && terminal.progress,
    };
    let report = mine::mine(&ctx, &request, cancel).await?;
    Ok(Output {
        stdout: match args.format {
            OutputFormat::Text => mine::render_text(&report),
            OutputFormat::Json => json(&report)?,
        },
        exit_code: u8::from(report.nothing_read()),
    })
}

fn render_plan(
    plan: &whittle_planner::plan::Plan,
    format: PlanFormat,
    terminal: Terminal,
) -> anyhow::Result<Output> {
    use whittle_planner::plan::{RoleStatus, render};
    let stdout = match format {
        PlanFormat::Text => render::text(plan, terminal.color),
        PlanFormat::Json => json(plan)?,
        PlanFormat::Markdown => render::markdown(plan),
        PlanFormat::Terraform => render::terraform(plan),
        PlanFormat::Cloudformation => render::cloudformation(plan),
        PlanFormat::Serverless => render::serverless(plan),
    };
    // 1 when a role could not be planned, else 2 when anything would change, else 0.
    let exit_code = if plan.roles.iter().any(|r| r.status == RoleStatus::Error) {
        1
    } else if plan.has_changes() {
        2
    } else {
        0
    };
    Ok(Output { stdout, exit_code })
}

async fn plan_command(
    ctx: &JobContext,
    args: &PlanArgs,
    terminal: Terminal,
) -> anyhow::Result<Output> {
    if let Some(PlanCommand::Show { id, format }) = &args.show {
        let plan = plan::load_plan(&ctx.state, id)?;
        return render_plan(&plan, *format, terminal);
    }
    let plan = plan::make_plan(&ctx.config, &ctx.aws, &ctx.state, &args.roles).await?;
    render_plan(&plan, args.format, terminal)
}

async fn apply_command(ctx: &JobContext, args: &ApplyArgs) -> anyhow::Result<Output> {
    let outcomes = plan::apply(
        &ctx.config,
        &ctx.aws,
        &ctx.state,
        &args.plan_id,
        &args.roles,
        args.force,
    )
    .await?;
    let mut stdout = String::new();
    match args.format {
        OutputFormat::Text => {
            for o in &outcomes {
                writeln!(
                    stdout,
                    "{} {}: {}{}",
                    o.outcome,
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
        exit_code: u8::from(outcomes.iter().any(|o| o.outcome == "failed")),
    })
}

async fn rollback_command(ctx: &JobContext, args: &RollbackArgs) -> anyhow::Result<Output> {
    let (config, state) = (&ctx.config, &ctx.state);
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
        if let Some(record) =
            trial::rollback(config, &ctx.aws, state, trial_id, args.role.as_deref()).await?
        {
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
            return match state.tree::<trial::TrialRecord>()?.get(&id.to_owned())? {
                Some(record) => Ok(done(format!(
                    "trial {id} is not running: it {} {}\n",
                    match record.status {
                        trial::TrialStatus::RolledBack => "was already rolled back;",
                        trial::TrialStatus::Passed => "passed;",
                        trial::TrialStatus::Refused => "was refused;",
                        trial::TrialStatus::Running => "is running elsewhere;",
                    },
                    record.reason.as_deref().unwrap_or("")
                ))),
                None => anyhow::bail!("no trial `{id}` (`whittle status` lists trials)"),
            };
        }
    }
    let change = plan::rollback(
        &ctx.aws,
        state,
        args.change_id.as_deref(),
        args.role.as_deref(),
    )
    .await?;
    Ok(done(match args.format {
        OutputFormat::Text => format!(
            "restored {} to its policies before change {} (plan {})\n",
            change.role_arn, change.id, change.plan_id
        ),
        OutputFormat::Json => json(&change)?,
    }))
}

async fn rotate_command(ctx: &JobContext, args: &RotateArgs) -> anyhow::Result<Output> {
    let reports = rotate::run(
        &ctx.config,
        &ctx.aws,
        &ctx.state,
        &args.secrets,
        args.now,
        args.dry_run,
    )
    .await?;
    let mut stdout = String::new();
    match args.format {
        OutputFormat::Text => {
            if reports.is_empty() {
                writeln!(
                    stdout,
                    "no rotations configured ([[rotation]] in {})",
                    ctx.config.base_dir.display()
                )?;
            }
            for r in &reports {
                writeln!(
                    stdout,
                    "{} {} ({} {}, {}): {}{}{}",
                    r.outcome,
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
        exit_code: u8::from(
            reports
                .iter()
                .any(|r| matches!(r.outcome.as_str(), "parked" | "refused" | "failed")),
        ),
    })
}
