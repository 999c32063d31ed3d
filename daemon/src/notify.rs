//! Alerts: every alert is an `ALERT` log line, and with `[notify] webhook_url` also a JSON POST.
//! Sending never fails the caller: an unreachable webhook is itself logged.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tracing::{error, warn};

use crate::config::Config;

/// One alert. It never holds a secret value: callers pass reasons built from redacted errors.
#[derive(Debug, Serialize)]
pub struct Alert<'a> {
    /// `rotation-parked`, `rotation-refused`, `job-failed`.
    pub kind: &'a str,
    /// The rotation or job name.
    pub subject: &'a str,
    pub message: &'a str,
    pub at: String,
    pub source: &'static str,
}

/// Logs the alert and posts it to the webhook, if one is configured.
pub async fn alert(config: &Config, kind: &str, subject: &str, message: &str) {
    error!(kind, subject, message, "ALERT");
    let Some(url) = &config.notify.webhook_url else {
        return;
    };
    let alert = Alert {
        kind,
        subject,
        message,
        at: crate::clock::format(crate::clock::now()),
        source: "whittle",
    };
    if let Err(e) = post(url, &alert).await {
        warn!(url = %url, error = %e, "Could not deliver an alert to the webhook");
    }
}

async fn post(url: &str, alert: &Alert<'_>) -> anyhow::Result<()> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(alert)?)))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 10 s"))??;
    if !response.status().is_success() {
        anyhow::bail!("HTTP {}", response.status());
    }
    Ok(())
}
