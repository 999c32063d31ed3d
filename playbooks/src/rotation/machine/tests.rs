//! The rotation state machine against in-memory ports: a Secrets Manager secret, an SSM
//! parameter, KMS, an IAM user's access keys, an HTTPS provider, install scripts, a Lambda
//! for native rotation, and a clock that a sleep moves forward at once. The journal is the
//! real [`State`] in a temporary directory.
//!
//! A crash is simulated by a panic right after a durable journal write (`after_step`) or
//! right after a port call took effect, caught around the run; the next run on the same state
//! is the restarted daemon.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::Engine as _;
use whittle_state::{Clock, JournalEntry, JournalId, LockOwner, State, Timestamp};

use super::{
    AccessKey, HttpCall, Inspection, Outcome, PortError, Ports, Spec, Store, open_journal, rotate,
    token_of,
};
use crate::rotation::{self, Playbook, SecretValue};

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

const OLD_JSON: &str = r#"{"api_key":"old-api-key-5f1c","user":"svc-billing"}"#;
const OLD_KEY_ID: &str = "AKIAOLDKEY0000000001";
const OLD_KEY_SECRET: &str = "old-secret-access-key-zq81";
const OLD_PROVIDER_KEY: &str = "old-provider-key-77aa";

// ---------------------------------------------------------------------------------------------
// The in-memory world.

/// How an injected fault shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The call fails and changes nothing (throttling, a 5xx).
    Fails,
    /// The call takes effect but its answer is lost (a timeout after the request arrived).
    AnswerLost,
}

#[derive(Debug, Clone)]
struct Armed {
    method: &'static str,
    fault: Fault,
    times: u32,
}

#[derive(Debug, Clone)]
struct SmVersion {
    id: String,
    value: String,
    stages: Vec<&'static str>,
}

/// A Secrets Manager secret: versions with staging labels, each label on at most one version.
#[derive(Debug, Default)]
struct SecretsManager {
    versions: Vec<SmVersion>,
    rotation_enabled: bool,
    /// Version ids PutSecretValue created (a retried put of the same token creates none).
    created: Vec<String>,
}

impl SecretsManager {
    fn holding(value: &str) -> SecretsManager {
        SecretsManager {
            versions: vec![SmVersion {
                id: "v-initial".to_owned(),
                value: value.to_owned(),
                stages: vec!["AWSCURRENT"],
            }],
            ..SecretsManager::default()
        }
    }

    fn labelled(&self, stage: &str) -> Option<&SmVersion> {
        self.versions.iter().find(|v| v.stages.contains(&stage))
    }

    fn version(&self, id: &str) -> Option<&SmVersion> {
        self.versions.iter().find(|v| v.id == id)
    }

    fn current(&self) -> &SmVersion {
        self.labelled("AWSCURRENT")
            .expect("the fake secret always has an AWSCURRENT version")
    }

    /// Moves `stage` to version `to` (or removes it everywhere), as UpdateSecretVersionStage.
    fn move_stage(&mut self, stage: &'static str, to: Option<&str>) {
        for v in &mut self.versions {
            v.stages.retain(|s| *s != stage);
            if Some(v.id.as_str()) == to {
                v.stages.push(stage);
            }
        }
    }

    fn inspect(&self) -> Result<Inspection, PortError> {
        let current = self.labelled("AWSCURRENT").ok_or_else(|| {
            PortError("secretsmanager:GetSecretValue: no AWSCURRENT version".to_owned())
        })?;
        Ok(Inspection {
            current: SecretValue::new(current.value.clone()),
            current_version: current.id.clone(),
            native_rotation: self.rotation_enabled,
            pending_versions: self
                .versions
                .iter()
                .filter(|v| v.stages.contains(&"AWSPENDING"))
                .map(|v| v.id.clone())
                .collect(),
        })
    }

    /// PutSecretValue with a ClientRequestToken and the AWSPENDING stage.
    fn put(&mut self, token: &str, value: &str) -> Result<(), PortError> {
        if let Some(existing) = self.version(token) {
            return if existing.value == value {
                Ok(())
            } else {
                Err(PortError(format!(
                    "secretsmanager:PutSecretValue: ResourceExistsException: version {token} exists with another value"
                )))
            };
        }
        self.versions.push(SmVersion {
            id: token.to_owned(),
            value: value.to_owned(),
            stages: Vec::new(),
        });
        self.move_stage("AWSPENDING", Some(token));
        self.created.push(token.to_owned());
        Ok(())
    }

    /// AWSCURRENT to `token`; AWSPREVIOUS follows to the version that loses AWSCURRENT.
    fn make_current(&mut self, token: &str) -> Result<(), PortError> {
        if self.version(token).is_none() {
            return Err(PortError(format!(
                "secretsmanager:UpdateSecretVersionStage: ResourceNotFoundException: no version {token}"
            )));
        }
        let old = self.current().id.clone();
        if old != token {
            self.move_stage("AWSPREVIOUS", Some(&old));
            self.move_stage("AWSCURRENT", Some(token));
        }
        Ok(())
    }

    fn clear_pending(&mut self, token: &str) {
        for v in &mut self.versions {
            if v.id == token {
                v.stages.retain(|s| *s != "AWSPENDING");
            }
        }
    }
}

#[derive(Debug, Clone)]
struct SsmVersion {
    number: u32,
    value: String,
    labels: Vec<&'static str>,
}

/// An SSM SecureString parameter: numbered versions, labels each on at most one version.
#[derive(Debug, Default)]
struct Parameter {
    versions: Vec<SsmVersion>,
}

impl Parameter {
    fn latest(&self) -> &SsmVersion {
        self.versions
            .last()
            .expect("the fake parameter always has a version")
    }

    fn labelled(&self, label: &str) -> Option<&SsmVersion> {
        self.versions.iter().find(|v| v.labels.contains(&label))
    }

    fn inspect(&self) -> Inspection {
        let latest = self.latest();
        Inspection {
            current: SecretValue::new(latest.value.clone()),
            current_version: latest.number.to_string(),
            native_rotation: false,
            pending_versions: Vec::new(),
        }
    }

    fn label(&mut self, number: u32, label: &'static str) {
        for v in &mut self.versions {
            v.labels.retain(|l| *l != label);
            if v.number == number {
                v.labels.push(label);
            }
        }
    }

    /// As the daemon's promote: PutParameter (unless the value is already the latest), then
    /// the labels `current` and `previous`.
    fn promote(&mut self, value: &str) -> Result<String, PortError> {
        let latest = self.latest().clone();
        let (version, previous) = if latest.value == value {
            (latest.number, latest.number - 1)
        } else {
            if self.versions.len() >= 100 {
                return Err(PortError(
                    "ssm:PutParameter: ParameterMaxVersionLimitExceeded".to_owned(),
                ));
            }
            self.versions.push(SsmVersion {
                number: latest.number + 1,
                value: value.to_owned(),
                labels: Vec::new(),
            });
            (latest.number + 1, latest.number)
        };
        self.label(version, "current");
        if previous >= 1 {
            self.label(previous, "previous");
        }
        Ok(version.to_string())
    }
}

/// KMS: a reversible cipher whose output never contains the plaintext (every byte gets its
/// top bit flipped, so no ASCII survives), and a deterministic random source.
#[derive(Debug, Default)]
struct Kms {
    /// What was encrypted, for the tests to look for elsewhere.
    plaintexts: Vec<String>,
    /// Every byte GenerateRandom returned, in order.
    random: Vec<u8>,
    state: u64,
}

impl Kms {
    fn mask(i: usize) -> u8 {
        // Truncation intended: a repeating mask.
        0x80 | (i as u8).wrapping_mul(37)
    }

    fn seal(&mut self, key: &str, plain: &str) -> Vec<u8> {
        self.plaintexts.push(plain.to_owned());
        let mut blob = format!("fake-kms:{key}:").into_bytes();
        blob.extend(plain.bytes().enumerate().map(|(i, b)| b ^ Kms::mask(i)));
        blob
    }

    fn open(&self, key: &str, blob: &[u8]) -> Result<String, PortError> {
        let prefix = format!("fake-kms:{key}:");
        let body = blob.strip_prefix(prefix.as_bytes()).ok_or_else(|| {
            PortError("kms:Decrypt: InvalidCiphertextException (another key?)".to_owned())
        })?;
        let plain: Vec<u8> = body
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ Kms::mask(i))
            .collect();
        String::from_utf8(plain).map_err(|_| PortError("kms:Decrypt: not UTF-8".to_owned()))
    }

    fn generate_random(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            // A 64-bit LCG (Knuth's MMIX constants); the high byte is well mixed.
            self.state = self
                .state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            out.push(self.state.to_be_bytes()[0]);
        }
        self.random.extend(&out);
        out
    }
}

#[derive(Debug, Clone)]
struct IamKey {
    id: String,
    secret: String,
    active: bool,
    /// IAM propagation: authenticating with the key works from this time on.
    usable_at: u64,
    last_used: Option<u64>,
}

/// An IAM user's access keys (at most two, as IAM enforces).
#[derive(Debug)]
struct Iam {
    user: String,
    keys: Vec<IamKey>,
    created: Vec<String>,
    deleted: Vec<String>,
    /// How long a new key takes to work; `None`: never (a broken key).
    propagation: Option<u64>,
    next: u32,
}

