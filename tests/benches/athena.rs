//! The Athena benchmark: `cargo bench -p whittle-tests --bench athena [-- --events N]`.
//!
//! Generates (or reuses, from target/bench-corpus/, shared with the mining bench) a seeded
//! trail corpus, delivers it to the emulator's S3 in CloudTrail's layout, creates AWS's
//! CloudTrail table there (tests/emulator/cloudtrail_table.sql, run through
//! StartQueryExecution), and measures side by side on the same files:
//! 1. `whittle mine` with an `s3` source: every file downloaded and mined by whittle;
//! 2. `whittle mine` with an `athena` source: one aggregating query, executed by the
//!    emulator's engine (DuckDB over the same files), whittle reading only the result rows;
//! 3. the Athena source again after one more day's files: the incremental run, which names
//!    only the new partitions;
//!
//! with wall time and whittle's peak RSS (GNU time's %M), the bytes Athena reports scanned
//! and the result rows. The usage of 1 and 2 is compared (less the fields documented as
//! source-specific in docs/athena.md): the bench fails if they differ. Prints a Markdown
//! table for BENCHMARKS.md. The whittle binary is built in release mode first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use whittle_tests::athena::{create_cloudtrail_table, upload};
use whittle_tests::bench::{fail, list, number, release_whittle, rss_of, size, whittle_command};
use whittle_tests::s3_client;
use whittle_tests::trailgen::{CorpusSpec, generate};
use whittle_tests::{Emulator, repo_root};

const BUCKET: &str = "bench-trail";
const RESULTS: &str = "bench-results";
const DAY_MS: i64 = 86_400_000;

struct Measure {
    label: String,
    seconds: f64,
    rss_mb: Option<f64>,
    report: Value,
}

#[tokio::main]
async fn main() {
    let mut events: u64 = 1_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--events" {
            events = number(args.next(), "--events");
        }
    }
    let root = repo_root();
    let whittle = release_whittle(env!("CARGO"));

    // The corpus ends before today, so that today's partition holds only the files of the
    // incremental run. It is cached per day (its dates follow the clock).
    let now_ms = chrono::Utc::now().timestamp_millis();
    let today_ms = now_ms - now_ms.rem_euclid(DAY_MS);
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    let corpus_dir = root.join(format!(
        "target/bench-corpus/athena-{events}-seed42-{today}"
    ));
    let marker = corpus_dir.join("complete");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&corpus_dir);
        eprintln!(
            "generating {events} events into {} ...",
            corpus_dir.display()
        );
        generate(&corpus_dir, &CorpusSpec::new(events, today_ms - 60_000))
            .unwrap_or_else(|e| fail(&format!("generate: {e}")));
        std::fs::write(&marker, "").unwrap_or_else(|e| fail(&format!("marker: {e}")));
    }
    let files = list(&corpus_dir.join("AWSLogs"));
    let gzip_bytes: u64 = files.iter().map(|f| size(f)).sum();
    eprintln!(
        "corpus: {} files, {events} events, {:.1} MB gzip",
        files.len(),
        gzip_bytes as f64 / 1e6
    );

    let emulator = Emulator::start(&[]);
    let admin = emulator.sdk_config().await;
    let s3 = s3_client(&admin);
    for bucket in [BUCKET, RESULTS] {
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| fail(&format!("create bucket: {e}")));
    }
    let started = Instant::now();
    upload(&s3, BUCKET, &corpus_dir, &files)
        .await
        .unwrap_or_else(|e| fail(&e));
    eprintln!("uploaded in {:.1} s", started.elapsed().as_secs_f64());
    let accounts: Vec<String> = std::fs::read_dir(corpus_dir.join("AWSLogs"))
        .unwrap_or_else(|e| fail(&format!("accounts: {e}")))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    create_cloudtrail_table(&admin, BUCKET, RESULTS, &accounts.join(","))
        .await
        .unwrap_or_else(|e| fail(&e));

    let work = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("tempdir: {e}")));
    let by_files = write_config(
        &work.path().join("files.toml"),
        &work.path().join("files"),
        &emulator.url,
        &format!("name = \"trail\"\nkind = \"s3\"\naccount = \"bench\"\nbucket = \"{BUCKET}\"\n"),
    );
    let by_athena = write_config(
        &work.path().join("athena.toml"),
        &work.path().join("athena"),
        &emulator.url,
        &format!(
            "name = \"org\"\nkind = \"athena\"\naccount = \"bench\"\ndatabase = \"default\"\n\
             table = \"cloudtrail_logs\"\noutput_location = \"s3://{RESULTS}/whittle/\"\n\
             date_partition = \"timestamp\"\ndelivery_delay_minutes = 0\n"
        ),
    );
    let files_run = run_whittle(&whittle, &by_files, "whittle mine, s3 source (2 workers)");
    let athena_run = run_whittle(&whittle, &by_athena, "whittle mine, athena source");
    let (from_files, from_athena) = (
        comparable_usage(&whittle, &by_files),
        comparable_usage(&whittle, &by_athena),
    );
    let same = from_files == from_athena;
    if !same {
        let (a, b) = (
            work.path().join("usage-s3.json"),
            work.path().join("usage-athena.json"),
        );
        for (path, usage) in [(&a, &from_files), (&b, &from_athena)] {
            let _ = std::fs::write(
                path,
                serde_json::to_string_pretty(usage).unwrap_or_default(),
            );
        }
        fail(&format!(
            "the Athena source's usage differs from the s3 source's: compare {} and {}",
            a.display(),
            b.display()
        ));
    }

    // One more day: today's files, a thousandth of the corpus, then the incremental run.
    let fresh_dir = work.path().join("fresh");
    let fresh_events = (events / 1000).max(100);
    let fresh = generate(
        &fresh_dir,
        &CorpusSpec {
            days: 0,
            seed: 43,
            ..CorpusSpec::new(fresh_events, chrono::Utc::now().timestamp_millis() + 1_000)
        },
    )
    .unwrap_or_else(|e| fail(&format!("generate: {e}")));
    upload(&s3, BUCKET, &fresh_dir, &fresh.files)
        .await
        .unwrap_or_else(|e| fail(&e));
    std::thread::sleep(std::time::Duration::from_millis(2_000));
    let again = run_whittle(
        &whittle,
        &by_athena,
        &format!("whittle mine, athena source, next day ({fresh_events} new events)"),
    );

    println!(
        "\n| measurement | wall s | events/s | whittle peak RSS MB | bytes scanned (Athena) | rows read |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (r, n) in [
        (&files_run, events),
        (&athena_run, events),
        (&again, fresh_events),
    ] {
        let source = &r.report["sources"][0];
        println!(
            "| {} | {:.2} | {:.0} | {} | {} | {} |",
            r.label,
            r.seconds,
            n as f64 / r.seconds,
            r.rss_mb.map_or("-".to_owned(), |m| format!("{m:.0}")),
            source["bytes_scanned"]
                .as_u64()
                .map_or("-".to_owned(), |b| format!("{b}")),
            if source["kind"] == "athena" {
                source["new_inputs"].to_string()
            } else {
                "-".to_owned()
            },
        );
    }
    println!(
        "\ncorpus: {} files, {events} events, {:.1} MB gzip; usage identical (less resources and secret reads): {same}",
        files.len(),
        gzip_bytes as f64 / 1e6,
    );
}

