//! The test harness: the local AWS emulator and the real `whittle` binary.
//!
//! [`Emulator::shared`] starts one emulator per test binary; [`Emulator::start`] starts a
//! private one for a test that needs auth mode or a clean server. Each is
//! `tests/emulator/whittle_emulator.py` (moto plus whittle's extension) in the venv that
//! `tests/emulator/setup.sh` installs, on a free loopback port. A private emulator is killed
//! by pid on drop; the shared one is never dropped (it is a static), so the emulator also
//! exits by itself when its stdin, held by this process, closes.

pub mod trailgen;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
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
fn python() -> PathBuf {
    std::env::var_os("WHITTLE_EMULATOR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-moto/bin/python"))
}

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    pub url: String,
    child: Mutex<Child>,
    // Held open: the emulator exits when it closes.
    _stdin: ChildStdin,
}

impl Emulator {
    /// The emulator shared by every test of this binary. Tests that share it must not depend
    /// on a clean server: they use their own names for roles, secrets and buckets.
    pub fn shared() -> &'static Emulator {
        static SHARED: OnceLock<Emulator> = OnceLock::new();
        SHARED.get_or_init(|| Emulator::start(&[]))
    }

    /// A private emulator with these extra environment variables.
    pub fn start(env: &[(&str, &str)]) -> Emulator {
        let python = python();
        assert!(
            python.exists(),
            "the emulator is not installed: {} is missing; run tests/emulator/setup.sh (or the README's test command)",
            python.display()
        );
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
        let emulator = Emulator {
            url,
            child: Mutex::new(child),
            _stdin: stdin,
        };
        emulator.wait_until_ready();
        emulator
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

    /// SDK configuration with the emulator's default (root) test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_with("testing", "testing", None).await
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
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

/// The `whittle` binary built for this test run.
pub fn whittle_binary() -> PathBuf {
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
