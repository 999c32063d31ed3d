//! `whittle rotate` and the daemon's rotation jobs: which rotations are due, running the
//! state machine of `whittle_playbooks::rotation::machine` on the engine's ports, and the
//! record of each rotation's last outcome.

use serde::Serialize;
use tracing::info;
use whittle_playbooks::rotation::machine::{self, Outcome, Spec, Store};
use whittle_playbooks::rotation::{self, Playbook};
use whittle_state::{JournalEntry, State, Timestamp};

use crate::Engine;
use crate::config::RotationConfig;
use crate::guard::Subject;
use crate::notify::{AlertKind, alert};
use crate::ports::Ports;
use crate::records::{RotationOutcome, RotationRecord, StoredUsage};

/// Whether a secret id or parameter name from a CloudTrail event names the rotated secret: the
/// same name, or an ARN of it (a Secrets Manager ARN ends in `-` and six random characters).
fn names_secret(key: &str, store: Store, secret: &str) -> bool {
    if key == secret {
        return true;
    }
    match store {
        Store::SecretsManager => {
            let name_of = |s: &str| -> String {
                let Some((_, rest)) = s.split_once(":secret:") else {
                    return s.to_owned();
                };
                match rest.rsplit_once('-') {
                    Some((name, suffix))
                        if suffix.len() == 6
                            && suffix.chars().all(|c| c.is_ascii_alphanumeric()) =>
                    {
                        name.to_owned()
                    }
                    _ => rest.to_owned(),
                }
            };
            name_of(key) == name_of(secret)
        }
        Store::Ssm => {
            let bare = |s: &str| -> String {
                s.split_once(":parameter")
                    .map_or(s, |(_, rest)| rest)
                    .trim_start_matches('/')
                    .to_owned()
            };
            bare(key) == bare(secret)
        }
    }
}

/// The machine's view of one configured rotation, as of `now`: its playbook read and its
/// window from now. Its readers are looked up only when it runs ([`rotate_one`]): a due check
/// or a dry run needs no scan of the usage store.
pub fn spec<P: Ports>(engine: &Engine<P>, rotation: &RotationConfig) -> anyhow::Result<Spec> {
    let config = &*engine.config;
    let path = rotation.playbook_path(&config.base_dir);
    let playbook = rotation::load(&path).map_err(|e| anyhow::anyhow!("playbook {e}"))?;
    Ok(Spec {
        name: rotation.name.clone(),
        account: rotation.account.clone(),
        store: rotation.store,
        secret: rotation.secret.clone(),
        playbook,
        kms_key: rotation.kms_key.clone(),
        attempts: rotation.attempts,
        retry_delay: rotation.retry_delay.0,
        deadline: Some(engine.now().plus(rotation.window.0)),
        grace: rotation.grace.0,
        readers: None,
    })
}

/// When each principal the usage store saw read the secret in the look-back window last
/// read it, whittle's own identity excluded (it reads the secret while rotating); None when
/// the store cannot be read.
async fn readers<P: Ports>(
    engine: &Engine<P>,
    account: &str,
    store: Store,
    secret: &str,
) -> Option<Vec<Timestamp>> {
    let lookback_ms = u64::from(engine.config.mining.lookback_days) * 86_400_000;
    let cutoff = Timestamp(engine.now().0.saturating_sub(lookback_ms)).as_millis_i64();
    let me = crate::targets::identity(engine, account)
        .await
        .ok()
        .map(|identity| {
            whittle_planner::targets::role_arn_of_caller(&identity.arn).unwrap_or(identity.arn)
        });
    let tree = engine.state.tree::<StoredUsage>().ok()?;
    let mut readers = Vec::new();
    for item in tree.iter() {
        let (principal, usage) = item.ok()?;
        if me.as_deref() == Some(principal.as_str()) {
            continue;
        }
        if let Some(last) = usage
            .usage
            .secrets_read
            .iter()
            .filter(|(key, last)| **last >= cutoff && names_secret(key, store, secret))
            .map(|(_, last)| *last)
            .max()
        {
            readers.push(Timestamp::from_millis_i64(last));
        }
    }
    Some(readers)
}

/// How one rotation of a `whittle rotate` run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportOutcome {
    Rotated,
    Parked,
    Refused,
    Failed,
    NotDue,
    /// A dry run found nothing that would refuse it.
    WouldRotate,
}

impl ReportOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportOutcome::Rotated => "rotated",
            ReportOutcome::Parked => "parked",
            ReportOutcome::Refused => "refused",
            ReportOutcome::Failed => "failed",
            ReportOutcome::NotDue => "not-due",
            ReportOutcome::WouldRotate => "would-rotate",
        }
    }

    /// Whether the run failed for this rotation (exit code 1, an alerting job run).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            ReportOutcome::Parked | ReportOutcome::Refused | ReportOutcome::Failed
        )
    }
}

