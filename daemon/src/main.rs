//! `whittle`: a thin binary over the library crates. Parses the command line, loads the
//! configuration, and dispatches; errors become one message on stderr and exit code 1.

mod aws;
mod cli;
mod clock;
mod commands;
mod config;
mod daemon;
mod faults;
mod guard;
mod http;
mod iam_data;
mod jobs;
mod logging;
mod metrics;
mod mine;
mod notify;
mod plan;
mod policy;
mod reconcile;
mod records;
mod rotate;
mod scheduler;
mod status;
mod trial;
mod usage;

use std::process::ExitCode;

use clap::Parser;
use whittle_state::{LockOwner, State};

use std::io::IsTerminal;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cli::{
    Cli, Command, IamDataCommand, OutputFormat, PolicyCommand, StatusArgs, TrialArgs, UsageArgs,
};
use crate::commands::StateCommand;
use crate::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            match error.downcast_ref::<config::ConfigError>() {
                // One located diagnostic per line, as compilers print them, then a count.
                Some(invalid @ config::ConfigError::Invalid { path, diagnostics }) => {
                    eprintln!("{invalid}");
                    eprintln!(
                        "error: {} problem(s) in {}",
                        diagnostics.len(),
                        path.display()
                    );
                }
                _ => eprintln!("error: {}", one_line(&error)),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Version => {
            println!("whittle {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate => {
            let mut config = config::load(&cli.global.config)?;
            cli.global.apply(&mut config)?;
            println!(
                "{}: valid ({} account(s), {} job(s), {} rotation(s))",
                cli.global.config.display(),
                config.aws.accounts.len(),
                config.jobs.iter().count(),
                config.rotation.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon(args) => {
            let mut config = load(&cli)?;
            args.apply(&mut config)?;
            let registry = reconcile::Registry::standard(&config);
            runtime()?.block_on(daemon::run(config, registry, daemon::signals()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            let config = load(&cli)?;
            runtime()?.block_on(status_command(config, args))
        }
        Command::Mine(args) => {
            let mut args = args.clone();
            // The daemon may run it: a relative path must mean what it means here.
            args.from_dir = args
                .from_dir
                .map(|dir| std::fs::canonicalize(&dir).unwrap_or(dir));
            state_command(&cli, StateCommand::Mine(args))
        }
        Command::Usage(args) => {
            let config = load(&cli)?;
            usage_command(&config, args)
        }
        Command::Plan(args) => state_command(&cli, StateCommand::Plan(args.clone())),
        Command::Apply(args) => state_command(&cli, StateCommand::Apply(args.clone())),
        Command::Trial(args) => {
            let config = load(&cli)?;
            runtime()?.block_on(trial_command(config, args))
        }
        Command::Rollback(args) => state_command(&cli, StateCommand::Rollback(args.clone())),
        Command::Rotate(args) => state_command(&cli, StateCommand::Rotate(args.clone())),
        Command::Policy(PolicyCommand::Eval(args)) => {
            // Offline: needs neither the configuration nor AWS.
            policy::eval_command(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::IamData(command) => {
            let config = load(&cli)?;
            iam_data_command(&config, command)
        }
    }
}

/// Opens the state directory for a command that runs to completion.
fn open_state(config: &Config) -> anyhow::Result<State> {
    Ok(State::open(&config.state.dir, &LockOwner::this_process())?)
}

/// Runs a command on the state: here, or, while a daemon holds the state, in the daemon.
fn state_command(cli: &Cli, command: StateCommand) -> anyhow::Result<ExitCode> {
    let config = load(cli)?;
    let terminal = commands::Terminal {
        color: std::io::stdout().is_terminal(),
        progress: std::io::stderr().is_terminal(),
    };
    let output = runtime()?.block_on(async {
        if let Some(daemon) = status::DaemonLink::of(&config.state.dir) {
            tracing::info!(
                pid = daemon.pid,
                "The daemon holds the state: handing the command to it"
            );
            let request = serde_json::to_value(http::CommandRequest {
                command,
                config_text: config.text.clone(),
                terminal,
            })?;
            return status::ask_daemon_to_run(&daemon, request).await;
        }
        let state = if command.reconciles_first() {
            open_state_reconciled(&config).await?
        } else {
            open_state(&config)?
        };
        let aws = aws::Aws::new(&config).await?;
        let ctx = jobs::JobContext {
            config: Arc::new(config),
            aws,
            state: Arc::new(state),
        };
        // Ctrl-C stops mining after the chunk being decoded is committed: what was mined is
        // kept, and the next run reads the rest.
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        commands::run(&ctx, &command, terminal, &cancel).await
    })?;
    print!("{}", output.stdout);
    Ok(ExitCode::from(output.exit_code))
}

/// Opens the state for a command that changes roles, after finishing (by restoring the
/// snapshot) any apply or rollback a crashed whittle left unfinished.
async fn open_state_reconciled(config: &Config) -> anyhow::Result<State> {
    let state = open_state(config)?;
    let summary = reconcile::Registry::standard(config)
        .reconcile(&state)
        .await?;
    if summary.recovered > 0 {
        tracing::warn!(
            recovered = summary.recovered,
            "Finished interrupted work first"
        );
    }
    Ok(state)
}

async fn trial_command(config: Config, args: &TrialArgs) -> anyhow::Result<ExitCode> {
    let playbook = trial::playbook(&config, args.playbook.as_deref())?;
    let records = if let Some(daemon) = status::DaemonLink::of(&config.state.dir) {
        // A daemon holds the state: it runs the trial.
        let requested_at = clock::now();
        let request = serde_json::to_value(http::TrialRequest {
            plan_id: args.plan_id.clone(),
            roles: args.roles.clone(),
            playbook: args
                .playbook
                .as_ref()
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        })?;
        let accepted: http::TrialAccepted =
            status::ask_daemon(&daemon, "/trial", Some(request)).await?;
        if !args.wait {
            println!(
                "handed to the daemon (pid {}): trial of plan {} on {}; `whittle status` shows the verdicts (or use --wait)",
                daemon.pid,
                accepted.plan_id,
                accepted.roles.join(", ")
            );
            return Ok(ExitCode::SUCCESS);
        }
        wait_for_trials(&daemon, &accepted, requested_at).await?
    } else {
        let state = open_state_reconciled(&config).await?;
        let aws = aws::Aws::new(&config).await?;
        trial::run(&config, &aws, &state, &args.plan_id, &args.roles, &playbook).await?
    };
    match args.format {
        OutputFormat::Text => {
            for r in &records {
                println!(
                    "{} {} (trial {}){}",
                    r.status.as_str(),
                    r.role_arn,
                    r.id,
                    r.reason
                        .as_ref()
                        .map(|x| format!(": {x}"))
                        .unwrap_or_default()
                );
                for d in &r.denied {
                    println!(
                        "    denied {} at {} (event {})",
                        d.action, d.time, d.event_id
                    );
                }
            }
        }
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&records)?),
    }
    Ok(
        if records
            .iter()
            .all(|r| r.status == trial::TrialStatus::Passed)
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// Polls the daemon until every role of a handed-over trial has a verdict.
async fn wait_for_trials(
    daemon: &status::DaemonLink,
    accepted: &http::TrialAccepted,
    requested_at: whittle_state::Timestamp,
) -> anyhow::Result<Vec<trial::TrialRecord>> {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let done: Vec<trial::TrialRecord> =
            status::ask_daemon(daemon, &format!("/trials/{}", accepted.plan_id), None).await?;
        let verdicts: Vec<trial::TrialRecord> = accepted
            .roles
            .iter()
            .filter_map(|role| {
                done.iter()
                    .filter(|t| &t.role_arn == role && t.started_at >= requested_at)
                    .filter(|t| t.status != trial::TrialStatus::Running)
                    .max_by_key(|t| t.started_at)
                    .cloned()
            })
            .collect();
        if verdicts.len() == accepted.roles.len() {
            return Ok(verdicts);
        }
    }
}

fn usage_command(config: &Config, args: &UsageArgs) -> anyhow::Result<ExitCode> {
    let since = args
        .since
        .as_deref()
        .map(usage::parse_since)
        .transpose()?
        .unwrap_or(0);
    // While a daemon holds the state, it answers; otherwise the state is read directly.
    let report = match status::DaemonLink::of(&config.state.dir) {
        Some(daemon) => {
            let query = serde_json::to_value(http::UsageQuery {
                roles: args.roles.clone(),
                since_ms: since,
            })?;
            runtime()?.block_on(status::ask_daemon(&daemon, "/usage", Some(query)))?
        }
        None => {
            let state = open_state(config)?;
            let catalog = mine::catalog(state.dir())?;
            usage::build(
                &state,
                &catalog,
                config.mining.lookback_days,
                &args.roles,
                since,
            )?
        }
    };
    match args.format {
        OutputFormat::Text => print!("{}", usage::render_text(&report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn iam_data_command(config: &Config, command: &IamDataCommand) -> anyhow::Result<ExitCode> {
    match command {
        IamDataCommand::Info { format } => {
            let info = iam_data::info(&config.state.dir)?;
            match format {
                OutputFormat::Text => println!(
                    "IAM action catalog: {} {} (updated {}), {} actions in {} services, {}",
                    info.source,
                    info.version,
                    info.updated_at,
                    info.actions,
                    info.services,
                    info.file.as_ref().map_or_else(
                        || "built into this binary".to_owned(),
                        |p| format!("from {}", p.display())
                    )
                ),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&info)?),
            }
        }
        IamDataCommand::Refresh { url, format } => {
            let state = open_state(config)?;
            let report = runtime()?.block_on(iam_data::refresh(&state, url))?;
            match format {
                OutputFormat::Text => println!(
                    "installed {} {}: {} actions in {} services ({} added, {} removed{}{})",
                    report.info.source,
                    report.info.version,
                    report.info.actions,
                    report.info.services,
                    report.added,
                    report.removed,
                    if report.examples_added.is_empty() {
                        String::new()
                    } else {
                        format!("; added e.g. {}", report.examples_added.join(", "))
                    },
                    if report.examples_removed.is_empty() {
                        String::new()
                    } else {
                        format!("; removed e.g. {}", report.examples_removed.join(", "))
                    },
                ),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads the configuration with the flags and environment laid over it, and starts logging.
fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = config::load(&cli.global.config)?;
    cli.global.apply(&mut config)?;
    let verbosity = i8::try_from(cli.global.verbose).unwrap_or(i8::MAX)
        - i8::try_from(cli.global.quiet).unwrap_or(i8::MAX);
    logging::init(config.log.format, &config.log.level, verbosity)?;
    Ok(config)
}

/// An error and its causes as one message, skipping a cause whose text the message already
/// carries (error types that print their source would otherwise say it twice).
pub(crate) fn one_line(error: &anyhow::Error) -> String {
    let mut out = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn status_command(config: Config, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let dir = &config.state.dir;
    let mut report = match State::lock_owner(dir) {
        Some(LockOwner {
            pid,
            status_address: Some(address),
            token,
        }) => {
            status::fetch(&status::DaemonLink {
                pid,
                address,
                token,
            })
            .await?
        }
        Some(owner) => anyhow::bail!(
            "state directory {} is held by pid {} which serves no status endpoint; try again when it is done",
            dir.display(),
            owner.pid
        ),
        None => {
            if !dir.exists() {
                anyhow::bail!(
                    "state directory {} does not exist: whittle has not run with this configuration yet (or pass --state DIR)",
                    dir.display()
                );
            }
            let state = State::open(dir, &LockOwner::this_process())?;
            status::build(&config, &state, None)?
        }
    };
    let mut failed = false;
    if args.check_aws {
        let aws = aws::Aws::new(&config).await?;
        let mut checks = Vec::new();
        for account in aws.account_names() {
            let check = match aws.caller_identity(account).await {
                Ok(identity) => status::AwsCheck {
                    account: account.to_owned(),
                    identity: Some(identity),
                    error: None,
                },
                Err(e) => {
                    failed = true;
                    status::AwsCheck {
                        account: account.to_owned(),
                        identity: None,
                        error: Some(one_line(&e)),
                    }
                }
            };
            checks.push(check);
        }
        report.aws = Some(checks);
    }
    match args.format {
        OutputFormat::Text => print!("{}", status::render_text(&report)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
