//! The rotation state machine, journaled before every side effect:
//!
//! ```text
//! begin (intent) -> pending-created -> [target-set] -> tested -> promoting -> promoted -> rotated
//!                          \____________ any failure after bounded retries ____________/-> parked
//! ```
//!
//! Every step is idempotent, so an interrupted rotation is finished by running the machine
//! again on its journal ([`rotate`] resumes an unfinished journal of the same rotation
//! before it would start a new one):
//! - Secrets Manager: the pending value is a version labelled `AWSPENDING` whose
//!   `ClientRequestToken` (its version id) is derived from the journal id, so a retried
//!   `PutSecretValue` is a no-op and a resumed rotation reads its value back by that id.
//!   Promotion moves `AWSCURRENT` to it (AWS moves `AWSPREVIOUS` to the old version) and
//!   removes `AWSPENDING`.
//! - SSM Parameter Store has no staging labels: the pending value lives only in the journal,
//!   encrypted with the rotation's KMS key (never plaintext on disk); the new parameter
//!   version is written at promotion, and labelled `current` (the old one `previous`).
//!
//! A failure that outlasts the retries before promotion *parks* the rotation: the pending
//! value is withdrawn, a `command` playbook re-installs the current value, and the old
//! credential stays the one in use. When the park cannot remove `AWSPENDING` (its outcome
//! says so), the next run of the same rotation recognises the label as its own (the version id
//! is the token of a finished journal of this rotation and secret), journals the clean-up,
//! removes it and rotates; any other `AWSPENDING` is refused untouched.

use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};
use whittle_state::{Clock, JournalEntry, JournalId, State, StateError, Timestamp};

use super::{Playbook, RandomSource, SecretValue, as_duration, bytes_needed, compose, draw};

/// The journal kind of rotations; the subject is the rotation's name.
pub const ROTATION_JOURNAL: &str = "rotation";

/// Where the secret lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Store {
    SecretsManager,
    Ssm,
}

impl Store {
    pub fn as_str(self) -> &'static str {
        match self {
            Store::SecretsManager => "secrets-manager",
            Store::Ssm => "ssm",
        }
    }
}

/// One configured rotation, resolved.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `[[rotation]]` name: the journal subject, so one secret never rotates twice at once.
    pub name: String,
    pub account: String,
    pub store: Store,
    /// The secret id (Secrets Manager) or parameter name (SSM).
    pub secret: String,
    pub playbook: Playbook,
    /// SSM: the SecureString key and the key that encrypts the pending value in the journal.
    pub kms_key: Option<String>,
    /// Attempts per step before the rotation is parked.
    pub attempts: u32,
    /// The first back-off; it doubles with each attempt.
    pub retry_delay: Duration,
    /// The end of the rotation window: no retry starts after it.
    pub deadline: Option<Timestamp>,
    /// Playbooks that revoke the old credential wait this long after promotion first.
    pub grace: Duration,
    /// When each known reader of the secret (principals the mined CloudTrail usage saw read
    /// it in the look-back window, whittle itself excluded) last read it; `None` when the
    /// usage store cannot say. The grace period before revoking the old credential ends early
    /// once every known reader has read the secret at or after the promotion.
    pub readers: Option<Vec<Timestamp>>,
}

/// What the store says about the secret now.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub current: SecretValue,
    /// The version in use: a Secrets Manager version id, an SSM version number.
    pub current_version: String,
    /// Secrets Manager rotates it with a Lambda of its own.
    pub native_rotation: bool,
    /// Versions labelled `AWSPENDING` (Secrets Manager).
    pub pending_versions: Vec<String>,
}

/// A rendered `http` playbook request. Its URL, headers and body may hold secret values, so
/// they are `SecretValue`s; `label` (the method and the URL *template*) is what errors show.
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub label: String,
    pub method: String,
    pub url: SecretValue,
    pub headers: Vec<(String, SecretValue)>,
    pub body: Option<SecretValue>,
    pub ca_file: Option<std::path::PathBuf>,
    pub timeout: Duration,
}

/// One access key of an IAM user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub active: bool,
}

/// An error from AWS or a script. Its text never holds a secret value (the ports redact).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PortError(pub String);

