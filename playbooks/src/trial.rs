//! Trial playbooks: how a tightened policy is tried in staging before it reaches production.
//!
//! A trial applies a plan's proposal to a staging role, exercises the workload, watches for
//! failure signals for a window, and rolls back the moment one fires. The playbook says:
//! - `window`: how long to watch after the apply, and `detection_interval`: how often to look
//!   for denials (the worst-case time from a denial to the rollback, plus CloudTrail's own
//!   delivery delay);
//! - `mode`: `boundary` (the proposal becomes the role's permissions boundary, with a
//!   dead-man statement that allows everything again after `dead_man`, so permissions come
//!   back even if whittle dies and never restarts) or `replace` (the role's policies are
//!   replaced, as `whittle apply` does);
//! - `on_restart`: what the daemon does with a trial it finds unfinished: `rollback` or
//!   `resume`;
//! - `[exercise]`: run a command (its exit code is a signal), invoke a Lambda function with
//!   sample events (a function error is a signal), or neither (live traffic);
//! - `[signals]`: how many denials of the role fail the trial (default: any), and optionally
//!   a Lambda function whose `Errors` metric must not rise above its pre-trial baseline.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rotation::{PlaybookError, invalid, located_error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Boundary,
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnRestart {
    Rollback,
    Resume,
}

/// How the workload is exercised during the window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Exercise {
    /// A command (argv) run once after the apply; a non-zero exit fails the trial.
    pub command: Option<Vec<String>>,
    /// A Lambda function invoked with each payload after the apply; a function error fails it.
    pub invoke: Option<Invoke>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invoke {
    pub function: String,
    #[serde(default = "default_payloads")]
    pub payloads: Vec<String>,
}

fn default_payloads() -> Vec<String> {
    vec!["{}".to_owned()]
}

/// A trial playbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialPlaybook {
    pub window: Duration,
    pub detection_interval: Duration,
    pub mode: Mode,
    pub on_restart: OnRestart,
    pub dead_man: Duration,
    pub exercise: Exercise,
    /// Denials of the role (after the apply) that fail the trial: more than this many.
    pub max_denials: u64,
    /// The function's error metric, compared with its baseline before the apply.
    pub error_metric: Option<ErrorMetric>,
    /// How long after the window the watch waits, at most, for CloudTrail to show the whole
    /// window (an event of the account at or after the window's end in every watched source).
    pub max_settle: Duration,
    /// Whether a trial still passes (and marks its plan trialled) when `max_settle` ran out
    /// before the evidence was complete. Off by default: such a trial proves nothing.
    pub pass_without_complete_evidence: bool,
    /// Calls of the role (seen in CloudTrail since the apply) a trial needs to be conclusive.
    /// None: at least one call, or an exercise that ran to its end.
    pub min_role_calls: Option<u64>,
}

/// `[signals] error_metric`: the Lambda function's `Errors` (AWS/Lambda) since the apply may
/// exceed the count of the same length of time before it by at most `max_increase`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorMetric {
    pub function: String,
    #[serde(default)]
    pub max_increase: f64,
}

