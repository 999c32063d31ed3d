//! The daemon's loopback HTTP endpoint: `/healthz` (JSON), `/metrics` (Prometheus text) and
//! `/status` (the full status report, which `whittle status` reads); and, while the daemon
//! holds the state, what commands hand to it: `POST /usage` (the usage report), `POST /trial`
//! and `GET /trials/{plan}`, and `POST /command` (mine, plan, apply, rollback, rotate).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use whittle_adapters::Adapters;
use whittle_engine::Engine;
use whittle_engine::commands::{CommandRequest, TrialAccepted, TrialRequest, UsageQuery};
use whittle_engine::records::TrialRecord;
use whittle_engine::status::{self, DaemonInfo};
use whittle_engine::{one_line, time};
use whittle_state::Timestamp;

use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct AppState {
    pub started: Instant,
    pub started_at: Timestamp,
    pub metrics: Arc<Metrics>,
    pub listen: String,
    /// The engine the daemon runs: the work handed to it (trials, commands) runs on it.
    pub engine: Engine<Adapters>,
    /// Cancelled when the daemon starts to stop: a handed-over command stops after its
    /// current step (mining: the chunk under way), as the scheduled jobs do.
    pub stopping: CancellationToken,
    /// What a request for work must carry in [`TOKEN_HEADER`] (also in the state's lock file).
    pub token: String,
}

/// The header carrying the daemon's token, which the lock file (0600) holds: reading the
/// status is open to any local process, handing work to the daemon only to those that may
/// open its state directory.
pub const TOKEN_HEADER: &str = "x-whittle-token";

impl AppState {
    fn report(&self) -> anyhow::Result<status::StatusReport> {
        status::build(
            &self.engine.config,
            &self.engine.state,
            Some(self.daemon_info()),
            self.engine.now(),
        )
    }

    fn daemon_info(&self) -> DaemonInfo {
        DaemonInfo {
            pid: std::process::id(),
            started_at: time::format(self.started_at),
            uptime_seconds: self.started.elapsed().as_secs(),
            listen: self.listen.clone(),
        }
    }
}

/// At most this many connections are served at once; more wait in the listen backlog until
/// one closes. The endpoint serves local monitoring and commands, never a crowd.
const MAX_CONNECTIONS: usize = 64;
/// A client must send a request's head (line and headers) within this time, or the
/// connection is closed: a half-sent request cannot hold a connection (or the daemon) open.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// And its body (at most [`BODY_LIMIT`]) within this time.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body taken (a handed-over command carries the configuration text);
/// axum's default limit for its extractors.
const BODY_LIMIT: usize = 2 * 1024 * 1024;
/// When the daemon stops, a connection with no request being handled is closed after this
/// grace; one whose request is being handled is let finish it (a handed-over command stops
/// after its current step) and is closed this long after.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub async fn serve(
    listener: tokio::net::TcpListener,
    app: AppState,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let work = Router::new()
        .route("/usage", axum::routing::post(usage_report))
        .route("/trial", axum::routing::post(start_trial))
        .route("/trials/{plan}", get(list_trials))
        .route("/command", axum::routing::post(run_command))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_token,
        ));
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status_report))
        .merge(work)
        .layer(axum::middleware::from_fn(read_body_in_time))
        .with_state(app);

    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot?,
        };
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "Status endpoint: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        connections.spawn(serve_connection(stream, router.clone(), stop.clone(), slot));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Serves one connection until it closes, or, once `stop` is cancelled, until it has had no
/// request in hand for [`SHUTDOWN_GRACE`].
async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let handling = Arc::new(AtomicUsize::new(0));
    let service = {
        let router = TowerToHyperService::new(router);
        let handling = Arc::clone(&handling);
        hyper::service::service_fn(move |request| {
            let handled = Handling::start(&handling);
            let answer = hyper::service::Service::call(&router, request);
            async move {
                let answer = answer.await;
                drop(handled);
                answer
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = http.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        () = stop.cancelled() => None,
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            // No further request on this connection: an idle one closes now; the others
            // get the grace, counted while no request is in hand.
            connection.as_mut().graceful_shutdown();
            const TICK: Duration = Duration::from_millis(100);
            let mut idle = Duration::ZERO;
            let mut ticks = tokio::time::interval(TICK);
            loop {
                tokio::select! {
                    ended = connection.as_mut() => break ended,
                    _ = ticks.tick() => {
                        if handling.load(Ordering::Acquire) == 0 {
                            idle += TICK;
                            if idle >= SHUTDOWN_GRACE {
                                tracing::debug!("Status endpoint: closed a connection at shutdown");
                                return;
                            }
                        } else {
                            idle = Duration::ZERO;
                        }
                    }
                }
            }
        }
    };
    if let Err(e) = ended {
        // A client that went away or was too slow: nothing for the daemon to act on.
        tracing::debug!(error = %e, "Status endpoint: connection ended with an error");
    }
}

/// Counts a request in hand on a connection for as long as it lives.
struct Handling(Arc<AtomicUsize>);

impl Handling {
    fn start(count: &Arc<AtomicUsize>) -> Handling {
        count.fetch_add(1, Ordering::AcqRel);
        Handling(Arc::clone(count))
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads a request's body, at most [`BODY_LIMIT`] bytes within [`BODY_READ_TIMEOUT`], before
/// anything handles it: a trickled or endless body cannot hold a handler (or the stop).
async fn read_body_in_time(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT));
    let body = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!(
                    "cannot read the request body (at most {BODY_LIMIT} bytes): {e}"
                ) })),
            )
                .into_response();
        }
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                Json(json!({ "error": format!(
                    "the request body did not arrive within {}",
                    humantime::format_duration(BODY_READ_TIMEOUT)
                ) })),
            )
                .into_response();
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(body),
    ))
    .await
}

