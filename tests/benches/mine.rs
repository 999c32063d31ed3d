//! The mining benchmark: `cargo bench -p whittle-tests --bench mine [-- --events N]`.
//!
//! Generates (once, cached under target/bench-corpus/) a seeded corpus of realistic trail
//! log files, then measures in one run, side by side on the same files:
//! 1. `gzip -dc FILES > /dev/null`, one core: the decompression floor;
//! 2. `whittle mine --from-dir` with one worker: end to end (decompress, parse, map,
//!    aggregate, commit) on one core;
//! 3. the same with one worker per core;
//! 4. a re-run over the unchanged corpus (incremental cost), twice: the first opens the state
//!    right after the large write (sled replays its log since the last snapshot), the second
//!    is the steady cost of a scheduled run that finds nothing new;
//!
//! with wall time and peak RSS (GNU time's %M) of each. Prints a Markdown table for
//! BENCHMARKS.md. The whittle binary is built in release mode first.

use std::path::{Path, PathBuf};
use std::time::Instant;

use whittle_tests::bench::{fail, list, number, release_whittle, rss_of, size, timed};
use whittle_tests::repo_root;
use whittle_tests::trailgen::{CorpusSpec, generate};

struct Measure {
    label: String,
    seconds: f64,
    rss_mb: Option<f64>,
    events: Option<u64>,
}

fn main() {
    let mut events: u64 = 1_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--events" {
            events = number(args.next(), "--events");
        }
    }
    let root = repo_root();
    let whittle = release_whittle(env!("CARGO"));

    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    let corpus_dir = root.join(format!("target/bench-corpus/{events}-seed42-{today}"));
    let spec = CorpusSpec::new(events, chrono::Utc::now().timestamp_millis() - 3_600_000);
    let marker = corpus_dir.join("complete");
    let corpus = if marker.exists() {
        eprintln!("reusing corpus {}", corpus_dir.display());
        let files = list(&corpus_dir.join("AWSLogs"));
        let uncompressed = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        whittle_tests::trailgen::Corpus {
            root: corpus_dir.clone(),
            compressed_bytes: files.iter().map(|f| size(f)).sum(),
            files,
            events,
            uncompressed_bytes: uncompressed,
        }
    } else {
        let _ = std::fs::remove_dir_all(&corpus_dir);
        eprintln!(
            "generating {events} events into {} ...",
            corpus_dir.display()
        );
        let started = Instant::now();
        let corpus =
            generate(&corpus_dir, &spec).unwrap_or_else(|e| fail(&format!("generate: {e}")));
        std::fs::write(&marker, corpus.uncompressed_bytes.to_string())
            .unwrap_or_else(|e| fail(&format!("marker: {e}")));
        eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
        corpus
    };
    let mb = corpus.uncompressed_bytes as f64 / 1e6;
    eprintln!(
        "corpus: {} files, {} events, {:.1} MB gzip, {:.1} MB JSON",
        corpus.files.len(),
        corpus.events,
        corpus.compressed_bytes as f64 / 1e6,
        mb
    );

    let mut results = Vec::new();
    results.push(gzip_floor(&corpus.files));

    let work = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("tempdir: {e}")));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for (label, workers, state) in [
        ("whittle mine, 1 worker".to_owned(), 1, "one"),
        (format!("whittle mine, {cores} workers"), 0, "all"),
        ("whittle mine re-run, unchanged corpus".to_owned(), 0, "all"),
        ("whittle mine second re-run".to_owned(), 0, "all"),
    ] {
        let config = work.path().join(format!("{state}.toml"));
        write_config(&config, &work.path().join(state), workers);
        results.push(run_whittle(&whittle, &config, &corpus.root, &label));
    }

    let floor = results[0].seconds;
    let first = results[2].seconds;
    println!("\n| measurement | wall s | events/s | MB/s (JSON) | peak RSS MB | vs gzip -dc |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, r) in results.iter().enumerate() {
        let rate = corpus.events as f64 / r.seconds;
        let rerun = i >= 3;
        println!(
            "| {} | {:.2} | {} | {} | {} | {} |",
            r.label,
            r.seconds,
            if rerun {
                "-".to_owned()
            } else {
                format!("{rate:.0}")
            },
            if rerun {
                "-".to_owned()
            } else {
                format!("{:.0}", mb / r.seconds)
            },
            r.rss_mb.map_or("-".to_owned(), |m| format!("{m:.0}")),
            if rerun {
                format!("{:.2}% of the first run", 100.0 * r.seconds / first)
            } else {
                format!("{:.2}x", floor / r.seconds)
            },
        );
        if let Some(seen) = r.events
            && !rerun
            && seen != corpus.events
        {
            eprintln!(
                "warning: {} counted {seen} events, expected {}",
                r.label, corpus.events
            );
        }
    }
    println!(
        "\ncorpus: {} files, {} events, {:.1} MB gzip, {:.1} MB JSON; {} cores",
        corpus.files.len(),
        corpus.events,
        corpus.compressed_bytes as f64 / 1e6,
        mb,
        cores
    );
}