impl Iam {
    fn with_key(user: &str, id: &str, secret: &str) -> Iam {
        Iam {
            user: user.to_owned(),
            keys: vec![IamKey {
                id: id.to_owned(),
                secret: secret.to_owned(),
                active: true,
                usable_at: 0,
                last_used: Some(T0 - DAY),
            }],
            created: Vec::new(),
            deleted: Vec::new(),
            propagation: Some(3 * SECOND),
            next: 1,
        }
    }

    fn key(&self, id: &str) -> Option<&IamKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    fn key_mut(&mut self, id: &str) -> Option<&mut IamKey> {
        self.keys.iter_mut().find(|k| k.id == id)
    }

    fn check_user(&self, user: &str) -> Result<(), PortError> {
        if user == self.user {
            Ok(())
        } else {
            Err(PortError(format!("iam: NoSuchEntity: user {user}")))
        }
    }

    fn create(&mut self, user: &str, now: u64) -> Result<(String, SecretValue), PortError> {
        self.check_user(user)?;
        if self.keys.len() >= 2 {
            return Err(PortError(format!(
                "iam:CreateAccessKey {user}: LimitExceeded: Cannot exceed quota for AccessKeysPerUser: 2"
            )));
        }
        let id = format!("AKIANEWKEY{:010}", self.next);
        let secret = format!("new-secret-access-key-{:04}-x9", self.next);
        self.next += 1;
        self.keys.push(IamKey {
            id: id.clone(),
            secret: secret.clone(),
            active: true,
            usable_at: self.propagation.map_or(u64::MAX, |p| now + p),
            last_used: None,
        });
        self.created.push(id.clone());
        Ok((id, SecretValue::new(secret)))
    }
}

#[derive(Debug, Clone)]
struct ProviderKey {
    id: String,
    key: String,
    revoked: bool,
}

/// One request as the provider received it (rendered, so it holds keys).
#[derive(Debug, Clone)]
struct Received {
    label: String,
    method: String,
    url: String,
    authorization: String,
    body: Option<String>,
}

/// A third-party API: POST /v1/keys makes a key, GET /v1/whoami checks one, DELETE
/// /v1/keys/{id} revokes one; each authenticated by `Authorization: Bearer KEY`.
#[derive(Debug, Default)]
struct Provider {
    keys: Vec<ProviderKey>,
    received: Vec<Received>,
    /// A status that requests of this method get instead of the real answer.
    forced: Vec<(&'static str, u16)>,
    next: u32,
}

impl Provider {
    const BASE: &'static str = "https://api.vendor.example/v1";

    fn valid(&self, authorization: &str) -> bool {
        self.keys
            .iter()
            .any(|k| !k.revoked && authorization == format!("Bearer {}", k.key))
    }

    fn handle(&mut self, call: &HttpCall) -> (u16, Vec<u8>) {
        let authorization = call
            .headers
            .iter()
            .find(|(name, _)| name == "Authorization")
            .map(|(_, v)| v.expose().to_owned())
            .unwrap_or_default();
        let url = call.url.expose().to_owned();
        self.received.push(Received {
            label: call.label.clone(),
            method: call.method.clone(),
            url: url.clone(),
            authorization: authorization.clone(),
            body: call.body.as_ref().map(|b| b.expose().to_owned()),
        });
        if let Some((_, status)) = self.forced.iter().find(|(m, _)| *m == call.method) {
            return (*status, b"{\"error\":\"forced\"}".to_vec());
        }
        if !self.valid(&authorization) {
            return (401, b"{\"error\":\"unauthorized\"}".to_vec());
        }
        let keys_url = format!("{}/keys", Provider::BASE);
        match (call.method.as_str(), url.as_str()) {
            ("POST", u) if u == keys_url => {
                self.next += 1;
                let key = ProviderKey {
                    id: format!("k-{:04}", self.next + 1),
                    key: format!("new-provider-key-{:04}-b3", self.next),
                    revoked: false,
                };
                let body = serde_json::json!({ "id": key.id, "key": key.key, "name": "rotated-by-whittle" });
                self.keys.push(key);
                (201, body.to_string().into_bytes())
            }
            ("GET", u) if u == format!("{}/whoami", Provider::BASE) => (200, b"{}".to_vec()),
            ("DELETE", u) if u.starts_with(&format!("{keys_url}/")) => {
                let id = &u[keys_url.len() + 1..];
                match self.keys.iter_mut().find(|k| k.id == id && !k.revoked) {
                    Some(k) => {
                        k.revoked = true;
                        (204, Vec::new())
                    }
                    None => (404, Vec::new()),
                }
            }
            _ => (404, Vec::new()),
        }
    }
}

/// Where a `command` playbook installs the value: `set-db-password` stores its stdin,
/// `check-db-login` succeeds when its stdin is what is installed.
#[derive(Debug, Default)]
struct Target {
    installed: String,
    /// The login check fails whatever is installed (a target that rejects new passwords).
    login_broken: bool,
    /// (program, stdin) of every run.
    runs: Vec<(String, String)>,
}

impl Target {
    fn run(&mut self, argv: &[String], stdin: &str) -> Result<(), PortError> {
        let program = argv.first().cloned().unwrap_or_default();
        self.runs.push((program.clone(), stdin.to_owned()));
        if program.ends_with("/set-db-password") {
            self.installed = stdin.to_owned();
            Ok(())
        } else if program.ends_with("/check-db-login") {
            if stdin == self.installed && !self.login_broken {
                Ok(())
            } else {
                Err(PortError(format!(
                    "{program} exited with 1: FATAL: password authentication failed"
                )))
            }
        } else {
            Err(PortError(format!("{program}: no such file")))
        }
    }
}

/// The secret's own rotation Lambda: RotateSecret creates the AWSPENDING version at once;
/// the Lambda finishes (AWSCURRENT moves to it) after this many more reads of the secret.
#[derive(Debug, Default)]
struct Lambda {
    finishes_after_reads: Option<u32>,
    requested: Vec<String>,
    in_flight: Option<(String, u32)>,
}

#[derive(Debug)]
struct World {
    now: u64,
    slept: Vec<Duration>,
    /// Every `after_step` point, in order.
    points: Vec<String>,
    /// Every port call by method name, in order.
    calls: Vec<&'static str>,
    faults: Vec<Armed>,
    /// Faults armed when `after_step` reaches the point.
    faults_at: Vec<(String, Armed)>,
    crash_at: Option<String>,
    crash_after: Option<&'static str>,
    secret: SecretsManager,
    parameter: Parameter,
    kms: Kms,
    iam: Iam,
    provider: Provider,
    target: Target,
    lambda: Lambda,
}

impl World {
    fn new() -> World {
        World {
            now: T0,
            slept: Vec::new(),
            points: Vec::new(),
            calls: Vec::new(),
            faults: Vec::new(),
            faults_at: Vec::new(),
            crash_at: None,
            crash_after: None,
            secret: SecretsManager::holding(OLD_JSON),
            parameter: Parameter {
                versions: (1..=3)
                    .map(|n| SsmVersion {
                        number: n,
                        value: format!("old-db-password-{n}-kq7"),
                        labels: Vec::new(),
                    })
                    .collect(),
            },
            kms: Kms::default(),
            iam: Iam::with_key("svc-reports", OLD_KEY_ID, OLD_KEY_SECRET),
            provider: Provider {
                keys: vec![ProviderKey {
                    id: "k-0001".to_owned(),
                    key: OLD_PROVIDER_KEY.to_owned(),
                    revoked: false,
                }],
                ..Provider::default()
            },
            target: Target::default(),
            lambda: Lambda::default(),
        }
    }

    fn take_fault(&mut self, method: &str) -> Option<Fault> {
        let armed = self
            .faults
            .iter_mut()
            .find(|a| a.method == method && a.times > 0)?;
        armed.times -= 1;
        Some(armed.fault)
    }

    /// Reading the secret is how the Lambda's progress shows.
    fn inspect_secret(&mut self) -> Result<Inspection, PortError> {
        if let Some((token, reads)) = self.lambda.in_flight.take() {
            if reads == 0 {
                self.secret.make_current(&token)?;
                self.secret.clear_pending(&token);
            } else {
                self.lambda.in_flight = Some((token, reads - 1));
            }
        }
        self.secret.inspect()
    }
}

struct Fake {
    world: Mutex<World>,
}

impl Fake {
    fn world(&self) -> MutexGuard<'_, World> {
        // No panic happens while the lock is held (crashes drop it first).
        self.world.lock().expect("the fake's lock is not poisoned")
    }

    /// One port call: recorded, subject to injected faults and crashes.
    fn call<T>(
        &self,
        method: &'static str,
        act: impl FnOnce(&mut World) -> Result<T, PortError>,
    ) -> Result<T, PortError> {
        let mut world = self.world();
        world.calls.push(method);
        let fault = world.take_fault(method);
        if fault == Some(Fault::Fails) {
            return Err(PortError(format!(
                "{method}: ThrottlingException (injected)"
            )));
        }
        let answer = act(&mut world);
        let crash = world.crash_after == Some(method);
        if crash {
            world.crash_after = None;
        }
        drop(world);
        assert!(!crash, "simulated crash right after {method} took effect");
        if fault == Some(Fault::AnswerLost) {
            return Err(PortError(format!(
                "{method}: timed out (injected; the call took effect)"
            )));
        }
        answer
    }
}

impl Clock for Fake {
    fn now(&self) -> Timestamp {
        Timestamp(self.world().now)
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        let mut world = self.world();
        world.now += u64::try_from(duration.as_millis()).expect("test durations are small");
        world.slept.push(duration);
        std::future::ready(())
    }
}

