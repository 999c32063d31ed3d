//! Helpers shared by the integration tests: configs, running the binary, waiting.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use whittle_tests::{Emulator, whittle_binary};

/// A scratch directory with a config file in it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("config.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Adds `text` (more tables) at the end of the configuration file `config`.
    pub fn append_config(&self, config: &Path, text: &str) {
        let mut written = std::fs::read_to_string(config).expect("config");
        written.push_str(text);
        std::fs::write(config, written).expect("config");
    }

    /// A config for the emulator with fast schedules and roles matching `prefix`.
    pub fn emulator_config(&self, endpoint: &str, prefix: &str) -> PathBuf {
        self.write_config(&format!(
            r#"
[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
max_attempts = 1
connect_timeout = "2s"
operation_timeout = "20s"

[[aws.accounts]]
name = "staging"
id = "123456789012"

[state]
dir = "{state}"

[status]
listen = "127.0.0.1:0"

[targets]
arn_patterns = ["arn:aws:iam::*:role/{prefix}-*"]
tags = {{ "whittle:managed" = "true" }}
protected_patterns = ["arn:aws:iam::*:role/{prefix}-break-glass"]

[jobs.check-aws]
cron = "* * * * * *"

[jobs.discover]
cron = "*/2 * * * * *"
jitter = "500ms"

[trial]
staging_accounts = ["staging"]
"#,
            state = self.state_dir().display()
        ))
    }
}

/// `whittle ARGS` with the emulator's test credentials, waiting for it to finish.
pub fn whittle(args: &[&str]) -> Output {
    command(args).output().expect("run whittle")
}

pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(whittle_binary());
    whittle_tests::isolate(command.args(args));
    command
}

/// A running `whittle daemon` (a [`Child`] otherwise), killed when dropped while it still
/// runs: a test that fails before it stops its daemon leaves none behind, polling a gone
/// emulator and loading the machine for the tests after it.
#[derive(Debug)]
pub struct Daemon(Child);

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `whittle daemon --config CONFIG`, logging to `log`.
pub fn spawn_daemon(config: &Path, log: &Path) -> Daemon {
    Daemon(daemon_command(config, log).spawn().expect("spawn daemon"))
}

/// Starts the daemon with these access keys (auth mode rejects the default test key).
pub fn spawn_daemon_as(config: &Path, log: &Path, key_id: &str, secret: &str) -> Daemon {
    Daemon(
        daemon_command(config, log)
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .spawn()
            .expect("spawn daemon"),
    )
}

fn daemon_command(config: &Path, log: &Path) -> Command {
    let log_file = std::fs::File::create(log).expect("log file");
    let mut command = command(&["daemon", "--config", config.to_str().expect("utf-8 path")]);
    command.stdout(Stdio::null()).stderr(log_file);
    command
}