fn write_config(path: &Path, state: &Path, endpoint: &str, source: &str) -> PathBuf {
    let text = format!(
        r#"[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
max_attempts = 1
operation_timeout = "600s"
[[aws.accounts]]
name = "bench"
id = "123456789012"
[state]
dir = "{}"
[targets]
arn_patterns = ["arn:aws:iam::*:role/app-*"]
[mining]
last_accessed = false
[[mining.sources]]
{source}"#,
        state.display()
    );
    std::fs::write(path, text).unwrap_or_else(|e| fail(&format!("config: {e}")));
    path.to_path_buf()
}

fn run_whittle(whittle: &Path, config: &Path, label: &str) -> Measure {
    let started = Instant::now();
    let out = whittle_command(
        whittle,
        config,
        &["-q", "mine", "--format", "json", "--no-progress"],
    )
    .output()
    .unwrap_or_else(|e| fail(&format!("whittle: {e}")));
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| fail(&format!("{label}: report: {e}: {stderr}")));
    if !out.status.success() || !report["sources"][0]["error"].is_null() {
        fail(&format!("{label} failed: {report} {stderr}"));
    }
    eprintln!("{label}: {seconds:.2} s");
    Measure {
        label: label.to_owned(),
        seconds,
        rss_mb: rss_of(&stderr),
        report,
    }
}

/// The usage without what only log files carry (docs/athena.md) and the report's time.
fn comparable_usage(whittle: &Path, config: &Path) -> Value {
    let out = Command::new(whittle)
        .arg("--config")
        .arg(config)
        .args(["usage", "--format", "json"])
        .output()
        .unwrap_or_else(|e| fail(&format!("whittle usage: {e}")));
    let usage: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| fail(&format!("usage json: {e}")));
    whittle_tests::source_independent_usage(usage)
}
