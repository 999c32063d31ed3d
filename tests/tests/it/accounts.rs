//! Reading accounts whole against the emulator: `whittle plan` reads each account with
//! iam:GetAccountAuthorizationDetails (a few calls per account however many roles it has,
//! counted from the emulator's CloudTrail recording), survives IAM throttling, and proposes
//! the same as reading the roles one by one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use crate::support::*;
use whittle_tests::scale::allow;

/// The four accounts of the scale test: (configured name, id).
const ACCOUNTS: [(&str, &str); 4] = [
    ("prod-a", "210000000001"),
    ("prod-b", "210000000002"),
    ("prod-c", "210000000003"),
    ("prod-d", "210000000004"),
];
const ROLES_PER_ACCOUNT: usize = 500;
/// "At most a few dozen IAM calls per account", whatever its number of roles.
const MAX_IAM_CALLS_PER_ACCOUNT: usize = 36;
/// Seeds `roles` target roles in each of `accounts` (`whittle_tests::scale::seed`).
fn seed(emulator: &Emulator, accounts: &[(&str, &str)], roles: usize) {
    let ids: Vec<&str> = accounts.iter().map(|(_, id)| *id).collect();
    whittle_tests::scale::seed(emulator, &ids, roles);
}

/// A config for `accounts`, each reached by assuming a role in it (moto switches accounts
/// by the assumed role's ARN).
fn config(ws: &Workspace, emulator: &Emulator, accounts: &[(&str, &str)]) -> PathBuf {
    let mut text = format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nmax_attempts = 1\noperation_timeout = \"120s\"\n",
        emulator.url
    );
    for (name, id) in accounts {
        text.push_str(&format!(
            "[[aws.accounts]]\nname = \"{name}\"\nid = \"{id}\"\nrole_arn = \"arn:aws:iam::{id}:role/whittle-reader\"\n"
        ));
    }
    text.push_str(&format!(
        "[state]\ndir = \"{}\"\n[targets]\narn_patterns = [\"arn:aws:iam::*:role/scale-*\"]\ntags = {{ \"whittle:managed\" = \"true\" }}\n[planner]\nmin_observation_days = 0\n",
        ws.state_dir().display()
    ));
    ws.write_config(&text)
}

/// `whittle plan --format json [ARGS]`: exit code, the plan, stderr, seconds taken.
fn run_plan(config: &Path, args: &[&str]) -> (i32, Value, String, f64) {
    let mut all = vec![
        "--config",
        config.to_str().expect("utf-8"),
        "plan",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let started = Instant::now();
    let out = whittle(&all);
    let seconds = started.elapsed().as_secs_f64();
    let stderr = text(&out.stderr);
    let plan = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("plan JSON: {e}\n{stderr}\n{}", text(&out.stdout)));
    (out.status.code().unwrap_or(-1), plan, stderr, seconds)
}

/// IAM calls recorded by the emulator since its last reset, per account id, and how many of
/// them IAM throttled.
fn iam_calls(emulator: &Emulator) -> (BTreeMap<String, usize>, usize) {
    let events: Value =
        serde_json::from_slice(&emulator.get("/whittle-emulator/events").expect("events"))
            .expect("events JSON");
    let mut per_account = BTreeMap::new();
    let mut throttled = 0;
    for event in events["Records"].as_array().expect("records") {
        if event["eventSource"] != "iam.amazonaws.com" {
            continue;
        }
        let account = event["recipientAccountId"].as_str().unwrap_or_default();
        *per_account.entry(account.to_owned()).or_insert(0) += 1;
        if event["errorCode"] == "Throttling" {
            throttled += 1;
        }
    }
    (per_account, throttled)
}