/// Lets a request for work through only with the daemon's token.
async fn require_token(
    Extract(app): Extract<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let shown = request.headers().get(TOKEN_HEADER);
    if !shown.is_some_and(|shown| {
        whittle_engine::commands::same_token(shown.as_bytes(), app.token.as_bytes())
    }) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({ "error": format!(
                "the daemon (pid {}) takes work only from who can read its state directory's lock file; run the command as the user the daemon runs as",
                std::process::id()
            ) })),
        )
            .into_response();
    }
    next.run(request).await
}

/// Health: the jobs' last runs only. It reads the job history and nothing else (neither the
/// plans nor the usage store), so a monitor polling it costs the same with 10,000 roles.
async fn healthz(Extract(app): Extract<AppState>) -> Response {
    match status::jobs(&app.engine.config, &app.engine.state, app.engine.now()) {
        Ok(jobs) => {
            let jobs: Vec<_> = jobs
                .iter()
                .map(|j| json!({ "name": j.name, "last_run": j.last_run }))
                .collect();
            Json(json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": app.started.elapsed().as_secs(),
                "jobs": jobs,
            }))
            .into_response()
        }
        // The state cannot be read: the daemon is not healthy, and says why.
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "error", "error": one_line(&e) })),
        )
            .into_response(),
    }
}

async fn metrics(Extract(app): Extract<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn status_report(Extract(app): Extract<AppState>) -> Response {
    match app.report() {
        Ok(report) => Json(report).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, one_line(&e)).into_response(),
    }
}

async fn usage_report(Extract(app): Extract<AppState>, Json(query): Json<UsageQuery>) -> Response {
    let report = whittle_engine::usage::view(&app.engine, &query);
    match report {
        Ok(report) => Json(report).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": one_line(&e) })),
        )
            .into_response(),
    }
}

/// Starts a trial in the daemon (it holds the state, so a command cannot run one) and answers
/// at once with the roles it will try; `whittle status` shows the verdicts.
async fn start_trial(
    Extract(app): Extract<AppState>,
    Json(request): Json<TrialRequest>,
) -> Response {
    let engine = &app.engine;
    let checked = (|| {
        let playbook =
            whittle_engine::trial::playbook(&engine.config, request.playbook.as_deref())?;
        let plan = whittle_engine::plan::load_plan(&engine.state, &request.plan_id)?;
        let chosen = whittle_engine::trial::roles_to_try(&engine.config, &plan, &request.roles)?;
        anyhow::Ok((playbook, TrialAccepted::of(&request.plan_id, &chosen)))
    })();
    let (playbook, accepted) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": one_line(&e) })),
            )
                .into_response();
        }
    };
    let roles = accepted.all_roles();
    let engine = app.engine.clone();
    tokio::spawn(async move {
        // An interrupted trial is rolled back by the next start's reconcile pass.
        if let Err(e) =
            whittle_engine::trial::run(&engine, &request.plan_id, &roles, &playbook).await
        {
            tracing::error!(plan = %request.plan_id, error = %one_line(&e), "Trial failed to run");
        }
    });
    (StatusCode::ACCEPTED, Json(accepted)).into_response()
}

/// The trials of one plan (`whittle trial --wait` polls this).
async fn list_trials(
    Extract(app): Extract<AppState>,
    axum::extract::Path(plan): axum::extract::Path<String>,
) -> Response {
    let trials = app.engine.state.tree::<TrialRecord>().map(|tree| {
        tree.iter()
            .filter_map(|item| item.ok().map(|(_, t)| t))
            .filter(|t| t.plan_id == plan)
            .collect::<Vec<_>>()
    });
    match trials {
        Ok(trials) => Json(trials).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// Runs a handed-over command to its end and answers with its output and exit code. An error
/// is answered as `{"error": …}` with status 422, and the command prints it as its own.
async fn run_command(
    Extract(app): Extract<AppState>,
    Json(request): Json<CommandRequest>,
) -> Response {
    if request.config_text != app.engine.config.text {
        let message = format!(
            "the running daemon (pid {}) loaded a different configuration than this command read; it would run the command with its own. Restart the daemon to load the edited file (or run the command with the file the daemon loaded)",
            std::process::id()
        );
        return (StatusCode::CONFLICT, Json(json!({ "error": message }))).into_response();
    }
    tracing::info!(command = ?request.command, "Running a command handed over by whittle");
    let ran = whittle_engine::commands::run(
        &app.engine,
        &request.command,
        request.terminal,
        &app.stopping,
    )
    .await;
    match ran {
        Ok(output) => Json(output).into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": one_line(&e) })),
        )
            .into_response(),
    }
}