impl Eq for ErrorMetric {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrialFile {
    #[allow(dead_code)]
    kind: String,
    #[serde(default = "default_window")]
    window: String,
    #[serde(default = "default_interval")]
    detection_interval: String,
    #[serde(default = "default_mode")]
    mode: Mode,
    #[serde(default = "default_on_restart")]
    on_restart: OnRestart,
    #[serde(default = "default_dead_man")]
    dead_man: String,
    #[serde(default = "default_max_settle")]
    max_settle: String,
    #[serde(default)]
    pass_without_complete_evidence: bool,
    #[serde(default)]
    exercise: Option<ExerciseFile>,
    #[serde(default)]
    signals: Option<SignalsFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExerciseFile {
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    invoke: Option<Invoke>,
    #[serde(default = "default_exercise_timeout")]
    timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalsFile {
    #[serde(default)]
    max_denials: u64,
    #[serde(default)]
    error_metric: Option<ErrorMetric>,
    #[serde(default)]
    min_role_calls: Option<u64>,
}

fn default_window() -> String {
    "15m".to_owned()
}
fn default_interval() -> String {
    "30s".to_owned()
}
fn default_mode() -> Mode {
    Mode::Boundary
}
fn default_on_restart() -> OnRestart {
    OnRestart::Rollback
}
fn default_dead_man() -> String {
    "2h".to_owned()
}
fn default_max_settle() -> String {
    "20m".to_owned()
}

fn default_exercise_timeout() -> String {
    "10m".to_owned()
}

/// Reads and checks a trial playbook file.
pub fn load(path: &Path) -> Result<TrialPlaybook, PlaybookError> {
    let (shown, text) = crate::rotation::read(path)?;
    parse(&shown, &text)
}

pub fn parse(path: &str, text: &str) -> Result<TrialPlaybook, PlaybookError> {
    let f: TrialFile = toml::from_str(text).map_err(|e| located_error(path, text, &e))?;
    if f.kind != "trial" {
        return Err(invalid(
            path,
            format!(
                "kind = \"{}\": a trial playbook has kind = \"trial\"",
                f.kind
            ),
        ));
    }
    let duration = |key: &str, text: &str| {
        humantime::parse_duration(text)
            .map_err(|e| invalid(path, format!("{key} = \"{text}\": {e}")))
    };
    let window = duration("window", &f.window)?;
    let detection_interval = duration("detection_interval", &f.detection_interval)?;
    let dead_man = duration("dead_man", &f.dead_man)?;
    let max_settle = duration("max_settle", &f.max_settle)?;
    if detection_interval.is_zero() || detection_interval > window {
        return Err(invalid(
            path,
            "detection_interval must be above zero and at most the window".to_owned(),
        ));
    }
    if dead_man <= window {
        return Err(invalid(
            path,
            "dead_man must be longer than the window: permissions come back on their own only after the trial would have ended".to_owned(),
        ));
    }
    let exercise = match f.exercise {
        Some(e) => {
            if e.command.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(path, "[exercise] command is empty".to_owned()));
            }
            Exercise {
                command: e.command,
                invoke: e.invoke,
                timeout: duration("[exercise] timeout", &e.timeout)?,
            }
        }
        None => Exercise {
            command: None,
            invoke: None,
            timeout: Duration::from_secs(600),
        },
    };
    Ok(TrialPlaybook {
        window,
        detection_interval,
        mode: f.mode,
        on_restart: f.on_restart,
        dead_man,
        exercise,
        max_denials: f.signals.as_ref().map_or(0, |s| s.max_denials),
        min_role_calls: f.signals.as_ref().and_then(|s| s.min_role_calls),
        error_metric: f.signals.and_then(|s| s.error_metric),
        max_settle,
        pass_without_complete_evidence: f.pass_without_complete_evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_playbooks_parse_with_defaults_and_checks() {
        let p = parse(
            "t.toml",
            "kind = \"trial\"\nwindow = \"2m\"\ndetection_interval = \"5s\"\n[exercise]\ncommand = [\"./tests.sh\"]\n",
        )
        .expect("parses");
        assert_eq!(p.mode, Mode::Boundary);
        assert_eq!(p.on_restart, OnRestart::Rollback);
        assert_eq!(p.window, Duration::from_secs(120));
        assert_eq!(p.max_settle, Duration::from_secs(20 * 60));
        assert!(!p.pass_without_complete_evidence);
        assert_eq!(p.min_role_calls, None);
        assert_eq!(
            p.exercise.command.as_deref(),
            Some(&["./tests.sh".to_owned()][..])
        );
        for (text, expected) in [
            ("kind = \"random\"", "a trial playbook has kind = \"trial\""),
            (
                "kind = \"trial\"\nwindow = \"1m\"\ndead_man = \"30s\"",
                "dead_man must be longer",
            ),
            (
                "kind = \"trial\"\nwindow = \"1m\"\ndetection_interval = \"2m\"",
                "detection_interval must be",
            ),
            (
                "kind = \"trial\"\nmode = \"swap\"",
                "t.toml:2:8: unknown variant `swap`",
            ),
            (
                "kind = \"trial\"\n[exercise]\ncommand = []",
                "[exercise] command is empty",
            ),
        ] {
            let error = parse("t.toml", text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn the_shipped_trial_playbook_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("trial-default.toml");
        load(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}
