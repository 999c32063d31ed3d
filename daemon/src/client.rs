//! The client side of the hand-over protocol: how a `whittle` command reaches the daemon
//! that holds its state directory, over the loopback endpoint the lock file names, with the
//! token the lock file (0600) carries. The wire types are the engine's
//! (`whittle_engine::commands`); the requests go through the adapters' one HTTP client.

use std::time::Duration;

use whittle_adapters::Adapters;
use whittle_engine::commands::{CommandRequest, Output};
use whittle_engine::ports::{Web, WebRequest};
use whittle_engine::status::StatusReport;
use whittle_state::State;

use crate::http::TOKEN_HEADER;

/// A running daemon's status endpoint and token, as the lock file of its state names them.
#[derive(Debug, Clone)]
pub struct DaemonLink {
    pub pid: u32,
    pub address: String,
    pub token: Option<String>,
}

impl DaemonLink {
    /// The daemon holding `dir`, if one does.
    pub fn of(dir: &std::path::Path) -> Option<DaemonLink> {
        let owner = State::lock_owner(dir)?;
        Some(DaemonLink {
            pid: owner.pid,
            address: owner.status_address?,
            token: owner.token,
        })
    }
}

/// How long a quick question (status, usage, a trial's progress) may take.
const QUICK: Duration = Duration::from_secs(10);
/// A handed-over command runs to its end, however long: a day is "no limit" in practice.
const UNBOUNDED: Duration = Duration::from_secs(24 * 3600);

/// Asks a running daemon for its report.
pub async fn fetch(web: &Adapters, daemon: &DaemonLink) -> anyhow::Result<StatusReport> {
    ask_daemon(web, daemon, "/status", None).await
}

/// Hands a command to the running daemon and waits, however long it takes, for its output.
pub async fn ask_daemon_to_run(
    web: &Adapters,
    daemon: &DaemonLink,
    request: &CommandRequest,
) -> anyhow::Result<Output> {
    request_daemon(
        web,
        daemon,
        "/command",
        Some(serde_json::to_vec(request)?),
        UNBOUNDED,
    )
    .await
}

/// Asks the running daemon's loopback endpoint: GET `path`, or POST `body` as JSON.
pub async fn ask_daemon<T: serde::de::DeserializeOwned>(
    web: &Adapters,
    daemon: &DaemonLink,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<T> {
    request_daemon(web, daemon, path, body, QUICK).await
}

async fn request_daemon<T: serde::de::DeserializeOwned>(
    web: &Adapters,
    daemon: &DaemonLink,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> anyhow::Result<T> {
    let address = &daemon.address;
    let request = WebRequest {
        method: if body.is_some() { "POST" } else { "GET" },
        url: format!("http://{address}{path}"),
        headers: daemon
            .token
            .iter()
            .map(|token| (TOKEN_HEADER, token.clone()))
            .collect(),
        json_body: body,
        timeout,
    };
    let (status, body) = web.send(&request).await.map_err(|e| {
        anyhow::anyhow!("cannot reach the daemon's status endpoint at {address}: {e}")
    })?;
    if !(200..300).contains(&status) {
        // The daemon's own error, said as if the command had failed here.
        #[derive(serde::Deserialize)]
        struct Refusal {
            error: String,
        }
        if let Ok(refusal) = serde_json::from_slice::<Refusal>(&body) {
            anyhow::bail!("{}", refusal.error);
        }
        anyhow::bail!(
            "the daemon at {address} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(serde_json::from_slice(&body)?)
}
