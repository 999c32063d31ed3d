//! `whittle rotate` and the daemon's rotation jobs: which rotations are due, running the
//! state machine of `whittle_playbooks::rotation::machine` with the AWS adapters as its
//! ports, and the record of each rotation's last outcome.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::info;
use whittle_playbooks::rotation::machine::{
    self, AccessKey, HttpCall, Inspection, Outcome, PortError, Ports, ROTATION_JOURNAL, Spec, Store,
};
use whittle_playbooks::rotation::{self, Playbook, SecretValue};
use whittle_state::{JournalEntry, Record, State, Timestamp};

use crate::aws::{Aws, describe};
use crate::clock;
use crate::config::{Config, RotationConfig};
use crate::guard;
use crate::reconcile::Recovery;

/// The last outcome of one rotation, keyed by its name. Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotationRecord {
    pub last_attempt_at: Timestamp,
    /// The last successful rotation, which the timetable counts from.
    pub last_rotated_at: Option<Timestamp>,
    pub last_version: Option<String>,
    /// `rotated`, `parked` or `refused`.
    pub last_outcome: String,
    /// Why the last attempt was parked or refused.
    pub reason: Option<String>,
}

impl Record for RotationRecord {
    const TREE: &'static str = "rotations";
    const VERSION: u16 = 1;
    type Key = String;
}

/// The AWS adapters as the rotation machine's ports.
struct AwsPorts<'a> {
    aws: &'a Aws,
    /// The usage store, for the secret's consumers.
    state: &'a State,
    lookback_days: u32,
}

/// Whether a secret id or parameter name from a CloudTrail event names the rotated secret: the
/// same name, or an ARN of it (a Secrets Manager ARN ends in `-` and six random characters).
fn names_secret(key: &str, spec: &Spec) -> bool {
    if key == spec.secret {
        return true;
    }
    match spec.store {
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
            name_of(key) == name_of(&spec.secret)
        }
        Store::Ssm => {
            let bare = |s: &str| -> String {
                s.split_once(":parameter")
                    .map_or(s, |(_, rest)| rest)
                    .trim_start_matches('/')
                    .to_owned()
            };
            bare(key) == bare(&spec.secret)
        }
    }
}

fn port_error(call: &str, spec: &Spec, e: impl std::fmt::Display) -> PortError {
    PortError(format!("{call} {}: {e}", spec.secret))
}

impl AwsPorts<'_> {
    fn iam(&self, spec: &Spec) -> Result<aws_sdk_iam::Client, PortError> {
        let sdk = self
            .aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.to_string()))?;
        Ok(aws_sdk_iam::Client::new(sdk))
    }
}

