//! Alerts: every alert is an `ALERT` log line, and with `[notify] webhook_url` also a JSON POST.
//! Sending never fails the caller: an unreachable webhook is itself logged.

use std::time::Duration;

use serde::Serialize;
use tracing::{error, warn};

use crate::Engine;
use crate::ports::{Ports, WebRequest};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    RotationParked,
    RotationRefused,
    TrialRolledBack,
    JobFailed,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::RotationParked => "rotation-parked",
            AlertKind::RotationRefused => "rotation-refused",
            AlertKind::TrialRolledBack => "trial-rolled-back",
            AlertKind::JobFailed => "job-failed",
        }
    }
}

/// One alert. It never holds a secret value: callers pass reasons built from redacted errors.
#[derive(Debug, Serialize)]
pub struct Alert<'a> {
    pub kind: AlertKind,
    /// The rotation, role or job.
    pub subject: &'a str,
    pub message: &'a str,
    pub at: String,
    pub source: &'static str,
}

/// Logs the alert and posts it to the webhook, if one is configured.
pub async fn alert<P: Ports>(engine: &Engine<P>, kind: AlertKind, subject: &str, message: &str) {
    error!(kind = kind.as_str(), subject, message, "ALERT");
    let Some(url) = &engine.config.notify.webhook_url else {
        return;
    };
    let alert = Alert {
        kind,
        subject,
        message,
        at: crate::time::format(engine.now()),
        source: "whittle",
    };
    let request = WebRequest {
        method: "POST",
        url: url.clone(),
        headers: Vec::new(),
        json_body: serde_json::to_vec(&alert).ok(),
        timeout: Duration::from_secs(10),
    };
    match engine.ports.send(&request).await {
        Ok((status, _)) if (200..300).contains(&status) => {}
        Ok((status, _)) => {
            warn!(url = %url, status, "The webhook refused an alert");
        }
        Err(error) => warn!(url = %url, %error, "Could not deliver an alert to the webhook"),
    }
}