/// Waits until the log file contains `needle` (a daemon's start-up line, say).
pub fn wait_for_log(log: &Path, needle: &str) {
    wait_for(Duration::from_secs(30), needle, || {
        std::fs::read_to_string(log)
            .ok()
            .filter(|l| l.contains(needle))
    });
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `check` until it returns Some, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `whittle status --format json` with these access keys (auth mode), parsed.
pub fn status_json_as(config: &Path, key_id: &str, secret: &str) -> serde_json::Value {
    let out = command(&[
        "status",
        "--format",
        "json",
        "--config",
        config.to_str().expect("utf-8"),
    ])
    .env("AWS_ACCESS_KEY_ID", key_id)
    .env("AWS_SECRET_ACCESS_KEY", secret)
    .output()
    .expect("status");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status json: {e} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `whittle status --format json` parsed, if it succeeds.
pub fn status_json(config: &Path) -> Option<serde_json::Value> {
    let out = whittle(&["status", "--format", "json", "--config", config.to_str()?]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Sends a signal to a process.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits for a child to exit, up to `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    wait_for(timeout, "the process to exit", || {
        child.try_wait().expect("try_wait")
    })
}

/// Creates a role (and optional tags) in the emulator through the SDK.
/// Creates the IAM user `admin`, allowed everything, and returns its access key (id,
/// secret): whittle and the tests' SDK clients use it once the emulator checks permissions
/// (its default test key then fails).
pub async fn admin_user(iam: &aws_sdk_iam::Client) -> (String, String) {
    iam.create_user()
        .user_name("admin")
        .send()
        .await
        .expect("user");
    iam.put_user_policy()
        .user_name("admin")
        .policy_name("all")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        )
        .send()
        .await
        .expect("admin policy");
    let key = iam
        .create_access_key()
        .user_name("admin")
        .send()
        .await
        .expect("key")
        .access_key
        .expect("access key");
    (key.access_key_id, key.secret_access_key)
}

pub async fn create_role(iam: &aws_sdk_iam::Client, name: &str, tags: &[(&str, &str)]) {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#;
    let mut request = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust);
    for (key, value) in tags {
        request = request.tags(
            aws_sdk_iam::types::Tag::builder()
                .key(*key)
                .value(*value)
                .build()
                .expect("tag"),
        );
    }
    request.send().await.expect("create role");
}

/// A role's inline policies by name, documents URL-decoded and parsed (compare these, never
/// the text: IAM re-formats documents).
pub async fn inline_policies(
    iam: &aws_sdk_iam::Client,
    role: &str,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut inline = std::collections::BTreeMap::new();
    let names = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .expect("list role policies");
    for name in names.policy_names() {
        let doc = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .expect("get role policy");
        let text = percent_encoding::percent_decode_str(doc.policy_document())
            .decode_utf8()
            .expect("utf-8")
            .into_owned();
        inline.insert(name.clone(), serde_json::from_str(&text).expect("json"));
    }
    inline
}

/// A logging trail `name` that delivers to `bucket`, with S3 object-level (data) events:
/// a trail logs those only when asked to.
pub async fn start_trail(sdk: &aws_config::SdkConfig, name: &str, bucket: &str) {
    start_trail_of(sdk, name, bucket, false).await;
}

/// [`start_trail`], as an organization trail if `organization` (made one before it starts
/// logging, so that no delivery writes the account layout first).
pub async fn start_trail_of(
    sdk: &aws_config::SdkConfig,
    name: &str,
    bucket: &str,
    organization: bool,
) {
    let cloudtrail = aws_sdk_cloudtrail::Client::new(sdk);
    cloudtrail
        .create_trail()
        .name(name)
        .s3_bucket_name(bucket)
        .send()
        .await
        .expect("create trail");
    cloudtrail
        .put_event_selectors()
        .trail_name(name)
        .event_selectors(
            aws_sdk_cloudtrail::types::EventSelector::builder()
                .read_write_type(aws_sdk_cloudtrail::types::ReadWriteType::All)
                .include_management_events(true)
                .data_resources(
                    aws_sdk_cloudtrail::types::DataResource::builder()
                        .r#type("AWS::S3::Object")
                        .values("arn:aws:s3")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("event selectors");
    if organization {
        cloudtrail
            .update_trail()
            .name(name)
            .is_organization_trail(true)
            .send()
            .await
            .expect("organization trail");
    }
    cloudtrail
        .start_logging()
        .name(name)
        .send()
        .await
        .expect("start logging");
}

/// How many cases [`run_cases`] runs at once across the whole test binary (every test that
/// uses it shares these slots): `WHITTLE_TEST_CASES_AT_ONCE`, else 4. A case partly waits (on
/// `whittle` runs, a daemon's tick, a retry delay), but CI has 2 cores and the test threads
/// run other tests beside it: measured there, 6 at once spent more CPU and time than 4 (they
/// only queue for the CPU, and stretch the timing-sensitive tests beside them), and 2 left the
/// end of the run to a few long tests.
fn cases_at_once() -> usize {
    std::env::var("WHITTLE_TEST_CASES_AT_ONCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(4)
}

/// The free case slots of this test binary.
fn case_slots() -> &'static (std::sync::Mutex<usize>, std::sync::Condvar) {
    static SLOTS: std::sync::OnceLock<(std::sync::Mutex<usize>, std::sync::Condvar)> =
        std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        (
            std::sync::Mutex::new(cases_at_once()),
            std::sync::Condvar::new(),
        )
    })
}

/// A taken case slot, given back when dropped (a panicking case included).
struct CaseSlot;

impl CaseSlot {
    fn take() -> CaseSlot {
        let (free, freed) = case_slots();
        let mut free = free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *free == 0 {
            free = freed
                .wait(free)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *free -= 1;
        CaseSlot
    }
}

impl Drop for CaseSlot {
    fn drop(&mut self) {
        let (free, freed) = case_slots();
        *free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        freed.notify_one();
    }
}

/// Runs independent cases concurrently, each on its own thread (named after the case) with its
/// own tokio runtime: a case blocks on `whittle` runs and plain HTTP calls, so cases must not
/// share a runtime's workers. At most [`cases_at_once`] run at a time in the whole binary. Every
/// case runs even if another fails; then a failure fails the test, naming each failed case
/// and its panic message. Each case keeps its own isolation (emulator, workspace, state).
pub fn run_cases<C, F, Fut>(cases: Vec<(String, C)>, case: F)
where
    C: Send,
    F: Fn(C) -> Fut + Sync,
    Fut: std::future::Future<Output = ()>,
{
    let case = &case;
    let failed: Vec<String> = std::thread::scope(|scope| {
        let mut running = Vec::new();
        for (name, input) in cases {
            let slot = CaseSlot::take();
            let thread = std::thread::Builder::new()
                .name(name.clone())
                .spawn_scoped(scope, move || {
                    let _slot = slot;
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .enable_all()
                        .build()
                        .expect("a tokio runtime for the case")
                        .block_on(case(input));
                })
                .expect("spawn the case's thread");
            running.push((name, thread));
        }
        running
            .into_iter()
            .filter_map(|(name, thread)| {
                thread.join().err().map(|panic| {
                    let message = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("(a panic without a message)");
                    format!("case `{name}` failed: {message}")
                })
            })
            .collect()
    });
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
