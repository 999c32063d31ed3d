//! The Athena source against the emulator's Athena, which executes the SQL whittle sends
//! over the trail files in its S3: the same trail mined by an `s3` source and by an `athena`
//! source gives the same usage; a query mistake fails the run with Athena's message and
//! writes nothing; an incremental run scans only the new day's partition.

use std::path::{Path, PathBuf};

use serde_json::Value;
use whittle_tests::athena::{create_cloudtrail_table, upload};
use whittle_tests::s3_client;
use whittle_tests::trailgen::{CorpusSpec, generate};

use crate::support::*;

const BUCKET: &str = "ath-trail";
const RESULTS: &str = "ath-results";
const DAY_MS: i64 = 86_400_000;

fn config(ws: &Workspace, emulator: &Emulator, source: &str) -> PathBuf {
    let config = ws.emulator_config(&emulator.url, "ath");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("[mining]\nlast_accessed = false\n[[mining.sources]]\n");
    text.push_str(source);
    std::fs::write(&config, text).expect("config");
    config
}

fn athena_source(table: &str, date_partition: &str) -> String {
    format!(
        r#"name = "org"
kind = "athena"
account = "staging"
database = "default"
table = "{table}"
output_location = "s3://{RESULTS}/whittle/"
date_partition = "{date_partition}"
region_partition = "region"
regions = ["us-east-1", "eu-west-1"]
# The test delivers its files before it mines: no delivery lag to wait for.
delivery_delay_minutes = 0
"#
    )
}

fn run(config: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config", config.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    whittle(&all)
}

fn mine(config: &Path) -> Value {
    let out = run(config, &["mine", "--format", "json"]);
    assert!(out.status.success(), "mine failed: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("mine report");
    assert!(report["sources"][0]["error"].is_null(), "{report}");
    report
}

/// `whittle usage` as JSON, without what is documented as source-specific
/// (docs/athena.md): the Athena query does not carry request parameters or the `resources`
/// array, so resources and secret reads come from log files only. `generated_at` is the
/// time of the call.
fn comparable_usage(config: &Path) -> Value {
    let out = run(config, &["usage", "--format", "json"]);
    assert!(out.status.success(), "usage: {}", text(&out.stderr));
    let usage: Value = serde_json::from_slice(&out.stdout).expect("usage json");
    whittle_tests::source_independent_usage(usage)
}

#[tokio::test(flavor = "multi_thread")]
async fn athena_and_file_mining_give_the_same_usage_and_runs_scan_only_new_partitions() {
    let emulator = Emulator::start(&[]);
    let admin = emulator.sdk_config().await;
    let s3 = s3_client(&admin);
    for bucket in [BUCKET, RESULTS] {
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket");
    }
    // Four days of trail ending before today: 6,000 events of 40 roles in 3 accounts and 2
    // regions, with IAM users, AWS service events, denials and data events.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let today_ms = now_ms - now_ms.rem_euclid(DAY_MS);
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = CorpusSpec {
        roles: 40,
        events_per_file: 150,
        days: 4,
        seed: 19,
        ..CorpusSpec::new(6_000, today_ms - 60_000)
    };
    let corpus = generate(&tmp.path().join("old"), &spec).expect("corpus");
    let uploaded = upload(&s3, BUCKET, &corpus.root, &corpus.files)
        .await
        .expect("upload");
    let accounts: Vec<String> = std::fs::read_dir(corpus.root.join("AWSLogs"))
        .expect("accounts")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(accounts.len(), 3);
    create_cloudtrail_table(&admin, BUCKET, RESULTS, &accounts.join(","))
        .await
        .expect("the CloudTrail table");

    let files_ws = Workspace::new();
    let files = config(
        &files_ws,
        &emulator,
        &format!("name = \"trail\"\nkind = \"s3\"\naccount = \"staging\"\nbucket = \"{BUCKET}\"\n"),
    );
    let athena_ws = Workspace::new();
    let athena = config(
        &athena_ws,
        &emulator,
        &athena_source("cloudtrail_logs", "timestamp"),
    );

    // An injected mistake first: a misspelt partition column fails the query as Athena
    // words it, and nothing reaches the usage store or the checkpoint.
    let bad_ws = Workspace::new();
    let bad = config(
        &bad_ws,
        &emulator,
        &athena_source("cloudtrail_logs", "timestmp"),
    );
    let out = run(&bad, &["mine", "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("mine report");
    let error = report["sources"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("COLUMN_NOT_FOUND")
            && error.contains("Column 'timestmp' cannot be resolved"),
        "{report}"
    );
    assert_eq!(out.status.code(), Some(1), "nothing was read: exit 1");
    assert_eq!(comparable_usage(&bad)["roles"], serde_json::json!([]));
    let status = status_json(&bad).expect("status");
    assert!(status["usage"]["athena"].is_null(), "{status}");
    // A table that does not exist fails the same way.
    let missing_ws = Workspace::new();
    let missing = config(
        &missing_ws,
        &emulator,
        &athena_source("cloudtrail_logz", "timestamp"),
    );
    let out = run(&missing, &["mine", "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("mine report");
    assert!(
        report["sources"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("TABLE_NOT_FOUND")
                && e.contains("'awsdatacatalog.default.cloudtrail_logz' does not exist")),
        "{report}"
    );
    assert_eq!(comparable_usage(&missing)["roles"], serde_json::json!([]));

    // The same trail, both ways.
    let by_files = mine(&files);
    let by_athena = mine(&athena);
    assert_eq!(by_files["stats"]["files"], corpus.files.len(), "{by_files}");
    // The first run reads every day of the look-back: every file is scanned once.
    assert_eq!(
        by_athena["sources"][0]["bytes_scanned"], uploaded,
        "{by_athena}"
    );
    let expected = comparable_usage(&files);
    let roles = expected["roles"].as_array().expect("roles");
    assert!(roles.len() >= 40, "{} principals", roles.len());
    assert!(
        roles
            .iter()
            .any(|r| !r["denied"].as_array().expect("denied").is_empty()),
        "the corpus has denials"
    );
    assert_eq!(comparable_usage(&athena), expected);

    // A new day's delivery: only today's partition is scanned, and no earlier event is
    // counted again.
    let fresh_spec = CorpusSpec {
        roles: 40,
        events_per_file: 100,
        days: 0,
        seed: 20,
        ..CorpusSpec::new(400, chrono::Utc::now().timestamp_millis() + 1_000)
    };
    // A corpus of zero days puts every event at its end time, after the first runs' window.
    let fresh = generate(&tmp.path().join("new"), &fresh_spec).expect("corpus");
    let new_bytes = upload(&s3, BUCKET, &fresh.root, &fresh.files)
        .await
        .expect("upload");
    // The events are stamped a second ahead: wait until they are in the past.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    mine(&files);
    let again = mine(&athena);
    assert_eq!(again["sources"][0]["bytes_scanned"], new_bytes, "{again}");
    assert_eq!(comparable_usage(&athena), comparable_usage(&files));
    let status = status_json(&athena).expect("status");
    let runs = status["usage"]["athena"].as_array().expect("athena runs");
    assert_eq!(runs.len(), 1, "{status}");
    assert_eq!(runs[0]["source"], "org");
    assert_eq!(runs[0]["bytes_scanned"], new_bytes, "{status}");
    let out = run(&athena, &["status"]);
    assert!(
        text(&out.stdout).contains(&format!("{new_bytes} bytes scanned")),
        "{}",
        text(&out.stdout)
    );
}