impl Ports for AwsPorts<'_> {
    async fn inspect(&self, spec: &Spec) -> Result<Inspection, PortError> {
        let sdk = self
            .aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.to_string()))?;
        let endpoint = self.aws.endpoint();
        match spec.store {
            Store::SecretsManager => {
                let sm = aws_sdk_secretsmanager::Client::new(sdk);
                let described = sm
                    .describe_secret()
                    .secret_id(&spec.secret)
                    .send()
                    .await
                    .map_err(|e| {
                        port_error(
                            "secretsmanager:DescribeSecret",
                            spec,
                            describe(&e, endpoint),
                        )
                    })?;
                let pending_versions = described
                    .version_ids_to_stages()
                    .into_iter()
                    .flatten()
                    .filter(|(_, stages)| stages.iter().any(|s| s == "AWSPENDING"))
                    .map(|(id, _)| id.clone())
                    .collect();
                // Always ask for the stage: moto (and old SDK habits) can answer a stage-less
                // read with another version.
                let current = sm
                    .get_secret_value()
                    .secret_id(&spec.secret)
                    .version_stage("AWSCURRENT")
                    .send()
                    .await
                    .map_err(|e| {
                        port_error(
                            "secretsmanager:GetSecretValue",
                            spec,
                            describe(&e, endpoint),
                        )
                    })?;
                Ok(Inspection {
                    current: SecretValue::new(
                        current.secret_string().unwrap_or_default().to_owned(),
                    ),
                    current_version: current.version_id().unwrap_or_default().to_owned(),
                    native_rotation: described.rotation_enabled().unwrap_or(false),
                    pending_versions,
                })
            }
            Store::Ssm => {
                let ssm = aws_sdk_ssm::Client::new(sdk);
                let out = ssm
                    .get_parameter()
                    .name(&spec.secret)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| port_error("ssm:GetParameter", spec, describe(&e, endpoint)))?;
                let parameter = out
                    .parameter()
                    .ok_or_else(|| port_error("ssm:GetParameter", spec, "no parameter returned"))?;
                Ok(Inspection {
                    current: SecretValue::new(parameter.value().unwrap_or_default().to_owned()),
                    current_version: parameter.version().to_string(),
                    native_rotation: false,
                    pending_versions: Vec::new(),
                })
            }
        }
    }

    async fn put_pending(
        &self,
        spec: &Spec,
        token: &str,
        value: &SecretValue,
    ) -> Result<(), PortError> {
        if spec.store != Store::SecretsManager {
            return Ok(());
        }
        let sdk = self
            .aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.to_string()))?;
        aws_sdk_secretsmanager::Client::new(sdk)
            .put_secret_value()
            .secret_id(&spec.secret)
            .client_request_token(token)
            .secret_string(value.expose())
            .version_stages("AWSPENDING")
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "secretsmanager:PutSecretValue",
                    spec,
                    describe(&e, self.aws.endpoint()),
                )
            })?;
        Ok(())
    }

    async fn read_pending(
        &self,
        spec: &Spec,
        token: &str,
    ) -> Result<Option<SecretValue>, PortError> {
        if spec.store != Store::SecretsManager {
            return Ok(None);
        }
        let sdk = self
            .aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.to_string()))?;
        match aws_sdk_secretsmanager::Client::new(sdk)
            .get_secret_value()
            .secret_id(&spec.secret)
            .version_id(token)
            .send()
            .await
        {
            Ok(out) => Ok(Some(SecretValue::new(
                out.secret_string().unwrap_or_default().to_owned(),
            ))),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(port_error(
                "secretsmanager:GetSecretValue",
                spec,
                describe(&e, self.aws.endpoint()),
            )),
        }
    }

    async fn promote(
        &self,
        spec: &Spec,
        token: &str,
        value: &SecretValue,
    ) -> Result<String, PortError> {
        let sdk = self
            .aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.to_string()))?;
        let endpoint = self.aws.endpoint();
        let now = self.inspect(spec).await?;
        match spec.store {
            Store::SecretsManager => {
                let sm = aws_sdk_secretsmanager::Client::new(sdk);
                if now.current_version != token {
                    // AWS moves AWSPREVIOUS to the version that loses AWSCURRENT.
                    sm.update_secret_version_stage()
                        .secret_id(&spec.secret)
                        .version_stage("AWSCURRENT")
                        .move_to_version_id(token)
                        .remove_from_version_id(&now.current_version)
                        .send()
                        .await
                        .map_err(|e| {
                            port_error(
                                "secretsmanager:UpdateSecretVersionStage",
                                spec,
                                describe(&e, endpoint),
                            )
                        })?;
                }
                self.clear_pending(spec, token).await?;
                Ok(token.to_owned())
            }
            Store::Ssm => {
                let ssm = aws_sdk_ssm::Client::new(sdk);
                let (version, previous) = if now.current == *value {
                    // Written before an interruption: only the labels may be missing.
                    let version: i64 = now.current_version.parse().unwrap_or(0);
                    (version, version - 1)
                } else {
                    let out = ssm
                        .put_parameter()
                        .name(&spec.secret)
                        .value(value.expose())
                        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                        .set_key_id(spec.kms_key.clone())
                        .overwrite(true)
                        .send()
                        .await
                        .map_err(|e| {
                            let text = describe(&e, endpoint);
                            if text.contains("ParameterMaxVersionLimitExceeded") {
                                port_error("ssm:PutParameter", spec, format!("{text}: the parameter has 100 versions and its oldest carries a label; remove it with `aws ssm unlabel-parameter-version` and retry"))
                            } else {
                                port_error("ssm:PutParameter", spec, text)
                            }
                        })?;
                    (out.version(), now.current_version.parse().unwrap_or(0))
                };
                for (v, label) in [(version, "current"), (previous, "previous")] {
                    if v < 1 {
                        continue;
                    }
                    ssm.label_parameter_version()
                        .name(&spec.secret)
                        .parameter_version(v)
                        .labels(label)
                        .send()
                        .await
                        .map_err(|e| {
                            port_error("ssm:LabelParameterVersion", spec, describe(&e, endpoint))
                        })?;
                }
                Ok(version.to_string())
            }
        }
    }

    async fn clear_pending(&self, spec: &Spec, token: &str) -> Result<(), PortError> {
        if spec.store != Store::SecretsManager {
            return Ok(());
        }
        let sdk = self
            .aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.to_string()))?;
        let sm = aws_sdk_secretsmanager::Client::new(sdk);
        let described = sm
            .describe_secret()
            .secret_id(&spec.secret)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "secretsmanager:DescribeSecret",
                    spec,
                    describe(&e, self.aws.endpoint()),
                )
            })?;
        let labelled = described
            .version_ids_to_stages()
            .and_then(|m| m.get(token))
            .is_some_and(|stages| stages.iter().any(|s| s == "AWSPENDING"));
        if labelled {
            sm.update_secret_version_stage()
                .secret_id(&spec.secret)
                .version_stage("AWSPENDING")
                .remove_from_version_id(token)
                .send()
                .await
                .map_err(|e| {
                    port_error(
                        "secretsmanager:UpdateSecretVersionStage",
                        spec,
                        describe(&e, self.aws.endpoint()),
                    )
                })?;
        }
        Ok(())
    }

    async fn encrypt(&self, spec: &Spec, value: &SecretValue) -> Result<Vec<u8>, PortError> {
        let sdk = self
            .aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.to_string()))?;
        let key = spec
            .kms_key
            .as_deref()
            .ok_or_else(|| PortError("no kms_key configured".to_owned()))?;
        let out = aws_sdk_kms::Client::new(sdk)
            .encrypt()
            .key_id(key)
            .plaintext(aws_sdk_kms::primitives::Blob::new(
                value.expose().as_bytes(),
            ))
            .send()
            .await
            .map_err(|e| port_error("kms:Encrypt for", spec, describe(&e, self.aws.endpoint())))?;
        Ok(out
            .ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default())
    }

    async fn decrypt(&self, spec: &Spec, blob: &[u8]) -> Result<SecretValue, PortError> {
        let sdk = self
            .aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.to_string()))?;
        let out = aws_sdk_kms::Client::new(sdk)
            .decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
            .set_key_id(spec.kms_key.clone())
            .send()
            .await
            .map_err(|e| port_error("kms:Decrypt for", spec, describe(&e, self.aws.endpoint())))?;
        let bytes = out
            .plaintext()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        String::from_utf8(bytes)
            .map(SecretValue::new)
            .map_err(|_| port_error("kms:Decrypt for", spec, "the plaintext is not UTF-8"))
    }

    async fn kms_random(&self, spec: &Spec, bytes: usize) -> Result<Vec<u8>, PortError> {
        let sdk = self
            .aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.to_string()))?;
        let out = aws_sdk_kms::Client::new(sdk)
            .generate_random()
            .number_of_bytes(i32::try_from(bytes).unwrap_or(1024))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "kms:GenerateRandom for",
                    spec,
                    describe(&e, self.aws.endpoint()),
                )
            })?;
        Ok(out
            .plaintext()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default())
    }

    async fn run(
        &self,
        argv: &[String],
        stdin: &SecretValue,
        timeout: Duration,
    ) -> Result<(), PortError> {
        run_script(argv, stdin, timeout).await
    }

    async fn access_keys(&self, spec: &Spec, user: &str) -> Result<Vec<AccessKey>, PortError> {
        let iam = self.iam(spec)?;
        let out = iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(|e| {
                PortError(format!(
                    "iam:ListAccessKeys {user}: {}",
                    describe(&e, self.aws.endpoint())
                ))
            })?;
        Ok(out
            .access_key_metadata()
            .iter()
            .map(|k| AccessKey {
                id: k.access_key_id().unwrap_or_default().to_owned(),
                active: k.status() == Some(&aws_sdk_iam::types::StatusType::Active),
            })
            .collect())
    }

    async fn create_access_key(
        &self,
        spec: &Spec,
        user: &str,
    ) -> Result<(String, SecretValue), PortError> {
        let iam = self.iam(spec)?;
        let out = iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .map_err(|e| {
                PortError(format!(
                    "iam:CreateAccessKey {user}: {}",
                    describe(&e, self.aws.endpoint())
                ))
            })?;
        let key = out
            .access_key()
            .ok_or_else(|| PortError(format!("iam:CreateAccessKey {user}: no key returned")))?;
        Ok((
            key.access_key_id().to_owned(),
            SecretValue::new(key.secret_access_key().to_owned()),
        ))
    }

    async fn deactivate_access_key(
        &self,
        spec: &Spec,
        user: &str,
        id: &str,
    ) -> Result<(), PortError> {
        let iam = self.iam(spec)?;
        iam.update_access_key()
            .user_name(user)
            .access_key_id(id)
            .status(aws_sdk_iam::types::StatusType::Inactive)
            .send()
            .await
            .map_err(|e| {
                PortError(format!(
                    "iam:UpdateAccessKey {id}: {}",
                    describe(&e, self.aws.endpoint())
                ))
            })?;
        Ok(())
    }

    async fn delete_access_key(&self, spec: &Spec, user: &str, id: &str) -> Result<(), PortError> {
        let iam = self.iam(spec)?;
        crate::aws::done_if_gone(
            iam.delete_access_key()
                .user_name(user)
                .access_key_id(id)
                .send()
                .await,
            &format!("iam:DeleteAccessKey {id}"),
            self.aws.endpoint(),
        )
        .map_err(|e| PortError(e.to_string()))
    }

    async fn access_key_last_used(
        &self,
        spec: &Spec,
        id: &str,
    ) -> Result<Option<Timestamp>, PortError> {
        let iam = self.iam(spec)?;
        let out = iam
            .get_access_key_last_used()
            .access_key_id(id)
            .send()
            .await
            .map_err(|e| {
                PortError(format!(
                    "iam:GetAccessKeyLastUsed {id}: {}",
                    describe(&e, self.aws.endpoint())
                ))
            })?;
        // AWS documents LastUsedDate as approximate (tracked within about four hours): a
        // grace period shorter than that cannot prove a key unused.
        Ok(out
            .access_key_last_used()
            .and_then(|u| u.last_used_date())
            .map(|d| Timestamp(u64::try_from(d.to_millis().unwrap_or(0)).unwrap_or(0))))
    }

    async fn test_access_key(
        &self,
        spec: &Spec,
        id: &str,
        secret: &SecretValue,
    ) -> Result<(), PortError> {
        let base = self
            .aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.to_string()))?;
        let credentials = aws_sdk_sts::config::Credentials::new(
            id,
            secret.expose(),
            None,
            None,
            "whittle-rotation-test",
        );
        let config = aws_sdk_sts::config::Builder::from(base)
            .credentials_provider(credentials)
            .build();
        aws_sdk_sts::Client::from_conf(config)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                PortError(format!(
                    "sts:GetCallerIdentity with the new key {id}: {}",
                    describe(&e, self.aws.endpoint())
                ))
            })?;
        Ok(())
    }

    async fn consumers(&self, spec: &Spec, since: Timestamp) -> Option<machine::Consumers> {
        let cutoff = clock::now()
            .0
            .saturating_sub(u64::from(self.lookback_days) * 86_400_000);
        let cutoff = i64::try_from(cutoff).unwrap_or(0);
        let since = i64::try_from(since.0).unwrap_or(i64::MAX);
        // whittle reads the secret itself while rotating: it is not a consumer.
        let me = self
            .aws
            .caller_identity(&spec.account)
            .await
            .ok()
            .map(|identity| {
                whittle_planner::targets::role_arn_of_caller(&identity.arn).unwrap_or(identity.arn)
            });
        let tree = self.state.tree::<crate::records::StoredUsage>().ok()?;
        let mut found = machine::Consumers { known: 0, moved: 0 };
        for item in tree.iter() {
            let (principal, usage) = item.ok()?;
            if me.as_deref() == Some(principal.as_str()) {
                continue;
            }
            if let Some(last) = usage
                .usage
                .secrets_read
                .iter()
                .filter(|(key, last)| **last >= cutoff && names_secret(key, spec))
                .map(|(_, last)| *last)
                .max()
            {
                found.known += 1;
                if last >= since {
                    found.moved += 1;
                }
            }
        }
        Some(found)
    }

    async fn rotate_native(&self, spec: &Spec, token: &str) -> Result<(), PortError> {
        let sdk = self
            .aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.to_string()))?;
        aws_sdk_secretsmanager::Client::new(sdk)
            .rotate_secret()
            .secret_id(&spec.secret)
            .client_request_token(token)
            .rotate_immediately(true)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    "secretsmanager:RotateSecret",
                    spec,
                    describe(&e, self.aws.endpoint()),
                )
            })?;
        Ok(())
    }

    async fn http(&self, call: &HttpCall) -> Result<(u16, Vec<u8>), PortError> {
        https_request(call).await
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn now(&self) -> Timestamp {
        clock::now()
    }

    fn after_step(&self, point: &str) {
        crate::faults::crash_point(point);
    }
}

