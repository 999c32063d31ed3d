struct AwsPorts<'a> {
    aws: &'a Aws,
    /// The usage store, for the secret's consumers.
    state: &'a State,
    lookback_days: u32,
}

/// Whether a secret id or parameter name from a CloudTrail event names the rotated secret: the
/// same name, or an ARN of it (a Secrets Manager ARN ends in `-` and six random characters).
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