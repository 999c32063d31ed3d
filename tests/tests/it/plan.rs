//! Planning against the emulator: a role with over-broad policies (wildcards, an AWS-managed
//! policy, unused services) and a scripted workload; `whittle plan` proposes exactly what the
//! workload used plus the keep-list, `apply --force` and `rollback` leave the role exactly as
//! it was, and the workload keeps working in auth mode with the applied policies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const ROLE: &str = "plan-app";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/plan-app";
const MANAGED: &str = "arn:aws:iam::aws:policy/AmazonSSMReadOnlyAccess";
const BROAD: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":["s3:*","sqs:*","dynamodb:*"],"Resource":"*"},
  {"Sid":"NoBucketDeletes","Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]}"#;

/// A role's policies as IAM holds them: inline documents as parsed JSON, attached ARNs.
async fn role_policies(iam: &aws_sdk_iam::Client) -> (BTreeMap<String, Value>, BTreeSet<String>) {
    let inline = inline_policies(iam, ROLE).await;
    let attached = iam
        .list_attached_role_policies()
        .role_name(ROLE)
        .send()
        .await
        .expect("attached")
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_owned))
        .collect();
    (inline, attached)
}

/// What the application does: objects in and out, a listing, a parameter read.
async fn workload(role: &aws_config::SdkConfig) -> Result<(), String> {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(role)
            .force_path_style(true)
            .build(),
    );
    s3.put_object()
        .bucket("plan-data")
        .key("out/1.json")
        .body(b"{}".to_vec().into())
        .send()
        .await
        .map_err(|e| format!("PutObject: {e:?}"))?;
    s3.get_object()
        .bucket("plan-data")
        .key("out/1.json")
        .send()
        .await
        .map_err(|e| format!("GetObject: {e:?}"))?;
    s3.list_objects_v2()
        .bucket("plan-data")
        .send()
        .await
        .map_err(|e| format!("ListObjectsV2: {e:?}"))?;
    aws_sdk_ssm::Client::new(role)
        .get_parameter()
        .name("/plan/endpoint")
        .send()
        .await
        .map_err(|e| format!("GetParameter: {e:?}"))?;
    Ok(())
}

fn auth_off(emulator: &whittle_tests::Emulator) {
    let (status, _) = emulator
        .request("POST", "/moto-api/reset-auth", b"inf", "text/plain")
        .expect("auth off");
    assert_eq!(status, 200);
}

