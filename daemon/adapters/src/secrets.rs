//! The rotation machine's ports ([`SecretPorts`]) with the AWS SDK: Secrets Manager, SSM
//! Parameter Store, KMS, IAM access keys (and an sts test of a new key), Secrets Manager's
//! own RotateSecret; the `http` playbook's request through the one HTTPS client
//! ([`crate::https`]); a playbook's script run with the value on its standard input.
//!
//! Invariants: a secret value never reaches an error or a log line. AWS errors carry the
//! call, the secret's *name* and the service's code and message, never a value; a script's
//! stderr is redacted (`redact`) before its last line goes into an error; an `http`
//! request is named by its label only. Which principals read a secret (its readers) is not
//! asked here: the engine computes them from the mined usage and passes them in the `Spec`.

use std::time::Duration;

use aws_config::SdkConfig;
use whittle_engine::ports::SecretPorts;
use whittle_playbooks::rotation::SecretValue;
use whittle_playbooks::rotation::machine::{
    AccessKey, HttpCall, Inspection, PortError, Spec, Store,
};
use whittle_state::Timestamp;

use crate::Adapters;
use crate::aws::{describe, done_if_gone};

/// A failed call on the rotated secret, naming the call and the secret (never its value).
fn port_error(call: &str, spec: &Spec, e: impl std::fmt::Display) -> PortError {
    PortError(format!("{call} {}: {e}", spec.secret))
}

impl Adapters {
    /// The SDK configuration of the secret's account.
    fn sdk_for(&self, spec: &Spec) -> Result<&SdkConfig, PortError> {
        self.aws
            .sdk(&spec.account)
            .map_err(|e| PortError(e.message))
    }

    fn iam(&self, spec: &Spec) -> Result<aws_sdk_iam::Client, PortError> {
        Ok(aws_sdk_iam::Client::new(self.sdk_for(spec)?))
    }
}

impl SecretPorts for Adapters {
    async fn inspect(&self, spec: &Spec) -> Result<Inspection, PortError> {
        let sdk = self.sdk_for(spec)?;
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
        let sdk = self.sdk_for(spec)?;
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
        let sdk = self.sdk_for(spec)?;
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
        let sdk = self.sdk_for(spec)?;
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
                            if e.as_service_error()
                                .is_some_and(|s| s.is_parameter_max_version_limit_exceeded())
                            {
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
        let sdk = self.sdk_for(spec)?;
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
        let sdk = self.sdk_for(spec)?;
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
        let sdk = self.sdk_for(spec)?;
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
        let sdk = self.sdk_for(spec)?;
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
        done_if_gone(
            iam.delete_access_key()
                .user_name(user)
                .access_key_id(id)
                .send()
                .await,
            &format!("iam:DeleteAccessKey {id}"),
            self.aws.endpoint(),
        )
        .map_err(|e| PortError(e.message))
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
            .map(|d| Timestamp::from_millis_i64(d.to_millis().unwrap_or(0))))
    }

    async fn test_access_key(
        &self,
        spec: &Spec,
        id: &str,
        secret: &SecretValue,
    ) -> Result<(), PortError> {
        let base = self.sdk_for(spec)?;
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

    async fn rotate_native(&self, spec: &Spec, token: &str) -> Result<(), PortError> {
        let sdk = self.sdk_for(spec)?;
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
        self.https.playbook(call).await
    }

    fn after_step(&self, point: &str) {
        whittle_engine::faults::crash_point(point);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_output_is_redacted() {
        let value = SecretValue::new("s3cr3t-value\nsecond-line".to_owned());
        let out = redact("echo: s3cr3t-value\nsecond-line and second-line", &value);
        assert!(!out.contains("s3cr3t"));
        assert!(!out.contains("second-line"));
    }

    #[tokio::test]
    async fn a_failed_script_names_its_last_stderr_line_redacted() {
        let argv: Vec<String> = ["sh", "-c", "read v; echo \"rejected: $v\" >&2; exit 3"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let value = SecretValue::new("s3cr3t-value".to_owned());
        let error = run_script(&argv, &value, Duration::from_secs(10))
            .await
            .expect_err("exit 3");
        assert_eq!(
            error.0,
            "`sh` exited with exit status: 3: rejected: [redacted]"
        );
        let ok: Vec<String> = vec!["true".to_owned()];
        assert_eq!(
            run_script(&ok, &value, Duration::from_secs(10)).await,
            Ok(())
        );
    }
}
