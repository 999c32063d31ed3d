//! The test harness: the local AWS emulator and the real `whittle` binary.
//!
//! [`Emulator::shared`] starts one emulator per test binary; [`Emulator::start`] starts a
//! private one for a test that needs auth mode or a clean server. Each is
//! `tests/emulator/whittle_emulator.py` (moto plus whittle's extension) in the venv that
//! `tests/emulator/setup.sh` installs, on a free loopback port.
//!
//! Emulators are forked from one warmed-up Python process per test binary,
//! `tests/emulator/fork_server.py`, which has imported moto once: a fresh emulator then costs
//! milliseconds instead of the second or two of CPU its imports take (the tests start about
//! ninety). Each is still a process of its own with its own state. `WHITTLE_EMULATOR_FORK=0`
//! starts each emulator as its own `python whittle_emulator.py` instead.
//!
//! A private emulator is killed on drop; the shared one is never dropped (it is a static). An
//! emulator also exits by itself when this process goes: the fork server when its stdin, held
//! by this process, closes, and its emulators with it; an emulator of its own likewise.

pub mod athena;
pub mod bench;
pub mod scale;
pub mod trailgen;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The emulator's Python: `WHITTLE_EMULATOR_PYTHON`, or the repository's venv.
fn venv_python() -> PathBuf {
    std::env::var_os("WHITTLE_EMULATOR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-moto/bin/python"))
}

/// The Python the tests run their scripts with (`python() SCRIPT ARG…`, in a `Command` or in
/// a playbook's exercise): the emulator's, through `tests/emulator/prewarmed.py`, whose
/// server has imported boto3 and loaded the AWS models once, so that a script costs its own
/// calls rather than a third of a second of CPU to start. It is an executable that behaves as
/// `python` does for a script; `WHITTLE_PREWARMED=0` gives the plain interpreter.
pub fn python() -> PathBuf {
    if std::env::var_os("WHITTLE_PREWARMED").is_some_and(|v| v == "0") {
        return venv_python();
    }
    static LAUNCHER: OnceLock<PathBuf> = OnceLock::new();
    LAUNCHER.get_or_init(start_prewarmed).clone()
}

/// Starts the prewarmed server, never stopped: it exits (and removes its directory) when its
/// stdin, held by this process, closes. Returns its launcher.
fn start_prewarmed() -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;

    let python = venv_python();
    assert_installed(&python);
    let script = repo_root().join("tests/emulator/prewarmed.py");
    let dir = std::env::temp_dir().join(format!("whittle-prewarmed-{}", std::process::id()));
    // A directory of an earlier process with this pid (whose server is gone) is replaced.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a directory for the prewarmed server");
    let socket = dir.join("socket");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg("--serve")
        .arg(&socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the prewarmed script server");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut ready)
        .expect("read the prewarmed server's first line");
    assert_eq!(
        ready.trim(),
        "ready",
        "the prewarmed script server did not start"
    );
    // Held open for this process's life (and the child handle with it).
    std::mem::forget(child);
    let quote = |path: &Path| format!("'{}'", path.display().to_string().replace('\'', r"'\''"));
    let launcher = dir.join("python");
    std::fs::write(
        &launcher,
        format!(
            "#!/bin/sh\nexec {} -I -S {} {} \"$@\"\n",
            quote(&python),
            quote(&script),
            quote(&socket)
        ),
    )
    .expect("write the launcher");
    std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755))
        .expect("make the launcher executable");
    launcher
}

/// `command`, isolated from the caller's AWS and whittle settings: the emulator's test
/// credentials, no profile, session token, configuration, state directory, endpoint or log
/// format of the caller's, and no stdin. Every test and bench that runs `whittle` goes
/// through it.
pub fn isolate(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("WHITTLE_CONFIG")
        .env_remove("WHITTLE_STATE_DIR")
        .env_remove("WHITTLE_AWS_ENDPOINT_URL")
        .env_remove("WHITTLE_LOG_FORMAT")
        .stdin(Stdio::null())
}

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    pub url: String,
    process: Process,
}

#[derive(Debug)]
enum Process {
    /// Forked by the fork server, which stops it.
    Forked { pid: u32 },
    /// Started on its own (`WHITTLE_EMULATOR_FORK=0`).
    Own {
        child: Mutex<Child>,
        // Held open: the emulator exits when it closes.
        _stdin: ChildStdin,
    },
}

