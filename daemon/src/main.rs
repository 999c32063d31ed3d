//! `whittle`: a thin binary over the library crates. Parses the command line, loads the
//! configuration, wires the adapters into the engine (the one composition root), and
//! dispatches; errors become one message on stderr and exit code 1. Signals, the scheduler,
//! the loopback HTTP server and its client live here; the workflows live in the engine.

/// `print!` for command output, ending the command quietly when standard output is closed:
/// `out!(…)?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` for command output, ending the command quietly when standard output is closed:
/// `outln!(…)?`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod cli;
mod client;
mod daemon;
mod http;
mod logging;
mod metrics;
mod policy;
mod scheduler;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use whittle_adapters::Adapters;
use whittle_engine::commands::{
    CommandRequest, OutputFormat, StateCommand, Terminal, TrialAccepted, TrialRequest, UsageQuery,
};
use whittle_engine::config::{self, Config};
use whittle_engine::records::{TrialRecord, TrialStatus};
use whittle_engine::usage::UsageView;
use whittle_engine::{Engine, one_line};
use whittle_state::{LockOwner, State};

use crate::cli::{Cli, Command, IamDataCommand, PolicyCommand, StatusArgs, TrialArgs, UsageArgs};
use crate::client::DaemonLink;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // Whoever read the output stopped reading (`whittle status | head -1`): done, quietly.
        Err(error) if error.chain().any(|cause| cause.is::<StdoutClosed>()) => ExitCode::SUCCESS,
        Err(error) => {
            match error.downcast_ref::<config::ConfigError>() {
                // One located diagnostic per line, as compilers print them, then a count on
                // a line of its own.
                Some(config::ConfigError::Invalid { path, diagnostics }) => {
                    eprint!("{}", config_diagnostics(path, diagnostics));
                }
                _ => eprintln!("error: {}", one_line(&error)),
            }
            ExitCode::FAILURE
        }
    }
}

/// The lines `whittle` prints for an invalid configuration: `PATH:LINE:COLUMN: MESSAGE` per
/// problem, then `error: N problem(s) in PATH`; each line ends with a newline.
fn config_diagnostics(path: &std::path::Path, diagnostics: &[config::Diagnostic]) -> String {
    let path = printable(&path.display().to_string());
    let mut text = String::new();
    for d in diagnostics {
        let message = printable(d.message.trim());
        text.push_str(&format!("{path}:{}:{}: {message}\n", d.line, d.column));
    }
    text.push_str(&format!(
        "error: {} problem(s) in {path}\n",
        diagnostics.len()
    ));
    text
}