/// What one rotation did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RotationReport {
    pub name: String,
    pub secret: String,
    pub store: Store,
    pub kind: String,
    pub due: bool,
    /// Why it is (not) due.
    pub when: String,
    pub outcome: ReportOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Dry run: the steps a rotation would take.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
}

/// Whether a rotation is due now, and why.
pub fn due(
    state: &State,
    rotation: &RotationConfig,
    now: Timestamp,
) -> anyhow::Result<(bool, String)> {
    if machine::open_journal(state, &rotation.name)?.is_some() {
        return Ok((true, "an interrupted rotation is finished first".to_owned()));
    }
    let record = state.tree::<RotationRecord>()?.get(&rotation.name)?;
    let Some(last) = record.and_then(|r| r.last_rotated_at) else {
        return Ok((true, "never rotated by whittle".to_owned()));
    };
    match rotation.cron.next_after(crate::time::to_chrono(last)) {
        Some(next) if next <= crate::time::to_chrono(now) => Ok((
            true,
            format!(
                "due since {}",
                next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        )),
        Some(next) => Ok((
            false,
            format!(
                "next due {}",
                next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        )),
        None => Ok((false, "the cron expression has no next time".to_owned())),
    }
}

/// The steps a rotation of this kind and store takes, for a dry run.
fn steps(spec: &Spec) -> Vec<String> {
    let mut steps = Vec::new();
    if let Playbook::Native { timeout, poll } = &spec.playbook {
        return vec![
            "secretsmanager:RotateSecret (immediately), ClientRequestToken = the journal id: the secret's rotation Lambda makes the new value".to_owned(),
            format!(
                "follow it every {} until AWSCURRENT is on that version, for up to {}; otherwise remove the AWSPENDING it left and park",
                humantime::format_duration(*poll),
                humantime::format_duration(*timeout)
            ),
        ];
    }
    if let Playbook::Http(h) = &spec.playbook {
        steps.push(format!(
            "ask the provider for a new key: {} {} (authenticated with the current key), read it at `{}`",
            h.create.method, h.create.url, h.key_pointer
        ));
    }
    if let Playbook::IamAccessKey(keys) = &spec.playbook {
        steps.push(format!(
            "make room for a second key of user {} (an inactive key that is not in the secret is deleted; an active one stops the rotation), then iam:CreateAccessKey",
            keys.user
        ));
    }
    if let Some(g) = spec.playbook.generate() {
        steps.push(format!(
            "generate {} characters ({} different) with the {} random source{}",
            g.length,
            g.alphabet.len(),
            match g.source {
                rotation::RandomSource::Os => "OS",
                rotation::RandomSource::Kms => "KMS GenerateRandom",
            },
            g.json_field
                .as_ref()
                .map(|f| format!(", as field `{f}` of the JSON secret"))
                .unwrap_or_default()
        ));
    }
    steps.push(match spec.store {
        Store::SecretsManager => {
            "store it as a new version labelled AWSPENDING (token = the journal id)".to_owned()
        }
        Store::Ssm => format!(
            "keep it in the journal, encrypted with KMS key {}",
            spec.kms_key.as_deref().unwrap_or("?")
        ),
    });
    if let Playbook::Http(h) = &spec.playbook
        && let Some(test) = &h.test
    {
        steps.push(format!("test it: {} {}", test.method, test.url));
    } else if let Playbook::IamAccessKey(keys) = &spec.playbook {
        steps.push(format!(
            "test it: sts:GetCallerIdentity with the new key, retried for up to {}",
            humantime::format_duration(keys.propagation_timeout)
        ));
    } else if let Playbook::Command { install, test, .. } = &spec.playbook {
        steps.push(format!(
            "install it: run {install:?} with the value on stdin"
        ));
        if let Some(test) = test {
            steps.push(format!("test it: run {test:?} with the value on stdin"));
        }
    } else if spec.store == Store::SecretsManager {
        steps.push("test it: read the AWSPENDING version back".to_owned());
    }
    steps.push(match spec.store {
        Store::SecretsManager => "promote: move AWSCURRENT to it (AWSPREVIOUS follows), remove AWSPENDING".to_owned(),
        Store::Ssm => "promote: write it as a new SecureString version, label it `current` and the old one `previous`".to_owned(),
    });
    if let Playbook::Http(h) = &spec.playbook
        && let Some(revoke) = &h.revoke
    {
        steps.push(format!(
            "after the grace period ({}), revoke the old key: {} {}",
            humantime::format_duration(spec.grace),
            revoke.method,
            revoke.url
        ));
    }
    if let Playbook::IamAccessKey(keys) = &spec.playbook {
        steps.push(format!(
            "after the grace period ({}), and only when iam:GetAccessKeyLastUsed shows no use since promotion, deactivate the old key",
            humantime::format_duration(spec.grace)
        ));
        steps.push(format!(
            "delete the old key {} after it was deactivated",
            humantime::format_duration(keys.delete_after)
        ));
    }
    steps
}

/// Runs the selected rotations: those due (or all selected with `force`), or in a dry run
/// reports what would happen and changes nothing.
pub async fn run<P: Ports>(
    engine: &Engine<P>,
    selected: &[String],
    force: bool,
    dry_run: bool,
) -> anyhow::Result<Vec<RotationReport>> {
    let config = &*engine.config;
    for wanted in selected {
        if !config
            .rotation
            .iter()
            .any(|r| &r.name == wanted || &r.secret == wanted)
        {
            anyhow::bail!(
                "no [[rotation]] named `{wanted}` or for secret `{wanted}`; configured: {}",
                config
                    .rotation
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let mut reports = Vec::new();
    for rotation in &config.rotation {
        if !selected.is_empty()
            && !selected
                .iter()
                .any(|s| s == &rotation.name || s == &rotation.secret)
        {
            continue;
        }
        if !rotation.enabled && selected.is_empty() {
            continue;
        }
        // Wait for any other actor on this rotation (the upkeep job, a command) before
        // deciding whether it is due: after it, the answer may have changed.
        let _turn = match dry_run {
            true => None,
            false => Some(engine.turns.wait(Subject::Rotation(&rotation.name)).await),
        };
        let spec = spec(engine, rotation)?;
        let (is_due, when) = due(&engine.state, rotation, engine.now())?;
        let mut report = RotationReport {
            name: rotation.name.clone(),
            secret: rotation.secret.clone(),
            store: rotation.store,
            kind: spec.playbook.kind().to_owned(),
            due: is_due,
            when,
            outcome: ReportOutcome::NotDue,
            version: None,
            reason: None,
            steps: Vec::new(),
        };
        if !is_due && !force {
            reports.push(report);
            continue;
        }
        if dry_run {
            // Read-only checks of what would refuse the rotation.
            report.steps = steps(&spec);
            (report.outcome, report.reason) = match engine.ports.inspect(&spec).await {
                Ok(i) if i.native_rotation && spec.playbook.kind() != "native" => (
                    ReportOutcome::Refused,
                    Some("Secrets Manager's own rotation is enabled on this secret".to_owned()),
                ),
                Ok(i) if !i.pending_versions.is_empty() => (
                    ReportOutcome::Refused,
                    Some(format!(
                        "version {} already carries AWSPENDING",
                        i.pending_versions[0]
                    )),
                ),
                Ok(_) => (ReportOutcome::WouldRotate, None),
                Err(e) => (ReportOutcome::Failed, Some(e.to_string())),
            };
            reports.push(report);
            continue;
        }
        (report.outcome, report.version, report.reason) = match rotate_one(engine, &spec).await? {
            Outcome::Rotated { version, .. } => (ReportOutcome::Rotated, Some(version), None),
            Outcome::Waiting {
                version, reason, ..
            } => (ReportOutcome::Rotated, Some(version), Some(reason)),
            Outcome::Parked { step, reason, .. } => (
                ReportOutcome::Parked,
                None,
                Some(format!("{step}: {reason}")),
            ),
            Outcome::Refused { reason } => (ReportOutcome::Refused, None, Some(reason)),
        };
        reports.push(report);
    }
    Ok(reports)
}

/// Runs (or resumes) one rotation and records its outcome. The caller holds its turn.
pub async fn rotate_one<P: Ports>(engine: &Engine<P>, spec: &Spec) -> anyhow::Result<Outcome> {
    let state = &*engine.state;
    let spec = &Spec {
        readers: readers(engine, &spec.account, spec.store, &spec.secret).await,
        ..spec.clone()
    };
    let outcome = machine::rotate(&*engine.ports, state, spec).await?;
    let records = state.tree::<RotationRecord>()?;
    let previous = records.get(&spec.name)?;
    let now = engine.now();
    // The timetable counts from the promotion: a rotation that was only waiting to revoke
    // the old credential keeps its promotion time.
    let promoted_at = |journal: u64| -> anyhow::Result<Timestamp> {
        Ok(state
            .journal_get(whittle_state::JournalId(journal))?
            .and_then(|e| e.steps.iter().find(|s| s.name == "promoted").map(|s| s.at))
            .unwrap_or(now))
    };
    let unchanged = |last_outcome: RotationOutcome, reason: String| RotationRecord {
        last_attempt_at: now,
        last_rotated_at: previous.as_ref().and_then(|r| r.last_rotated_at),
        last_version: previous.as_ref().and_then(|r| r.last_version.clone()),
        last_outcome,
        reason: Some(reason),
    };
    let record = match &outcome {
        Outcome::Rotated { version, journal } => RotationRecord {
            last_attempt_at: now,
            last_rotated_at: Some(promoted_at(*journal)?),
            last_version: Some(version.clone()),
            last_outcome: RotationOutcome::Rotated,
            reason: None,
        },
        Outcome::Waiting {
            version,
            journal,
            reason,
        } => RotationRecord {
            last_attempt_at: now,
            last_rotated_at: Some(promoted_at(*journal)?),
            last_version: Some(version.clone()),
            last_outcome: RotationOutcome::Rotated,
            reason: Some(reason.clone()),
        },
        Outcome::Parked { step, reason, .. } => {
            alert(
                engine,
                AlertKind::RotationParked,
                &spec.name,
                &format!(
                    "{} ({}): parked at {step}, the current value stays in use: {reason}",
                    spec.secret,
                    spec.store.as_str()
                ),
            )
            .await;
            unchanged(RotationOutcome::Parked, format!("{step}: {reason}"))
        }
        Outcome::Refused { reason } => {
            alert(
                engine,
                AlertKind::RotationRefused,
                &spec.name,
                &format!(
                    "{} ({}): refused: {reason}",
                    spec.secret,
                    spec.store.as_str()
                ),
            )
            .await;
            unchanged(RotationOutcome::Refused, reason.clone())
        }
    };
    records.put(&spec.name, &record)?;
    state.flush()?;
    Ok(outcome)
}

/// The reconcile pass's recovery for rotation journals: the interrupted rotation is driven
/// to its end (rotated, or parked with the old value in use) before anything is scheduled.
pub async fn recover<P: Ports>(engine: &Engine<P>, entry: &JournalEntry) -> anyhow::Result<String> {
    let Some(rotation) = engine
        .config
        .rotation
        .iter()
        .find(|r| r.name == entry.subject)
    else {
        anyhow::bail!(
            "rotation `{}` has an unfinished journal but is no longer in the configuration; put its [[rotation]] back so whittle can finish it",
            entry.subject
        );
    };
    let _turn = engine.turns.wait(Subject::Rotation(&rotation.name)).await;
    let spec = spec(engine, rotation)?;
    let outcome = rotate_one(engine, &spec).await?;
    info!(rotation = %spec.name, ?outcome, "Interrupted rotation finished");
    Ok(match outcome {
        Outcome::Rotated { version, .. } => format!(
            "rotation {} finished: version {version} is current",
            spec.name
        ),
        Outcome::Waiting {
            version, reason, ..
        } => format!(
            "rotation {}: version {version} is current; {reason}",
            spec.name
        ),
        Outcome::Parked { reason, .. } => format!("rotation {} parked: {reason}", spec.name),
        Outcome::Refused { reason } => format!("rotation {} refused: {reason}", spec.name),
    })
}

/// The `rotation-upkeep` job: advances every unfinished rotation (revocations waiting for
/// their grace period, interrupted runs) between the rotations' own ticks.
pub async fn upkeep<P: Ports>(engine: &Engine<P>) -> anyhow::Result<String> {
    let mut advanced = Vec::new();
    for rotation in &engine.config.rotation {
        // A rotation whose own run is under way (retrying a step, say) is that run's to
        // finish; resuming its journal beside it would do each step twice.
        let Some(_turn) = engine.turns.try_take(Subject::Rotation(&rotation.name)) else {
            continue;
        };
        if machine::open_journal(&engine.state, &rotation.name)?.is_none() {
            continue;
        }
        let spec = spec(engine, rotation)?;
        let outcome = rotate_one(engine, &spec).await?;
        advanced.push(format!(
            "{}: {}",
            rotation.name,
            match outcome {
                Outcome::Rotated { .. } => "done".to_owned(),
                Outcome::Waiting { reason, .. } => reason,
                Outcome::Parked { reason, .. } => format!("parked: {reason}"),
                Outcome::Refused { reason } => format!("refused: {reason}"),
            }
        ));
    }
    Ok(if advanced.is_empty() {
        "no unfinished rotation".to_owned()
    } else {
        advanced.join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_secret_ids_match_names_and_arns() {
        let sm = |key: &str, secret: &str| names_secret(key, Store::SecretsManager, secret);
        assert!(sm("app/api-key", "app/api-key"));
        assert!(sm(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/api-key-AbC123",
            "app/api-key"
        ));
        assert!(!sm("app/api-key-2", "app/api-key"));
        assert!(!sm(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/other-AbC123",
            "app/api-key"
        ));
        assert!(sm(
            "app/api-key",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/api-key-AbC123"
        ));
        let ssm = |key: &str| names_secret(key, Store::Ssm, "/app/db-password");
        assert!(ssm("app/db-password"));
        assert!(ssm(
            "arn:aws:ssm:us-east-1:123456789012:parameter/app/db-password"
        ));
        assert!(!ssm("/app/db-password-old"));
    }
}
