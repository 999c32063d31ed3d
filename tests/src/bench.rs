//! What the bench binaries (`tests/benches/`) share: failing with a message, listing a
//! corpus's files, and running a program under GNU time for its peak memory.

use std::path::{Path, PathBuf};
use std::process::Command;

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
