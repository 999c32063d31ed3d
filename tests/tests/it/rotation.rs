//! Rotation against the emulator: random values in Secrets Manager and SSM, by hand and on a
//! schedule in the daemon; a failing test step parks the rotation with the old value intact;
//! whittle killed after every journal step finishes the rotation exactly once when it runs
//! again; no secret value ever reaches a log, an output or the state directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const SECRET: &str = "app/api-key";
const PARAMETER: &str = "/app/db-password";
const OLD_SECRET: &str = r#"{"api_key":"old-api-key-0123456789","user":"svc-app"}"#;
const OLD_PARAMETER: &str = "old-db-password-0123456789";

struct Account {
    sm: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
}

async fn seed(emulator: &whittle_tests::Emulator) -> Account {
    let root = emulator.sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&root);
    sm.create_secret()
        .name(SECRET)
        .secret_string(OLD_SECRET)
        .send()
        .await
        .expect("secret");
    let kms = aws_sdk_kms::Client::new(&root);
    let key = kms
        .create_key()
        .send()
        .await
        .expect("key")
        .key_metadata
        .expect("metadata")
        .key_id;
    kms.create_alias()
        .alias_name("alias/rotation")
        .target_key_id(&key)
        .send()
        .await
        .expect("alias");
    let ssm = aws_sdk_ssm::Client::new(&root);
    ssm.put_parameter()
        .name(PARAMETER)
        .value(OLD_PARAMETER)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .key_id("alias/rotation")
        .send()
        .await
        .expect("parameter");
    Account { sm, ssm }
}

/// A config with the two rotations (and any extra text), playbooks written beside it.
fn config(ws: &Workspace, emulator: &whittle_tests::Emulator, cron: &str, extra: &str) -> PathBuf {
    let config = ws.emulator_config(&emulator.url, "rot");
    std::fs::write(
        ws.path("api-key.toml"),
        "kind = \"random\"\nlength = 24\nalphabet = \"alphanumeric\"\njson_field = \"api_key\"\n",
    )
    .expect("playbook");
    std::fs::write(
        ws.path("password.toml"),
        "kind = \"random\"\nlength = 32\nalphabet = \"printable\"\nsource = \"kms\"\n",
    )
    .expect("playbook");
    let text = std::fs::read_to_string(&config).expect("config")
        + &format!(
            r#"
[[rotation]]
name = "api-key"
account = "staging"
store = "secrets-manager"
secret = "{SECRET}"
playbook = "api-key.toml"
cron = "{cron}"
retry_delay = "50ms"

[[rotation]]
name = "db-password"
account = "staging"
store = "ssm"
secret = "{PARAMETER}"
playbook = "password.toml"
cron = "{cron}"
kms_key = "alias/rotation"
retry_delay = "50ms"
{extra}
"#
        );
    std::fs::write(&config, text).expect("config");
    config
}

async fn current(account: &Account) -> (String, String) {
    let secret = account
        .sm
        .get_secret_value()
        .secret_id(SECRET)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .expect("secret value")
        .secret_string
        .expect("string");
    let parameter = account
        .ssm
        .get_parameter()
        .name(PARAMETER)
        .with_decryption(true)
        .send()
        .await
        .expect("parameter")
        .parameter
        .expect("parameter")
        .value
        .expect("value");
    (secret, parameter)
}

/// Version id -> stages of the secret.
async fn stages(account: &Account) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = account
        .sm
        .describe_secret()
        .secret_id(SECRET)
        .send()
        .await
        .expect("describe")
        .version_ids_to_stages
        .unwrap_or_default()
        .into_iter()
        .collect();
    out.sort();
    out
}

async fn parameter_history(account: &Account) -> Vec<(i64, Vec<String>)> {
    account
        .ssm
        .get_parameter_history()
        .name(PARAMETER)
        .send()
        .await
        .expect("history")
        .parameters
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.version, p.labels.unwrap_or_default()))
        .collect()
}

fn run(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--config", config.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    let out = whittle(&all);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// A one-shot webhook receiver: the body of the first POST, and its URL.
fn webhook() -> (std::sync::mpsc::Receiver<Vec<u8>>, String) {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/alerts", listener.local_addr().expect("address"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = std::io::BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let _ = reader
            .get_mut()
            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        let _ = tx.send(body);
    });
    (rx, url)
}

