//! `whittle daemon`: lock, reconcile, listen, schedule, and stop cleanly.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tracing::info;
use whittle_adapters::Adapters;
use whittle_engine::{Config, Engine};
use whittle_state::{LockOwner, State};

use crate::http;
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;

/// Runs the daemon until `shutdown` resolves. Everything that can be refused (the lock, the
/// listen address, the credentials) is checked before anything runs.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let dir = &config.state.dir.clone();
    info!(state = %dir.display(), "Daemon starting");
    // Ask first, open second: a directory held by another daemon is reported without
    // touching it or AWS.
    if let Some(owner) = State::lock_owner(dir)
        && owner.status_address.is_some()
    {
        return Err(whittle_state::StateError::Locked {
            dir: dir.clone(),
            owner: Some(owner),
        }
        .into());
    }
    let adapters = Adapters::new(&config).await?;
    for account in config.account_names() {
        let identity = whittle_engine::targets::check_identity(&adapters, &config, account)
            .await
            .with_context(|| format!("account `{account}`"))?;
        info!(account, arn = %identity.arn, account_id = %identity.account, "AWS credentials verified");
    }
    let mut shutdown = std::pin::pin!(shutdown);
    if requested(&mut shutdown).await {
        info!("Shutdown requested during start-up: the state was not opened, nothing runs");
        info!("Daemon stopped");
        return Ok(());
    }

    let listener = tokio::net::TcpListener::bind(config.status.listen.0)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} ([status] listen / --listen); pick a free port",
                config.status.listen
            )
        })?;
    let address = listener.local_addr()?;
    // 128 random bits: the lock file (0600) carries it to commands that may open the state.
    let token = format!("{:032x}", rand::random::<u128>());
    let owner = LockOwner {
        pid: std::process::id(),
        status_address: Some(address.to_string()),
        token: Some(token.clone()),
    };
    let state = open_waiting_for_commands(dir, &owner).await?;
    info!(state = %dir.display(), pid = owner.pid, "State opened and locked");
    let engine = Engine::new(config, state, adapters);

    let summary = whittle_engine::reconcile::reconcile(&engine).await?;
    info!(recovered = summary.recovered, "Reconcile pass done");
    whittle_engine::mine::fold_pending(&engine)?;
    if requested(&mut shutdown).await {
        info!("Shutdown requested during start-up: recovery done, nothing scheduled");
        engine.state.flush()?;
        info!("Daemon stopped");
        return Ok(());
    }

    let started_at = engine.now();
    let metrics = Arc::new(Metrics::new(
        i64::try_from(started_at.0 / 1000).unwrap_or_default(),
    ));
    let stopping = tokio_util::sync::CancellationToken::new();
    let app = http::AppState {
        started: Instant::now(),
        started_at,
        metrics: Arc::clone(&metrics),
        listen: address.to_string(),
        engine: engine.clone(),
        stopping: stopping.clone(),
        token,
    };
    let http_stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, app, http_stop.clone()));
    info!(%address, "Status endpoint listening (/healthz, /metrics, /status)");

    let jobs = engine.config.scheduled_jobs();
    let scheduler = Scheduler::start(jobs, &engine, metrics).await?;
    info!("Daemon started");

    shutdown.await;
    info!("Shutdown requested: no new runs; letting running steps finish");
    stopping.cancel();
    scheduler.shutdown().await;
    http_stop.cancel();
    server.await.context("status endpoint task")??;
    engine.state.flush()?;
    info!("Daemon stopped");
    Ok(())
}

/// How long the daemon waits for a short-lived command (`whittle status`) to release the state.
const COMMAND_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens the state, waiting while a short-lived command holds it: a `whittle status` run by a
/// monitoring script must never make a daemon (re)start fail. Another daemon, recognised by its
/// status endpoint in the lock file, is refused at once.
async fn open_waiting_for_commands(
    dir: &std::path::Path,
    owner: &LockOwner,
) -> anyhow::Result<State> {
    let deadline = Instant::now() + COMMAND_LOCK_WAIT;
    loop {
        match State::open(dir, owner) {
            Err(whittle_state::StateError::Locked {
                owner: Some(holder),
                ..
            }) if holder.status_address.is_none() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now (not when the future is first polled: until
/// then the default action would kill the process) and resolves on the first of them. Call
/// it inside a Tokio runtime.
pub fn signals() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let streams = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = streams else {
            // Without signal handlers the daemon could never stop cleanly; fall back to Ctrl-C.
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => info!(signal = "SIGTERM", "Signal received"),
            _ = int.recv() => info!(signal = "SIGINT", "Signal received"),
        }
    }
}

/// Whether `shutdown` has already resolved (a signal came while the daemon was starting).
async fn requested(shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
    tokio::select! {
        biased;
        () = shutdown.as_mut() => true,
        () = std::future::ready(()) => false,
    }
}
