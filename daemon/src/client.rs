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

/// Asks a running daemon for its report.
pub async fn fetch(daemon: &DaemonLink) -> anyhow::Result<StatusReport> {
    ask_daemon(daemon, "/status", None).await
}

/// Hands a command to the running daemon and waits, however long it takes, for its output.
pub async fn ask_daemon_to_run(
    daemon: &DaemonLink,
    request: serde_json::Value,
) -> anyhow::Result<crate::commands::Output> {
    request_daemon(daemon, "/command", Some(request), None).await
}

/// Asks the running daemon's loopback endpoint: GET `path`, or POST `body` as JSON.
pub async fn ask_daemon<T: serde::de::DeserializeOwned>(
    daemon: &DaemonLink,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<T> {
    request_daemon(daemon, path, body, Some(std::time::Duration::from_secs(10))).await
}

async fn request_daemon<T: serde::de::DeserializeOwned>(
    daemon: &DaemonLink,
    path: &str,
    body: Option<serde_json::Value>,
    timeout: Option<std::time::Duration>,
) -> anyhow::Result<T> {
    let address = &daemon.address;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<hyper::body::Bytes>>();
    let uri: hyper::Uri = format!("http://{address}{path}").parse()?;
    let mut request = match body {
        Some(_) => {
            hyper::Request::post(uri).header(hyper::header::CONTENT_TYPE, "application/json")
        }
        None => hyper::Request::get(uri),
    };
    if let Some(token) = &daemon.token {
        request = request.header(crate::http::TOKEN_HEADER, token);
    }
    let request = request.body(Full::new(match body {
        Some(body) => hyper::body::Bytes::from(body.to_string()),
        None => hyper::body::Bytes::new(),
    }))?;
    let sent = client.request(request);
    let answered = match timeout {
        Some(limit) => tokio::time::timeout(limit, sent).await.map_err(|_| {
            anyhow::anyhow!(
                "the daemon at {address} did not answer within {} s",
                limit.as_secs()
            )
        })?,
        None => sent.await,
    };
    let response = answered.map_err(|e| {
        anyhow::anyhow!("cannot reach the daemon's status endpoint at {address}: {e}")
    })?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
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