/// Fails if any of `values` occurs in `text` or in any file under `dir`.
fn assert_no_secret(values: &[&str], texts: &[&str], dir: &Path) {
    for value in values {
        for text in texts {
            assert!(
                !text.contains(value),
                "a secret value leaked into output: {text}"
            );
        }
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let bytes = std::fs::read(&path).expect("read state file");
                    assert!(
                        !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                        "a secret value is in {}",
                        path.display()
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_now_replaces_both_secrets_and_a_dry_run_changes_nothing() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let account = seed(emulator).await;
    let ws = Workspace::new();
    let config = config(&ws, emulator, "0 0 3 * * 1", "");

    let (code, dry, stderr) = run(&config, &["rotate", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        dry.contains(
            "would-rotate api-key (secrets-manager app/api-key, random): never rotated by whittle"
        ),
        "{dry}"
    );
    assert!(
        dry.contains("as field `api_key` of the JSON secret"),
        "{dry}"
    );
    assert!(
        dry.contains("keep it in the journal, encrypted with KMS key alias/rotation"),
        "{dry}"
    );
    assert_eq!(
        current(&account).await,
        (OLD_SECRET.to_owned(), OLD_PARAMETER.to_owned())
    );
    assert_eq!(stages(&account).await.len(), 1, "a dry run writes nothing");

    let (code, stdout, stderr) = run(&config, &["rotate", "--now", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let reports: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(reports[0]["outcome"], "rotated", "{reports:#}");
    assert_eq!(reports[1]["outcome"], "rotated", "{reports:#}");

    let (secret, parameter) = current(&account).await;
    let secret: Value = serde_json::from_str(&secret).expect("still JSON");
    let new_key = secret["api_key"].as_str().expect("api_key").to_owned();
    assert_eq!(secret["user"], "svc-app", "other fields are kept");
    assert_ne!(new_key, "old-api-key-0123456789");
    assert_eq!(new_key.len(), 24);
    assert!(new_key.chars().all(|c| c.is_ascii_alphanumeric()));
    // AWSCURRENT on the new version, AWSPREVIOUS on the old one, no AWSPENDING left.
    let versions = stages(&account).await;
    assert_eq!(versions.len(), 2, "{versions:?}");
    let labels: Vec<&Vec<String>> = versions.iter().map(|(_, s)| s).collect();
    assert!(
        labels.contains(&&vec!["AWSCURRENT".to_owned()]),
        "{versions:?}"
    );
    assert!(
        labels.contains(&&vec!["AWSPREVIOUS".to_owned()]),
        "{versions:?}"
    );
    assert_ne!(parameter, OLD_PARAMETER);
    assert_eq!(parameter.chars().count(), 32);
    let history = parameter_history(&account).await;
    assert_eq!(
        history,
        [
            (1, vec!["previous".to_owned()]),
            (2, vec!["current".to_owned()])
        ]
    );

    // Not due again until the weekly tick.
    let (code, stdout, _) = run(&config, &["rotate"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("not-due api-key"), "{stdout}");
    let status = status_json(&config).expect("status");
    let rotations = status["rotations"].as_array().expect("rotations");
    assert_eq!(rotations.len(), 2);
    assert!(
        rotations
            .iter()
            .all(|r| r["state"] == "idle" && r["last_rotated"].is_string()),
        "{status:#}"
    );
    let (_, status_text, _) = run(&config, &["status"]);

    assert_no_secret(
        &[
            &new_key,
            &parameter,
            "old-api-key-0123456789",
            OLD_PARAMETER,
        ],
        &[&dry, &stdout, &stderr, &status_text, &status.to_string()],
        &ws.state_dir(),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_rotates_on_its_schedule() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let account = seed(emulator).await;
    let ws = Workspace::new();
    let config = config(&ws, emulator, "*/2 * * * * *", "");
    let log = ws.path("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    wait_for(
        Duration::from_secs(40),
        "two rotations of each secret",
        || {
            let status = status_json(&config)?;
            let jobs = status["jobs"].as_array()?;
            let succeeded = |name: &str| {
                jobs.iter()
                    .find(|j| j["name"] == name)
                    .and_then(|j| j["runs"]["succeeded"].as_u64())
                    .unwrap_or(0)
            };
            (succeeded("rotate:api-key") >= 2 && succeeded("rotate:db-password") >= 2).then_some(())
        },
    );
    // `whittle rotate --now` is handed to the daemon, whose scheduled runs of the same two
    // rotations tick every 2 s: each rotation waits its turn, and both rotate once more.
    let (code, stdout, stderr) = run(&config, &["rotate", "--now"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("handing the command to it"), "{stderr}");
    assert!(
        stdout.contains("rotated api-key") && stdout.contains("rotated db-password"),
        "{stdout}"
    );
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
    let versions = stages(&account).await;
    assert!(versions.len() >= 3, "{versions:?}");
    assert_eq!(
        versions
            .iter()
            .filter(|(_, s)| s.iter().any(|x| x == "AWSPENDING"))
            .count(),
        0
    );
    let history = parameter_history(&account).await;
    assert!(history.len() >= 3, "{history:?}");
    let (secret, parameter) = current(&account).await;
    let key: Value = serde_json::from_str(&secret).expect("json");
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(log_text.contains("Secret rotated"), "{log_text}");
    assert_no_secret(
        &[key["api_key"].as_str().expect("key"), &parameter],
        &[&log_text],
        &ws.state_dir(),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_test_step_parks_the_rotation_with_the_old_value_in_use() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let account = seed(emulator).await;
    let ws = Workspace::new();
    let target = ws.path("target.txt");
    std::fs::write(&target, OLD_SECRET).expect("target");
    // The install script writes the value where the "service" reads it; the test script
    // rejects every value, echoing it to stderr (whittle must blank it out).
    std::fs::write(
        ws.path("install.toml"),
        format!(
            "kind = \"command\"\nlength = 20\njson_field = \"api_key\"\ninstall = [\"sh\", \"-c\", \"cat > {}\"]\ntest = [\"sh\", \"-c\", \"echo rejected key: $(cat) >&2; exit 3\"]\ntimeout = \"10s\"\n",
            target.display()
        ),
    )
    .expect("playbook");
    let config = ws.emulator_config(&emulator.url, "rot");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config")
            + &format!(
                "\n[[rotation]]\nname = \"api-key\"\naccount = \"staging\"\nstore = \"secrets-manager\"\nsecret = \"{SECRET}\"\nplaybook = \"install.toml\"\ncron = \"0 0 3 * * 1\"\nattempts = 2\nretry_delay = \"50ms\"\n"
            ),
    )
    .expect("config");
    let (webhook, webhook_url) = webhook();
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config")
            + &format!("\n[notify]\nwebhook_url = \"{webhook_url}\"\n"),
    )
    .expect("config");
    let (code, stdout, stderr) = run(&config, &["rotate", "--now"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("parked api-key"), "{stdout}");
    assert!(stdout.contains("test failed 2 time(s)"), "{stdout}");
    assert!(stdout.contains("rejected key: [redacted]"), "{stdout}");
    // The value in use is the old one, in the store and on the target; nothing pending.
    assert_eq!(current(&account).await.0, OLD_SECRET);
    assert_eq!(
        std::fs::read_to_string(&target).expect("target").trim(),
        OLD_SECRET
    );
    let versions = stages(&account).await;
    assert!(
        versions
            .iter()
            .all(|(_, s)| !s.iter().any(|x| x == "AWSPENDING")),
        "{versions:?}"
    );
    let status = status_json(&config).expect("status");
    assert_eq!(status["rotations"][0]["state"], "parked", "{status:#}");
    assert!(
        status["rotations"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("test failed"))
    );
    assert!(stderr.contains("ALERT"), "{stderr}");
    let alert: Value = serde_json::from_slice(
        &webhook
            .recv_timeout(Duration::from_secs(5))
            .expect("an alert was posted"),
    )
    .expect("JSON alert");
    assert_eq!(alert["kind"], "rotation-parked", "{alert:#}");
    assert_eq!(alert["subject"], "api-key");
    assert!(
        alert["message"].as_str().is_some_and(
            |m| m.contains("test failed") && m.contains("the current value stays in use")
        ),
        "{alert:#}"
    );
    assert!(!alert.to_string().contains("old-api-key-0123456789"));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_retry_starts_after_the_rotation_window_closes() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let account = seed(emulator).await;
    let ws = Workspace::new();
    std::fs::write(
        ws.path("flaky.toml"),
        "kind = \"command\"\nlength = 20\ninstall = [\"sh\", \"-c\", \"cat > /dev/null\"]\ntest = [\"sh\", \"-c\", \"exit 3\"]\ntimeout = \"10s\"\n",
    )
    .expect("playbook");
    // Ten attempts are allowed, but the back-off (1 s, then 2 s) outruns a 2.5 s window after
    // the second failure.
    let config = ws.emulator_config(&emulator.url, "rot");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config")
            + &format!(
                "\n[[rotation]]\nname = \"api-key\"\naccount = \"staging\"\nstore = \"secrets-manager\"\nsecret = \"{SECRET}\"\nplaybook = \"flaky.toml\"\ncron = \"0 0 3 * * 1\"\nattempts = 10\nretry_delay = \"1s\"\nwindow = \"2500ms\"\n"
            ),
    )
    .expect("config");
    let (code, stdout, stderr) = run(&config, &["rotate", "--now"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("parked api-key"), "{stdout}");
    assert!(
        stdout.contains("the rotation window closed before another attempt"),
        "{stdout}"
    );
    assert_eq!(
        stderr.matches("Rotation step failed").count(),
        2,
        "two attempts, then the window: {stderr}"
    );
    assert_eq!(current(&account).await.0, OLD_SECRET);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_pending_version_is_refused_untouched() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let account = seed(emulator).await;
    account
        .sm
        .put_secret_value()
        .secret_id(SECRET)
        .secret_string("someone-elses-rotation")
        .client_request_token("another-tool-rotation-token-0000000001")
        .version_stages("AWSPENDING")
        .send()
        .await
        .expect("foreign pending");
    let ws = Workspace::new();
    let config = config(&ws, emulator, "0 0 3 * * 1", "");
    let before = stages(&account).await;
    let (code, stdout, _) = run(&config, &["rotate", "--now", "--secret", SECRET]);
    assert_eq!(code, 1);
    assert!(stdout.contains("refused api-key"), "{stdout}");
    assert!(stdout.contains("already carries AWSPENDING"), "{stdout}");
    assert_eq!(stages(&account).await, before);
    let (code, _, stderr) = run(&config, &["rotate", "--now", "--secret", "nope"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no [[rotation]] named `nope`"), "{stderr}");
}

/// Kills `whittle rotate` right after each journal step, for each store; the next run
/// finishes the same rotation: exactly one new version, promoted, nothing pending, and the
/// value in use readable (old or new, never torn) at every point.
#[test]
fn a_rotation_killed_after_any_journal_step_finishes_exactly_once() {
    let points = [
        "rotation:begin",
        "rotation:pending-created",
        "rotation:tested",
        "rotation:promoting",
        "rotation:promoted",
    ];
    let cases = ["api-key", "db-password"]
        .into_iter()
        .flat_map(|name| {
            points
                .iter()
                .map(move |point| (format!("{name} after {point}"), (name, *point)))
        })
        .collect();
    run_cases(cases, |(name, point)| async move {
        let what = format!("{name} after {point}");
        let emulator = &whittle_tests::Emulator::start(&[]);
        let account = seed(emulator).await;
        let ws = Workspace::new();
        let config = config(&ws, emulator, "0 0 3 * * 1", "");
        let out = command(&[
            "--config",
            config.to_str().expect("utf-8"),
            "rotate",
            "--now",
            "--secret",
            name,
        ])
        .env("WHITTLE_CRASH_AFTER", point)
        .output()
        .expect("run whittle");
        assert!(!out.status.success(), "{what}: whittle must have died");
        assert!(text(&out.stderr).contains("aborting"), "{what}");
        let (secret, _) = current(&account).await;
        assert!(serde_json::from_str::<Value>(&secret).is_ok(), "{what}");
        let status = status_json(&config).expect("status");
        let row = status["rotations"]
            .as_array()
            .expect("rotations")
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .expect("row");
        assert_eq!(row["state"], "in-progress", "{what}: {status:#}");

        // The next run finishes it (its reconcile pass, before anything else); the
        // rotation is then done, so not due again.
        let (code, stdout, stderr) = run(&config, &["rotate", "--secret", name]);
        assert_eq!(code, 0, "{what}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("Interrupted rotation finished"),
            "{what}: {stderr}"
        );
        assert!(
            stdout.starts_with(&format!("not-due {name}")),
            "{what}: {stdout}"
        );
        let (secret, parameter) = current(&account).await;
        if name == "api-key" {
            let versions = stages(&account).await;
            assert_eq!(
                versions.len(),
                2,
                "{what}: exactly one new version: {versions:?}"
            );
            assert!(
                versions
                    .iter()
                    .all(|(_, s)| !s.iter().any(|x| x == "AWSPENDING")),
                "{what}: AWSPENDING stuck: {versions:?}"
            );
            assert_ne!(secret, OLD_SECRET, "{what}");
        } else {
            assert_eq!(
                parameter_history(&account).await,
                [
                    (1, vec!["previous".to_owned()]),
                    (2, vec!["current".to_owned()])
                ],
                "{what}"
            );
            assert_ne!(parameter, OLD_PARAMETER, "{what}");
        }
        let status = status_json(&config).expect("status");
        let row = status["rotations"]
            .as_array()
            .expect("rotations")
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .expect("row");
        assert_eq!(row["state"], "idle", "{what}: {status:#}");
        assert!(row["last_rotated"].is_string(), "{what}: {status:#}");
        assert!(
            status["unfinished_journals"]
                .as_array()
                .expect("journals")
                .is_empty(),
            "{what}: {status:#}"
        );
        let key: Value = serde_json::from_str(&secret).expect("json");
        assert_no_secret(
            &[key["api_key"].as_str().expect("key"), &parameter],
            &[&stdout, &stderr, &text(&out.stderr)],
            &ws.state_dir(),
        );
    });
}

#[test]
fn validate_reports_rotation_mistakes_located() {
    let ws = Workspace::new();
    std::fs::write(ws.path("bad.toml"), "kind = \"random\"\nlenght = 12\n").expect("playbook");
    std::fs::write(ws.path("ok.toml"), "kind = \"random\"\n").expect("playbook");
    let config = ws.write_config(
        r#"[[aws.accounts]]
name = "staging"

[targets]
arn_patterns = ["arn:aws:iam::*:role/app-*"]

[[rotation]]
name = "a"
account = "staging"
store = "ssm"
secret = "/x"
playbook = "ok.toml"
cron = "0 0 3 * * 1"

[[rotation]]
name = "b"
account = "prod"
store = "secrets-manager"
secret = "s"
playbook = "bad.toml"
cron = "0 0 3 * * 1"

[[rotation]]
name = "c"
account = "staging"
store = "secrets-manager"
secret = "s"
playbook = "missing.toml"
cron = "0 0 3 * * 1"
"#,
    );
    let (code, _, stderr) = run(&config, &["validate"]);
    assert_eq!(code, 1);
    let path = config.display().to_string();
    for expected in [
        format!("{path}:7:1: store = \"ssm\" needs `kms_key`"),
        format!("{path}:17:11: account `prod` is not one of the [[aws.accounts]] names"),
        format!(
            "{path}:20:12: playbook {}:2:1: unknown field `lenght`",
            ws.path("bad.toml").display()
        ),
        format!(
            "{path}:28:12: playbook {}: No such file",
            ws.path("missing.toml").display()
        ),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}

/// IAM user `svc` with one access key, whose pair is the JSON secret `svc/key`.
async fn svc_key_in_secret(
    iam: &aws_sdk_iam::Client,
    sm: &aws_sdk_secretsmanager::Client,
) -> aws_sdk_iam::types::AccessKey {
    iam.create_user()
        .user_name("svc")
        .send()
        .await
        .expect("user");
    let k = iam
        .create_access_key()
        .user_name("svc")
        .send()
        .await
        .expect("key")
        .access_key
        .expect("key");
    sm.create_secret()
        .name("svc/key")
        .secret_string(
            serde_json::json!({"AccessKeyId": k.access_key_id, "SecretAccessKey": k.secret_access_key})
                .to_string(),
        )
        .send()
        .await
        .expect("secret");
    k
}

/// sts:GetCallerIdentity with a key pair; Ok when it authenticates.
async fn works(emulator: &whittle_tests::Emulator, id: &str, secret: &str) -> bool {
    let config = emulator.sdk_config_with(id, secret, None).await;
    aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .is_ok()
}

fn key_pair(secret: &str) -> (String, String) {
    let v: Value = serde_json::from_str(secret).expect("json");
    (
        v["AccessKeyId"].as_str().expect("id").to_owned(),
        v["SecretAccessKey"].as_str().expect("secret").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_iam_access_key_rotates_and_the_old_key_goes_only_after_the_grace_period_unused() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let root = emulator.sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&root);
    let (admin_id, admin_secret) = admin_user(&iam).await;
    iam.create_user()
        .user_name("svc-reports")
        .send()
        .await
        .expect("user");
    iam.put_user_policy()
        .user_name("svc-reports")
        .policy_name("p")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:GetCallerIdentity","Resource":"*"}]}"#,
        )
        .send()
        .await
        .expect("policy");
    let key = iam
        .create_access_key()
        .user_name("svc-reports")
        .send()
        .await
        .expect("key")
        .access_key
        .expect("key");
    let (k1, s1) = (key.access_key_id, key.secret_access_key);
    let sm = aws_sdk_secretsmanager::Client::new(&root);
    sm.create_secret()
        .name("svc/reports-key")
        .secret_string(
            serde_json::json!({"AccessKeyId": k1, "SecretAccessKey": s1, "region": "us-east-1"})
                .to_string(),
        )
        .send()
        .await
        .expect("secret");

    let ws = Workspace::new();
    std::fs::write(
        ws.path("key.toml"),
        "kind = \"iam-access-key\"\nuser = \"svc-reports\"\npropagation_timeout = \"20s\"\ndelete_after = \"2s\"\n",
    )
    .expect("playbook");
    let config = ws.emulator_config(&emulator.url, "rot");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config")
            + "\n[[rotation]]\nname = \"reports-key\"\naccount = \"staging\"\nstore = \"secrets-manager\"\nsecret = \"svc/reports-key\"\nplaybook = \"key.toml\"\ncron = \"0 0 3 * * 1\"\ngrace = \"8s\"\nretry_delay = \"50ms\"\n",
    )
    .expect("config");
    // From here on every call is checked: whittle runs as the admin user.
    emulator.enable_auth();
    let admin = emulator
        .sdk_config_with(&admin_id, &admin_secret, None)
        .await;
    let sm = aws_sdk_secretsmanager::Client::new(&admin);
    let iam = aws_sdk_iam::Client::new(&admin);
    let rotate = |args: &[&str]| {
        let mut all = vec!["--config", config.to_str().expect("utf-8"), "rotate"];
        all.extend_from_slice(args);
        let out = command(&all)
            .env("AWS_ACCESS_KEY_ID", &admin_id)
            .env("AWS_SECRET_ACCESS_KEY", &admin_secret)
            .output()
            .expect("whittle");
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let secret = || async {
        sm.get_secret_value()
            .secret_id("svc/reports-key")
            .version_stage("AWSCURRENT")
            .send()
            .await
            .expect("secret")
            .secret_string
            .expect("string")
    };
    let keys = || async {
        let mut keys: Vec<(String, String)> = iam
            .list_access_keys()
            .user_name("svc-reports")
            .send()
            .await
            .expect("keys")
            .access_key_metadata
            .into_iter()
            .map(|k| {
                (
                    k.access_key_id.unwrap_or_default(),
                    k.status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                )
            })
            .collect();
        keys.sort();
        keys
    };

    // The grace period (`grace` above): long enough for the run within it to be made in time
    // on a loaded machine; the sleeps below wait for its end, counted from the promotion.
    let grace = Duration::from_secs(8);
    let started = Instant::now();
    let (code, stdout, stderr) = rotate(&["--now"]);
    let promoted = Instant::now();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("rotated reports-key"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "the old key {k1} is deactivated after the grace period"
        )),
        "{stdout}"
    );

    // Within the grace period a run does nothing to the old key.
    let (code, _, _) = rotate(&[]);
    assert!(
        started.elapsed() < grace,
        "the run within the grace period ended after it, in {:?}: the machine is too slow for this test",
        started.elapsed()
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        keys().await.iter().filter(|(_, s)| s == "Active").count(),
        2
    );
    let (k2, s2) = key_pair(&secret().await);
    assert_ne!(k2, k1);
    let current: Value = serde_json::from_str(&secret().await).expect("json");
    assert_eq!(current["region"], "us-east-1", "other fields are kept");
    assert!(
        works(emulator, &k2, &s2).await,
        "the new key works in auth mode"
    );
    let status = status_json_as(&config, &admin_id, &admin_secret);
    assert_eq!(
        status["rotations"][0]["state"], "revoking-old",
        "{status:#}"
    );
    tokio::time::sleep((grace + Duration::from_millis(200)).saturating_sub(promoted.elapsed()))
        .await;
    let (code, stdout, stderr) = rotate(&[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("the old key {k1} is inactive and is deleted at")),
        "{stdout}"
    );
    assert!(
        !works(emulator, &k1, &s1).await,
        "the old key is deactivated"
    );
    assert!(works(emulator, &k2, &s2).await);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (code, stdout, _) = rotate(&[]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("not-due reports-key"), "{stdout}");
    assert_eq!(
        keys().await,
        [(k2.clone(), "Active".to_owned())],
        "the old key is deleted"
    );

    // Next rotation: the old key (k2) is still used after promotion, so it stays active.
    let (code, stdout, _) = rotate(&["--now"]);
    let promoted = Instant::now();
    assert_eq!(code, Some(0), "{stdout}");
    let (k3, s3) = key_pair(&secret().await);
    assert!(works(emulator, &k3, &s3).await);
    // (Last-used times are kept to the second.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        works(emulator, &k2, &s2).await,
        "an old client still uses the old key"
    );
    tokio::time::sleep((grace + Duration::from_millis(200)).saturating_sub(promoted.elapsed()))
        .await;
    let (code, stdout, _) = rotate(&[]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains(&format!("the old key {k2} was used at")),
        "{stdout}"
    );
    assert!(works(emulator, &k2, &s2).await, "still active");
    let status = status_json_as(&config, &admin_id, &admin_secret);
    assert!(
        status["rotations"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("stays active until its users move")),
        "{status:#}"
    );
    assert_no_secret(
        &[&s1, &s2, &s3],
        &[&stdout, &status.to_string()],
        &ws.state_dir(),
    );
}

/// Kills an access-key rotation after every journal step (and right after CreateAccessKey,
/// before the new key's secret is stored anywhere); the next run leaves exactly one key, the
/// one in the secret, and nothing pending.
#[test]
fn an_access_key_rotation_killed_anywhere_leaves_no_orphaned_key() {
    let points = [
        "rotation:begin",
        "rotation:creating-key",
        "rotation:key-created",
        "rotation:pending-created",
        "rotation:tested",
        "rotation:promoting",
        "rotation:promoted",
        "rotation:deactivating",
        "rotation:deactivated",
        "rotation:deleting",
    ];
    let cases = points.map(|point| (point.to_owned(), point)).to_vec();
    run_cases(cases, |point| async move {
        let emulator = &whittle_tests::Emulator::start(&[]);
        let root = emulator.sdk_config().await;
        let (iam, sm) = (
            aws_sdk_iam::Client::new(&root),
            aws_sdk_secretsmanager::Client::new(&root),
        );
        let k = svc_key_in_secret(&iam, &sm).await;
        let ws = Workspace::new();
        std::fs::write(
            ws.path("key.toml"),
            "kind = \"iam-access-key\"\nuser = \"svc\"\npropagation_timeout = \"5s\"\ndelete_after = \"0s\"\n",
        )
        .expect("playbook");
        let config = ws.emulator_config(&emulator.url, "rot");
        std::fs::write(
            &config,
            std::fs::read_to_string(&config).expect("config")
                + "\n[[rotation]]\nname = \"svc-key\"\naccount = \"staging\"\nstore = \"secrets-manager\"\nsecret = \"svc/key\"\nplaybook = \"key.toml\"\ncron = \"0 0 3 * * 1\"\ngrace = \"0s\"\nretry_delay = \"50ms\"\n",
        )
        .expect("config");
        let out = command(&[
            "--config",
            config.to_str().expect("utf-8"),
            "rotate",
            "--now",
        ])
        .env("WHITTLE_CRASH_AFTER", point)
        .output()
        .expect("whittle");
        assert!(!out.status.success(), "{point}: whittle must have died");
        assert!(text(&out.stderr).contains("aborting"), "{point}");

        let (code, stdout, stderr) = run(&config, &["rotate"]);
        assert_eq!(code, 0, "{point}: {stdout}\n{stderr}");
        let secret = sm
            .get_secret_value()
            .secret_id("svc/key")
            .version_stage("AWSCURRENT")
            .send()
            .await
            .expect("secret")
            .secret_string
            .expect("string");
        let (id, _) = key_pair(&secret);
        assert_ne!(id, k.access_key_id, "{point}: rotated");
        let keys: Vec<(String, bool)> = iam
            .list_access_keys()
            .user_name("svc")
            .send()
            .await
            .expect("keys")
            .access_key_metadata
            .into_iter()
            .map(|m| {
                (
                    m.access_key_id.unwrap_or_default(),
                    m.status == Some(aws_sdk_iam::types::StatusType::Active),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [(id, true)],
            "{point}: exactly the key in the secret remains"
        );
        let versions: Vec<Vec<String>> = sm
            .describe_secret()
            .secret_id("svc/key")
            .send()
            .await
            .expect("describe")
            .version_ids_to_stages
            .unwrap_or_default()
            .into_values()
            .collect();
        assert!(
            versions
                .iter()
                .all(|s| !s.iter().any(|x| x == "AWSPENDING")),
            "{point}: {versions:?}"
        );
        let status = status_json(&config).expect("status");
        assert!(
            status["unfinished_journals"]
                .as_array()
                .expect("journals")
                .is_empty(),
            "{point}: {status:#}"
        );
    });
}

/// The test key provider (tests/provider/key_provider.py) with a self-signed certificate.
struct Provider {
    child: std::process::Child,
    https: u16,
    control: u16,
    /// The CA certificate that signed the provider's (a playbook's `ca_file`).
    cert: PathBuf,
}

impl Provider {
    fn start(ws: &Workspace, initial_key: &str) -> Provider {
        // A private CA and a server certificate it signed (webpki refuses a CA certificate
        // as the server's own).
        let (ca, ca_key) = (ws.path("ca.pem"), ws.path("ca-key.pem"));
        let (cert, key, csr) = (
            ws.path("provider-cert.pem"),
            ws.path("provider-key.pem"),
            ws.path("provider.csr"),
        );
        let ext = ws.path("provider-ext.cnf");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext");
        let openssl = |args: &[&std::ffi::OsStr]| {
            let ok = std::process::Command::new("openssl")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl");
            assert!(ok.success(), "openssl {args:?} failed");
        };
        let os = |s: &str| std::ffi::OsString::from(s);
        openssl(&[
            &os("req"),
            &os("-x509"),
            &os("-newkey"),
            &os("rsa:2048"),
            &os("-nodes"),
            &os("-days"),
            &os("1"),
            &os("-subj"),
            &os("/CN=whittle test CA"),
            &os("-keyout"),
            ca_key.as_os_str(),
            &os("-out"),
            ca.as_os_str(),
        ]);
        openssl(&[
            &os("req"),
            &os("-newkey"),
            &os("rsa:2048"),
            &os("-nodes"),
            &os("-subj"),
            &os("/CN=127.0.0.1"),
            &os("-keyout"),
            key.as_os_str(),
            &os("-out"),
            csr.as_os_str(),
        ]);
        openssl(&[
            &os("x509"),
            &os("-req"),
            &os("-in"),
            csr.as_os_str(),
            &os("-CA"),
            ca.as_os_str(),
            &os("-CAkey"),
            ca_key.as_os_str(),
            &os("-CAcreateserial"),
            &os("-days"),
            &os("1"),
            &os("-extfile"),
            ext.as_os_str(),
            &os("-out"),
            cert.as_os_str(),
        ]);
        let mut child = std::process::Command::new("python3")
            .arg(whittle_tests::repo_root().join("tests/provider/key_provider.py"))
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--initial-id", "k-0", "--initial-key", initial_key])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("provider");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("ports");
        let words: Vec<&str> = line.split_whitespace().collect();
        Provider {
            child,
            https: words[1].parse().expect("port"),
            control: words[3].parse().expect("port"),
            cert: ca,
        }
    }

    /// Key id -> active, from the control port.
    fn keys(&self) -> Vec<(String, bool)> {
        let (status, body) = whittle_tests::http_request(
            &format!("127.0.0.1:{}", self.control),
            "GET",
            "/keys",
            b"",
            "text/plain",
        )
        .expect("control");
        assert_eq!(status, 200);
        let doc: Value = serde_json::from_slice(&body).expect("json");
        doc.as_array()
            .expect("keys")
            .iter()
            .map(|k| {
                (
                    k["id"].as_str().expect("id").to_owned(),
                    k["active"].as_bool().expect("active"),
                )
            })
            .collect()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_playbook(provider: &Provider, ca: bool) -> String {
    let base = format!("https://127.0.0.1:{}", provider.https);
    format!(
        r#"kind = "http"
key_pointer = "/key"
id_pointer = "/id"
json_field = "api_key"
id_field = "key_id"
{ca}
timeout = "10s"

[create]
method = "POST"
url = "{base}/keys"
headers = {{ Authorization = "Bearer {{{{current}}}}" }}
body = '{{"name": "whittle"}}'

[test]
method = "GET"
url = "{base}/whoami"
headers = {{ Authorization = "Bearer {{{{pending}}}}" }}

[revoke]
method = "DELETE"
url = "{base}/keys/{{{{old_id}}}}"
headers = {{ Authorization = "Bearer {{{{pending}}}}" }}
"#,
        ca = if ca {
            format!("ca_file = \"{}\"", provider.cert.display())
        } else {
            String::new()
        }
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_playbook_rotates_a_third_party_key_and_revokes_the_old_one() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let root = emulator.sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&root);
    let old_key = "old-provider-key-0123456789";
    sm.create_secret()
        .name("vendor/api-key")
        .secret_string(serde_json::json!({"api_key": old_key, "key_id": "k-0"}).to_string())
        .send()
        .await
        .expect("secret");
    let ws = Workspace::new();
    let provider = Provider::start(&ws, old_key);
    let config = ws.emulator_config(&emulator.url, "rot");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config")
            + "\n[[rotation]]\nname = \"vendor\"\naccount = \"staging\"\nstore = \"secrets-manager\"\nsecret = \"vendor/api-key\"\nplaybook = \"vendor.toml\"\ncron = \"0 0 3 * * 1\"\ngrace = \"1s\"\nretry_delay = \"50ms\"\nattempts = 2\n",
    )
    .expect("config");
    let current = || async {
        let text = sm
            .get_secret_value()
            .secret_id("vendor/api-key")
            .version_stage("AWSCURRENT")
            .send()
            .await
            .expect("secret")
            .secret_string
            .expect("string");
        serde_json::from_str::<Value>(&text).expect("json")
    };

    // Without the provider's CA the certificate is not trusted: nothing is created.
    std::fs::write(ws.path("vendor.toml"), http_playbook(&provider, false)).expect("playbook");
    let (code, stdout, _) = run(&config, &["rotate", "--now"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.starts_with("parked vendor"), "{stdout}");
    assert!(stdout.contains("certificate"), "TLS is verified: {stdout}");
    assert_eq!(provider.keys(), [("k-0".to_owned(), true)]);
    assert_eq!(current().await["api_key"], old_key);

    std::fs::write(ws.path("vendor.toml"), http_playbook(&provider, true)).expect("playbook");
    let (code, stdout, stderr) = run(&config, &["rotate", "--now"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("the old key is revoked at the provider after the grace period"),
        "{stdout}"
    );
    let now = current().await;
    let new_key = now["api_key"].as_str().expect("key").to_owned();
    assert_ne!(new_key, old_key);
    assert_eq!(now["key_id"], "k-1");
    assert_eq!(
        provider.keys(),
        [("k-0".to_owned(), true), ("k-1".to_owned(), true)],
        "both keys work during the grace period"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (code, stdout, stderr) = run(&config, &["rotate"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        provider.keys(),
        [("k-0".to_owned(), false), ("k-1".to_owned(), true)],
        "the old key stops working"
    );
    let status = status_json(&config).expect("status");
    assert_eq!(status["rotations"][0]["state"], "idle", "{status:#}");
    assert_no_secret(
        &[old_key, &new_key],
        &[&stdout, &stderr, &status.to_string()],
        &ws.state_dir(),
    );
}

/// SSM keeps 100 versions and deletes the oldest on a new one, unless it carries a label: then
/// the rotation is parked with the fix, and the value in use is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn the_ssm_hundred_version_cap_parks_with_the_fix_named() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let account = seed(emulator).await;
    for i in 2..=100 {
        account
            .ssm
            .put_parameter()
            .name(PARAMETER)
            .value(format!("{OLD_PARAMETER}-{i}"))
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .key_id("alias/rotation")
            .overwrite(true)
            .send()
            .await
            .expect("version");
    }
    account
        .ssm
        .label_parameter_version()
        .name(PARAMETER)
        .parameter_version(1)
        .labels("pinned-by-someone")
        .send()
        .await
        .expect("label");
    let ws = Workspace::new();
    let config = config(&ws, emulator, "0 0 3 * * 1", "");
    let (code, stdout, _) = run(&config, &["rotate", "--now", "--secret", "db-password"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.starts_with("parked db-password"), "{stdout}");
    assert!(stdout.contains("unlabel-parameter-version"), "{stdout}");
    assert_eq!(current(&account).await.1, format!("{OLD_PARAMETER}-100"));
}

/// A `native` playbook runs Secrets Manager's own rotation and follows it: a working Lambda
/// (seeded in the emulator) moves AWSCURRENT; a failing one is parked with its AWSPENDING
/// removed and the value in use untouched. Other playbooks refuse such a secret.
#[tokio::test(flavor = "multi_thread")]
async fn a_native_playbook_follows_secrets_managers_own_rotation() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let account = seed(emulator).await;
    let ws = Workspace::new();
    std::fs::write(
        ws.path("native.toml"),
        "kind = \"native\"\ntimeout = \"2s\"\npoll = \"100ms\"\n",
    )
    .expect("playbook");
    let config = ws.emulator_config(&emulator.url, "rot");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config")
            + &format!("\n[[rotation]]\nname = \"native\"\naccount = \"staging\"\nstore = \"secrets-manager\"\nsecret = \"{SECRET}\"\nplaybook = \"native.toml\"\ncron = \"0 0 3 * * 1\"\nretry_delay = \"50ms\"\n"),
    )
    .expect("config");
    let (code, dry, _) = run(&config, &["rotate", "--dry-run", "--now"]);
    assert_eq!(code, 0);
    assert!(
        dry.contains("secretsmanager:RotateSecret (immediately)"),
        "{dry}"
    );

    emulator.post_json(
        "/whittle-emulator/native-rotation",
        &serde_json::json!({"secret": SECRET, "outcome": "succeed"}),
    );
    let (code, stdout, stderr) = run(&config, &["rotate", "--now"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("rotated native"), "{stdout}");
    let rotated = current(&account).await.0;
    assert_ne!(rotated, OLD_SECRET);
    assert_eq!(stages(&account).await.len(), 2);

    emulator.post_json(
        "/whittle-emulator/native-rotation",
        &serde_json::json!({"secret": SECRET, "outcome": "fail"}),
    );
    let (code, stdout, _) = run(&config, &["rotate", "--now"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.starts_with("parked native"), "{stdout}");
    assert!(stdout.contains("did not make version"), "{stdout}");
    assert_eq!(
        current(&account).await.0,
        rotated,
        "the value in use is untouched"
    );
    let versions = stages(&account).await;
    assert!(
        versions
            .iter()
            .all(|(_, s)| !s.iter().any(|x| x == "AWSPENDING")),
        "AWSPENDING is not left stuck: {versions:?}"
    );
    // Once Secrets Manager rotates the secret on its own schedule, a `random` playbook refuses
    // it (two rotators would fight); the `native` one stays the way to drive it.
    emulator.post_json(
        "/whittle-emulator/native-rotation",
        &serde_json::json!({"secret": SECRET, "outcome": "succeed"}),
    );
    account
        .sm
        .rotate_secret()
        .secret_id(SECRET)
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .send()
        .await
        .expect("enable native rotation");
    let own = current(&account).await.0;
    // (This rewrites the workspace's config.toml with the two random rotations.)
    let random = self::config(&ws, emulator, "0 0 3 * * 1", "");
    let (code, stdout, _) = run(&random, &["rotate", "--now", "--secret", "api-key"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("refused api-key"), "{stdout}");
    assert!(
        stdout.contains("Secrets Manager's own rotation is enabled"),
        "{stdout}"
    );
    assert_eq!(current(&account).await.0, own);
    let (code, _, stderr) = {
        std::fs::write(ws.path("native.toml"), "kind = \"native\"\n").expect("playbook");
        let bad = ws.path("ssm-native.toml");
        std::fs::write(
            &bad,
            std::fs::read_to_string(&config).expect("config")
                + &format!("\n[[rotation]]\nname = \"ssm-native\"\naccount = \"staging\"\nstore = \"ssm\"\nsecret = \"{PARAMETER}\"\nplaybook = \"native.toml\"\nkms_key = \"alias/rotation\"\ncron = \"0 0 3 * * 1\"\n"),
        )
        .expect("config");
        run(&bad, &["validate"])
    };
    assert_eq!(code, 1);
    assert!(stderr.contains("a `native` playbook runs Secrets Manager's own rotation: it needs store = \"secrets-manager\""), "{stderr}");
}

/// When the mined usage shows which principals read a secret, the old credential is revoked
/// as soon as each of them has read the secret since the promotion, before the grace period
/// ends; whittle's own reads do not count.
#[tokio::test(flavor = "multi_thread")]
async fn known_consumers_that_read_the_new_key_end_the_grace_period_early() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let root = emulator.sdk_config().await;
    let (iam, sm) = (
        aws_sdk_iam::Client::new(&root),
        aws_sdk_secretsmanager::Client::new(&root),
    );
    let k = svc_key_in_secret(&iam, &sm).await;
    create_role(&iam, "reader", &[]).await;
    let reader = aws_sdk_secretsmanager::Client::new(
        &emulator
            .assume_role(&root, "arn:aws:iam::123456789012:role/reader", "reader-fn")
            .await,
    );
    let read = || async {
        reader
            .get_secret_value()
            .secret_id("svc/key")
            .send()
            .await
            .expect("the consumer reads the secret");
    };
    read().await;

    let ws = Workspace::new();
    std::fs::write(
        ws.path("key.toml"),
        "kind = \"iam-access-key\"\nuser = \"svc\"\npropagation_timeout = \"5s\"\ndelete_after = \"1h\"\n",
    )
    .expect("playbook");
    let config = ws.emulator_config(&emulator.url, "rot");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config")
            + "\n[mining]\nlast_accessed = false\n[[mining.sources]]\nname = \"recent\"\nkind = \"lookup-events\"\naccount = \"staging\"\n\n[[rotation]]\nname = \"svc-key\"\naccount = \"staging\"\nstore = \"secrets-manager\"\nsecret = \"svc/key\"\nplaybook = \"key.toml\"\ncron = \"0 0 3 * * 1\"\ngrace = \"1h\"\nretry_delay = \"50ms\"\n",
    )
    .expect("config");
    let mine = || {
        let (code, stdout, stderr) = run(&config, &["mine", "--no-progress"]);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
    };
    mine();
    let (code, stdout, _) = run(&config, &["rotate", "--now"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("is deactivated after the grace period"),
        "{stdout}"
    );
    // The consumer has not read the secret since: the old key waits for the grace period.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    mine();
    let (_, stdout, _) = run(&config, &["rotate"]);
    assert!(
        stdout.contains("is deactivated after the grace period"),
        "{stdout}"
    );
    // Once it has read the new value, the old key is deactivated at once.
    read().await;
    mine();
    let (code, stdout, stderr) = run(&config, &["rotate"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("the old key {} is inactive", k.access_key_id)),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("Every known consumer read the secret since promotion"),
        "{stderr}"
    );
}

/// whittle killed after each journal step of a `command`, an `http` and a `native` rotation:
/// the next run finishes it, and the value in use works where it is used.
#[test]
fn command_http_and_native_rotations_killed_after_any_step_finish_on_the_next_run() {
    let cases: [(&str, &[&str]); 3] = [
        (
            "command",
            &[
                "rotation:begin",
                "rotation:pending-created",
                "rotation:target-set",
                "rotation:tested",
                "rotation:promoting",
                "rotation:promoted",
            ],
        ),
        (
            "http",
            &[
                "rotation:begin",
                "rotation:creating-key",
                "rotation:pending-created",
                "rotation:tested",
                "rotation:promoting",
                "rotation:promoted",
                "rotation:revoking",
            ],
        ),
        (
            "native",
            &["rotation:begin", "rotation:rotating", "rotation:requested"],
        ),
    ];
    let cases = cases
        .into_iter()
        .flat_map(|(kind, points)| {
            points
                .iter()
                .map(move |point| (format!("{kind} after {point}"), (kind, *point)))
        })
        .collect();
    run_cases(cases, |(kind, point)| async move {
        let what = format!("{kind} after {point}");
        let emulator = &whittle_tests::Emulator::start(&[]);
        let account = seed(emulator).await;
        let ws = Workspace::new();
        let old_key = "old-provider-key-0123456789";
        let target = ws.path("target.txt");
        std::fs::write(&target, OLD_SECRET).expect("target");
        let provider = (kind == "http").then(|| {
            let provider = Provider::start(&ws, old_key);
            std::fs::write(ws.path("kind.toml"), http_playbook(&provider, true)).expect("playbook");
            provider
        });
        match kind {
                "command" => std::fs::write(
                    ws.path("kind.toml"),
                    format!("kind = \"command\"\nlength = 20\njson_field = \"api_key\"\ninstall = [\"sh\", \"-c\", \"cat > {}\"]\ntest = [\"sh\", \"-c\", \"cat > /dev/null\"]\n", target.display()),
                )
                .expect("playbook"),
                "native" => {
                    std::fs::write(ws.path("kind.toml"), "kind = \"native\"\ntimeout = \"5s\"\npoll = \"100ms\"\n").expect("playbook");
                    for _ in 0..2 {
                        // The killed run and the resumed one may each call RotateSecret.
                        emulator.post_json("/whittle-emulator/native-rotation", &serde_json::json!({"secret": SECRET, "outcome": "succeed"}));
                    }
                }
                _ => {
                    account
                        .sm
                        .put_secret_value()
                        .secret_id(SECRET)
                        .secret_string(serde_json::json!({"api_key": old_key, "key_id": "k-0"}).to_string())
                        .send()
                        .await
                        .expect("provider key in the secret");
                }
            }
        let config = ws.emulator_config(&emulator.url, "rot");
        std::fs::write(
                &config,
                std::fs::read_to_string(&config).expect("config")
                    + &format!("\n[[rotation]]\nname = \"k\"\naccount = \"staging\"\nstore = \"secrets-manager\"\nsecret = \"{SECRET}\"\nplaybook = \"kind.toml\"\ncron = \"0 0 3 * * 1\"\ngrace = \"0s\"\nretry_delay = \"50ms\"\n"),
            )
            .expect("config");
        let before = current(&account).await.0;
        let out = command(&[
            "--config",
            config.to_str().expect("utf-8"),
            "rotate",
            "--now",
        ])
        .env("WHITTLE_CRASH_AFTER", point)
        .output()
        .expect("whittle");
        assert!(!out.status.success(), "{what}: whittle must have died");
        let (code, stdout, stderr) = run(&config, &["rotate"]);
        assert_eq!(code, 0, "{what}: {stdout}\n{stderr}");
        let now = current(&account).await.0;
        assert_ne!(now, before, "{what}: rotated");
        let versions = stages(&account).await;
        assert!(
            versions
                .iter()
                .all(|(_, s)| !s.iter().any(|x| x == "AWSPENDING")),
            "{what}: {versions:?}"
        );
        match kind {
            "command" => assert_eq!(
                std::fs::read_to_string(&target).expect("target"),
                now,
                "{what}: the target holds the value in use"
            ),
            "http" => {
                let keys = provider.as_ref().expect("provider").keys();
                let in_use: Value = serde_json::from_str(&now).expect("json");
                let id = in_use["key_id"].as_str().expect("id");
                assert!(keys.contains(&(id.to_owned(), true)), "{what}: {keys:?}");
                assert!(
                    keys.contains(&("k-0".to_owned(), false)),
                    "{what}: the old key is revoked: {keys:?}"
                );
            }
            _ => {}
        }
        let status = status_json(&config).expect("status");
        assert!(
            status["unfinished_journals"]
                .as_array()
                .expect("journals")
                .is_empty(),
            "{what}: {status:#}"
        );
    });
}

/// IAM allows two keys per user: a stray *inactive* key makes room for the new one; a stray
/// *active* key (maybe in use somewhere) stops the rotation with every key untouched.
#[test]
fn the_two_key_limit_deletes_only_an_inactive_stray_key() {
    let cases = vec![
        ("an inactive stray key".to_owned(), false),
        ("an active stray key".to_owned(), true),
    ];
    run_cases(cases, |stray_active| async move {
        let emulator = &whittle_tests::Emulator::start(&[]);
        let root = emulator.sdk_config().await;
        let iam = aws_sdk_iam::Client::new(&root);
        iam.create_user()
            .user_name("svc")
            .send()
            .await
            .expect("user");
        let mut ids = Vec::new();
        let mut first = None;
        for _ in 0..2 {
            let k = iam
                .create_access_key()
                .user_name("svc")
                .send()
                .await
                .expect("key")
                .access_key
                .expect("key");
            ids.push(k.access_key_id.clone());
            first.get_or_insert(k);
        }
        let first = first.expect("first key");
        if !stray_active {
            iam.update_access_key()
                .user_name("svc")
                .access_key_id(&ids[1])
                .status(aws_sdk_iam::types::StatusType::Inactive)
                .send()
                .await
                .expect("deactivate the stray key");
        }
        aws_sdk_secretsmanager::Client::new(&root)
            .create_secret()
            .name("svc/key")
            .secret_string(
                serde_json::json!({"AccessKeyId": first.access_key_id, "SecretAccessKey": first.secret_access_key})
                    .to_string(),
            )
            .send()
            .await
            .expect("secret");
        let ws = Workspace::new();
        std::fs::write(
            ws.path("key.toml"),
            "kind = \"iam-access-key\"\nuser = \"svc\"\npropagation_timeout = \"5s\"\n",
        )
        .expect("playbook");
        let config = ws.emulator_config(&emulator.url, "rot");
        std::fs::write(
            &config,
            std::fs::read_to_string(&config).expect("config")
                + "\n[[rotation]]\nname = \"svc-key\"\naccount = \"staging\"\nstore = \"secrets-manager\"\nsecret = \"svc/key\"\nplaybook = \"key.toml\"\ncron = \"0 0 3 * * 1\"\nretry_delay = \"50ms\"\n",
        )
        .expect("config");
        let (code, stdout, _) = run(&config, &["rotate", "--now"]);
        let mut keys: Vec<String> = iam
            .list_access_keys()
            .user_name("svc")
            .send()
            .await
            .expect("keys")
            .access_key_metadata
            .into_iter()
            .filter_map(|m| m.access_key_id)
            .collect();
        keys.sort();
        if stray_active {
            assert_eq!(code, 1, "{stdout}");
            assert!(
                stdout.contains("already has a second active key"),
                "{stdout}"
            );
            let mut before = ids.clone();
            before.sort();
            assert_eq!(keys, before, "no key was touched");
        } else {
            assert_eq!(code, 0, "{stdout}");
            assert!(
                keys.contains(&ids[0]),
                "the old key waits for its grace period"
            );
            assert!(!keys.contains(&ids[1]), "the inactive stray key made room");
            assert_eq!(keys.len(), 2);
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_retrying_across_the_upkeep_tick_is_never_run_twice_at_once() {
    // The rotation starts at second 55 and its test passes only from 6 s after its first
    // attempt (retries 1 s, 2 s, 4 s later: the run lasts about 9 s), so its run spans the
    // `rotation-upkeep` job's tick at second 0, which advances every rotation with an
    // unfinished journal. The two must not drive the same rotation at once: each install and
    // test runs alone. (The upkeep ticks only at second 0: the test waits for it, half a
    // minute on average.)
    let emulator = &whittle_tests::Emulator::start(&[]);
    let account = seed(emulator).await;
    let ws = Workspace::new();
    let (target, log) = (ws.path("target.txt"), ws.path("commands.log"));
    let first = ws.path("first-test");
    std::fs::write(&target, OLD_SECRET).expect("target");
    let logged = |name: &str, body: &str| {
        format!(
            "[\"sh\", \"-c\", \"echo start {name} >> {log}; {body}; s=$?; sleep 0.5; echo end {name} >> {log}; exit $s\"]",
            log = log.display()
        )
    };
    std::fs::write(
        ws.path("install.toml"),
        format!(
            "kind = \"command\"\nlength = 20\njson_field = \"api_key\"\ninstall = {}\ntest = {}\ntimeout = \"10s\"\n",
            logged("install", &format!("cat > {}", target.display())),
            logged(
                "test",
                &format!(
                    "[ -f {f} ] || date +%s > {f}; [ $(( $(date +%s) - $(cat {f}) )) -ge 6 ]",
                    f = first.display()
                )
            ),
        ),
    )
    .expect("playbook");
    let config = ws.emulator_config(&emulator.url, "rot");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config")
            + &format!(
                "\n[[rotation]]\nname = \"api-key\"\naccount = \"staging\"\nstore = \"secrets-manager\"\nsecret = \"{SECRET}\"\nplaybook = \"install.toml\"\ncron = \"55 * * * * *\"\nattempts = 6\nretry_delay = \"1s\"\n"
            ),
    )
    .expect("config");
    let daemon_log = ws.path("daemon.log");
    let mut daemon = spawn_daemon(&config, &daemon_log);
    wait_for(Duration::from_secs(100), "the rotation to finish", || {
        let status = status_json(&config)?;
        let rotation = &status["rotations"][0];
        (rotation["last_rotated"].is_string() && rotation["state"] == "idle").then_some(())
    });
    signal(&daemon, "TERM");
    assert_eq!(
        wait_exit(&mut daemon, Duration::from_secs(30)).code(),
        Some(0)
    );
    let daemon_log = std::fs::read_to_string(&daemon_log).expect("daemon log");
    // The upkeep started while the rotation's own run was under way.
    let position = |needle: &str, from: usize| {
        daemon_log[from..]
            .find(needle)
            .map(|at| from + at)
            .unwrap_or_else(|| panic!("no `{needle}` in the daemon log: {daemon_log}"))
    };
    let run_started = position("Job started job=rotate:api-key", 0);
    let upkeep_started = position("Job started job=rotation-upkeep", run_started);
    let run_ended = position("Job succeeded job=rotate:api-key", run_started);
    assert!(
        upkeep_started < run_ended,
        "the upkeep ran meanwhile: {daemon_log}"
    );
    // The upkeep leaves a rotation its own run is driving alone, and nothing fails.
    assert!(
        !daemon_log.contains("Resuming an interrupted rotation"),
        "{daemon_log}"
    );
    assert!(!daemon_log.contains("Job failed"), "{daemon_log}");
    let commands = std::fs::read_to_string(&log).expect("commands log");
    let mut running: Option<&str> = None;
    for line in commands.lines() {
        match (line.strip_prefix("start "), line.strip_prefix("end ")) {
            (Some(name), _) => {
                assert!(
                    running.is_none(),
                    "{name} started while {running:?} ran:\n{commands}"
                );
                running = Some(name);
            }
            (_, Some(name)) => {
                assert_eq!(running, Some(name), "{commands}");
                running = None;
            }
            _ => panic!("{line}"),
        }
    }
    assert_eq!(
        commands.lines().filter(|l| *l == "end install").count(),
        1,
        "installed once:\n{commands}"
    );
    let (value, _) = current(&account).await;
    assert_ne!(value, OLD_SECRET);
    assert_eq!(
        std::fs::read_to_string(&target).expect("target").trim(),
        value
    );
}