impl Ports for Fake {
    async fn inspect(&self, spec: &Spec) -> Result<Inspection, PortError> {
        self.call("inspect", |w| match spec.store {
            Store::SecretsManager => w.inspect_secret(),
            Store::Ssm => Ok(w.parameter.inspect()),
        })
    }

    async fn put_pending(
        &self,
        spec: &Spec,
        token: &str,
        value: &SecretValue,
    ) -> Result<(), PortError> {
        self.call("put_pending", |w| match spec.store {
            Store::SecretsManager => w.secret.put(token, value.expose()),
            Store::Ssm => Ok(()),
        })
    }

    async fn read_pending(
        &self,
        spec: &Spec,
        token: &str,
    ) -> Result<Option<SecretValue>, PortError> {
        self.call("read_pending", |w| match spec.store {
            Store::SecretsManager => Ok(w
                .secret
                .version(token)
                .map(|v| SecretValue::new(v.value.clone()))),
            Store::Ssm => Ok(None),
        })
    }

    async fn promote(
        &self,
        spec: &Spec,
        token: &str,
        value: &SecretValue,
    ) -> Result<String, PortError> {
        self.call("promote", |w| match spec.store {
            Store::SecretsManager => {
                w.secret.make_current(token)?;
                // Like the daemon's, promotion ends by clearing AWSPENDING, a call of its own
                // that can fail after AWSCURRENT moved.
                if w.take_fault("clear_pending").is_some() {
                    return Err(PortError(
                        "secretsmanager:UpdateSecretVersionStage AWSPENDING: ThrottlingException (injected)"
                            .to_owned(),
                    ));
                }
                w.secret.clear_pending(token);
                Ok(token.to_owned())
            }
            Store::Ssm => w.parameter.promote(value.expose()),
        })
    }

    async fn clear_pending(&self, spec: &Spec, token: &str) -> Result<(), PortError> {
        self.call("clear_pending", |w| {
            if spec.store == Store::SecretsManager {
                w.secret.clear_pending(token);
            }
            Ok(())
        })
    }

    async fn encrypt(&self, spec: &Spec, value: &SecretValue) -> Result<Vec<u8>, PortError> {
        self.call("encrypt", |w| {
            let key = spec
                .kms_key
                .as_deref()
                .ok_or_else(|| PortError("no kms_key configured".to_owned()))?;
            Ok(w.kms.seal(key, value.expose()))
        })
    }

    async fn decrypt(&self, spec: &Spec, blob: &[u8]) -> Result<SecretValue, PortError> {
        self.call("decrypt", |w| {
            let key = spec
                .kms_key
                .as_deref()
                .ok_or_else(|| PortError("no kms_key configured".to_owned()))?;
            w.kms.open(key, blob).map(SecretValue::new)
        })
    }

    async fn kms_random(&self, _spec: &Spec, bytes: usize) -> Result<Vec<u8>, PortError> {
        self.call("kms_random", |w| {
            assert!(bytes <= 1024, "GenerateRandom takes at most 1,024 bytes");
            Ok(w.kms.generate_random(bytes))
        })
    }

    async fn run(
        &self,
        argv: &[String],
        stdin: &SecretValue,
        _timeout: Duration,
    ) -> Result<(), PortError> {
        self.call("run", |w| w.target.run(argv, stdin.expose()))
    }

    async fn access_keys(&self, _spec: &Spec, user: &str) -> Result<Vec<AccessKey>, PortError> {
        self.call("access_keys", |w| {
            w.iam.check_user(user)?;
            Ok(w.iam
                .keys
                .iter()
                .map(|k| AccessKey {
                    id: k.id.clone(),
                    active: k.active,
                })
                .collect())
        })
    }

    async fn create_access_key(
        &self,
        _spec: &Spec,
        user: &str,
    ) -> Result<(String, SecretValue), PortError> {
        self.call("create_access_key", |w| {
            let now = w.now;
            w.iam.create(user, now)
        })
    }

    async fn deactivate_access_key(
        &self,
        _spec: &Spec,
        user: &str,
        id: &str,
    ) -> Result<(), PortError> {
        self.call("deactivate_access_key", |w| {
            w.iam.check_user(user)?;
            let key = w
                .iam
                .key_mut(id)
                .ok_or_else(|| PortError(format!("iam:UpdateAccessKey {id}: NoSuchEntity")))?;
            key.active = false;
            Ok(())
        })
    }

    async fn delete_access_key(&self, _spec: &Spec, user: &str, id: &str) -> Result<(), PortError> {
        self.call("delete_access_key", |w| {
            w.iam.check_user(user)?;
            if w.iam.key(id).is_some() {
                w.iam.keys.retain(|k| k.id != id);
                w.iam.deleted.push(id.to_owned());
            }
            Ok(())
        })
    }

    async fn access_key_last_used(
        &self,
        _spec: &Spec,
        id: &str,
    ) -> Result<Option<Timestamp>, PortError> {
        self.call("access_key_last_used", |w| {
            let key = w
                .iam
                .key(id)
                .ok_or_else(|| PortError(format!("iam:GetAccessKeyLastUsed {id}: NoSuchEntity")))?;
            Ok(key.last_used.map(Timestamp))
        })
    }

    async fn test_access_key(
        &self,
        _spec: &Spec,
        id: &str,
        secret: &SecretValue,
    ) -> Result<(), PortError> {
        self.call("test_access_key", |w| {
            let now = w.now;
            match w.iam.key_mut(id) {
                Some(k) if k.active && k.secret == secret.expose() && now >= k.usable_at => {
                    k.last_used = Some(now);
                    Ok(())
                }
                _ => Err(PortError(format!(
                    "sts:GetCallerIdentity with the new key {id}: InvalidClientTokenId"
                ))),
            }
        })
    }

    async fn rotate_native(&self, _spec: &Spec, token: &str) -> Result<(), PortError> {
        self.call("rotate_native", |w| {
            w.lambda.requested.push(token.to_owned());
            if w.secret.version(token).is_some() {
                return Ok(());
            }
            w.secret
                .put(token, &format!("lambda-made-value-for-{token}"))?;
            if let Some(reads) = w.lambda.finishes_after_reads {
                w.lambda.in_flight = Some((token.to_owned(), reads));
            }
            Ok(())
        })
    }

    async fn http(&self, call: &HttpCall) -> Result<(u16, Vec<u8>), PortError> {
        self.call("http", |w| Ok(w.provider.handle(call)))
    }

    fn after_step(&self, point: &str) {
        let mut world = self.world();
        world.points.push(point.to_owned());
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut world.faults_at)
            .into_iter()
            .partition(|(at, _)| at == point);
        world.faults_at = later;
        world.faults.extend(now.into_iter().map(|(_, armed)| armed));
        let crash = world.crash_at.as_deref() == Some(point);
        if crash {
            world.crash_at = None;
        }
        drop(world);
        assert!(!crash, "simulated crash at {point}");
    }
}

// ---------------------------------------------------------------------------------------------
// The harness.

/// Polls `future` once: the in-memory ports never pend, so neither does the machine.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the machine awaited something other than its ports"),
    }
}

fn shipped(file: &str) -> Playbook {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    rotation::load(&path).unwrap_or_else(|e| panic!("shipped playbook {file}: {e}"))
}

fn inline(text: &str) -> Playbook {
    rotation::parse("inline.toml", text).unwrap_or_else(|e| panic!("inline playbook: {e}"))
}