/// `gzip -dc` over every file, in batches of 1,000 files per process (an argument list of
/// 20,000 paths is too long for exec); the time is the sum, the RSS the largest.
fn gzip_floor(files: &[PathBuf]) -> Measure {
    let mut seconds = 0.0;
    let mut rss_mb: Option<f64> = None;
    for batch in files.chunks(1000) {
        let args: Vec<String> = std::iter::once("-dc".to_owned())
            .chain(batch.iter().map(|f| f.to_string_lossy().into_owned()))
            .collect();
        let mut command = timed(Path::new("/usr/bin/gzip"));
        command.args(&args);
        command.stdout(std::process::Stdio::null());
        let started = Instant::now();
        let out = command
            .output()
            .unwrap_or_else(|e| fail(&format!("gzip: {e}")));
        seconds += started.elapsed().as_secs_f64();
        if !out.status.success() {
            fail("gzip -dc failed");
        }
        if let Some(rss) = rss_of(&String::from_utf8_lossy(&out.stderr)) {
            rss_mb = Some(rss_mb.map_or(rss, |m: f64| m.max(rss)));
        }
    }
    Measure {
        label: "gzip -dc > /dev/null, 1 core".to_owned(),
        seconds,
        rss_mb,
        events: None,
    }
}

fn write_config(path: &Path, state: &Path, workers: usize) {
    let text = format!(
        r#"[[aws.accounts]]
name = "bench"
[state]
dir = "{}"
[targets]
arn_patterns = ["arn:aws:iam::*:role/app-*"]
[mining]
workers = {workers}
last_accessed = false
"#,
        state.display()
    );
    std::fs::write(path, text).unwrap_or_else(|e| fail(&format!("config: {e}")));
}

fn run_whittle(whittle: &Path, config: &Path, corpus: &Path, label: &str) -> Measure {
    let args: Vec<String> = [
        "--config",
        &config.to_string_lossy(),
        "-q",
        "mine",
        "--from-dir",
        &corpus.to_string_lossy(),
        "--format",
        "json",
        "--no-progress",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut command = timed(whittle);
    command.args(&args);
    command
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench");
    let started = Instant::now();
    let out = command
        .output()
        .unwrap_or_else(|e| fail(&format!("whittle: {e}")));
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        fail(&format!("{label} failed: {stderr}"));
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| fail(&format!("{label}: report: {e}")));
    let events = report["stats"]["events_by_kind"]
        .as_object()
        .map(|kinds| kinds.values().filter_map(serde_json::Value::as_u64).sum());
    eprintln!("{label}: {seconds:.2} s");
    Measure {
        label: label.to_owned(),
        seconds,
        rss_mb: rss_of(&stderr),
        events,
    }
}
