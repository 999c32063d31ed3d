//! The daemon's loopback HTTP endpoint: `/healthz` (JSON), `/metrics` (Prometheus text) and
//! `/status` (the full status report, which `whittle status` reads), and `POST /usage` (the
//! usage report, which `whittle usage` reads while the daemon holds the state).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use whittle_state::{State, Timestamp};

use crate::clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::status::{self, DaemonInfo};

#[derive(Debug, Clone)]
pub struct AppState {
    pub started: Instant,
    pub started_at: Timestamp,
    pub config: Arc<Config>,
    pub state: Arc<State>,
    pub metrics: Arc<Metrics>,
    pub listen: String,
}

impl AppState {
    fn daemon_info(&self) -> DaemonInfo {
        DaemonInfo {
            pid: std::process::id(),
            started_at: clock::format(self.started_at),
            uptime_seconds: self.started.elapsed().as_secs(),
            listen: self.listen.clone(),
        }
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    app: AppState,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status_report))
        .route("/usage", axum::routing::post(usage_report))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    Ok(())
}

async fn healthz(Extract(app): Extract<AppState>) -> Response {
    match status::build(&app.config, &app.state, Some(app.daemon_info())) {
        Ok(report) => {
            let jobs: Vec<_> = report
                .jobs
                .iter()
                .map(|j| json!({ "name": j.name, "last_run": j.last_run }))
                .collect();
            Json(json!({
                "status": "ok",
                "version": report.version,
                "uptime_seconds": report.daemon.as_ref().map(|d| d.uptime_seconds),
                "jobs": jobs,
            }))
            .into_response()
        }
        // The state cannot be read: the daemon is not healthy, and says why.
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "error", "error": crate::one_line(&e) })),
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
    match status::build(&app.config, &app.state, Some(app.daemon_info())) {
        Ok(report) => Json(report).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, crate::one_line(&e)).into_response(),
    }
}

/// What `whittle usage` asks for.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
pub struct UsageQuery {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub since_ms: i64,
}

async fn usage_report(Extract(app): Extract<AppState>, Json(query): Json<UsageQuery>) -> Response {
    let report = crate::mine::catalog(app.state.dir()).and_then(|catalog| {
        crate::usage::build(
            &app.state,
            &catalog,
            app.config.mining.lookback_days,
            &query.roles,
            query.since_ms,
        )
    });
    match report {
        Ok(report) => Json(report).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": crate::one_line(&e) })),
        )
            .into_response(),
    }
}