struct Harness {
    fake: Fake,
    state: State,
    spec: Spec,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new(store: Store, playbook: Playbook) -> Harness {
        let dir = tempfile::tempdir().expect("a temporary state directory");
        let state = State::open(dir.path(), &LockOwner::this_process()).expect("the state opens");
        let secret = match store {
            Store::SecretsManager => "prod/billing/api-key",
            Store::Ssm => "/prod/billing/db-password",
        };
        Harness {
            fake: Fake {
                world: Mutex::new(World::new()),
            },
            state,
            spec: Spec {
                name: "billing-key".to_owned(),
                account: "111122223333".to_owned(),
                store,
                secret: secret.to_owned(),
                playbook,
                kms_key: Some("alias/whittle-rotation".to_owned()),
                attempts: 3,
                retry_delay: Duration::from_secs(1),
                deadline: None,
                grace: Duration::from_secs(3600),
                readers: None,
            },
            _dir: dir,
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.fake.world()
    }

    fn rotate(&self) -> Outcome {
        block_on(rotate(&self.fake, &self.state, &self.spec)).expect("the journal store works")
    }

    /// Runs until `after_step(point)`, where the process "dies".
    fn rotate_until_crash_at(&self, point: &str) {
        self.world().crash_at = Some(point.to_owned());
        let run = catch_unwind(AssertUnwindSafe(|| self.rotate()));
        assert!(run.is_err(), "the rotation never reached {point}: {run:?}");
    }

    /// Runs until the port call `method` took effect, where the process "dies".
    fn rotate_until_crash_after(&self, method: &'static str) {
        self.world().crash_after = Some(method);
        let run = catch_unwind(AssertUnwindSafe(|| self.rotate()));
        assert!(run.is_err(), "the rotation never called {method}: {run:?}");
    }

    fn fail(&self, method: &'static str, fault: Fault, times: u32) {
        self.world().faults.push(Armed {
            method,
            fault,
            times,
        });
    }

    fn fail_after_step(&self, point: &str, method: &'static str, fault: Fault, times: u32) {
        self.world().faults_at.push((
            point.to_owned(),
            Armed {
                method,
                fault,
                times,
            },
        ));
    }

    fn advance(&self, ms: u64) {
        self.world().now += ms;
    }

    fn journal(&self, id: u64) -> JournalEntry {
        self.state
            .journal_get(JournalId(id))
            .expect("the journal reads")
            .expect("the journal exists")
    }

    fn unfinished(&self) -> Option<JournalEntry> {
        open_journal(&self.state, &self.spec.name).expect("the journal reads")
    }

    fn steps(&self, id: u64) -> Vec<String> {
        self.journal(id).steps.into_iter().map(|s| s.name).collect()
    }

    /// The journal (intent, steps, outcome) holds none of `values`, raw or base64.
    fn assert_journal_never_holds(&self, id: u64, values: &[&str]) {
        let text = serde_json::to_string(&self.journal(id)).expect("a journal serializes");
        for value in values {
            assert!(!value.is_empty());
            let b64 = base64::engine::general_purpose::STANDARD.encode(value);
            assert!(
                !text.contains(value) && !text.contains(&b64),
                "the journal holds a secret value: {text}"
            );
        }
    }

    fn sm_current(&self) -> SmVersion {
        self.world().secret.current().clone()
    }
}

fn journal_of(outcome: &Outcome) -> u64 {
    match outcome {
        Outcome::Rotated { journal, .. }
        | Outcome::Waiting { journal, .. }
        | Outcome::Parked { journal, .. } => *journal,
        Outcome::Refused { .. } => panic!("a refused rotation has no journal: {outcome:?}"),
    }
}

fn json(value: &str) -> serde_json::Value {
    serde_json::from_str(value).expect("the value is JSON")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------------------------------------
// Secrets Manager, `random`.

#[test]
fn random_rotation_makes_the_new_value_current_and_the_old_one_previous() {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
    let outcome = h.rotate();
    let Outcome::Rotated { version, journal } = &outcome else {
        panic!("not rotated: {outcome:?}")
    };
    assert_eq!(*version, token_of(JournalId(*journal)));

    let world = h.world();
    let current = world.secret.current();
    assert_eq!(current.id, *version);
    let new = json(&current.value);
    let api_key = new["api_key"].as_str().expect("api_key is a string");
    assert_eq!(api_key.len(), 40);
    assert!(api_key.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(api_key, "old-api-key-5f1c");
    assert_eq!(new["user"], "svc-billing", "the other fields are kept");
    let previous = world.secret.labelled("AWSPREVIOUS").expect("AWSPREVIOUS");
    assert_eq!(
        (previous.id.as_str(), previous.value.as_str()),
        ("v-initial", OLD_JSON)
    );
    assert!(
        world.secret.labelled("AWSPENDING").is_none(),
        "AWSPENDING left behind"
    );
    assert_eq!(world.secret.versions.len(), 2);
    assert_eq!(
        world.points,
        [
            "rotation:begin",
            "rotation:pending-created",
            "rotation:tested",
            "rotation:promoting",
            "rotation:promoted"
        ]
    );
    assert!(world.slept.is_empty(), "no failure, no back-off");
    let api_key = api_key.to_owned();
    drop(world);

    assert_eq!(
        h.steps(*journal),
        ["pending-created", "tested", "promoting", "promoted"]
    );
    let entry = h.journal(*journal);
    let finished = entry.finished.as_ref().expect("the journal is finished");
    assert_eq!(finished.outcome, "rotated");
    assert_eq!(entry.intent["previous_version"], "v-initial");
    assert!(h.unfinished().is_none());
    h.assert_journal_never_holds(*journal, &[&api_key, "old-api-key-5f1c"]);
}

#[test]
fn the_client_request_token_is_the_journal_id_in_secrets_managers_bounds() {
    let token = token_of(JournalId(7));
    assert_eq!(token, "whittle-rotation-000000000000000000000007");
    assert!((32..=64).contains(&token.len()), "{token}");
    assert!((32..=64).contains(&token_of(JournalId(u64::MAX)).len()));
    assert_ne!(token_of(JournalId(7)), token_of(JournalId(8)));
}

#[test]
fn kms_random_source_makes_the_value_from_generate_random() {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-password.toml"));
    h.world().secret = SecretsManager::holding("old-whole-string-password");
    let outcome = h.rotate();
    assert!(matches!(outcome, Outcome::Rotated { .. }), "{outcome:?}");
    let world = h.world();
    assert!(world.calls.contains(&"kms_random"));
    let Playbook::Random(generate) = &h.spec.playbook else {
        panic!("rotate-password.toml is a random playbook")
    };
    let expected = rotation::draw(&generate.alphabet, 32, &world.kms.random)
        .expect("the fake KMS gave enough bytes");
    assert_eq!(world.secret.current().value, expected);
}

#[test]
fn a_rotation_interrupted_after_any_step_finishes_with_exactly_one_new_version() {
    for point in [
        "rotation:begin",
        "rotation:pending-created",
        "rotation:tested",
        "rotation:promoting",
        "rotation:promoted",
    ] {
        let h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
        h.rotate_until_crash_at(point);
        let open = h
            .unfinished()
            .expect("the interrupted journal is unfinished");
        assert_eq!(
            open.last_step().map(|s| format!("rotation:{s}")),
            (point != "rotation:begin").then(|| point.to_owned()),
            "{point}"
        );
        let first_put: Vec<(String, String)> = {
            let world = h.world();
            world
                .secret
                .created
                .iter()
                .map(|id| {
                    let v = world.secret.version(id).expect("created version");
                    (v.id.clone(), v.value.clone())
                })
                .collect()
        };

        let outcome = h.rotate();
        let Outcome::Rotated { version, journal } = &outcome else {
            panic!("{point}: not rotated on resume: {outcome:?}")
        };
        assert_eq!(*journal, open.id.0, "{point}: the same journal is resumed");
        let token = token_of(open.id);
        assert_eq!(*version, token, "{point}");
        let world = h.world();
        assert_eq!(
            world.secret.created,
            [token.as_str()],
            "{point}: one new version"
        );
        assert_eq!(world.secret.versions.len(), 2, "{point}");
        if let Some((id, value)) = first_put.first() {
            assert_eq!(
                (id, value),
                (&token, &world.secret.current().value),
                "{point}: the value created before the crash is the one promoted"
            );
        }
        assert_eq!(world.secret.current().id, token, "{point}");
        assert_eq!(
            world.secret.labelled("AWSPREVIOUS").map(|v| v.id.as_str()),
            Some("v-initial"),
            "{point}"
        );
        assert!(world.secret.labelled("AWSPENDING").is_none(), "{point}");
        assert_eq!(
            world
                .points
                .iter()
                .filter(|p| *p == "rotation:begin")
                .count(),
            1,
            "{point}: a resume begins no new journal"
        );
        drop(world);
        assert!(h.unfinished().is_none(), "{point}");
    }
}

#[test]
fn a_crash_between_put_secret_value_and_the_journal_reuses_the_stored_value() {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
    h.rotate_until_crash_after("put_pending");
    let open = h.unfinished().expect("unfinished");
    assert_eq!(
        open.last_step(),
        None,
        "the crash came before pending-created"
    );
    let stored = h
        .world()
        .secret
        .version(&token_of(open.id))
        .expect("the pending version was stored")
        .value
        .clone();

    let outcome = h.rotate();
    assert!(matches!(outcome, Outcome::Rotated { .. }), "{outcome:?}");
    let world = h.world();
    assert_eq!(world.secret.created.len(), 1, "no second version");
    assert_eq!(world.secret.current().value, stored);
}

#[test]
fn native_rotation_enabled_on_the_secret_is_refused_before_any_write() {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
    h.world().secret.rotation_enabled = true;
    let outcome = h.rotate();
    let Outcome::Refused { reason } = &outcome else {
        panic!("not refused: {outcome:?}")
    };
    assert!(reason.contains("own rotation is enabled"), "{reason}");
    let world = h.world();
    assert_eq!(world.calls, ["inspect"], "nothing but a read");
    assert!(world.points.is_empty(), "no journal was begun");
    assert_eq!(world.secret.versions.len(), 1);
    drop(world);
    assert!(h.unfinished().is_none());
}

#[test]
fn a_foreign_pending_version_is_refused_before_any_write() {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
    h.world().secret.versions.push(SmVersion {
        id: "someone-elses-rotation".to_owned(),
        value: "half-made".to_owned(),
        stages: vec!["AWSPENDING"],
    });
    let outcome = h.rotate();
    let Outcome::Refused { reason } = &outcome else {
        panic!("not refused: {outcome:?}")
    };
    assert!(reason.contains("someone-elses-rotation"), "{reason}");
    let world = h.world();
    assert_eq!(world.calls, ["inspect"]);
    assert!(world.points.is_empty());
    assert_eq!(
        world.secret.labelled("AWSPENDING").map(|v| v.id.as_str()),
        Some("someone-elses-rotation"),
        "the other rotation's version is left alone"
    );
    assert_eq!(world.secret.current().id, "v-initial");
}

/// Parks a `random` rotation at its test step with AWSPENDING stuck on its version (removing
/// it fails on every attempt), then lifts every fault; returns the parked journal's id.
fn park_with_awspending_stuck(h: &Harness) -> u64 {
    // The `random` test reads the pending version back; from then on the reads fail.
    h.fail_after_step("rotation:pending-created", "read_pending", Fault::Fails, 3);
    h.fail_after_step(
        "rotation:pending-created",
        "clear_pending",
        Fault::Fails,
        100,
    );
    let parked = h.rotate();
    let Outcome::Parked {
        step,
        reason,
        journal,
    } = &parked
    else {
        panic!("not parked: {parked:?}")
    };
    assert_eq!(step, "test");
    let token = token_of(JournalId(*journal));
    let mut world = h.world();
    assert_eq!(
        world.secret.labelled("AWSPENDING").map(|v| v.id.clone()),
        Some(token.clone()),
        "the park could not remove AWSPENDING"
    );
    assert_eq!(world.secret.current().id, "v-initial");
    world.faults.clear();
    world.faults_at.clear();
    drop(world);
    assert!(
        reason.contains(&format!(
            "AWSPENDING could not be removed from version {token}"
        )) && reason.contains("the next run removes it"),
        "the park says what is left behind: {reason}"
    );
    let entry = h.journal(*journal);
    let finished = entry
        .finished
        .as_ref()
        .expect("a parked journal is finished");
    assert_eq!(finished.outcome, "parked");
    assert_eq!(
        finished.detail["reason"],
        reason.as_str(),
        "status shows it"
    );
    *journal
}

#[test]
fn a_park_that_could_not_remove_awspending_is_cleaned_up_by_the_next_run() {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
    let parked = park_with_awspending_stuck(&h);
    let stale = token_of(JournalId(parked));
    let stale_value = h
        .world()
        .secret
        .version(&stale)
        .expect("the parked version")
        .value
        .clone();

    // No fault left: the label is whittle's own, from a finished journal of this rotation.
    h.advance(DAY);
    let calls_before = h.world().calls.len();
    let outcome = h.rotate();
    let Outcome::Rotated { version, journal } = &outcome else {
        panic!("not rotated: {outcome:?}")
    };
    assert_ne!(*journal, parked, "a new rotation, not the parked one");
    assert_eq!(*version, token_of(JournalId(*journal)));
    let world = h.world();
    let current = world.secret.current();
    assert_eq!(current.id, *version);
    let new_value = current.value.clone();
    assert_ne!(new_value, OLD_JSON);
    assert_ne!(new_value, stale_value);
    assert_eq!(
        world.secret.labelled("AWSPREVIOUS").map(|v| v.id.as_str()),
        Some("v-initial")
    );
    assert!(
        world.secret.labelled("AWSPENDING").is_none(),
        "AWSPENDING left behind"
    );
    // The stale label goes before anything new is written, and journaled before that.
    let calls = &world.calls[calls_before..];
    let position = |c: &str| calls.iter().position(|x| *x == c);
    assert!(
        position("clear_pending") < position("put_pending"),
        "{calls:?}"
    );
    drop(world);
    assert_eq!(
        h.steps(*journal),
        [
            "clearing-stale-pending",
            "stale-pending-cleared",
            "pending-created",
            "tested",
            "promoting",
            "promoted"
        ]
    );
    let entry = h.journal(*journal);
    assert_eq!(
        entry.steps[0].detail["versions"],
        json(&format!("[\"{stale}\"]"))
    );
    assert!(h.unfinished().is_none());
    let new_key = json(&new_value)["api_key"]
        .as_str()
        .expect("api_key")
        .to_owned();
    let stale_key = json(&stale_value)["api_key"]
        .as_str()
        .expect("api_key")
        .to_owned();
    for id in [parked, *journal] {
        h.assert_journal_never_holds(id, &[&new_key, &stale_key, "old-api-key-5f1c"]);
    }

    // And the one after that rotates plainly.
    h.advance(DAY);
    let next = h.rotate();
    assert!(matches!(next, Outcome::Rotated { .. }), "{next:?}");
    assert_eq!(h.steps(journal_of(&next))[0], "pending-created");
}

#[test]
fn a_stale_awspending_that_still_cannot_be_removed_is_retried_on_the_run_after() {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
    let parked = park_with_awspending_stuck(&h);
    let stale = token_of(JournalId(parked));

    h.advance(DAY);
    h.fail("clear_pending", Fault::Fails, 100);
    let calls_before = h.world().calls.len();
    let outcome = h.rotate();
    let Outcome::Parked {
        step,
        reason,
        journal,
    } = &outcome
    else {
        panic!("not parked: {outcome:?}")
    };
    assert_eq!(step, "clear stale pending");
    assert!(
        reason.contains(&format!(
            "AWSPENDING could not be removed from version {stale}"
        )) && reason.contains("the next run removes it"),
        "{reason}"
    );
    assert!(
        !reason.contains(&token_of(JournalId(*journal))),
        "nothing of the new rotation was written to withdraw: {reason}"
    );
    let mut world = h.world();
    assert!(
        !world.calls[calls_before..].contains(&"put_pending"),
        "nothing new written: {:?}",
        &world.calls[calls_before..]
    );
    assert_eq!(world.secret.versions.len(), 2);
    assert_eq!(world.secret.current().id, "v-initial");
    world.faults.clear();
    drop(world);
    assert_eq!(h.steps(*journal), ["clearing-stale-pending"]);
    assert!(h.unfinished().is_none(), "the failed clean-up is parked");

    h.advance(DAY);
    let next = h.rotate();
    assert!(matches!(next, Outcome::Rotated { .. }), "{next:?}");
    assert!(h.world().secret.labelled("AWSPENDING").is_none());
}

#[test]
fn a_rotation_interrupted_while_clearing_a_stale_awspending_finishes_on_resume() {
    for point in [
        "rotation:begin",
        "rotation:clearing-stale-pending",
        "rotation:stale-pending-cleared",
    ] {
        let h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
        park_with_awspending_stuck(&h);
        h.advance(DAY);
        h.rotate_until_crash_at(point);
        let open = h
            .unfinished()
            .expect("the interrupted journal is unfinished");
        let outcome = h.rotate();
        let Outcome::Rotated { journal, .. } = &outcome else {
            panic!("{point}: not rotated on resume: {outcome:?}")
        };
        assert_eq!(*journal, open.id.0, "{point}: the same journal is resumed");
        assert!(h.world().secret.labelled("AWSPENDING").is_none(), "{point}");
    }
}

#[test]
fn a_whittle_shaped_pending_version_that_is_not_this_rotations_finished_one_is_refused() {
    type Setup = fn(&Harness) -> Option<JournalId>;
    let cases: [(&str, Setup); 5] = [
        ("no such journal", |_| Some(JournalId(4242))),
        ("another rotation's finished journal", |h| {
            let id = h
                .state
                .journal_begin(
                    "rotation",
                    "other-rotation",
                    json(r#"{"secret":"prod/billing/api-key"}"#),
                    Timestamp(T0),
                )
                .expect("begin");
            h.state
                .journal_finish(id, "parked", json("{}"), Timestamp(T0))
                .expect("finish");
            Some(id)
        }),
        ("another rotation's unfinished journal", |h| {
            Some(
                h.state
                    .journal_begin(
                        "rotation",
                        "other-rotation",
                        json(r#"{"secret":"prod/billing/api-key"}"#),
                        Timestamp(T0),
                    )
                    .expect("begin"),
            )
        }),
        ("a finished journal of another kind", |h| {
            let id = h
                .state
                .journal_begin(
                    "trial",
                    "billing-key",
                    json(r#"{"secret":"prod/billing/api-key"}"#),
                    Timestamp(T0),
                )
                .expect("begin");
            h.state
                .journal_finish(id, "completed", json("{}"), Timestamp(T0))
                .expect("finish");
            Some(id)
        }),
        ("this rotation's finished journal of another secret", |h| {
            let id = h
                .state
                .journal_begin(
                    "rotation",
                    "billing-key",
                    json(r#"{"secret":"prod/other/api-key"}"#),
                    Timestamp(T0),
                )
                .expect("begin");
            h.state
                .journal_finish(id, "parked", json("{}"), Timestamp(T0))
                .expect("finish");
            Some(id)
        }),
    ];
    for (case, setup) in cases {
        let h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
        let id = setup(&h).expect("a journal id");
        let token = token_of(id);
        h.world().secret.versions.push(SmVersion {
            id: token.clone(),
            value: "half-made".to_owned(),
            stages: vec!["AWSPENDING"],
        });
        let outcome = h.rotate();
        let Outcome::Refused { reason } = &outcome else {
            panic!("{case}: not refused: {outcome:?}")
        };
        assert_eq!(
            *reason,
            format!(
                "version {token} already carries AWSPENDING (another rotation is in progress); finish or cancel it first"
            ),
            "{case}"
        );
        let world = h.world();
        assert_eq!(world.calls, ["inspect"], "{case}");
        assert!(world.points.is_empty(), "{case}");
        assert_eq!(
            world.secret.labelled("AWSPENDING").map(|v| v.id.as_str()),
            Some(token.as_str()),
            "{case}: the other version is left alone"
        );
    }
}

#[test]
fn transient_failures_are_retried_with_doubling_back_off() {
    let mut h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
    h.spec.retry_delay = secs(2);
    h.fail("put_pending", Fault::Fails, 2);
    let outcome = h.rotate();
    assert!(matches!(outcome, Outcome::Rotated { .. }), "{outcome:?}");
    let world = h.world();
    assert_eq!(world.slept, [secs(2), secs(4)]);
    assert_eq!(world.now, T0 + 6 * SECOND);
    assert_eq!(world.secret.created.len(), 1);
}

#[test]
fn a_test_that_keeps_failing_parks_after_the_attempts_with_back_off() {
    let mut h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
    h.spec.attempts = 4;
    h.spec.retry_delay = secs(2);
    // The `random` test reads the pending version back; from then on the reads fail.
    h.fail_after_step(
        "rotation:pending-created",
        "read_pending",
        Fault::Fails,
        100,
    );
    let outcome = h.rotate();
    let Outcome::Parked {
        step,
        reason,
        journal,
    } = &outcome
    else {
        panic!("not parked: {outcome:?}")
    };
    assert_eq!(step, "test");
    assert!(reason.contains("failed 4 time(s)"), "{reason}");
    let world = h.world();
    assert_eq!(world.slept, [secs(2), secs(4), secs(8)]);
    assert_eq!(world.now, T0 + 14 * SECOND);
    assert!(
        world.secret.labelled("AWSPENDING").is_none(),
        "AWSPENDING removed"
    );
    assert_eq!(world.secret.current().id, "v-initial");
    assert_eq!(
        world.secret.current().value,
        OLD_JSON,
        "the old value stays in use"
    );
    assert!(!world.points.contains(&"rotation:promoting".to_owned()));
    drop(world);
    let entry = h.journal(*journal);
    let finished = entry
        .finished
        .as_ref()
        .expect("a parked journal is finished");
    assert_eq!(finished.outcome, "parked");
    assert_eq!(finished.detail["step"], "test");
}

#[test]
fn the_rotation_window_stops_retries() {
    let mut h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
    h.spec.attempts = 10;
    h.spec.retry_delay = secs(2);
    h.spec.deadline = Some(Timestamp(T0 + 5 * SECOND));
    h.fail("put_pending", Fault::Fails, 100);
    let outcome = h.rotate();
    let Outcome::Parked { step, reason, .. } = &outcome else {
        panic!("not parked: {outcome:?}")
    };
    assert_eq!(step, "create pending");
    assert!(reason.contains("rotation window closed"), "{reason}");
    let world = h.world();
    // Tries at T0 and T0+2s; a third try would start at T0+6s, past the window.
    assert_eq!(world.slept, [secs(2)]);
    assert_eq!(
        world.calls.iter().filter(|c| **c == "put_pending").count(),
        2
    );
    assert_eq!(world.secret.current().id, "v-initial");
}

#[test]
fn a_lost_promotion_answer_counts_as_promoted() {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
    h.fail("promote", Fault::AnswerLost, 3);
    let outcome = h.rotate();
    let Outcome::Rotated { version, journal } = &outcome else {
        panic!("not rotated: {outcome:?}")
    };
    assert_eq!(*version, token_of(JournalId(*journal)));
    assert_eq!(h.sm_current().id, *version);
    assert!(h.steps(*journal).contains(&"promoted".to_owned()));
}

#[test]
fn a_promotion_whose_pending_label_could_not_be_cleared_leaves_no_awspending() {
    // AWSCURRENT moves, then removing AWSPENDING fails on every promotion attempt (3), and in
    // the second case once more, when the machine confirms the promotion.
    for failures in [3, 4] {
        let h = Harness::new(Store::SecretsManager, shipped("rotate-random.toml"));
        h.fail_after_step(
            "rotation:promoting",
            "clear_pending",
            Fault::Fails,
            failures,
        );
        let first = h.rotate();
        let journal = journal_of(&first);
        assert_eq!(
            h.sm_current().id,
            token_of(JournalId(journal)),
            "{failures}: the new value is current: {first:?}"
        );
        if failures == 4 {
            assert!(
                matches!(&first, Outcome::Waiting { reason, .. } if reason.contains("AWSPENDING")),
                "{failures}: {first:?}"
            );
            assert!(
                h.unfinished().is_some(),
                "{failures}: the journal stays open"
            );
            let second = h.rotate();
            assert!(
                matches!(second, Outcome::Rotated { .. }),
                "{failures}: {second:?}"
            );
        } else {
            assert!(
                matches!(first, Outcome::Rotated { .. }),
                "{failures}: {first:?}"
            );
        }
        assert!(
            h.world().secret.labelled("AWSPENDING").is_none(),
            "{failures}: AWSPENDING stuck on the current version"
        );
        assert!(h.unfinished().is_none(), "{failures}");
        // And the next rotation is not refused because of a leftover label.
        h.advance(DAY);
        let next = h.rotate();
        assert!(
            matches!(next, Outcome::Rotated { .. }),
            "{failures}: {next:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// `command`.

#[test]
fn command_playbook_installs_and_tests_the_pending_value_before_promotion() {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-command.toml"));
    h.world().secret = SecretsManager::holding("old-db-password-1");
    h.world().target.installed = "old-db-password-1".to_owned();
    let outcome = h.rotate();
    assert!(matches!(outcome, Outcome::Rotated { .. }), "{outcome:?}");
    let world = h.world();
    let new = world.secret.current().value.clone();
    assert_eq!(world.target.installed, new);
    let runs: Vec<(&str, &str)> = world
        .target
        .runs
        .iter()
        .map(|(p, v)| (p.rsplit('/').next().unwrap_or(p), v.as_str()))
        .collect();
    assert_eq!(
        runs,
        [
            ("set-db-password", new.as_str()),
            ("check-db-login", new.as_str())
        ]
    );
    let position = |c: &str| world.calls.iter().rposition(|x| *x == c);
    assert!(position("run") < position("promote"), "{:?}", world.calls);
    assert!(world.points.contains(&"rotation:target-set".to_owned()));
}

#[test]
fn command_test_that_fails_parks_and_reinstalls_the_current_value() {
    let mut h = Harness::new(Store::SecretsManager, shipped("rotate-command.toml"));
    h.spec.retry_delay = secs(5);
    h.world().secret = SecretsManager::holding("old-db-password-1");
    h.world().target.installed = "old-db-password-1".to_owned();
    h.world().target.login_broken = true;
    let outcome = h.rotate();
    let Outcome::Parked { step, reason, .. } = &outcome else {
        panic!("not parked: {outcome:?}")
    };
    assert_eq!(step, "test");
    let world = h.world();
    assert_eq!(world.slept, [secs(5), secs(10)]);
    let (program, stdin) = world.target.runs.last().expect("runs");
    assert!(program.ends_with("/set-db-password"), "{program}");
    assert_eq!(
        stdin, "old-db-password-1",
        "the current value is re-installed"
    );
    assert_eq!(world.target.installed, "old-db-password-1");
    assert_eq!(world.secret.current().value, "old-db-password-1");
    assert!(world.secret.labelled("AWSPENDING").is_none());
    let pending = &world.secret.versions[1].value;
    assert!(!reason.contains(pending.as_str()), "{reason}");
}

// ---------------------------------------------------------------------------------------------
// SSM Parameter Store.

fn ssm_random() -> Playbook {
    inline("kind = \"random\"\nlength = 24\nalphabet = \"base64url\"\n")
}

#[test]
fn ssm_rotation_keeps_only_ciphertext_in_the_journal_and_labels_versions() {
    let h = Harness::new(Store::Ssm, ssm_random());
    h.rotate_until_crash_at("rotation:pending-created");
    let open = h.unfinished().expect("unfinished");
    let pending = h
        .world()
        .kms
        .plaintexts
        .first()
        .cloned()
        .expect("the pending value was encrypted");
    h.assert_journal_never_holds(open.id.0, &[&pending]);
    let ciphertext = open.steps[0].detail["ciphertext"]
        .as_str()
        .expect("the step keeps the ciphertext");
    let blob = base64::engine::general_purpose::STANDARD
        .decode(ciphertext)
        .expect("base64");
    assert!(
        !blob.windows(pending.len()).any(|w| w == pending.as_bytes()),
        "the fake's ciphertext must not hold the plaintext"
    );
    assert_eq!(h.world().parameter.versions.len(), 3, "nothing written yet");

    let outcome = h.rotate();
    let Outcome::Rotated { version, journal } = &outcome else {
        panic!("not rotated: {outcome:?}")
    };
    assert_eq!(version, "4");
    let world = h.world();
    assert!(world.calls.contains(&"decrypt"), "the resume decrypts");
    assert_eq!(world.parameter.latest().value, pending);
    assert_eq!(world.parameter.versions.len(), 4);
    assert_eq!(
        world.parameter.labelled("current").map(|v| v.number),
        Some(4)
    );
    assert_eq!(
        world.parameter.labelled("previous").map(|v| v.number),
        Some(3)
    );
    drop(world);
    h.assert_journal_never_holds(*journal, &[&pending, "old-db-password-3-kq7"]);
}

#[test]
fn ssm_promotion_repeated_after_a_crash_writes_one_version() {
    let h = Harness::new(Store::Ssm, ssm_random());
    h.rotate_until_crash_after("promote");
    assert_eq!(h.world().parameter.versions.len(), 4);
    let outcome = h.rotate();
    assert!(
        matches!(&outcome, Outcome::Rotated { version, .. } if version == "4"),
        "{outcome:?}"
    );
    let world = h.world();
    assert_eq!(
        world.parameter.versions.len(),
        4,
        "one new version, not two"
    );
    assert_eq!(
        world.parameter.labelled("current").map(|v| v.number),
        Some(4)
    );
    assert_eq!(
        world.parameter.labelled("previous").map(|v| v.number),
        Some(3)
    );
}

#[test]
fn ssm_without_a_kms_key_parks_before_writing_anything() {
    let mut h = Harness::new(Store::Ssm, ssm_random());
    h.spec.kms_key = None;
    let outcome = h.rotate();
    let Outcome::Parked { step, reason, .. } = &outcome else {
        panic!("not parked: {outcome:?}")
    };
    assert_eq!(step, "create pending");
    assert!(reason.contains("no kms_key"), "{reason}");
    assert_eq!(h.world().parameter.versions.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// `iam-access-key`.

fn iam_harness() -> Harness {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-iam-access-key.toml"));
    h.world().secret = SecretsManager::holding(
        &serde_json::json!({
            "AccessKeyId": OLD_KEY_ID,
            "SecretAccessKey": OLD_KEY_SECRET,
            "region": "eu-west-1"
        })
        .to_string(),
    );
    h
}

fn key_ids(h: &Harness) -> Vec<(String, bool)> {
    h.world()
        .iam
        .keys
        .iter()
        .map(|k| (k.id.clone(), k.active))
        .collect()
}

#[test]
fn iam_key_rotation_deactivates_after_grace_and_no_use_then_deletes_later() {
    let h = iam_harness();
    // An inactive stray key (not the one in the secret) makes room for the new one.
    h.world().iam.keys.push(IamKey {
        id: "AKIASTRAYKEY00000009".to_owned(),
        secret: "stray".to_owned(),
        active: false,
        usable_at: 0,
        last_used: None,
    });
    let first = h.rotate();
    let Outcome::Waiting {
        version, reason, ..
    } = &first
    else {
        panic!("not waiting: {first:?}")
    };
    assert!(reason.contains("grace period"), "{reason}");
    let new_id = {
        let world = h.world();
        assert_eq!(world.iam.deleted, ["AKIASTRAYKEY00000009"]);
        assert_eq!(world.iam.created.len(), 1);
        assert_eq!(world.secret.current().id, *version);
        let current = json(&world.secret.current().value);
        assert_eq!(current["AccessKeyId"], world.iam.created[0].as_str());
        assert_eq!(current["region"], "eu-west-1");
        // The test retried while IAM propagated the key (3 s): 1 s + 2 s of back-off.
        assert_eq!(world.slept, [secs(1), secs(2)]);
        world.iam.created[0].clone()
    };
    let promoted = T0 + 3 * SECOND;
    assert_eq!(
        key_ids(&h),
        [(OLD_KEY_ID.to_owned(), true), (new_id.clone(), true)]
    );

    // Within the grace period: still waiting, the old key untouched.
    h.advance(30 * MINUTE);
    let outcome = h.rotate();
    assert!(
        matches!(&outcome, Outcome::Waiting { reason, .. } if reason.contains("grace")),
        "{outcome:?}"
    );
    assert_eq!(key_ids(&h)[0], (OLD_KEY_ID.to_owned(), true));

    // After the grace period, unused since promotion: deactivated, deleted later.
    h.advance(31 * MINUTE);
    let outcome = h.rotate();
    let Outcome::Waiting { reason, .. } = &outcome else {
        panic!("not waiting: {outcome:?}")
    };
    assert!(reason.contains("is inactive and is deleted at"), "{reason}");
    assert_eq!(
        key_ids(&h),
        [(OLD_KEY_ID.to_owned(), false), (new_id.clone(), true)]
    );
    let deactivated = h.world().now;
    assert!(deactivated >= promoted + HOUR);

    h.advance(7 * DAY - MINUTE);
    let outcome = h.rotate();
    assert!(matches!(outcome, Outcome::Waiting { .. }), "{outcome:?}");
    assert_eq!(key_ids(&h).len(), 2, "not deleted before delete_after");

    h.advance(MINUTE);
    let outcome = h.rotate();
    let Outcome::Rotated { journal, .. } = &outcome else {
        panic!("not rotated: {outcome:?}")
    };
    assert_eq!(key_ids(&h), [(new_id.clone(), true)]);
    assert_eq!(h.world().iam.deleted, ["AKIASTRAYKEY00000009", OLD_KEY_ID]);
    assert!(h.unfinished().is_none());
    let steps = h.steps(*journal);
    for step in [
        "deleting-stray",
        "creating-key",
        "pending-created",
        "tested",
        "promoted",
        "deactivated",
        "deleted",
    ] {
        assert!(
            steps.contains(&step.to_owned()),
            "{step} missing: {steps:?}"
        );
    }
    let new_secret = h
        .world()
        .iam
        .key(&new_id)
        .map(|k| k.secret.clone())
        .expect("the new key exists");
    h.assert_journal_never_holds(*journal, &[&new_secret, OLD_KEY_SECRET]);
}

#[test]
fn iam_old_key_used_after_promotion_stays_active() {
    let h = iam_harness();
    let first = h.rotate();
    assert!(matches!(first, Outcome::Waiting { .. }), "{first:?}");
    // A consumer still used the old key after the promotion.
    let used = h.world().now + 10 * MINUTE;
    h.world()
        .iam
        .key_mut(OLD_KEY_ID)
        .expect("old key")
        .last_used = Some(used);
    h.advance(2 * DAY);
    let outcome = h.rotate();
    let Outcome::Waiting { reason, .. } = &outcome else {
        panic!("not waiting: {outcome:?}")
    };
    assert!(reason.contains("was used at"), "{reason}");
    assert_eq!(key_ids(&h)[0], (OLD_KEY_ID.to_owned(), true));
    assert!(!h.world().calls.contains(&"deactivate_access_key"));
}

#[test]
fn iam_an_active_extra_key_stops_the_rotation_and_nothing_is_deleted() {
    let h = iam_harness();
    h.world().iam.keys.push(IamKey {
        id: "AKIAOTHERACTIVE00001".to_owned(),
        secret: "other".to_owned(),
        active: true,
        usable_at: 0,
        last_used: Some(T0),
    });
    let outcome = h.rotate();
    let Outcome::Parked { step, reason, .. } = &outcome else {
        panic!("not parked: {outcome:?}")
    };
    assert_eq!(step, "create pending");
    assert!(
        reason.contains("second active key AKIAOTHERACTIVE00001"),
        "{reason}"
    );
    let world = h.world();
    assert!(world.iam.deleted.is_empty());
    assert!(world.iam.created.is_empty());
    assert_eq!(world.iam.keys.len(), 2);
    assert!(world.iam.keys.iter().all(|k| k.active));
    assert_eq!(world.secret.versions.len(), 1, "no pending version");
}

#[test]
fn iam_a_key_whose_secret_was_lost_in_a_crash_is_deleted_on_resume() {
    let h = iam_harness();
    h.rotate_until_crash_at("rotation:key-created");
    let orphan = h.world().iam.created[0].clone();
    let outcome = h.rotate();
    assert!(matches!(outcome, Outcome::Waiting { .. }), "{outcome:?}");
    let world = h.world();
    assert_eq!(world.iam.deleted, [orphan.as_str()]);
    assert_eq!(world.iam.created.len(), 2);
    let current = json(&world.secret.current().value);
    assert_eq!(current["AccessKeyId"], world.iam.created[1].as_str());
    let ids: Vec<&str> = world.iam.keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, [OLD_KEY_ID, world.iam.created[1].as_str()]);
}

#[test]
fn iam_a_new_key_that_never_works_is_deleted_and_the_old_one_kept() {
    let h = iam_harness();
    h.world().iam.propagation = None;
    let outcome = h.rotate();
    let Outcome::Parked { step, reason, .. } = &outcome else {
        panic!("not parked: {outcome:?}")
    };
    assert_eq!(step, "test");
    assert!(reason.contains("did not work within 2m"), "{reason}");
    let world = h.world();
    assert!(
        world.now >= T0 + 2 * MINUTE,
        "kept testing for propagation_timeout"
    );
    assert!(world.now < T0 + 3 * MINUTE);
    assert_eq!(
        world.iam.deleted, world.iam.created,
        "the unpromoted key is deleted"
    );
    assert_eq!(world.iam.keys.len(), 1);
    assert!(world.iam.keys[0].active && world.iam.keys[0].id == OLD_KEY_ID);
    assert_eq!(world.secret.current().id, "v-initial");
    assert!(world.secret.labelled("AWSPENDING").is_none());
}

#[test]
fn iam_a_promoted_key_survives_a_resume_that_cannot_read_the_pending_value() {
    let h = iam_harness();
    let first = h.rotate();
    assert!(matches!(first, Outcome::Waiting { .. }), "{first:?}");
    let new_id = h.world().iam.created[0].clone();

    // The next run (after the grace period) cannot read the secret for a while.
    h.advance(2 * HOUR);
    h.fail("read_pending", Fault::Fails, 3);
    let outcome = h.rotate();
    assert!(
        matches!(&outcome, Outcome::Waiting { reason, .. } if reason.contains("after promotion")),
        "a promoted rotation parked: {outcome:?}"
    );
    assert_eq!(
        key_ids(&h),
        [(OLD_KEY_ID.to_owned(), true), (new_id.clone(), true)],
        "the key in use was deleted: {outcome:?}"
    );
    assert!(h.unfinished().is_some(), "the rotation continues later");

    // Once the secret reads again, the rotation goes on.
    let outcome = h.rotate();
    assert!(
        matches!(&outcome, Outcome::Waiting { reason, .. } if reason.contains("is inactive")),
        "{outcome:?}"
    );
    assert_eq!(
        key_ids(&h),
        [(OLD_KEY_ID.to_owned(), false), (new_id, true)]
    );
}

#[test]
fn iam_a_key_that_may_have_been_promoted_is_never_deleted() {
    let h = iam_harness();
    // Secrets Manager becomes unreachable during promotion: the first request went through,
    // its answer and every later call to Secrets Manager are lost for a while. IAM works.
    h.fail_after_step("rotation:promoting", "promote", Fault::AnswerLost, 1);
    h.fail_after_step("rotation:promoting", "promote", Fault::Fails, 2);
    h.fail_after_step("rotation:promoting", "inspect", Fault::Fails, 1);
    let outcome = h.rotate();
    let current = json(&h.sm_current().value);
    let in_use = current["AccessKeyId"]
        .as_str()
        .expect("AccessKeyId")
        .to_owned();
    assert_ne!(in_use, OLD_KEY_ID, "the promotion went through");
    assert!(
        h.world().iam.key(&in_use).is_some_and(|k| k.active),
        "the key AWSCURRENT holds was deleted: {outcome:?}"
    );
    assert!(
        h.world().iam.key(OLD_KEY_ID).is_some_and(|k| k.active),
        "the old key stays valid: {outcome:?}"
    );
    let Outcome::Parked { step, reason, .. } = &outcome else {
        panic!("not parked: {outcome:?}")
    };
    assert_eq!(step, "promote");
    assert!(
        reason.contains("unknown") && reason.contains("was kept"),
        "{reason}"
    );
    assert!(h.world().iam.deleted.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Readers end the grace period early.

#[test]
fn readers_end_the_grace_period_early_only_when_every_known_reader_moved() {
    let after = |m: u64| T0 + 3 * SECOND + m * MINUTE;
    let before = T0 - HOUR;
    let cases: [(&str, Option<Vec<u64>>, bool); 5] = [
        (
            "all read after promotion",
            Some(vec![after(1), after(2)]),
            true,
        ),
        (
            "one read exactly at promotion",
            Some(vec![after(0), after(2)]),
            true,
        ),
        (
            "one did not read since",
            Some(vec![after(1), before]),
            false,
        ),
        ("no known reader", Some(Vec::new()), false),
        ("usage unknown", None, false),
    ];
    for (case, readers, ends_early) in cases {
        let mut h = iam_harness();
        let first = h.rotate();
        assert!(
            matches!(first, Outcome::Waiting { .. }),
            "{case}: {first:?}"
        );
        assert_eq!(
            h.unfinished().and_then(|e| e
                .steps
                .iter()
                .find(|s| s.name == "promoted")
                .map(|s| s.at)),
            Some(Timestamp(after(0))),
            "{case}"
        );
        h.advance(5 * MINUTE);
        h.spec.readers = readers.map(|r| r.into_iter().map(Timestamp).collect());
        let outcome = h.rotate();
        let Outcome::Waiting { reason, .. } = &outcome else {
            panic!("{case}: not waiting: {outcome:?}")
        };
        let deactivated = !key_ids(&h)[0].1;
        assert_eq!(deactivated, ends_early, "{case}: {reason}");
        if !ends_early {
            assert!(
                reason.contains("after the grace period"),
                "{case}: {reason}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `http`.

fn http_harness() -> Harness {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-http.toml"));
    h.world().secret = SecretsManager::holding(
        &serde_json::json!({ "api_key": OLD_PROVIDER_KEY, "key_id": "k-0001", "team": "billing" })
            .to_string(),
    );
    h
}

#[test]
fn http_playbook_creates_tests_and_revokes_with_the_right_keys() {
    let h = http_harness();
    let first = h.rotate();
    assert!(
        matches!(&first, Outcome::Waiting { reason, .. } if reason.contains("revoked at the provider after the grace period")),
        "{first:?}"
    );
    let (new_key, new_id) = {
        let world = h.world();
        let current = json(&world.secret.current().value);
        let key = current["api_key"].as_str().expect("api_key").to_owned();
        let id = current["key_id"].as_str().expect("key_id").to_owned();
        assert_eq!(current["team"], "billing");
        assert_ne!(key, OLD_PROVIDER_KEY);
        let received: Vec<(&str, &str, &str)> = world
            .provider
            .received
            .iter()
            .map(|r| (r.method.as_str(), r.url.as_str(), r.authorization.as_str()))
            .collect();
        assert_eq!(
            received,
            [
                (
                    "POST",
                    "https://api.vendor.example/v1/keys",
                    format!("Bearer {OLD_PROVIDER_KEY}").as_str()
                ),
                (
                    "GET",
                    "https://api.vendor.example/v1/whoami",
                    format!("Bearer {key}").as_str()
                ),
            ]
        );
        assert_eq!(
            world.provider.received[0].body.as_deref(),
            Some(r#"{"name": "rotated-by-whittle"}"#)
        );
        assert!(world.provider.keys.iter().all(|k| !k.revoked));
        (key, id)
    };

    h.advance(HOUR);
    let outcome = h.rotate();
    let Outcome::Rotated { journal, .. } = &outcome else {
        panic!("not rotated: {outcome:?}")
    };
    let world = h.world();
    let revoke = world.provider.received.last().expect("a revoke request");
    assert_eq!(revoke.method, "DELETE");
    assert_eq!(revoke.url, "https://api.vendor.example/v1/keys/k-0001");
    assert_eq!(revoke.authorization, format!("Bearer {new_key}"));
    let old = world
        .provider
        .keys
        .iter()
        .find(|k| k.id == "k-0001")
        .expect("old");
    assert!(old.revoked);
    let new = world
        .provider
        .keys
        .iter()
        .find(|k| k.id == new_id)
        .expect("new");
    assert!(!new.revoked);
    drop(world);
    h.assert_journal_never_holds(*journal, &[&new_key, OLD_PROVIDER_KEY]);
}

#[test]
fn http_errors_and_journals_never_contain_the_keys() {
    // The provider refuses the new key on every test.
    let h = http_harness();
    h.world().provider.forced.push(("GET", 401));
    let outcome = h.rotate();
    let Outcome::Parked {
        step,
        reason,
        journal,
    } = &outcome
    else {
        panic!("not parked: {outcome:?}")
    };
    assert_eq!(step, "test");
    assert!(
        reason.contains("GET https://api.vendor.example/v1/whoami: HTTP 401"),
        "{reason}"
    );
    assert!(reason.contains("revoke it at the provider"), "{reason}");
    assert_eq!(
        h.world().provider.received[1].label,
        "GET https://api.vendor.example/v1/whoami",
        "requests are named by their URL template"
    );
    let new_key = h.world().provider.keys[1].key.clone();
    let shown = format!("{outcome:?} {reason}");
    for key in [new_key.as_str(), OLD_PROVIDER_KEY] {
        assert!(!shown.contains(key), "{shown}");
    }
    h.assert_journal_never_holds(*journal, &[&new_key, OLD_PROVIDER_KEY]);
    assert_eq!(json(&h.sm_current().value)["api_key"], OLD_PROVIDER_KEY);

    // The provider fails the creation.
    let h = http_harness();
    h.world().provider.forced.push(("POST", 500));
    let outcome = h.rotate();
    let Outcome::Parked {
        step,
        reason,
        journal,
    } = &outcome
    else {
        panic!("not parked: {outcome:?}")
    };
    assert_eq!(step, "create pending");
    assert!(
        reason.contains("POST https://api.vendor.example/v1/keys: HTTP 500"),
        "{reason}"
    );
    assert!(!format!("{outcome:?}").contains(OLD_PROVIDER_KEY));
    h.assert_journal_never_holds(*journal, &[OLD_PROVIDER_KEY]);
}

// ---------------------------------------------------------------------------------------------
// `native`.

#[test]
fn native_playbook_follows_the_lambda_until_current_moves() {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-native.toml"));
    h.world().secret.rotation_enabled = true;
    h.world().lambda.finishes_after_reads = Some(3);
    let outcome = h.rotate();
    let Outcome::Rotated { version, journal } = &outcome else {
        panic!("not rotated: {outcome:?}")
    };
    assert_eq!(*version, token_of(JournalId(*journal)));
    let world = h.world();
    assert_eq!(world.lambda.requested, [version.as_str()]);
    assert_eq!(world.secret.current().id, *version);
    assert_eq!(world.slept, [secs(5), secs(5), secs(5)], "polled every 5 s");
    drop(world);
    assert_eq!(h.steps(*journal), ["rotating", "requested", "promoted"]);
}

#[test]
fn native_playbook_parks_when_the_lambda_never_finishes_and_clears_its_pending_label() {
    let h = Harness::new(Store::SecretsManager, shipped("rotate-native.toml"));
    h.world().secret.rotation_enabled = true;
    let outcome = h.rotate();
    let Outcome::Parked { step, reason, .. } = &outcome else {
        panic!("not parked: {outcome:?}")
    };
    assert_eq!(step, "follow");
    assert!(reason.contains("within 10m"), "{reason}");
    let world = h.world();
    assert!(world.now >= T0 + 10 * MINUTE && world.now <= T0 + 10 * MINUTE + 5 * SECOND);
    assert!(
        world.secret.labelled("AWSPENDING").is_none(),
        "the Lambda's AWSPENDING is removed"
    );
    assert_eq!(world.secret.current().id, "v-initial");
}