/// Whether emulators are forked from the fork server (unless `WHITTLE_EMULATOR_FORK=0`).
fn forking() -> bool {
    std::env::var_os("WHITTLE_EMULATOR_FORK").is_none_or(|v| v != "0")
}

fn assert_installed(python: &Path) {
    assert!(
        python.exists(),
        "the emulator is not installed: {} is missing; run tests/emulator/setup.sh (or the README's test command)",
        python.display()
    );
}

/// `tests/emulator/fork_server.py`, running: one per test binary, never dropped. Requests and
/// their answers are one JSON line each, one request at a time.
#[derive(Debug)]
struct ForkServer {
    // Held open: the server (and every emulator it forked) exits when it closes.
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    _child: Child,
}

impl ForkServer {
    fn get() -> &'static Mutex<ForkServer> {
        static SERVER: OnceLock<Mutex<ForkServer>> = OnceLock::new();
        SERVER.get_or_init(|| {
            let python = venv_python();
            assert_installed(&python);
            let mut child = Command::new(&python)
                .arg(repo_root().join("tests/emulator/fork_server.py"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the emulator fork server");
            let stdin = child.stdin.take().expect("piped stdin");
            let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
            let mut server = ForkServer {
                stdin,
                stdout,
                _child: child,
            };
            let ready = server.answer();
            assert_eq!(
                ready["ready"], true,
                "the emulator fork server did not start: {ready}"
            );
            Mutex::new(server)
        })
    }

    fn answer(&mut self) -> serde_json::Value {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read the emulator fork server's answer");
        serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!("the emulator fork server answered {line:?} (run with WHITTLE_EMULATOR_FORK=0 to see whether forking is the problem)")
        })
    }

    fn request(request: &serde_json::Value) -> serde_json::Value {
        let mut server = Self::get()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writeln!(server.stdin, "{request}").expect("write to the emulator fork server");
        server.answer()
    }
}

