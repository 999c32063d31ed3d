//! The Athena source over runs: each query reads the window after the previous one, lagging
//! CloudTrail's delivery, with date partitions for exactly the days it touches; a failed
//! query writes nothing; what each run scanned is in the report and in `status`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::records::TimeCheckpoint;
use crate::testing::TestEngine;

const SOURCE: &str = r#"
[mining]
last_accessed = false
[[mining.sources]]
name = "org"
kind = "athena"
account = "staging"
database = "default"
table = "cloudtrail_logs"
output_location = "s3://results/whittle/"
date_partition = "timestamp"
"#;

/// One result row: `calls` GetItem calls by `app` on 2026-11-24.
fn row(calls: &str) -> Vec<Option<String>> {
    [
        "AssumedRole",
        "arn:aws:sts::111111111111:assumed-role/app/fn",
        "arn:aws:iam::111111111111:role/app",
        "dynamodb.amazonaws.com",
        "GetItem",
        "AwsApiCall",
        "",
        "",
        "2026-11-24",
        calls,
        "2026-11-24T08:00:00Z",
        "2026-11-24T09:00:00Z",
        "e-1",
        "us-east-1",
        "111111111111",
    ]
    .iter()
    .map(|s| (!s.is_empty()).then(|| (*s).to_owned()))
    .collect()
}

async fn mine(t: &TestEngine) -> crate::mine::MineReport {
    crate::mine::mine(
        &t.engine,
        &crate::mine::MineRequest::default(),
        &CancellationToken::new(),
    )
    .await
    .expect("mining runs")
}

fn count(t: &TestEngine) -> u64 {
    let usage = t
        .engine
        .state
        .tree::<crate::records::StoredUsage>()
        .expect("usage")
        .get(&"arn:aws:iam::111111111111:role/app".to_owned())
        .expect("read")
        .expect("the role's usage");
    usage.usage.actions["dynamodb:GetItem"]
        .counts
        .since(0)
        .expect("counted")
        .0
}

#[tokio::test(flavor = "multi_thread")]
async fn athena_runs_read_adjacent_windows_and_a_failed_query_writes_nothing() {
    let t = TestEngine::new(SOURCE);
    {
        let mut world = t.fake.world();
        world.athena_rows = vec![row("5")];
        world.athena_bytes_scanned = 4_096;
    }
    // The clock starts at 2026-11-24T10:00:00Z: the first window ends 15 minutes before.
    let first = mine(&t).await;
    assert_eq!(first.sources[0].error, None);
    assert_eq!(first.sources[0].bytes_scanned, Some(4_096));
    assert_eq!(count(&t), 5);
    let queries = t.fake.world().athena_queries.clone();
    assert!(
        queries[0].contains("AND eventtime < '2026-11-24T09:45:00Z'"),
        "{}",
        queries[0]
    );
    assert!(
        queries[0].contains("\"timestamp\" <= '2026/11/24'"),
        "{}",
        queries[0]
    );

    // A query that fails leaves the usage and the checkpoint as they were.
    t.fake.advance(Duration::from_secs(3600));
    t.fake.fail("athena:StartQueryExecution", 1);
    let failed = mine(&t).await;
    assert!(failed.sources[0].error.is_some(), "{failed:?}");
    assert_eq!(count(&t), 5);
    let checkpoint = t
        .engine
        .state
        .tree::<TimeCheckpoint>()
        .expect("checkpoints")
        .get(&"org".to_owned())
        .expect("read")
        .expect("checkpoint");
    assert_eq!(
        whittle_planner::trail::format_time(checkpoint.until_ms),
        "2026-11-24T09:45:00Z"
    );

    // The next run starts where the first ended: at midnight less the delivery delay, it
    // reads the rest of the 24th and names only that day's partition.
    t.fake.advance(Duration::from_secs(13 * 3600));
    t.fake.world().athena_bytes_scanned = 1_024;
    let second = mine(&t).await;
    assert_eq!(second.sources[0].bytes_scanned, Some(1_024));
    assert_eq!(count(&t), 10);
    let queries = t.fake.world().athena_queries.clone();
    let last = queries.last().expect("a query");
    assert!(
        last.contains("eventtime >= '2026-11-24T09:45:00Z' AND eventtime < '2026-11-24T23:45:00Z'"),
        "{last}"
    );
    assert!(
        last.contains("\"timestamp\" >= '2026/11/24' AND \"timestamp\" <= '2026/11/24'"),
        "{last}"
    );
    let status = crate::status::build(&t.engine.config, &t.engine.state, None, t.engine.now())
        .expect("status");
    let run = &status.usage.athena[0];
    assert_eq!(
        (run.source.as_str(), run.bytes_scanned, run.rows),
        ("org", 1_024, 1)
    );
    assert_eq!(run.window_end, "2026-11-24T23:45:00Z");
    assert!(
        crate::status::render_text(&status).contains("1024 bytes scanned"),
        "{}",
        crate::status::render_text(&status)
    );
}