/// `text` with its control characters written as escapes (`\r`, `\u{1b}`): a line break,
/// carriage return or escape sequence that a key or value carries into a message would
/// otherwise split, overwrite or restyle the lines on a terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// What [`write_stdout`] returns once standard output is closed: the command ends quietly.
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output is closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes to standard output, as [`out!`] and [`outln!`] do. `print!` panics once the reader
/// has gone (EPIPE: `whittle status | head -1`); this returns [`StdoutClosed`] instead, which
/// `main` turns into a quiet exit 0 after everything opened (the state) was dropped.
fn write_stdout(text: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Version => {
            outln!("whittle {}", env!("CARGO_PKG_VERSION"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate => {
            let mut config = config::load(&cli.global.config)?;
            cli.global.apply(&mut config)?;
            outln!(
                "{}: valid ({} account(s), {} job(s), {} rotation(s))",
                cli.global.config.display(),
                config.aws.accounts.len(),
                config.jobs.iter().count(),
                config.rotation.len()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon(args) => {
            let mut config = load(&cli)?;
            args.apply(&mut config)?;
            let runtime = runtime()?;
            // The handlers are installed before the daemon opens anything, so a SIGTERM during
            // start-up ends it cleanly after the step in progress rather than killing it.
            let shutdown = {
                let _inside = runtime.enter();
                daemon::signals()
            };
            runtime.block_on(daemon::run(config, shutdown))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            let config = load(&cli)?;
            runtime()?.block_on(status_command(config, args))
        }
        Command::Mine(args) => state_command(&cli, args.to_command()),
        Command::Discover => state_command(&cli, StateCommand::Discover),
        Command::Usage(args) => {
            let config = load(&cli)?;
            runtime()?.block_on(usage_command(config, args))
        }
        Command::Plan(args) if args.own => {
            let config = load(&cli)?;
            runtime()?.block_on(plan_self_command(config))
        }
        Command::Plan(args) => {
            let output = match &args.show {
                // Offline: needs neither the configuration, the state nor AWS.
                Some(cli::PlanCommand::Render { file, format }) => {
                    if !args.roles.is_empty() {
                        anyhow::bail!(
                            "--role chooses the roles of a new plan; `whittle plan render FILE` renders the file whole"
                        );
                    }
                    let plan = whittle_engine::commands::read_plan_file(file)?;
                    whittle_engine::commands::render_plan(
                        &plan,
                        (*format).into(),
                        Some(args.max_bytes),
                        Terminal {
                            color: std::io::stdout().is_terminal(),
                            progress: false,
                        },
                    )?
                }
                _ => run_state_command(&cli, args.to_command()?)?,
            };
            match &args.output_dir {
                Some(dir) => plan_to_files(output, args.output_format(), dir),
                None => {
                    out!("{}", output.stdout)?;
                    Ok(ExitCode::from(output.exit_code))
                }
            }
        }
        Command::Apply(args) => state_command(&cli, args.to_command()),
        Command::Trial(args) => {
            let config = load(&cli)?;
            runtime()?.block_on(trial_command(config, args))
        }
        Command::Rollback(args) => state_command(&cli, args.to_command()),
        Command::Rotate(args) => state_command(&cli, args.to_command()),
        Command::SelfPolicy(args) => {
            let mut config = config::load(&cli.global.config)?;
            cli.global.apply(&mut config)?;
            self_policy_command(&config, args)
        }
        Command::Policy(PolicyCommand::Eval(args)) => {
            // Offline: needs neither the configuration nor AWS.
            policy::eval_command(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::IamData(command) => {
            let config = load(&cli)?;
            runtime()?.block_on(iam_data_command(config, command))
        }
    }
}

/// `whittle self-policy`: offline, from the configuration and its playbooks.
fn self_policy_command(config: &Config, args: &cli::SelfPolicyArgs) -> anyhow::Result<ExitCode> {
    use whittle_engine::self_policy;
    let playbooks = self_policy::Playbooks::load(config)?;
    let policies = match &args.account {
        Some(name) => vec![self_policy::for_account(config, &playbooks, name)?],
        None => self_policy::self_policy(config, &playbooks)?,
    };
    for note in self_policy::notes(config) {
        eprintln!("note: {note}");
    }
    let text = match args.format {
        cli::SelfPolicyFormat::Json => self_policy::render_json(&policies),
        cli::SelfPolicyFormat::Terraform => self_policy::render_terraform(&policies),
        cli::SelfPolicyFormat::Cloudformation => self_policy::render_cloudformation(&policies),
    };
    outln!("{}", text.trim_end())?;
    Ok(ExitCode::SUCCESS)
}

/// Opens the state directory for a command that runs to completion.
fn open_state(config: &Config) -> anyhow::Result<State> {
    Ok(State::open(&config.state.dir, &LockOwner::this_process())?)
}

/// The engine of a command that runs here: the state opened (and, for commands that change
/// roles or secrets, every unfinished journal a crashed whittle left finished first) and the
/// adapters wired in.
async fn engine(config: Config, reconcile_first: bool) -> anyhow::Result<Engine<Adapters>> {
    let state = open_state(&config)?;
    let adapters = Adapters::new(&config).await?;
    let engine = Engine::new(config, state, adapters);
    if reconcile_first {
        let summary = whittle_engine::reconcile::reconcile(&engine).await?;
        if summary.recovered > 0 {
            tracing::warn!(
                recovered = summary.recovered,
                "Finished interrupted work first"
            );
        }
    }
    Ok(engine)
}

/// `whittle plan --output-dir DIR`: each Markdown part (or the one output of another format)
/// in its own file, `plan-1.md`, `plan-2.md`, …, or the HTML report in `plan.html`; their
/// paths on stdout.
fn plan_to_files(
    output: whittle_engine::commands::Output,
    format: cli::PlanFormat,
    dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    if format == cli::PlanFormat::Html {
        let path = dir.join("plan.html");
        std::fs::write(&path, &output.stdout)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        outln!("{}", path.display())?;
        return Ok(ExitCode::from(output.exit_code));
    }
    for (i, part) in output
        .stdout
        .split(whittle_engine::commands::MARKDOWN_PART_SEPARATOR)
        .enumerate()
    {
        let path = dir.join(format!("plan-{}.md", i + 1));
        std::fs::write(&path, part)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        outln!("{}", path.display())?;
    }
    Ok(ExitCode::from(output.exit_code))
}

/// Runs a command on the state: here, or, while a daemon holds the state, in the daemon.
fn state_command(cli: &Cli, command: StateCommand) -> anyhow::Result<ExitCode> {
    let output = run_state_command(cli, command)?;
    out!("{}", output.stdout)?;
    Ok(ExitCode::from(output.exit_code))
}

fn run_state_command(
    cli: &Cli,
    command: StateCommand,
) -> anyhow::Result<whittle_engine::commands::Output> {
    let config = load(cli)?;
    let terminal = Terminal {
        color: std::io::stdout().is_terminal(),
        progress: std::io::stderr().is_terminal(),
    };
    runtime()?.block_on(async {
        if let Some(daemon) = DaemonLink::of(&config.state.dir) {
            tracing::info!(
                pid = daemon.pid,
                "The daemon holds the state: handing the command to it"
            );
            let web = Adapters::new(&config).await?;
            let request = CommandRequest {
                command,
                config_text: config.text.clone(),
                terminal,
            };
            return client::ask_daemon_to_run(&web, &daemon, &request).await;
        }
        let engine = engine(config, command.reconciles_first()).await?;
        // Ctrl-C stops mining after the chunk being decoded is committed: what was mined is
        // kept, and the next run reads the rest.
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        whittle_engine::commands::run(&engine, &command, terminal, &cancel).await
    })
}

async fn trial_command(config: Config, args: &TrialArgs) -> anyhow::Result<ExitCode> {
    let playbook = whittle_engine::trial::playbook(&config, args.playbook.as_deref())?;
    let records = if let Some(daemon) = DaemonLink::of(&config.state.dir) {
        // A daemon holds the state: it runs the trial.
        let web = Adapters::new(&config).await?;
        let requested_at = whittle_state::Clock::now(&web);
        let request = TrialRequest {
            plan_id: args.plan_id.clone(),
            roles: args.roles.clone(),
            playbook: args
                .playbook
                .as_ref()
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        };
        let accepted: TrialAccepted =
            client::ask_daemon(&web, &daemon, "/trial", Some(serde_json::to_vec(&request)?))
                .await?;
        if !args.wait {
            outln!(
                "handed to the daemon (pid {}): trial of plan {} on {}; `whittle status` shows the verdicts (or use --wait)",
                daemon.pid,
                accepted.plan_id,
                accepted.all_roles().join(", ")
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        // Poll until every role of the handed-over trial has a verdict.
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let path = format!("/trials/{}", accepted.plan_id);
            let trials: Vec<TrialRecord> = client::ask_daemon(&web, &daemon, &path, None).await?;
            if let Some(verdicts) =
                whittle_engine::commands::verdicts(&trials, &accepted, requested_at)
            {
                break verdicts;
            }
        }
    } else {
        let engine = engine(config, true).await?;
        whittle_engine::trial::run(&engine, &args.plan_id, &args.roles, &playbook).await?
    };
    match OutputFormat::from(args.format) {
        OutputFormat::Text => {
            for r in &records {
                outln!(
                    "{} {}{} (trial {}){}",
                    r.status.as_str(),
                    if r.split { "split of " } else { "" },
                    r.role_arn,
                    r.id,
                    r.reason
                        .as_ref()
                        .map(|x| format!(": {x}"))
                        .unwrap_or_default()
                )?;
                for d in &r.denied {
                    outln!(
                        "    denied {} at {} (event {})",
                        d.action,
                        d.time,
                        d.event_id
                    )?;
                }
            }
        }
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&records)?)?,
    }
    Ok(if records.iter().all(|r| r.status == TrialStatus::Passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn usage_command(config: Config, args: &UsageArgs) -> anyhow::Result<ExitCode> {
    let since = args
        .since
        .as_deref()
        .map(whittle_engine::usage::parse_since)
        .transpose()?
        .unwrap_or(0);
    let query = UsageQuery {
        roles: args.roles.clone(),
        since_ms: since,
        full: args.full,
        unmapped: args.unmapped,
    };
    // While a daemon holds the state, it answers; otherwise the state is read directly.
    let view: UsageView = match DaemonLink::of(&config.state.dir) {
        Some(daemon) => {
            let web = Adapters::new(&config).await?;
            client::ask_daemon(&web, &daemon, "/usage", Some(serde_json::to_vec(&query)?)).await?
        }
        None => {
            let engine = engine(config, false).await?;
            whittle_engine::usage::view(&engine, &query)?
        }
    };
    if args.unmapped {
        let UsageView::Report(report) = &view else {
            anyhow::bail!("the usage of unmapped calls came back as a summary");
        };
        let summary = whittle_engine::usage::unmapped(report);
        match OutputFormat::from(args.format) {
            OutputFormat::Text => out!("{}", whittle_engine::usage::render_unmapped(&summary))?,
            OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&summary)?)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    match OutputFormat::from(args.format) {
        OutputFormat::Text => out!("{}", whittle_engine::usage::render_view(&view))?,
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&view)?)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `whittle plan --self`: whittle's own policy against what its principal used.
async fn plan_self_command(config: Config) -> anyhow::Result<ExitCode> {
    use whittle_engine::ports::Iam as _;
    use whittle_engine::self_policy::{self, Holder};
    let playbooks = self_policy::Playbooks::load(&config)?;
    let policies = self_policy::self_policy(&config, &playbooks)?;
    let adapters = Adapters::new(&config).await?;
    // whittle's principal in each account, as the trail names it: the role behind an assumed
    // role's session, else the user (or root) itself.
    let mut principals = std::collections::BTreeMap::new();
    for account in config.account_names() {
        let identity = adapters
            .caller_identity(account)
            .await
            .map_err(|e| anyhow::anyhow!("account `{account}`: {e}"))?;
        let principal =
            whittle_planner::targets::role_arn_of_caller(&identity.arn).unwrap_or(identity.arn);
        principals.insert(account.to_owned(), principal);
    }
    let wanted: Vec<String> = principals.values().cloned().collect();
    let report: whittle_planner::usage::UsageReport = match DaemonLink::of(&config.state.dir) {
        Some(daemon) => {
            let query = UsageQuery {
                roles: wanted,
                since_ms: 0,
                full: false,
                unmapped: false,
            };
            client::ask_daemon(
                &adapters,
                &daemon,
                "/usage",
                Some(serde_json::to_vec(&query)?),
            )
            .await?
        }
        None => {
            let engine = engine(config.clone(), false).await?;
            whittle_engine::usage::build(&engine, &wanted, 0)?
        }
    };
    let mut plans = Vec::new();
    for policy in &policies {
        // The base credentials' policy (sts:AssumeRole) is used before any account's: its
        // calls are the base principal's, which the trail of the accounts does not show.
        let Holder::Account(account) = &policy.holder else {
            continue;
        };
        let principal = &principals[account];
        let used = report
            .roles
            .iter()
            .filter(|r| &r.arn == principal)
            .flat_map(|r| r.actions.iter().map(|a| (a.action.clone(), a.count)))
            .collect();
        plans.push(self_policy::compare(policy, principal, &used));
    }
    out!(
        "{}",
        self_policy::render_self_plans(&plans, report.lookback_days)
    )?;
    let unused = plans.iter().any(|p| p.statements.iter().any(|s| !s.used()));
    Ok(if unused {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

async fn iam_data_command(config: Config, command: &IamDataCommand) -> anyhow::Result<ExitCode> {
    match command {
        IamDataCommand::Info { format } => {
            let info = whittle_engine::iam_data::info(&config.state.dir)?;
            match OutputFormat::from(*format) {
                OutputFormat::Text => outln!(
                    "IAM action catalog: {} {} (updated {}), {} actions in {} services, {}\nevent -> action mapping: {}; then {} exception(s) for operations named unlike their action; then the operation's name",
                    info.source,
                    info.version,
                    info.updated_at,
                    info.actions,
                    info.services,
                    info.file.as_ref().map_or_else(
                        || "built into this binary".to_owned(),
                        |p| format!("from {}", p.display())
                    ),
                    info.operations,
                    info.exceptions
                )?,
                OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&info)?)?,
            }
        }
        IamDataCommand::Refresh { url, format } => {
            let engine = engine(config, false).await?;
            let report = whittle_engine::iam_data::refresh(&engine, url).await?;
            match OutputFormat::from(*format) {
                OutputFormat::Text => outln!(
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
                )?,
                OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?)?,
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn status_command(config: Config, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    use whittle_engine::status::{self, AwsCheck};
    let dir = &config.state.dir;
    let adapters = Adapters::new(&config).await?;
    let mut report = match State::lock_owner(dir) {
        Some(LockOwner {
            pid,
            status_address: Some(address),
            token,
        }) => {
            client::fetch(
                &adapters,
                &DaemonLink {
                    pid,
                    address,
                    token,
                },
            )
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
            status::build(&config, &state, None, whittle_state::Clock::now(&adapters))?
        }
    };
    let mut failed = false;
    if args.check_aws {
        let mut checks = Vec::new();
        for account in config.account_names() {
            let check =
                match whittle_engine::targets::check_identity(&adapters, &config, account).await {
                    Ok(identity) => AwsCheck {
                        account: account.to_owned(),
                        identity: Some(identity),
                        error: None,
                    },
                    Err(e) => {
                        failed = true;
                        AwsCheck {
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
    match OutputFormat::from(args.format) {
        OutputFormat::Text => out!("{}", status::render_text(&report))?,
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?)?,
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