fn assert_planned_everything(code: i32, plan: &Value, stderr: &str, roles: usize) {
    assert!(code == 0 || code == 2, "exit {code}\n{stderr}");
    let planned = plan["roles"].as_array().expect("roles");
    assert_eq!(planned.len(), roles, "{stderr}");
    assert!(
        planned
            .iter()
            .all(|r| r["status"] != "error" && r["read_at"].is_string()),
        "{stderr}"
    );
    let accounts = plan["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), ACCOUNTS.len());
    assert!(
        accounts
            .iter()
            .all(|a| a["error"].is_null() && a["read_at"].is_string()),
        "{accounts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_reads_2000_roles_in_4_accounts_with_a_few_iam_calls_each_even_when_throttled() {
    let emulator = &Emulator::start(&[]);
    seed(emulator, &ACCOUNTS, ROLES_PER_ACCOUNT);
    let ws = Workspace::new();
    let config = config(&ws, emulator, &ACCOUNTS);
    let roles = ACCOUNTS.len() * ROLES_PER_ACCOUNT;

    emulator.post_json("/whittle-emulator/reset", &json!({}));
    let (code, plan, stderr, seconds) = run_plan(&config, &[]);
    let (calls, _) = iam_calls(emulator);
    // The figures for BENCHMARKS.md (`--nocapture` shows them).
    eprintln!(
        "scale: whittle plan of {roles} roles in {} accounts: {seconds:.1} s, IAM calls per account {calls:?}",
        ACCOUNTS.len()
    );
    assert_planned_everything(code, &plan, &stderr, roles);
    assert_eq!(calls.len(), ACCOUNTS.len(), "{calls:?}");
    assert!(
        calls.values().all(|n| *n <= MAX_IAM_CALLS_PER_ACCOUNT),
        "{calls:?}"
    );

    // IAM throttles: every account's first read, and two of the retries.
    emulator.post_json("/whittle-emulator/reset", &json!({}));
    emulator.post_json(
        "/whittle-emulator/faults",
        &json!({"service": "iam", "action": "GetAccountAuthorizationDetails", "code": "Throttling", "count": ACCOUNTS.len() + 2}),
    );
    let (code, plan, stderr, seconds) = run_plan(&config, &[]);
    let (calls, throttled) = iam_calls(emulator);
    eprintln!(
        "scale, throttled: {seconds:.1} s, IAM calls per account {calls:?}, {throttled} throttled"
    );
    assert_planned_everything(code, &plan, &stderr, roles);
    assert_eq!(throttled, ACCOUNTS.len() + 2, "{calls:?}");
    assert!(stderr.contains("throttled"), "{stderr}");
    assert!(
        calls.values().all(|n| *n <= MAX_IAM_CALLS_PER_ACCOUNT),
        "{calls:?}"
    );
}

/// A plan's roles with what differs by how they were read removed: the read time, and the
/// text of current documents (IAM returns them URL-encoded or re-formatted), kept as parsed
/// JSON.
fn comparable(plan: &Value) -> Vec<Value> {
    let parse = |doc: &mut Value| {
        if let Some(text) = doc.as_str() {
            let decoded = percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .expect("utf-8")
                .into_owned();
            *doc = serde_json::from_str(&decoded).expect("a policy document");
        }
    };
    let mut roles = plan["roles"].as_array().expect("roles").clone();
    for role in &mut roles {
        role.as_object_mut().expect("role").remove("read_at");
        let current = &mut role["current"];
        for list in ["inline", "managed"] {
            for policy in current[list].as_array_mut().expect("policies") {
                parse(&mut policy["document"]);
            }
        }
        if current["boundary"].is_object() {
            parse(&mut current["boundary"]["document"]);
        }
    }
    roles
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_of_whole_accounts_proposes_what_reading_each_role_proposes() {
    let emulator = &Emulator::start(&[]);
    let accounts = &ACCOUNTS[..2];
    seed(emulator, accounts, 6);
    // A managed policy with a newer default version: both reads take the default.
    let sdk = emulator.sdk_config().await;
    let in_account = emulator
        .assume_role(
            &sdk,
            &format!("arn:aws:iam::{}:role/seeder", ACCOUNTS[0].1),
            "seeder",
        )
        .await;
    aws_sdk_iam::Client::new(&in_account)
        .create_policy_version()
        .policy_arn(format!("arn:aws:iam::{}:policy/scale-read", ACCOUNTS[0].1))
        .policy_document(allow(&[
            "s3:GetObject",
            "s3:ListBucket",
            "s3:GetObjectTagging",
        ]))
        .set_as_default(true)
        .send()
        .await
        .expect("a second version");
    let ws = Workspace::new();
    let config = config(&ws, emulator, accounts);

    let (code, whole, stderr, _) = run_plan(&config, &[]);
    assert!(code == 0 || code == 2, "{stderr}");
    let arns: Vec<String> = whole["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| r["role_arn"].as_str().expect("arn").to_owned())
        .collect();
    assert_eq!(arns.len(), 12, "{stderr}");
    let read = whole["roles"][0]["current"]["managed"]
        .as_array()
        .expect("managed")
        .iter()
        .find(|m| m["name"] == "scale-read")
        .expect("scale-read")
        .clone();
    assert_eq!(read["version"], "v2", "{read}");

    let mut args = Vec::new();
    for arn in &arns {
        args.extend(["--role", arn.as_str()]);
    }
    let (code, named, stderr, _) = run_plan(&config, &args);
    assert!(code == 0 || code == 2, "{stderr}");
    assert!(
        named.get("accounts").is_none(),
        "named roles are read one by one"
    );
    assert_eq!(comparable(&named), comparable(&whole));
}