/// One request of an `http` playbook: HTTPS only, the server's certificate verified against
/// the system's roots plus the playbook's `ca_file`. Errors name the request by its label
/// (method and URL template), never by the rendered URL, headers or body, which may hold keys.
async fn https_request(call: &HttpCall) -> Result<(u16, Vec<u8>), PortError> {
    use http_body_util::BodyExt as _;
    let fail = |what: String| PortError(format!("{}: {what}", call.label));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system root rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(ca_file) = &call.ca_file {
        use rustls::pki_types::{CertificateDer, pem::PemObject as _};
        let certs = CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| fail(format!("ca_file {}: {e}", ca_file.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| fail(format!("ca_file {}: {e}", ca_file.display())))?;
            roots
                .add(cert)
                .map_err(|e| fail(format!("ca_file {}: {e}", ca_file.display())))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<hyper::body::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let mut request = hyper::Request::builder()
        .method(call.method.as_str())
        .uri(call.url.expose());
    for (name, value) in &call.headers {
        request = request.header(name.as_str(), value.expose());
    }
    let body = call
        .body
        .as_ref()
        .map(|b| hyper::body::Bytes::from(b.expose().to_owned()))
        .unwrap_or_default();
    let request = request
        .body(http_body_util::Full::new(body))
        .map_err(|_| fail("the rendered request is not valid HTTP".to_owned()))?;
    let response = tokio::time::timeout(call.timeout, client.request(request))
        .await
        .map_err(|_| {
            fail(format!(
                "no answer within {}",
                humantime::format_duration(call.timeout)
            ))
        })?
        .map_err(|e| {
            // The TLS error (an untrusted certificate, say) is in the source chain.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            fail(text)
        })?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes()
        .to_vec();
    Ok((status, body))
}

/// Runs a playbook script with the value on stdin. Its stdout is discarded; the last line
/// of its stderr goes into the error, with the value (and each line of it) blanked out in
/// case the script echoed it.
async fn run_script(
    argv: &[String],
    value: &SecretValue,
    timeout: Duration,
) -> Result<(), PortError> {
    use tokio::io::AsyncWriteExt as _;
    let Some((program, args)) = argv.split_first() else {
        return Err(PortError("empty command".to_owned()));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| PortError(format!("cannot start `{program}`: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A script that does not read its input closes the pipe early; that is its business.
        let _ = stdin.write_all(value.expose().as_bytes()).await;
        let _ = stdin.shutdown().await;
    }
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(result) => result.map_err(|e| PortError(format!("`{program}`: {e}")))?,
        Err(_) => {
            return Err(PortError(format!(
                "`{program}` did not finish within {} and was killed",
                humantime::format_duration(timeout)
            )));
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = redact(&String::from_utf8_lossy(&output.stderr), value);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    Err(PortError(format!(
        "`{program}` exited with {}{}",
        output.status,
        if last.is_empty() {
            String::new()
        } else {
            format!(": {last}")
        }
    )))
}

/// Blanks out a secret value (and any line of it, for multi-line values) in script output.
fn redact(text: &str, value: &SecretValue) -> String {
    let mut out = text.to_owned();
    let secret = value.expose();
    if !secret.is_empty() {
        out = out.replace(secret, "[redacted]");
        for line in secret.lines().filter(|l| l.len() >= 4) {
            out = out.replace(line, "[redacted]");
        }
    }
    out
}

/// The machine's view of one configured rotation.
pub fn spec(config: &Config, rotation: &RotationConfig) -> anyhow::Result<Spec> {
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
        deadline: Some(Timestamp(
            clock::now().0 + u64::try_from(rotation.window.0.as_millis()).unwrap_or(u64::MAX / 2),
        )),
        grace: rotation.grace.0,
    })
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
    /// `rotated`, `parked`, `refused`, `failed`, `not-due`, or in a dry run `would-rotate`.
    pub outcome: String,
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
    match rotation.cron.next_after(clock::to_chrono(last)) {
        Some(next) if next <= clock::to_chrono(now) => Ok((
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
pub async fn run(
    config: &Config,
    aws: &Aws,
    state: &State,
    selected: &[String],
    force: bool,
    dry_run: bool,
) -> anyhow::Result<Vec<RotationReport>> {
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
        let spec = spec(config, rotation)?;
        // Wait for any other actor on this rotation (the upkeep job, a command) before
        // deciding whether it is due: after it, the answer may have changed.
        let _turn = match dry_run {
            true => None,
            false => Some(guard::wait_turn(guard::Subject::Rotation(&rotation.name)).await),
        };
        let (is_due, when) = due(state, rotation, clock::now())?;
        let mut report = RotationReport {
            name: rotation.name.clone(),
            secret: rotation.secret.clone(),
            store: rotation.store,
            kind: spec.playbook.kind().to_owned(),
            due: is_due,
            when,
            outcome: String::new(),
            version: None,
            reason: None,
            steps: Vec::new(),
        };
        if !is_due && !force {
            report.outcome = "not-due".to_owned();
            reports.push(report);
            continue;
        }
        if dry_run {
            // Read-only checks of what would refuse the rotation.
            let ports = AwsPorts {
                aws,
                state,
                lookback_days: config.mining.lookback_days,
            };
            report.steps = steps(&spec);
            match ports.inspect(&spec).await {
                Ok(i) if i.native_rotation && spec.playbook.kind() != "native" => {
                    report.outcome = "refused".to_owned();
                    report.reason =
                        Some("Secrets Manager's own rotation is enabled on this secret".to_owned());
                }
                Ok(i) if !i.pending_versions.is_empty() => {
                    report.outcome = "refused".to_owned();
                    report.reason = Some(format!(
                        "version {} already carries AWSPENDING",
                        i.pending_versions[0]
                    ));
                }
                Ok(_) => report.outcome = "would-rotate".to_owned(),
                Err(e) => {
                    report.outcome = "failed".to_owned();
                    report.reason = Some(e.to_string());
                }
            }
            reports.push(report);
            continue;
        }
        let outcome = rotate_one(config, aws, state, &spec).await?;
        match outcome {
            Outcome::Rotated { version, .. } => {
                report.outcome = "rotated".to_owned();
                report.version = Some(version);
            }
            Outcome::Waiting {
                version, reason, ..
            } => {
                report.outcome = "rotated".to_owned();
                report.version = Some(version);
                report.reason = Some(reason);
            }
            Outcome::Parked { step, reason, .. } => {
                report.outcome = "parked".to_owned();
                report.reason = Some(format!("{step}: {reason}"));
            }
            Outcome::Refused { reason } => {
                report.outcome = "refused".to_owned();
                report.reason = Some(reason);
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Runs (or resumes) one rotation and records its outcome.
pub async fn rotate_one(
    config: &Config,
    aws: &Aws,
    state: &State,
    spec: &Spec,
) -> anyhow::Result<Outcome> {
    let ports = AwsPorts {
        aws,
        state,
        lookback_days: config.mining.lookback_days,
    };
    let outcome = machine::rotate(&ports, state, spec).await?;
    let records = state.tree::<RotationRecord>()?;
    let previous = records.get(&spec.name)?;
    let now = clock::now();
    // The timetable counts from the promotion: a rotation that was only waiting to revoke
    // the old credential keeps its promotion time.
    let promoted_at = |journal: u64| -> anyhow::Result<Timestamp> {
        Ok(state
            .journal_get(whittle_state::JournalId(journal))?
            .and_then(|e| e.steps.iter().find(|s| s.name == "promoted").map(|s| s.at))
            .unwrap_or(now))
    };
    let record = match &outcome {
        Outcome::Rotated { version, journal } => RotationRecord {
            last_attempt_at: now,
            last_rotated_at: Some(promoted_at(*journal)?),
            last_version: Some(version.clone()),
            last_outcome: "rotated".to_owned(),
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
            last_outcome: "rotated".to_owned(),
            reason: Some(reason.clone()),
        },
        Outcome::Parked { step, reason, .. } => {
            crate::notify::alert(
                config,
                "rotation-parked",
                &spec.name,
                &format!(
                    "{} ({}): parked at {step}, the current value stays in use: {reason}",
                    spec.secret,
                    spec.store.as_str()
                ),
            )
            .await;
            RotationRecord {
                last_attempt_at: now,
                last_rotated_at: previous.as_ref().and_then(|r| r.last_rotated_at),
                last_version: previous.as_ref().and_then(|r| r.last_version.clone()),
                last_outcome: "parked".to_owned(),
                reason: Some(format!("{step}: {reason}")),
            }
        }
        Outcome::Refused { reason } => {
            crate::notify::alert(
                config,
                "rotation-refused",
                &spec.name,
                &format!(
                    "{} ({}): refused: {reason}",
                    spec.secret,
                    spec.store.as_str()
                ),
            )
            .await;
            RotationRecord {
                last_attempt_at: now,
                last_rotated_at: previous.as_ref().and_then(|r| r.last_rotated_at),
                last_version: previous.as_ref().and_then(|r| r.last_version.clone()),
                last_outcome: "refused".to_owned(),
                reason: Some(reason.clone()),
            }
        }
    };
    records.put(&spec.name, &record)?;
    state.flush()?;
    Ok(outcome)
}

/// The reconcile pass's recovery for rotation journals: the interrupted rotation is driven
/// to its end (rotated, or parked with the old value in use) before anything is scheduled.
#[derive(Debug)]
pub struct RotationRecovery {
    pub config: Arc<Config>,
}

impl Recovery for RotationRecovery {
    fn recover<'a>(
        &'a self,
        state: &'a State,
        entry: &'a JournalEntry,
    ) -> Pin<Box<dyn std::future::Future<Output = anyhow::Result<String>> + Send + 'a>> {
        Box::pin(async move {
            debug_assert_eq!(entry.kind, ROTATION_JOURNAL);
            let Some(rotation) = self
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
            let _turn = guard::wait_turn(guard::Subject::Rotation(&rotation.name)).await;
            let aws = Aws::new(&self.config).await?;
            let spec = spec(&self.config, rotation)?;
            let outcome = rotate_one(&self.config, &aws, state, &spec).await?;
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
                Outcome::Parked { reason, .. } => {
                    format!("rotation {} parked: {reason}", spec.name)
                }
                Outcome::Refused { reason } => format!("rotation {} refused: {reason}", spec.name),
            })
        })
    }
}

/// The `rotation-upkeep` job: advances every unfinished rotation (revocations waiting for
/// their grace period, interrupted runs) between the rotations' own ticks.
pub async fn upkeep(ctx: &crate::jobs::JobContext) -> anyhow::Result<String> {
    let mut advanced = Vec::new();
    for rotation in &ctx.config.rotation {
        // A rotation whose own run is under way (retrying a step, say) is that run's to
        // finish; resuming its journal beside it would do each step twice.
        let Some(_turn) = guard::try_turn(guard::Subject::Rotation(&rotation.name)) else {
            continue;
        };
        if machine::open_journal(&ctx.state, &rotation.name)?.is_none() {
            continue;
        }
        let spec = spec(&ctx.config, rotation)?;
        let outcome = rotate_one(&ctx.config, &ctx.aws, &ctx.state, &spec).await?;
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

    fn spec(store: Store, secret: &str) -> Spec {
        Spec {
            name: "r".to_owned(),
            account: "a".to_owned(),
            store,
            secret: secret.to_owned(),
            playbook: Playbook::Native {
                timeout: Duration::from_secs(1),
                poll: Duration::from_secs(1),
            },
            kms_key: None,
            attempts: 1,
            retry_delay: Duration::from_secs(1),
            deadline: None,
            grace: Duration::from_secs(1),
        }
    }

    #[test]
    fn event_secret_ids_match_names_and_arns() {
        let sm = spec(Store::SecretsManager, "app/api-key");
        assert!(names_secret("app/api-key", &sm));
        assert!(names_secret(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/api-key-AbC123",
            &sm
        ));
        assert!(!names_secret("app/api-key-2", &sm));
        assert!(!names_secret(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/other-AbC123",
            &sm
        ));
        let by_arn = spec(
            Store::SecretsManager,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/api-key-AbC123",
        );
        assert!(names_secret("app/api-key", &by_arn));
        let ssm = spec(Store::Ssm, "/app/db-password");
        assert!(names_secret("app/db-password", &ssm));
        assert!(names_secret(
            "arn:aws:ssm:us-east-1:123456789012:parameter/app/db-password",
            &ssm
        ));
        assert!(!names_secret("/app/db-password-old", &ssm));
    }

    #[test]
    fn script_output_is_redacted() {
        let value = SecretValue::new("s3cr3t-value\nsecond-line".to_owned());
        let out = redact("echo: s3cr3t-value\nsecond-line and second-line", &value);
        assert!(!out.contains("s3cr3t"));
        assert!(!out.contains("second-line"));
    }
}