/// What the machine needs from the outside world (the time too, through [`Clock`]); the
/// daemon's adapters implement it with the AWS SDK.
pub trait Ports: Clock + Send + Sync {
    fn inspect(&self, spec: &Spec) -> impl Future<Output = Result<Inspection, PortError>> + Send;
    /// Secrets Manager: create the `AWSPENDING` version `token` (a no-op if it exists with
    /// this value). SSM: nothing (the pending value is in the journal).
    fn put_pending(
        &self,
        spec: &Spec,
        token: &str,
        value: &SecretValue,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Secrets Manager: the value of version `token`, if it exists.
    fn read_pending(
        &self,
        spec: &Spec,
        token: &str,
    ) -> impl Future<Output = Result<Option<SecretValue>, PortError>> + Send;
    /// Makes `value` (version `token`) the one in use; returns the version now current.
    /// Idempotent: promoting what is already current only fixes the labels.
    fn promote(
        &self,
        spec: &Spec,
        token: &str,
        value: &SecretValue,
    ) -> impl Future<Output = Result<String, PortError>> + Send;
    /// Secrets Manager: removes `AWSPENDING` from version `token` (a no-op if absent).
    fn clear_pending(
        &self,
        spec: &Spec,
        token: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    fn encrypt(
        &self,
        spec: &Spec,
        value: &SecretValue,
    ) -> impl Future<Output = Result<Vec<u8>, PortError>> + Send;
    fn decrypt(
        &self,
        spec: &Spec,
        blob: &[u8],
    ) -> impl Future<Output = Result<SecretValue, PortError>> + Send;
    /// KMS GenerateRandom in the secret's account.
    fn kms_random(
        &self,
        spec: &Spec,
        bytes: usize,
    ) -> impl Future<Output = Result<Vec<u8>, PortError>> + Send;
    /// Runs `argv` with `stdin` on its standard input; Ok on exit 0 within `timeout`.
    fn run(
        &self,
        argv: &[String],
        stdin: &SecretValue,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// The IAM user's access keys.
    fn access_keys(
        &self,
        spec: &Spec,
        user: &str,
    ) -> impl Future<Output = Result<Vec<AccessKey>, PortError>> + Send;
    /// A new access key: its id and secret (shown by IAM this once).
    fn create_access_key(
        &self,
        spec: &Spec,
        user: &str,
    ) -> impl Future<Output = Result<(String, SecretValue), PortError>> + Send;
    fn deactivate_access_key(
        &self,
        spec: &Spec,
        user: &str,
        id: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Deletes an access key; one already gone counts as deleted.
    fn delete_access_key(
        &self,
        spec: &Spec,
        user: &str,
        id: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// When IAM last saw the key used (GetAccessKeyLastUsed), if ever.
    fn access_key_last_used(
        &self,
        spec: &Spec,
        id: &str,
    ) -> impl Future<Output = Result<Option<Timestamp>, PortError>> + Send;
    /// Authenticates with the key pair (sts:GetCallerIdentity); Ok when it works.
    fn test_access_key(
        &self,
        spec: &Spec,
        id: &str,
        secret: &SecretValue,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Secrets Manager RotateSecret (immediately), with `token` as the ClientRequestToken.
    fn rotate_native(
        &self,
        spec: &Spec,
        token: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// One HTTPS request (TLS verified); returns the status and the body.
    fn http(
        &self,
        call: &HttpCall,
    ) -> impl Future<Output = Result<(u16, Vec<u8>), PortError>> + Send;
    /// Called right after each durable journal write, named `rotation:STEP` (crash tests).
    fn after_step(&self, point: &str);
}

/// How a run of the machine ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// The new value is current (and the old credential revoked, where the playbook does).
    Rotated { version: String, journal: u64 },
    /// The new value is current; revoking the old credential waits (the grace period, a
    /// recent use of the old key, or a failed revocation step that is retried later).
    Waiting {
        version: String,
        journal: u64,
        reason: String,
    },
    /// Given up before promotion; the old value is still the one in use.
    Parked {
        step: String,
        reason: String,
        journal: u64,
    },
    /// Not started: the secret is not in a state whittle may rotate (nothing was changed).
    Refused { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("rotation journal {journal}: {reason}")]
    Journal { journal: u64, reason: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    secret: String,
    store: Store,
    account: String,
    kind: String,
    previous_version: String,
}

/// The Secrets Manager `ClientRequestToken` (32 to 64 characters) of a journal.
pub fn token_of(journal: JournalId) -> String {
    format!("whittle-rotation-{:024}", journal.0)
}

/// The journal whose [`token_of`] `version` is, if it has that exact form.
fn journal_of_token(version: &str) -> Option<JournalId> {
    let id = JournalId(version.strip_prefix("whittle-rotation-")?.parse().ok()?);
    (token_of(id) == version).then_some(id)
}

/// The journal of `spec`'s rotation whose `AWSPENDING` label `version` is and that is
/// finished: a label its park could not remove, safe to remove now. Anything else (not a
/// whittle token, no such journal, another rotation's, another secret's, one still open) is
/// `None`: a rotation in progress that whittle must not touch.
fn stale_own_pending(
    state: &State,
    spec: &Spec,
    version: &str,
) -> Result<Option<JournalId>, StateError> {
    let Some(id) = journal_of_token(version) else {
        return Ok(None);
    };
    Ok(state.journal_get(id)?.and_then(|entry| {
        (entry.kind == ROTATION_JOURNAL
            && entry.subject == spec.name
            && entry.intent["secret"].as_str() == Some(spec.secret.as_str())
            && entry.finished.is_some())
        .then_some(id)
    }))
}

/// The journal step that precedes removing `AWSPENDING` left on whittle's own version by a
/// finished rotation (its detail names the versions), and the one that records it done.
const CLEARING_STALE: &str = "clearing-stale-pending";
const STALE_CLEARED: &str = "stale-pending-cleared";
/// The step a parked clean-up names.
const CLEAR_STALE_STEP: &str = "clear stale pending";

/// The unfinished rotation journal of `name`, if one exists.
pub fn open_journal(state: &State, name: &str) -> Result<Option<JournalEntry>, StateError> {
    Ok(state
        .journal_unfinished()?
        .into_iter()
        .find(|e| e.kind == ROTATION_JOURNAL && e.subject == name))
}

/// Rotates the secret of `spec`, or finishes its interrupted rotation.
pub async fn rotate<P: Ports>(
    ports: &P,
    state: &State,
    spec: &Spec,
) -> Result<Outcome, MachineError> {
    let entry = match open_journal(state, &spec.name)? {
        Some(entry) => {
            info!(rotation = %spec.name, journal = %entry.id, step = ?entry.last_step(), "Resuming an interrupted rotation");
            entry
        }
        None => {
            let inspection = match retry(ports, spec, "inspect", || ports.inspect(spec)).await {
                Ok(i) => i,
                Err(e) => {
                    return Ok(Outcome::Refused {
                        reason: format!("cannot read the secret: {e}"),
                    });
                }
            };
            let native = matches!(spec.playbook, Playbook::Native { .. });
            if inspection.native_rotation && !native {
                return Ok(Outcome::Refused {
                    reason: "Secrets Manager's own rotation is enabled on this secret; turn it off or use a `native` playbook".to_owned(),
                });
            }
            // A version of whittle's own whose park could not remove its AWSPENDING label is
            // removed below, once this rotation's journal is begun; any other is refused.
            let mut stale = Vec::new();
            for version in &inspection.pending_versions {
                match stale_own_pending(state, spec, version)? {
                    Some(journal) => stale.push((version.clone(), journal)),
                    None => {
                        return Ok(Outcome::Refused {
                            reason: format!(
                                "version {version} already carries AWSPENDING (another rotation is in progress); finish or cancel it first"
                            ),
                        });
                    }
                }
            }
            let intent = Intent {
                secret: spec.secret.clone(),
                store: spec.store,
                account: spec.account.clone(),
                kind: spec.playbook.kind().to_owned(),
                previous_version: inspection.current_version.clone(),
            };
            let id = state.journal_begin(
                ROTATION_JOURNAL,
                &spec.name,
                serde_json::to_value(&intent).map_err(|e| MachineError::Journal {
                    journal: 0,
                    reason: e.to_string(),
                })?,
                ports.now(),
            )?;
            ports.after_step("rotation:begin");
            let entry = state
                .journal_get(id)?
                .ok_or_else(|| MachineError::Journal {
                    journal: id.0,
                    reason: "vanished right after it was written".to_owned(),
                })?;
            let mut run = Run {
                ports,
                state,
                spec,
                entry,
            };
            if !stale.is_empty() {
                info!(rotation = %spec.name, versions = ?stale, "Removing AWSPENDING left on whittle's own version by an earlier rotation");
                run.step(
                    CLEARING_STALE,
                    json!({
                        "versions": stale.iter().map(|(v, _)| v).collect::<Vec<_>>(),
                        "journals": stale.iter().map(|(_, j)| j.0).collect::<Vec<_>>(),
                    }),
                )?;
            }
            return run.drive().await;
        }
    };
    Run {
        ports,
        state,
        spec,
        entry,
    }
    .drive()
    .await
}

/// Retries `call` with doubling back-off; the error names the step.
async fn retry<P: Ports, T, F, Fut>(
    ports: &P,
    spec: &Spec,
    what: &str,
    mut call: F,
) -> Result<T, PortError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PortError>>,
{
    let mut delay = spec.retry_delay;
    let attempts = spec.attempts.max(1);
    let mut last = PortError(String::new());
    for attempt in 1..=attempts {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                warn!(rotation = %spec.name, step = what, attempt, attempts, error = %e, "Rotation step failed");
                last = e;
                let window_left = spec.deadline.is_none_or(|end| {
                    ports.now().0 + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX) < end.0
                });
                if attempt < attempts && window_left {
                    ports.sleep(delay).await;
                    delay = delay.saturating_mul(2);
                } else if !window_left {
                    return Err(PortError(format!(
                        "{what} failed and the rotation window closed before another attempt: {}",
                        last.0
                    )));
                }
            }
        }
    }
    Err(PortError(format!(
        "{what} failed {attempts} time(s) (back-off from {}): {}",
        as_duration(spec.retry_delay),
        last.0
    )))
}

struct Run<'a, P: Ports> {
    ports: &'a P,
    state: &'a State,
    spec: &'a Spec,
    entry: JournalEntry,
}

/// Where a run left the rotation when no step failed.
enum Progress {
    Done(String),
    Waiting { version: String, reason: String },
}

/// A step that failed for good, and why.
struct Failure {
    step: &'static str,
    reason: String,
}

impl<P: Ports> Run<'_, P> {
    fn done(&self, step: &str) -> bool {
        self.entry.steps.iter().any(|s| s.name == step)
    }

    fn step(&mut self, name: &str, detail: serde_json::Value) -> Result<(), MachineError> {
        self.state
            .journal_step(self.entry.id, name, detail, self.ports.now())?;
        self.ports.after_step(&format!("rotation:{name}"));
        if let Some(entry) = self.state.journal_get(self.entry.id)? {
            self.entry = entry;
        }
        Ok(())
    }

    async fn drive(mut self) -> Result<Outcome, MachineError> {
        let token = token_of(self.entry.id);
        match self.advance(&token).await? {
            Ok(Progress::Waiting { version, reason }) => {
                info!(rotation = %self.spec.name, secret = %self.spec.secret, %reason, "New value in use; revoking the old credential waits");
                Ok(Outcome::Waiting {
                    version,
                    journal: self.entry.id.0,
                    reason,
                })
            }
            Ok(Progress::Done(version)) => {
                self.state.journal_finish(
                    self.entry.id,
                    "rotated",
                    json!({ "version": version }),
                    self.ports.now(),
                )?;
                info!(rotation = %self.spec.name, secret = %self.spec.secret, %version, "Secret rotated");
                Ok(Outcome::Rotated {
                    version,
                    journal: self.entry.id.0,
                })
            }
            Err(failure) => self.park(&token, failure).await,
        }
    }

    /// Runs the remaining steps; the inner error is a step that failed for good.
    async fn advance(&mut self, token: &str) -> Result<Result<Progress, Failure>, MachineError> {
        let (ports, spec) = (self.ports, self.spec);
        // 0. AWSPENDING left by an earlier park of this rotation goes first.
        if self.done(CLEARING_STALE) && !self.done(STALE_CLEARED) {
            if let Err(failure) = self.clear_stale().await {
                return Ok(Err(failure));
            }
            self.step(STALE_CLEARED, json!(null))?;
        }
        if let Playbook::Native { timeout, poll } = &spec.playbook {
            return self.native(token, *timeout, *poll).await;
        }
        // 1. The pending value: made once, then always read back from where it is kept.
        let pending = if self.done("pending-created") {
            match self.recover_pending(token).await {
                Ok(v) => v,
                Err(reason) => {
                    return Ok(Err(Failure {
                        step: "pending-created",
                        reason,
                    }));
                }
            }
        } else {
            let existing = match spec.store {
                // A crash after PutSecretValue but before the journal step left it there.
                Store::SecretsManager => {
                    match retry(ports, spec, "read pending", || {
                        ports.read_pending(spec, token)
                    })
                    .await
                    {
                        Ok(v) => v,
                        Err(e) => {
                            return Ok(Err(Failure {
                                step: "create pending",
                                reason: e.0,
                            }));
                        }
                    }
                }
                Store::Ssm => None,
            };
            let value = match existing {
                Some(v) => v,
                None => {
                    let made = match &spec.playbook {
                        Playbook::IamAccessKey(keys) => self.create_key(keys).await?,
                        Playbook::Http(h) => self.create_http_key(h).await?,
                        _ => self.generate().await,
                    };
                    match made {
                        Ok(v) => v,
                        Err(reason) => {
                            return Ok(Err(Failure {
                                step: "create pending",
                                reason,
                            }));
                        }
                    }
                }
            };
            let detail = match spec.store {
                Store::SecretsManager => {
                    if let Err(e) = retry(ports, spec, "create pending", || {
                        ports.put_pending(spec, token, &value)
                    })
                    .await
                    {
                        return Ok(Err(Failure {
                            step: "create pending",
                            reason: e.0,
                        }));
                    }
                    json!(null)
                }
                Store::Ssm => {
                    match retry(ports, spec, "encrypt pending", || {
                        ports.encrypt(spec, &value)
                    })
                    .await
                    {
                        Ok(blob) => json!({
                            "ciphertext": base64::engine::general_purpose::STANDARD.encode(blob)
                        }),
                        Err(e) => {
                            return Ok(Err(Failure {
                                step: "create pending",
                                reason: e.0,
                            }));
                        }
                    }
                }
            };
            self.step("pending-created", detail)?;
            value
        };

        // 2. Set it where it is used (command playbooks).
        if let Playbook::Command {
            install, timeout, ..
        } = &spec.playbook
            && !self.done("target-set")
        {
            if let Err(e) = retry(ports, spec, "install", || {
                ports.run(install, &pending, *timeout)
            })
            .await
            {
                return Ok(Err(Failure {
                    step: "set on target",
                    reason: e.0,
                }));
            }
            self.step("target-set", json!(null))?;
        }

        // 3. Test it.
        if !self.done("tested") {
            let tested = match &spec.playbook {
                Playbook::IamAccessKey(keys) => self.test_key(keys, &pending).await,
                Playbook::Http(h) if h.test.is_some() => self.test_http_key(h, &pending).await,
                Playbook::Command {
                    test: Some(test),
                    timeout,
                    ..
                } => retry(ports, spec, "test", || ports.run(test, &pending, *timeout)).await,
                // The store holds exactly what was made.
                _ if spec.store == Store::SecretsManager => {
                    match retry(ports, spec, "test", || ports.read_pending(spec, token)).await {
                        Ok(Some(v)) if v == pending => Ok(()),
                        Ok(_) => Err(PortError(
                            "the AWSPENDING version does not hold the value whittle wrote"
                                .to_owned(),
                        )),
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(()),
            };
            if let Err(e) = tested {
                return Ok(Err(Failure {
                    step: "test",
                    reason: e.0,
                }));
            }
            self.step("tested", json!(null))?;
        }

        // 4. Promote.
        if !self.done("promoting") {
            self.step("promoting", json!(null))?;
        }
        let version = if let Some(step) = self.entry.steps.iter().find(|s| s.name == "promoted") {
            step.detail["version"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        } else {
            match retry(ports, spec, "promote", || {
                ports.promote(spec, token, &pending)
            })
            .await
            {
                Ok(version) => {
                    self.step("promoted", json!({ "version": version }))?;
                    version
                }
                Err(e) => {
                    return Ok(Err(Failure {
                        step: "promote",
                        reason: e.0,
                    }));
                }
            }
        };

        // 5. Revoke the old credential, for the playbooks that have one.
        match &spec.playbook {
            Playbook::IamAccessKey(keys) => {
                return Ok(Ok(self.revoke_old_key(keys, version).await?));
            }
            Playbook::Http(h) if h.revoke.is_some() => {
                return Ok(Ok(self.revoke_old_http_key(h, &pending, version).await?));
            }
            _ => {}
        }
        Ok(Ok(Progress::Done(version)))
    }

    /// Removes `AWSPENDING` from the versions the `clearing-stale-pending` step names.
    async fn clear_stale(&self) -> Result<(), Failure> {
        let (ports, spec) = (self.ports, self.spec);
        let versions: Vec<String> = self
            .entry
            .steps
            .iter()
            .find(|s| s.name == CLEARING_STALE)
            .and_then(|s| s.detail["versions"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        for version in versions {
            if let Err(e) = retry(ports, spec, "clear pending", || {
                ports.clear_pending(spec, &version)
            })
            .await
            {
                return Err(Failure {
                    step: CLEAR_STALE_STEP,
                    reason: format!(
                        "AWSPENDING could not be removed from version {version}, left by an earlier rotation that is over ({e}); the next run removes it"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Runs Secrets Manager's own rotation and follows it until AWSCURRENT is on `token`.
    async fn native(
        &mut self,
        token: &str,
        timeout: Duration,
        poll: Duration,
    ) -> Result<Result<Progress, Failure>, MachineError> {
        let (ports, spec) = (self.ports, self.spec);
        if !self.done("requested") {
            if !self.done("rotating") {
                self.step("rotating", json!(null))?;
            }
            if let Err(e) = retry(ports, spec, "secretsmanager:RotateSecret", || {
                ports.rotate_native(spec, token)
            })
            .await
            {
                return Ok(Err(Failure {
                    step: "rotate",
                    reason: e.0,
                }));
            }
            self.step("requested", json!(null))?;
        }
        let started = self.at("requested").unwrap_or_else(|| ports.now());
        let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX / 2);
        loop {
            match retry(ports, spec, "inspect", || ports.inspect(spec)).await {
                Ok(now) if now.current_version == token => {
                    self.step("promoted", json!({ "version": token }))?;
                    return Ok(Ok(Progress::Done(token.to_owned())));
                }
                Ok(_) => {}
                Err(e) => {
                    return Ok(Err(Failure {
                        step: "follow",
                        reason: e.0,
                    }));
                }
            }
            if ports.now().0.saturating_sub(started.0) >= limit {
                return Ok(Err(Failure {
                    step: "follow",
                    reason: format!(
                        "the secret's rotation Lambda did not make version {token} current within {}",
                        as_duration(timeout)
                    ),
                }));
            }
            ports.sleep(poll).await;
        }
    }

    /// Whether revoking the old credential must still wait: the end of the grace period as
    /// text, unless it is over or every known reader of the secret ([`Spec::readers`]) has
    /// read it since the promotion, which ends the grace period early.
    fn grace_wait(&self) -> Option<String> {
        let (ports, spec) = (self.ports, self.spec);
        let now = ports.now();
        let promoted = self.at("promoted").unwrap_or(now);
        let end = Timestamp(
            promoted
                .0
                .saturating_add(u64::try_from(spec.grace.as_millis()).unwrap_or(u64::MAX / 2)),
        );
        if now >= end {
            return None;
        }
        // No known reader proves nothing: the grace period then runs to its end.
        match spec.readers.as_deref() {
            Some(readers)
                if !readers.is_empty() && readers.iter().all(|read| *read >= promoted) =>
            {
                info!(rotation = %spec.name, readers = readers.len(), "Every known consumer read the secret since promotion; the grace period ends early");
                None
            }
            _ => Some(super::format_ms(end)),
        }
    }

    /// When a step was written.
    fn at(&self, step: &str) -> Option<Timestamp> {
        self.entry
            .steps
            .iter()
            .find(|s| s.name == step)
            .map(|s| s.at)
    }

    /// Deactivates the old key once the grace period is over and IAM shows it unused since
    /// promotion, then deletes it `delete_after` later. Anything short of that is `Waiting`.
    async fn revoke_old_key(
        &mut self,
        keys: &super::AccessKeyPlaybook,
        version: String,
    ) -> Result<Progress, MachineError> {
        let (ports, spec) = (self.ports, self.spec);
        let old = self
            .entry
            .steps
            .iter()
            .find(|s| s.name == "creating-key")
            .and_then(|s| s.detail["old_key"].as_str())
            .unwrap_or_default()
            .to_owned();
        let wait = |reason: String| Progress::Waiting {
            version: version.clone(),
            reason,
        };
        let now = ports.now();
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2);
        if !old.is_empty() && !self.done("deactivated") {
            let promoted = self.at("promoted").unwrap_or(now);
            if let Some(until) = self.grace_wait() {
                return Ok(wait(format!(
                    "the old key {old} is deactivated after the grace period, at {until}"
                )));
            }
            match ports.access_key_last_used(spec, &old).await {
                Ok(Some(used)) if used >= promoted => {
                    return Ok(wait(format!(
                        "the old key {old} was used at {} after the new key was promoted; it stays active until its users move to the new key",
                        super::format_ms(used)
                    )));
                }
                Ok(_) => {}
                Err(e) => return Ok(wait(format!("cannot check the old key's last use: {e}"))),
            }
            self.step("deactivating", json!({ "key": old }))?;
            if let Err(e) = ports.deactivate_access_key(spec, &keys.user, &old).await {
                return Ok(wait(format!(
                    "deactivating the old key {old} failed (retried later): {e}"
                )));
            }
            self.step("deactivated", json!({ "key": old }))?;
        }
        if !old.is_empty() && !self.done("deleted") {
            let now = ports.now();
            let deactivated = self.at("deactivated").unwrap_or(now);
            let delete_at = Timestamp(deactivated.0.saturating_add(millis(keys.delete_after)));
            if now < delete_at {
                return Ok(wait(format!(
                    "the old key {old} is inactive and is deleted at {}",
                    super::format_ms(delete_at)
                )));
            }
            // Never the last known-good key: the new one was tested and is current.
            self.step("deleting", json!({ "key": old }))?;
            if let Err(e) = ports.delete_access_key(spec, &keys.user, &old).await {
                return Ok(wait(format!(
                    "deleting the old key {old} failed (retried later): {e}"
                )));
            }
            self.step("deleted", json!({ "key": old }))?;
        }
        Ok(Progress::Done(version))
    }

    /// The pending value of a rotation past `pending-created`.
    async fn recover_pending(&self, token: &str) -> Result<SecretValue, String> {
        let (ports, spec) = (self.ports, self.spec);
        match spec.store {
            Store::SecretsManager => {
                match retry(ports, spec, "read pending", || {
                    ports.read_pending(spec, token)
                })
                .await
                {
                    Ok(Some(v)) => Ok(v),
                    Ok(None) => Err(format!(
                        "the pending version {token} is gone from the secret (deleted by hand?)"
                    )),
                    Err(e) => Err(e.0),
                }
            }
            Store::Ssm => {
                let blob = self
                    .entry
                    .steps
                    .iter()
                    .find(|s| s.name == "pending-created")
                    .and_then(|s| s.detail["ciphertext"].as_str())
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .ok_or_else(|| "the journal holds no encrypted pending value".to_owned())?;
                retry(ports, spec, "decrypt pending", || {
                    ports.decrypt(spec, &blob)
                })
                .await
                .map_err(|e| e.0)
            }
        }
    }

    /// Makes room for a second key (deleting an *inactive* stray key, never an active one),
    /// journals the intent, and creates the new key; on a resume after a crash between
    /// CreateAccessKey and the journal step, the key whose secret was lost is deleted first.
    async fn create_key(
        &mut self,
        keys: &super::AccessKeyPlaybook,
    ) -> Result<Result<SecretValue, String>, MachineError> {
        let (ports, spec) = (self.ports, self.spec);
        let current = match retry(ports, spec, "inspect", || ports.inspect(spec)).await {
            Ok(i) => i.current,
            Err(e) => return Ok(Err(e.0)),
        };
        let current_id = match serde_json::from_str::<serde_json::Value>(current.expose())
            .ok()
            .and_then(|v| v[&keys.id_field].as_str().map(str::to_owned))
        {
            Some(id) => id,
            None => {
                return Ok(Err(format!(
                    "the secret is not a JSON object with a `{}` field (the key pair of user {})",
                    keys.id_field, keys.user
                )));
            }
        };
        let listed = match retry(ports, spec, "iam:ListAccessKeys", || {
            ports.access_keys(spec, &keys.user)
        })
        .await
        {
            Ok(listed) => listed,
            Err(e) => return Ok(Err(e.0)),
        };
        let others: Vec<AccessKey> = listed.into_iter().filter(|k| k.id != current_id).collect();
        if self.done("creating-key") {
            // Interrupted after CreateAccessKey: that key's secret is lost, delete it.
            for orphan in others {
                self.step("deleting-orphan", json!({ "key": orphan.id }))?;
                if let Err(e) = ports.delete_access_key(spec, &keys.user, &orphan.id).await {
                    return Ok(Err(format!("deleting the orphaned key {}: {e}", orphan.id)));
                }
            }
        } else {
            for other in others {
                if other.active {
                    return Ok(Err(format!(
                        "user {} already has a second active key {} (not the one in the secret); IAM allows two, and whittle never deletes an active key: deactivate or delete it, then rotate again",
                        keys.user, other.id
                    )));
                }
                self.step("deleting-stray", json!({ "key": other.id }))?;
                if let Err(e) = ports.delete_access_key(spec, &keys.user, &other.id).await {
                    return Ok(Err(format!("deleting the inactive key {}: {e}", other.id)));
                }
            }
            self.step("creating-key", json!({ "old_key": current_id }))?;
        }
        let (id, secret) = match ports.create_access_key(spec, &keys.user).await {
            Ok(created) => created,
            Err(e) => return Ok(Err(e.0)),
        };
        self.ports.after_step("rotation:key-created");
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(current.expose()).unwrap_or_default();
        object.insert(keys.id_field.clone(), serde_json::Value::String(id));
        object.insert(
            keys.secret_field.clone(),
            serde_json::Value::String(secret.expose().to_owned()),
        );
        Ok(Ok(SecretValue::new(
            serde_json::Value::Object(object).to_string(),
        )))
    }

    /// The key and its id in a secret value, per the playbook's layout.
    fn http_parts(h: &super::HttpPlaybook, value: &SecretValue) -> (String, String) {
        match &h.json_field {
            Some(field) => {
                let v: serde_json::Value = serde_json::from_str(value.expose()).unwrap_or_default();
                let text = |f: Option<&String>| {
                    f.and_then(|f| v.get(f))
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                        .unwrap_or_default()
                };
                (text(Some(field)), text(h.id_field.as_ref()))
            }
            None => (value.expose().to_owned(), String::new()),
        }
    }

    fn http_call(
        h: &super::HttpPlaybook,
        request: &super::HttpRequest,
        values: &[(&str, &str)],
    ) -> Result<HttpCall, String> {
        let render = |t: &str| super::render(t, values).map(SecretValue::new);
        Ok(HttpCall {
            label: format!("{} {}", request.method, request.url),
            method: request.method.clone(),
            url: render(&request.url)?,
            headers: request
                .headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), render(v)?)))
                .collect::<Result<_, String>>()?,
            body: request.body.as_deref().map(render).transpose()?,
            ca_file: h.ca_file.clone(),
            timeout: h.timeout,
        })
    }

    /// Asks the provider for a new key (authenticated with the current one).
    async fn create_http_key(
        &mut self,
        h: &super::HttpPlaybook,
    ) -> Result<Result<SecretValue, String>, MachineError> {
        let (ports, spec) = (self.ports, self.spec);
        let current = match retry(ports, spec, "inspect", || ports.inspect(spec)).await {
            Ok(i) => i.current,
            Err(e) => return Ok(Err(e.0)),
        };
        let (key, id) = Self::http_parts(h, &current);
        if self.done("creating-key") {
            warn!(rotation = %spec.name, "Resuming after an interrupted key creation: the provider may hold a key whittle never stored; revoke it there if so");
        } else {
            self.step("creating-key", json!({ "old_id": id }))?;
        }
        let call = match Self::http_call(h, &h.create, &[("current", &key), ("current_id", &id)]) {
            Ok(call) => call,
            Err(e) => return Ok(Err(e)),
        };
        let (status, body) = match ports.http(&call).await {
            Ok(answer) => answer,
            Err(e) => return Ok(Err(e.0)),
        };
        if !h.create.accepts(status) {
            return Ok(Err(format!("{}: HTTP {status}", call.label)));
        }
        let answer: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return Ok(Err(format!("{}: the answer is not JSON", call.label))),
        };
        let text = |pointer: &str| {
            answer
                .pointer(pointer)
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
        };
        let Some(new_key) = text(&h.key_pointer) else {
            return Ok(Err(format!(
                "{}: the answer has nothing at key_pointer `{}`",
                call.label, h.key_pointer
            )));
        };
        let new_id = h.id_pointer.as_deref().and_then(text).unwrap_or_default();
        Ok(match &h.json_field {
            Some(field) => {
                let mut object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(current.expose()).unwrap_or_default();
                object.insert(field.clone(), serde_json::Value::String(new_key));
                if let Some(id_field) = &h.id_field {
                    object.insert(id_field.clone(), serde_json::Value::String(new_id));
                }
                Ok(SecretValue::new(
                    serde_json::Value::Object(object).to_string(),
                ))
            }
            None => Ok(SecretValue::new(new_key)),
        })
    }

    async fn test_http_key(
        &self,
        h: &super::HttpPlaybook,
        pending: &SecretValue,
    ) -> Result<(), PortError> {
        let (ports, spec) = (self.ports, self.spec);
        let Some(test) = &h.test else { return Ok(()) };
        let (key, id) = Self::http_parts(h, pending);
        let call = Self::http_call(h, test, &[("pending", &key), ("pending_id", &id)])
            .map_err(PortError)?;
        retry(ports, spec, "test", || async {
            let (status, _) = ports.http(&call).await?;
            if test.accepts(status) {
                Ok(())
            } else {
                Err(PortError(format!("{}: HTTP {status}", call.label)))
            }
        })
        .await
    }

    /// Revokes the old key at the provider once the grace period is over.
    async fn revoke_old_http_key(
        &mut self,
        h: &super::HttpPlaybook,
        pending: &SecretValue,
        version: String,
    ) -> Result<Progress, MachineError> {
        let ports = self.ports;
        let Some(revoke) = &h.revoke else {
            return Ok(Progress::Done(version));
        };
        if self.done("revoked") {
            return Ok(Progress::Done(version));
        }
        let old_id = self
            .entry
            .steps
            .iter()
            .find(|s| s.name == "creating-key")
            .and_then(|s| s.detail["old_id"].as_str())
            .unwrap_or_default()
            .to_owned();
        if let Some(until) = self.grace_wait() {
            return Ok(Progress::Waiting {
                version,
                reason: format!(
                    "the old key is revoked at the provider after the grace period, at {until}"
                ),
            });
        }
        let (key, id) = Self::http_parts(h, pending);
        let call = match Self::http_call(
            h,
            revoke,
            &[("old_id", &old_id), ("pending", &key), ("pending_id", &id)],
        ) {
            Ok(call) => call,
            Err(e) => {
                return Ok(Progress::Waiting { version, reason: e });
            }
        };
        self.step("revoking", json!({ "old_id": old_id }))?;
        match ports.http(&call).await {
            // Already gone counts as revoked (a retried step).
            Ok((status, _)) if revoke.accepts(status) || status == 404 => {
                self.step("revoked", json!({ "old_id": old_id }))?;
                Ok(Progress::Done(version))
            }
            Ok((status, _)) => Ok(Progress::Waiting {
                version,
                reason: format!(
                    "revoking the old key failed (retried later): {}: HTTP {status}",
                    call.label
                ),
            }),
            Err(e) => Ok(Progress::Waiting {
                version,
                reason: format!("revoking the old key failed (retried later): {e}"),
            }),
        }
    }

    /// Authenticates with the new key until it works or `propagation_timeout` passes (IAM
    /// takes a few seconds to make a new key usable everywhere).
    async fn test_key(
        &self,
        keys: &super::AccessKeyPlaybook,
        pending: &SecretValue,
    ) -> Result<(), PortError> {
        let (ports, spec) = (self.ports, self.spec);
        let parsed: serde_json::Value = serde_json::from_str(pending.expose())
            .map_err(|_| PortError("the pending value is not JSON".to_owned()))?;
        let id = parsed[&keys.id_field]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let secret = SecretValue::new(
            parsed[&keys.secret_field]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let started = ports.now();
        let limit = u64::try_from(keys.propagation_timeout.as_millis()).unwrap_or(u64::MAX / 2);
        let mut delay = spec.retry_delay.min(Duration::from_secs(5));
        loop {
            match ports.test_access_key(spec, &id, &secret).await {
                Ok(()) => return Ok(()),
                Err(e) if ports.now().0.saturating_sub(started.0) >= limit => {
                    return Err(PortError(format!(
                        "the new key {id} did not work within {}: {e}",
                        as_duration(keys.propagation_timeout)
                    )));
                }
                Err(_) => {
                    ports.sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn generate(&self) -> Result<SecretValue, String> {
        let (ports, spec) = (self.ports, self.spec);
        let generate = spec
            .playbook
            .generate()
            .ok_or_else(|| "this playbook does not generate values".to_owned())?;
        let bytes = bytes_needed(&generate.alphabet, generate.length);
        let random = match generate.source {
            RandomSource::Os => {
                let mut buf = vec![0u8; bytes];
                rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut buf)
                    .map_err(|e| format!("the OS random number generator failed: {e}"))?;
                buf
            }
            RandomSource::Kms => {
                // KMS GenerateRandom returns at most 1,024 bytes a call.
                let mut buf = Vec::with_capacity(bytes);
                while buf.len() < bytes {
                    let n = (bytes - buf.len()).min(1024);
                    let chunk = retry(ports, spec, "kms:GenerateRandom", || {
                        ports.kms_random(spec, n)
                    })
                    .await
                    .map_err(|e| e.0)?;
                    buf.extend(chunk);
                }
                buf
            }
        };
        let text = draw(&generate.alphabet, generate.length, &random)
            .ok_or_else(|| "not enough random bytes".to_owned())?;
        let current = if generate.json_field.is_some() {
            retry(ports, spec, "inspect", || ports.inspect(spec))
                .await
                .map_err(|e| e.0)?
                .current
        } else {
            SecretValue::new(String::new())
        };
        compose(&current, generate.json_field.as_deref(), &text)
    }

    /// Gives up: withdraws the pending value, re-installs the current one where a script
    /// may have installed the pending one, records why.
    async fn park(self, token: &str, failure: Failure) -> Result<Outcome, MachineError> {
        let (ports, spec) = (self.ports, self.spec);
        let mut reason = failure.reason;
        // Past promotion the new value is the one in use: nothing may be withdrawn (least of
        // all a new key). The journal stays open and the next run goes on from there.
        if let Some(version) = self
            .entry
            .steps
            .iter()
            .find(|s| s.name == "promoted")
            .and_then(|s| s.detail["version"].as_str())
        {
            warn!(rotation = %spec.name, step = failure.step, %reason, "Rotation step failed after promotion; retried on the next run");
            return Ok(Outcome::Waiting {
                version: version.to_owned(),
                journal: self.entry.id.0,
                reason: format!(
                    "{} failed after promotion (retried on the next run): {reason}",
                    failure.step
                ),
            });
        }
        // Promotion may have gone through before the error (a lost response): then the new
        // value is current and the rotation is done, not parked. When the store cannot say,
        // the new value may be in use, so nothing that holds it is withdrawn below.
        let mut promotion_unknown = false;
        if failure.step == "promote" {
            let now = match ports.inspect(spec).await {
                Ok(now) => Some(now),
                Err(e) => {
                    promotion_unknown = true;
                    reason.push_str(&format!(
                        "; whether the promotion went through is unknown (reading the secret failed: {e})"
                    ));
                    None
                }
            };
            if let Some(now) = now
                && (now.current_version == token
                    || (spec.store == Store::Ssm && self.done("pending-created") && {
                        matches!(self.recover_pending(token).await, Ok(v) if v == now.current)
                    }))
            {
                // Promotion ends by removing AWSPENDING, and the error may have come before
                // that: a label left on the current version would refuse every later
                // rotation. Until it is gone `promoted` is not written, so the next run
                // promotes (idempotently) again.
                if spec.store == Store::SecretsManager
                    && let Err(e) = ports.clear_pending(spec, token).await
                {
                    return Ok(Outcome::Waiting {
                        version: now.current_version,
                        journal: self.entry.id.0,
                        reason: format!(
                            "the new value is current, but removing its AWSPENDING label failed (retried on the next run): {e}"
                        ),
                    });
                }
                let mut this = self;
                this.step("promoted", json!({ "version": now.current_version }))?;
                if spec.playbook.revokes() {
                    // The old credential's revocation continues on the next run (it may wait
                    // for the grace period anyway).
                    return Ok(Outcome::Waiting {
                        version: now.current_version,
                        journal: this.entry.id.0,
                        reason: "promotion confirmed after an error; revoking the old credential continues on the next run".to_owned(),
                    });
                }
                this.state.journal_finish(
                    this.entry.id,
                    "rotated",
                    json!({ "version": now.current_version }),
                    ports.now(),
                )?;
                return Ok(Outcome::Rotated {
                    version: now.current_version,
                    journal: this.entry.id.0,
                });
            }
        }
        // A key made for this rotation but never promoted is withdrawn: IAM's, deleted (it is
        // in use nowhere); a provider's, reported, as only the provider can revoke it.
        if let Playbook::IamAccessKey(keys) = &spec.playbook
            && promotion_unknown
        {
            reason.push_str(&format!(
                "; the new key of user {} was kept, as it may be the one in the secret now: delete whichever of the user's two keys the secret's current value does not hold",
                keys.user
            ));
        } else if let Playbook::IamAccessKey(keys) = &spec.playbook
            && let Some(old) = self
                .entry
                .steps
                .iter()
                .find(|s| s.name == "creating-key")
                .and_then(|s| s.detail["old_key"].as_str())
        {
            match ports.access_keys(spec, &keys.user).await {
                Ok(listed) => {
                    for key in listed.iter().filter(|k| k.id != old) {
                        if let Err(e) = ports.delete_access_key(spec, &keys.user, &key.id).await {
                            reason.push_str(&format!(
                                "; deleting the unpromoted key {} failed: {e} (delete it by hand)",
                                key.id
                            ));
                        }
                    }
                }
                Err(e) => reason.push_str(&format!(
                    "; listing the user's keys to delete the unpromoted one failed: {e}"
                )),
            }
        }
        if matches!(spec.playbook, Playbook::Http(_)) && self.done("pending-created") {
            reason.push_str(if promotion_unknown {
                "; the new key the provider created may be the one in the secret now: revoke at the provider whichever key the secret's current value does not hold"
            } else {
                "; the new key the provider created was not promoted: revoke it at the provider"
            });
        }
        if let Playbook::Command {
            install, timeout, ..
        } = &spec.playbook
            && (self.done("target-set")
                || failure.step == "set on target"
                || failure.step == "test")
        {
            match ports.inspect(spec).await {
                Ok(now) => {
                    if let Err(e) = ports.run(install, &now.current, *timeout).await {
                        reason.push_str(&format!(
                            "; re-installing the current value also failed: {e} (check the target by hand)"
                        ));
                    }
                }
                Err(e) => reason.push_str(&format!(
                    "; the current value could not be read to re-install it: {e} (check the target by hand)"
                )),
            }
        }
        // The next run recognises the label as whittle's own (the token names this journal,
        // finished below) and removes it before it rotates.
        if spec.store == Store::SecretsManager
            && failure.step != CLEAR_STALE_STEP
            && let Err(e) = retry(ports, spec, "clear pending", || {
                ports.clear_pending(spec, token)
            })
            .await
        {
            reason.push_str(&format!(
                "; AWSPENDING could not be removed from version {token} ({e}); the next run removes it"
            ));
        }
        self.state.journal_finish(
            self.entry.id,
            "parked",
            json!({ "step": failure.step, "reason": reason }),
            ports.now(),
        )?;
        warn!(rotation = %spec.name, secret = %spec.secret, step = failure.step, %reason, "Rotation parked; the current value stays in use");
        Ok(Outcome::Parked {
            step: failure.step.to_owned(),
            reason,
            journal: self.entry.id.0,
        })
    }
}

#[cfg(test)]
mod tests;
