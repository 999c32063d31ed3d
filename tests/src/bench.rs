//! What the bench binaries (`tests/benches/`) share: failing with a message, listing a
//! corpus's files, running a program under GNU time for its peak memory, building the release
//! `whittle`, and running `whittle daemon` and reading its peak memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{http_request, repo_root};

/// Ends the bench with `bench: MESSAGE` and exit code 1.
pub fn fail(message: &str) -> ! {
    eprintln!("bench: {message}");
    std::process::exit(1)
}

/// A file's size in bytes (0 when it cannot be read).
pub fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Every file under `dir`, sorted.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `program` wrapped in GNU time, which prints its peak RSS (see [`rss_of`]), when
/// /usr/bin/time is there; `program` alone otherwise.
pub fn timed(program: &Path) -> Command {
    let gnu_time = Path::new("/usr/bin/time");
    if gnu_time.exists() {
        let mut command = Command::new(gnu_time);
        command.arg("-f").arg("RSS_KB=%M").arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// The peak RSS in MB that GNU time printed on the stderr of a [`timed`] command.
pub fn rss_of(stderr: &str) -> Option<f64> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RSS_KB="))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}

/// A bench's numeric argument (`--roles 10_000`): the value after `flag`, or exit saying so.
pub fn number<T: std::str::FromStr>(value: Option<String>, flag: &str) -> T {
    value
        .and_then(|n| n.replace('_', "").parse().ok())
        .unwrap_or_else(|| fail(&format!("{flag} needs a number")))
}

/// Builds the release `whittle` (what users run) with `cargo` (the bench's `env!("CARGO")`)
/// and gives its path.
pub fn release_whittle(cargo: &str) -> PathBuf {
    let root = repo_root();
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "whittle"])
        .current_dir(&root)
        .status()
        .unwrap_or_else(|e| fail(&format!("cargo build: {e}")));
    if !status.success() {
        fail("cargo build --release -p whittle failed");
    }
    root.join("target/release/whittle")
}

/// The CPU's model name as /proc/cpuinfo gives it.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// The load averages over 1, 5 and 15 minutes.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A loopback address with a port free a moment ago, for the daemon's status endpoint.
pub fn free_address() -> String {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let address = listener
        .local_addr()
        .unwrap_or_else(|e| fail(&format!("address: {e}")));
    address.to_string()
}

/// `program ARGS --config CONFIG` under GNU time ([`timed`]), with the emulator's credentials
/// and none of the caller's AWS or whittle settings.
pub fn whittle_command(program: &Path, config: &Path, args: &[&str]) -> Command {
    let mut command = timed(program);
    crate::isolate(command.args(args).arg("--config").arg(config)).env("NO_COLOR", "1");
    command
}

/// `whittle daemon --config CONFIG`, its log in `log`.
pub fn spawn_daemon(whittle: &Path, config: &Path, log: &Path) -> Child {
    let log_file = std::fs::File::create(log).unwrap_or_else(|e| fail(&format!("log: {e}")));
    let mut command = Command::new(whittle);
    command
        .args(["daemon", "--config"])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    command
        .spawn()
        .unwrap_or_else(|e| fail(&format!("whittle daemon: {e}")))
}

/// Waits until the daemon answers `/healthz` (it verifies credentials and opens the state
/// first).
pub fn wait_for_healthz(listen: &str, daemon: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(exit)) = daemon.try_wait() {
            fail(&format!(
                "the daemon exited with {exit}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        if matches!(
            http_request(listen, "GET", "/healthz", b"", "text/plain"),
            Ok((200, _))
        ) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = daemon.kill();
    fail("the daemon did not answer /healthz within 60 s");
}

/// A process's peak resident set (VmHWM) in MB, read while it runs.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}

/// SIGTERM, then waits for the daemon to exit (it finishes its step and flushes).
pub fn stop(daemon: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = daemon.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}