impl Emulator {
    /// The emulator shared by every test of this binary. Tests that share it must not depend
    /// on a clean server: they use their own names for roles, secrets and buckets.
    pub fn shared() -> &'static Emulator {
        static SHARED: OnceLock<Emulator> = OnceLock::new();
        SHARED.get_or_init(|| Emulator::start(&[]))
    }

    /// A private emulator with these extra environment variables (when forked, only settings
    /// the emulator reads at run time take effect: the emulator's own `WHITTLE_EMULATOR_*`,
    /// moto's `MOTO_IAM_LOAD_MANAGED_POLICIES`).
    pub fn start(env: &[(&str, &str)]) -> Emulator {
        let emulator = if forking() {
            Self::fork(env)
        } else {
            Self::spawn(env)
        };
        emulator.wait_until_ready();
        emulator
    }

    fn fork(env: &[(&str, &str)]) -> Emulator {
        let env: serde_json::Map<String, serde_json::Value> = env
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).into()))
            .collect();
        let answer = ForkServer::request(&serde_json::json!({ "start": env }));
        let (Some(pid), Some(url)) = (answer["pid"].as_u64(), answer["url"].as_str()) else {
            panic!("the emulator fork server did not start an emulator: {answer}");
        };
        Emulator {
            url: url.to_owned(),
            process: Process::Forked {
                pid: u32::try_from(pid).expect("a pid"),
            },
        }
    }

    fn spawn(env: &[(&str, &str)]) -> Emulator {
        let python = venv_python();
        assert_installed(&python);
        let mut command = Command::new(&python);
        command
            .arg(repo_root().join("tests/emulator/whittle_emulator.py"))
            .args(["--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the emulator");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the emulator's first line");
        let url = line
            .trim()
            .split("Running on ")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected emulator output: {line:?}"))
            .to_owned();
        Emulator {
            url,
            process: Process::Own {
                child: Mutex::new(child),
                _stdin: stdin,
            },
        }
    }

    fn wait_until_ready(&self) {
        for _ in 0..100 {
            if self.get("/moto-api/data.json").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the emulator at {} did not answer within 10 s", self.url);
    }

    /// The port, for composing addresses.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in url")
    }

    /// A plain HTTP request to the emulator's control endpoints.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        content_type: &str,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        http_request(
            &format!("127.0.0.1:{}", self.port()),
            method,
            path,
            body,
            content_type,
        )
    }

    pub fn get(&self, path: &str) -> std::io::Result<Vec<u8>> {
        self.request("GET", path, b"", "application/json")
            .map(|(_, body)| body)
    }

    /// POSTs JSON to a control endpoint and returns the JSON answer.
    pub fn post_json(&self, path: &str, doc: &serde_json::Value) -> serde_json::Value {
        let (status, body) = self
            .request("POST", path, doc.to_string().as_bytes(), "application/json")
            .expect("control request");
        assert!(
            status < 300,
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
    }

    /// Turns permission checking on for every later call (moto's auth mode).
    pub fn enable_auth(&self) {
        let (status, _) = self
            .request("POST", "/moto-api/reset-auth", b"0", "text/plain")
            .expect("reset-auth");
        assert_eq!(status, 200);
    }

    /// SDK configuration for this emulator with the given static credentials.
    pub async fn sdk_config_with(
        &self,
        key: &str,
        secret: &str,
        token: Option<&str>,
    ) -> aws_config::SdkConfig {
        let credentials = aws_sdk_sts::config::Credentials::new(
            key,
            secret,
            token.map(str::to_owned),
            None,
            "whittle-tests",
        );
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(credentials)
            // The SDK crates are built without a default HTTP client (see the root
            // Cargo.toml); the emulator is plain HTTP on loopback.
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            // moto answers unimplemented calls with 500, which the SDK would retry.
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .load()
            .await
    }

    /// SDK configuration acting as `role_arn` under the session name `session`, assumed
    /// with the credentials of `caller` (in auth mode its policies and the role's trust
    /// policy must allow it).
    pub async fn assume_role(
        &self,
        caller: &aws_config::SdkConfig,
        role_arn: &str,
        session: &str,
    ) -> aws_config::SdkConfig {
        let creds = aws_sdk_sts::Client::new(caller)
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session)
            .send()
            .await
            .unwrap_or_else(|e| panic!("assume {role_arn} as {session}: {e:?}"))
            .credentials
            .unwrap_or_else(|| panic!("AssumeRole of {role_arn} returned no credentials"));
        self.sdk_config_with(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token()),
        )
        .await
    }

    /// SDK configuration with the emulator's default (root) test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_with("testing", "testing", None).await
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        match &mut self.process {
            Process::Forked { pid } => {
                // Never a panic here (a drop while a failed test unwinds would abort).
                if let Ok(mut server) = ForkServer::get().lock() {
                    let stop = serde_json::json!({ "stop": *pid });
                    if writeln!(server.stdin, "{stop}").is_ok() {
                        let _ = server.stdout.read_line(&mut String::new());
                    }
                }
            }
            Process::Own { child, .. } => {
                if let Ok(child) = child.get_mut() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

/// One HTTP/1.1 request to a loopback server (the emulator's control API, the daemon's status
/// endpoint): the status code and the body.
pub fn http_request(
    address: &str,
    method: &str,
    path: &str,
    body: &[u8],
    content_type: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.get(split + 4..).unwrap_or_default().to_vec();
    Ok((status, body))
}

/// The `whittle` binary built for this test run, or `WHITTLE_BINARY` when set.
pub fn whittle_binary() -> PathBuf {
    // Another build can be measured with the same tests (BENCHMARKS.md's "before" figures).
    if let Some(path) = std::env::var_os("WHITTLE_BINARY") {
        return PathBuf::from(path);
    }
    // Integration tests of another package do not get CARGO_BIN_EXE_whittle; the binary sits
    // beside this test binary's directory in the same target profile.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let binary = profile_dir.join("whittle");
    assert!(
        binary.exists(),
        "{} is missing: build it first (cargo build --workspace --bins --tests), as the test command does",
        binary.display()
    );
    binary
}

/// `whittle usage --format json` (parsed) without what docs/athena.md documents as
/// source-specific, so that the usage mined from log files and through Athena compare equal:
/// the Athena query carries no `resources` (of actions, denials and per-session actions) and
/// no request parameters (secrets read), and `generated_at` is the time of the call.
pub fn source_independent_usage(mut usage: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    usage["generated_at"] = Value::Null;
    let strip = |list: &mut Value| {
        for action in list.as_array_mut().into_iter().flatten() {
            action["resources"] = Value::Null;
            action["resources_truncated"] = Value::Null;
        }
    };
    for role in usage["roles"].as_array_mut().into_iter().flatten() {
        role["secrets_read"] = Value::Null;
        strip(&mut role["actions"]);
        strip(&mut role["denied"]);
        for session in role["session_usage"].as_array_mut().into_iter().flatten() {
            strip(&mut session["actions"]);
        }
    }
    usage
}

/// An S3 client for the emulator (path-style addressing).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}