fn run(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--config", config.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    let out = whittle(&all);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// The seeded account: the role with its broad policies, its workload's trail mined.
struct Seeded {
    _ws: Workspace,
    config: PathBuf,
    iam: aws_sdk_iam::Client,
    admin: aws_config::SdkConfig,
}

async fn seeded(emulator: &whittle_tests::Emulator) -> Seeded {
    let root = emulator.sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&root);
    let (admin_id, admin_secret) = admin_user(&iam).await;
    let admin = emulator
        .sdk_config_with(&admin_id, &admin_secret, None)
        .await;

    create_role(&iam, ROLE, &[("whittle:managed", "true")]).await;
    iam.put_role_policy()
        .role_name(ROLE)
        .policy_name("plan-app-policy")
        .policy_document(BROAD)
        .send()
        .await
        .expect("inline policy");
    // A second inline policy for a service the workload never calls: deleted by the plan.
    iam.put_role_policy()
        .role_name(ROLE)
        .policy_name("plan-app-notify")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sns:*","Resource":"*"}]}"#)
        .send()
        .await
        .expect("second inline policy");
    iam.attach_role_policy()
        .role_name(ROLE)
        .policy_arn(MANAGED)
        .send()
        .await
        .expect("attach AWS-managed policy");
    // A second target the trail never saw: reported, not shrunk.
    create_role(&iam, "plan-idle", &[("whittle:managed", "true")]).await;
    iam.put_role_policy()
        .role_name("plan-idle")
        .policy_name("idle")
        .policy_document(BROAD)
        .send()
        .await
        .expect("idle policy");

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&root)
            .force_path_style(true)
            .build(),
    );
    for bucket in ["plan-trail", "plan-data"] {
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket");
    }
    aws_sdk_ssm::Client::new(&root)
        .put_parameter()
        .name("/plan/endpoint")
        .value("https://orders.internal")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("parameter");
    start_trail(&root, "plan-trail", "plan-trail").await;

    let role = emulator.assume_role(&admin, ROLE_ARN, "app-fn").await;
    workload(&role)
        .await
        .expect("the workload runs with the broad policies");
    emulator.post_json("/whittle-emulator/deliver", &json!({}));

    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "plan");
    ws.append_config(
        &config,
        r#"
[mining]
last_accessed = false
[[mining.sources]]
name = "trail"
kind = "s3"
account = "staging"
bucket = "plan-trail"

[planner]
min_observation_days = 0
keep = ["sqs:GetQueueUrl"]
"#,
    );
    let (code, _, stderr) = run(&config, &["mine", "--no-progress"]);
    assert_eq!(code, 0, "{stderr}");
    Seeded {
        _ws: ws,
        config,
        iam,
        admin,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_keeps_what_the_workload_used_and_apply_then_rollback_restores_exactly() {
    let emulator = &whittle_tests::Emulator::start(&[
        ("MOTO_IAM_LOAD_MANAGED_POLICIES", "true"),
        ("WHITTLE_EMULATOR_DELIVERY_SECONDS", "3600"),
    ]);
    let Seeded {
        config, iam, admin, ..
    } = &seeded(emulator).await;
    let (config, iam, admin) = (config.as_path(), iam, admin);
    let before = role_policies(iam).await;

    // The plan: exactly the used actions plus the keep-list; exit 2 = changes proposed.
    let (code, stdout, stderr) = run(config, &["plan", "--format", "json"]);
    assert_eq!(code, 2, "{stderr}\n{stdout}");
    let plan: Value = serde_json::from_str(&stdout).expect("plan JSON");
    assert_eq!(plan["schema"], 1);
    let plan_id = plan["id"].as_str().expect("id").to_owned();
    let roles = plan["roles"].as_array().expect("roles");
    let app = roles
        .iter()
        .find(|r| r["role_arn"] == ROLE_ARN)
        .expect("the app role is planned");
    assert_eq!(app["status"], "changes", "{app:#}");
    let kept: BTreeMap<&str, &str> = app["kept"]
        .as_array()
        .expect("kept")
        .iter()
        .map(|k| {
            (
                k["action"].as_str().unwrap_or_default(),
                k["reason"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        BTreeMap::from([
            ("s3:GetObject", "used"),
            ("s3:ListBucket", "used"),
            ("s3:PutObject", "used"),
            ("sqs:GetQueueUrl", "keep-list"),
            ("ssm:GetParameter", "used"),
        ]),
        "{app:#}"
    );
    let removed: Vec<&str> = app["removed"]
        .as_array()
        .expect("removed")
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert!(removed.contains(&"dynamodb:*"), "{removed:?}");
    assert!(removed.contains(&"ssm:GetParameters"), "{removed:?}");
    assert!(
        app["removed"][0]["evidence"]
            .as_str()
            .is_some_and(|e| e.starts_with("not seen in 90 days of trail"))
    );
    assert_eq!(app["proposal"]["detach"], json!([MANAGED]));
    let idle = roles
        .iter()
        .find(|r| r["role_arn"] == "arn:aws:iam::123456789012:role/plan-idle")
        .expect("idle role");
    assert_eq!(idle["status"], "not-shrunk");
    // Planning changed nothing.
    assert_eq!(role_policies(iam).await, before);

    // The stored plan re-renders, as Markdown for a pull request.
    let (code, markdown, stderr) = run(config, &["plan", "show", &plan_id, "--format", "markdown"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        markdown.contains(&format!("### `{ROLE_ARN}`")),
        "{markdown}"
    );
    assert!(
        markdown.contains("| `sqs:GetQueueUrl` | keep-list"),
        "{markdown}"
    );
    assert!(markdown.contains("```diff"));
    // The same plan saved as JSON renders offline, from the file alone, as the stored plan
    // does: CI keeps the JSON and renders Markdown and HTML from it.
    let (code, html, stderr) = run(config, &["plan", "show", &plan_id, "--format", "html"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains(ROLE_ARN));
    let (_, saved, _) = run(config, &["plan", "show", &plan_id, "--format", "json"]);
    let file = config.with_file_name("saved-plan.json");
    std::fs::write(&file, saved).expect("write the plan JSON");
    let rendered = whittle(&[
        "plan",
        "render",
        file.to_str().expect("utf-8"),
        "--format",
        "html",
    ]);
    assert_eq!(
        rendered.status.code(),
        Some(2),
        "{}",
        text(&rendered.stderr)
    );
    assert_eq!(text(&rendered.stdout), html);
    let rendered = whittle(&[
        "plan",
        "render",
        file.to_str().expect("utf-8"),
        "--format",
        "markdown",
    ]);
    assert_eq!(text(&rendered.stdout), markdown);

    // Before the apply, in auth mode, the role may still call what the plan removes.
    emulator.enable_auth();
    let role = emulator.assume_role(admin, ROLE_ARN, "app-fn").await;
    aws_sdk_ssm::Client::new(&role)
        .describe_parameters()
        .send()
        .await
        .expect("granted by the AWS-managed policy before the apply");
    auth_off(emulator);

    // Not trialled: apply needs --force.
    let (code, _, stderr) = run(config, &["apply", &plan_id]);
    assert_eq!(code, 1);
    assert!(stderr.contains("has not passed a trial"), "{stderr}");
    let (code, stdout, stderr) = run(config, &["apply", &plan_id, "--force", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let outcomes: Value = serde_json::from_str(&stdout).expect("apply JSON");
    let applied = outcomes
        .as_array()
        .expect("outcomes")
        .iter()
        .find(|o| o["role_arn"] == ROLE_ARN)
        .expect("app outcome");
    assert_eq!(applied["outcome"], "applied", "{outcomes:#}");
    let (inline, attached) = role_policies(iam).await;
    assert!(attached.is_empty(), "the AWS-managed policy is detached");
    assert_eq!(
        inline.keys().map(String::as_str).collect::<Vec<_>>(),
        ["plan-app-policy", "whittle-AmazonSSMReadOnlyAccess"]
    );
    assert!(
        inline["plan-app-policy"]
            .to_string()
            .contains("NoBucketDeletes"),
        "the Deny statement stays"
    );

    // The applied policies, enforced: the workload still works; an unused action is denied.
    emulator.enable_auth();
    let role = emulator.assume_role(admin, ROLE_ARN, "app-fn").await;
    workload(&role)
        .await
        .expect("the workload keeps working with the applied least-privilege policies");
    // ssm:DescribeParameters came with the AWS-managed policy and was never used.
    let removed = aws_sdk_ssm::Client::new(&role)
        .describe_parameters()
        .send()
        .await;
    assert!(removed.is_err(), "an action the plan removed is denied");
    auth_off(emulator);

    // Nothing changed since apply: planning again proposes nothing for the role (exit 0).
    let (code, stdout, stderr) = run(config, &["plan", "--role", ROLE_ARN]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");

    // Rollback restores the role exactly (parsed JSON, same attachments).
    let (code, stdout, stderr) = run(config, &["rollback", "--role", ROLE_ARN]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("restored arn:aws:iam::123456789012:role/plan-app"));
    assert_eq!(role_policies(iam).await, before);
    // Status lists the plans and the change with its rollback.
    let status = status_json(config).expect("status");
    assert!(
        status["plans"]
            .as_array()
            .expect("plans")
            .iter()
            .any(|p| p["id"] == plan_id.as_str() && p["status"] == "applied"),
        "{status:#}"
    );
    let change = &status["changes"][0];
    assert_eq!(change["role_arn"], ROLE_ARN);
    assert_eq!(change["status"], "rolled-back");

    // A plan made before someone edits the role is stale: apply refuses it.
    let (code, stdout, _) = run(config, &["plan", "--role", ROLE_ARN, "--format", "json"]);
    assert_eq!(code, 2);
    let stale_id = serde_json::from_str::<Value>(&stdout).expect("plan")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    iam.put_role_policy()
        .role_name(ROLE)
        .policy_name("hotfix")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sns:Publish","Resource":"*"}]}"#)
        .send()
        .await
        .expect("edit the role");
    let (code, stdout, _) = run(config, &["apply", &stale_id, "--force"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("changed since plan"), "{stdout}");
    let (inline, _) = role_policies(iam).await;
    assert_eq!(inline["plan-app-policy"], before.0["plan-app-policy"]);

    // A role that stopped being a target (its tag removed) is refused before anything else.
    iam.untag_role()
        .role_name(ROLE)
        .tag_keys("whittle:managed")
        .send()
        .await
        .expect("untag");
    let (code, stdout, _) = run(config, &["apply", &stale_id, "--force"]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("refused: role arn:aws:iam::123456789012:role/plan-app is not a target"),
        "{stdout}"
    );
}

/// Kills `whittle apply` right after each of its journal steps; the restarted daemon's
/// reconcile pass must leave the role exactly at its snapshot every time.
#[tokio::test(flavor = "multi_thread")]
async fn an_apply_killed_after_any_journal_step_is_undone_on_restart() {
    let emulator = &whittle_tests::Emulator::start(&[
        ("MOTO_IAM_LOAD_MANAGED_POLICIES", "true"),
        ("WHITTLE_EMULATOR_DELIVERY_SECONDS", "3600"),
    ]);
    let seeded = seeded(emulator).await;
    let (config, iam) = (seeded.config.as_path(), &seeded.iam);
    let before = role_policies(iam).await;
    let (code, stdout, stderr) = run(config, &["plan", "--role", ROLE_ARN, "--format", "json"]);
    assert_eq!(code, 2, "{stderr}");
    let plan_id = serde_json::from_str::<Value>(&stdout).expect("plan")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for point in [
        "apply:begin",
        "apply:put-inline",
        "apply:detach",
        "apply:delete-inline",
    ] {
        let out = command(&[
            "--config",
            config.to_str().expect("utf-8"),
            "apply",
            &plan_id,
            "--force",
        ])
        .env("WHITTLE_CRASH_AFTER", point)
        .output()
        .expect("run whittle");
        assert!(!out.status.success(), "{point}: whittle must have died");
        assert!(
            text(&out.stderr).contains("aborting"),
            "{point}: {}",
            text(&out.stderr)
        );
        if point == "apply:detach" {
            assert_ne!(
                role_policies(iam).await,
                before,
                "{point}: the crash left a half-applied role"
            );
        }
        let log = config.with_file_name(format!("daemon-{}.log", point.replace(':', "-")));
        let mut daemon = spawn_daemon(config, &log);
        wait_for_log(&log, "Reconcile pass done");
        let reconciled = std::fs::read_to_string(&log).expect("log");
        assert!(reconciled.contains("recovered=1"), "{point}: {reconciled}");
        assert_eq!(
            role_policies(iam).await,
            before,
            "{point}: role restored to its snapshot"
        );
        // (It takes signals once it has started.)
        wait_for_log(&log, "Daemon started");
        signal(&daemon, "TERM");
        assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
    }
}

#[test]
fn plan_and_apply_refuse_unknown_ids_and_roles_clearly() {
    let ws = Workspace::new();
    let config = ws.write_config(&format!(
        "[[aws.accounts]]\nname = \"local\"\n[state]\ndir = \"{}\"\n[targets]\narn_patterns = [\"arn:aws:iam::*:role/*\"]\n",
        ws.state_dir().display()
    ));
    let (code, _, stderr) = run(&config, &["plan", "show", "plan-nope"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no plan `plan-nope`"), "{stderr}");
    assert!(stderr.contains("run `whittle plan` first"), "{stderr}");
    let (code, _, stderr) = run(&config, &["apply", "plan-nope", "--force"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no plan `plan-nope`"), "{stderr}");
    let (code, _, stderr) = run(&config, &["rollback", "change-nope"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no change `change-nope`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_refuses_more_changed_roles_than_the_limit_and_takes_them_a_few_at_a_time() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let iam = aws_sdk_iam::Client::new(&emulator.sdk_config().await);
    let roles = ["limit-a", "limit-b"];
    for role in roles {
        create_role(&iam, role, &[("whittle:managed", "true")]).await;
        iam.put_role_policy()
            .role_name(role)
            .policy_name("broad")
            .policy_document(BROAD)
            .send()
            .await
            .expect("inline policy");
    }
    // Both roles read an object, as a local copy of their trail says.
    let ws = Workspace::new();
    let trail = ws.path("trail");
    std::fs::create_dir_all(&trail).expect("trail dir");
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let records: Vec<Value> = roles
        .iter()
        .map(|role| {
            json!({
                "eventVersion": "1.08",
                "userIdentity": {
                    "type": "AssumedRole",
                    "arn": format!("arn:aws:sts::123456789012:assumed-role/{role}/fn"),
                    "accountId": "123456789012",
                    "sessionContext": {"sessionIssuer": {
                        "type": "Role",
                        "arn": format!("arn:aws:iam::123456789012:role/{role}"),
                        "accountId": "123456789012",
                        "userName": role
                    }}
                },
                "eventTime": now,
                "eventSource": "s3.amazonaws.com",
                "eventName": "GetObject",
                "awsRegion": "us-east-1",
                "requestParameters": {"bucketName": "data", "key": "report.csv"},
                "eventID": format!("{role}-event"),
                "readOnly": true,
                "eventType": "AwsApiCall",
                "recipientAccountId": "123456789012"
            })
        })
        .collect();
    std::fs::write(
        trail.join("records.json"),
        json!({ "Records": records }).to_string(),
    )
    .expect("trail file");
    let config = ws.emulator_config(&emulator.url, "limit");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config")
            + "\n[mining]\nlast_accessed = false\n\n[planner]\nmin_observation_days = 0\nmax_roles_per_apply = 1\n",
    )
    .expect("config");
    let (code, _, stderr) = run(
        &config,
        &[
            "mine",
            "--no-progress",
            "--from-dir",
            trail.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run(&config, &["plan", "--format", "json"]);
    assert_eq!(code, 2, "{stderr}\n{stdout}");
    let plan: Value = serde_json::from_str(&stdout).expect("plan JSON");
    let plan_id = plan["id"].as_str().expect("id");
    assert_eq!(
        plan["roles"]
            .as_array()
            .expect("roles")
            .iter()
            .filter(|r| r["status"] == "changes")
            .count(),
        2,
        "{plan:#}"
    );
    let broad = |policies: BTreeMap<String, Value>| {
        policies.get("broad") == Some(&serde_json::from_str::<Value>(BROAD).expect("json"))
    };

    let (code, _, stderr) = run(&config, &["apply", plan_id, "--force"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("changes 2 roles, more than [planner] max_roles_per_apply = 1")
            && stderr.contains("--role"),
        "{stderr}"
    );
    for role in roles {
        assert!(broad(inline_policies(&iam, role).await), "{role} untouched");
    }

    let (code, stdout, stderr) = run(
        &config,
        &[
            "apply",
            plan_id,
            "--force",
            "--role",
            "arn:aws:iam::123456789012:role/limit-a",
        ],
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(!broad(inline_policies(&iam, "limit-a").await));
    assert!(broad(inline_policies(&iam, "limit-b").await));
}

/// `[planner] organization_from`: the SCPs above the account, read through the emulator's
/// AWS Organizations (root, OU, account, each level's policies), close a keep-listed
/// permission: the plan drops it and names the SCP and the OU it is attached to.
#[tokio::test(flavor = "multi_thread")]
async fn plan_reads_the_organizations_scps_and_drops_what_they_close() {
    use aws_sdk_organizations::types::{OrganizationFeatureSet, PolicyType};
    let emulator = &whittle_tests::Emulator::start(&[("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")]);
    let Seeded { config, .. } = &seeded(emulator).await;
    let org = aws_sdk_organizations::Client::new(&emulator.sdk_config().await);
    org.create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .expect("organization");
    let roots = org.list_roots().send().await.expect("roots");
    let root = roots.roots()[0].id().expect("root id").to_owned();
    org.enable_policy_type()
        .root_id(&root)
        .policy_type(PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("SCPs enabled");
    let ou = org
        .create_organizational_unit()
        .parent_id(&root)
        .name("workloads")
        .send()
        .await
        .expect("OU");
    let ou = ou
        .organizational_unit()
        .and_then(|o| o.id())
        .expect("OU id")
        .to_owned();
    org.move_account()
        .account_id("123456789012")
        .source_parent_id(&root)
        .destination_parent_id(&ou)
        .send()
        .await
        .expect("account moved into the OU");
    let scp = org
        .create_policy()
        .name("no-queue-lookups")
        .description("workloads resolve queues from configuration")
        .r#type(PolicyType::ServiceControlPolicy)
        .content(r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoQueueUrls","Effect":"Deny","Action":"sqs:GetQueueUrl","Resource":"*"}]}"#)
        .send()
        .await
        .expect("SCP");
    let scp = scp
        .policy()
        .and_then(|p| p.policy_summary())
        .and_then(|s| s.id())
        .expect("SCP id")
        .to_owned();
    org.attach_policy()
        .policy_id(&scp)
        .target_id(&ou)
        .send()
        .await
        .expect("SCP attached");
    let text = std::fs::read_to_string(config).expect("config");
    std::fs::write(
        config,
        text.replace(
            "[planner]\n",
            "[planner]\norganization_from = \"staging\"\n",
        ),
    )
    .expect("config");

    let (code, stdout, stderr) = run(config, &["plan", "--format", "json"]);
    assert_eq!(code, 2, "{stderr}\n{stdout}");
    let plan: Value = serde_json::from_str(&stdout).expect("plan JSON");
    let app = plan["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["role_arn"] == ROLE_ARN)
        .expect("the app role is planned");
    let kept: Vec<&str> = app["kept"]
        .as_array()
        .expect("kept")
        .iter()
        .filter_map(|k| k["action"].as_str())
        .collect();
    assert_eq!(
        kept,
        [
            "s3:GetObject",
            "s3:ListBucket",
            "s3:PutObject",
            "ssm:GetParameter"
        ],
        "{app:#}"
    );
    let note = format!(
        "`sqs:GetQueueUrl` is not kept ([planner] keep `sqs:GetQueueUrl`): SCP `no-queue-lookups` ({scp}) on {ou} statement 0 (Sid NoQueueUrls) denies sqs:GetQueueUrl everywhere, so it grants nothing"
    );
    assert!(
        app["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .any(|n| n == note.as_str()),
        "{:#}",
        app["notes"]
    );
}

/// `whittle plan show` of a plan of more than 100 roles: text and JSON are a summary (one
/// line or object per role, with the counts the full plan has), `--role ARN` shows that role
/// exactly as the full plan has it, `--full` the whole plan; an unknown role is named.
#[tokio::test(flavor = "multi_thread")]
async fn plan_show_summarises_a_large_plan_and_shows_roles_in_full_on_request() {
    const ROLES: usize = 120;
    let emulator = &whittle_tests::Emulator::start(&[]);
    let allow = |actions: &[&str]| {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
            .to_string()
    };
    let roles: Vec<Value> = (0..ROLES)
        .map(|i| {
            let actions: &[&str] = if i % 2 == 0 {
                &["s3:*", "sqs:SendMessage"]
            } else {
                &["dynamodb:GetItem", "kms:Decrypt"]
            };
            json!({
                "name": format!("show-app-{i:03}"),
                "tags": {"whittle:managed": "true"},
                "inline": {"own": allow(actions)},
            })
        })
        .collect();
    let answer = emulator.post_json(
        "/whittle-emulator/seed-iam",
        &json!({"account": "123456789012", "roles": roles}),
    );
    assert_eq!(answer["roles"], ROLES, "{answer}");
    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "show");

    let (code, full, stderr) = run(&config, &["plan", "--format", "json"]);
    assert!(code == 0 || code == 2, "{stderr}");
    let full: Value = serde_json::from_str(&full).expect("plan JSON");
    let id = full["id"].as_str().expect("id").to_owned();
    let full_roles = full["roles"].as_array().expect("roles");
    assert_eq!(full_roles.len(), ROLES);

    // JSON: a summary, which a reader of the full schema cannot mistake for a plan.
    let (shown_code, summary, stderr) = run(&config, &["plan", "show", &id, "--format", "json"]);
    assert_eq!(shown_code, code, "the same exit code as the plan: {stderr}");
    let summary: Value = serde_json::from_str(&summary).expect("summary JSON");
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["id"], id.as_str());
    assert!(summary.get("roles").is_none(), "{summary}");
    let counted: u64 = summary["counts"]
        .as_object()
        .expect("counts")
        .values()
        .map(|n| n.as_u64().expect("a count"))
        .sum();
    assert_eq!(counted, ROLES as u64);
    let summaries = summary["role_summaries"]
        .as_array()
        .expect("role summaries");
    assert_eq!(summaries.len(), ROLES);
    for (line, role) in summaries.iter().zip(full_roles) {
        assert_eq!(line["role_arn"], role["role_arn"]);
        assert_eq!(line["status"], role["status"]);
        let removed: u64 = role["removed"]
            .as_array()
            .expect("removed")
            .iter()
            .map(|r| r["actions"].as_u64().expect("actions"))
            .sum();
        assert_eq!(line["removed"], removed, "{line}");
        assert!(removed > 0, "{line}");
        assert_eq!(line["kept"], role["kept"].as_array().expect("kept").len());
        assert_eq!(
            line["risks"],
            role["risks"].as_array().expect("risks").len()
        );
    }

    // Text: one line per role, and how to see a role in full.
    let (_, text_summary, _) = run(&config, &["plan", "show", &id]);
    let first_arn = full_roles[0]["role_arn"].as_str().expect("arn");
    assert!(text_summary.contains("summary"), "{text_summary}");
    assert!(text_summary.contains("--role ARN"), "{text_summary}");
    assert_eq!(
        text_summary
            .lines()
            .filter(|l| l.starts_with("arn:aws:iam::123456789012:role/show-app-"))
            .count(),
        ROLES
    );
    assert!(
        !text_summary.contains("--- "),
        "no policy diff in a summary"
    );

    // One role in full: exactly that role as the full plan has it.
    let (_, one, stderr) = run(
        &config,
        &["plan", "show", &id, "--role", first_arn, "--format", "json"],
    );
    let one: Value = serde_json::from_str(&one).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(
        one["roles"].as_array().expect("roles"),
        &[full_roles[0].clone()]
    );
    let (_, one_text, _) = run(&config, &["plan", "show", &id, "--role", first_arn]);
    assert!(
        one_text.contains(&format!("role {first_arn}")),
        "{one_text}"
    );
    assert!(
        one_text.contains("s3:"),
        "the removed actions are shown: {one_text}"
    );

    // Every role in full.
    let (_, all, _) = run(
        &config,
        &["plan", "show", &id, "--full", "--format", "json"],
    );
    let all: Value = serde_json::from_str(&all).expect("plan JSON");
    assert_eq!(all, full);

    let (code, _, stderr) = run(
        &config,
        &[
            "plan",
            "show",
            &id,
            "--role",
            "arn:aws:iam::123456789012:role/nope",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("has no role arn:aws:iam::123456789012:role/nope"),
        "{stderr}"
    );
}
