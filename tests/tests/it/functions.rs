//! A role that several Lambda functions share, against the emulator: `whittle discover`
//! lists the functions (lambda:ListFunctions), `whittle mine` keeps what each function's
//! session used, `whittle usage --role` shows each function apart from the role's other
//! sessions, and `whittle plan` proposes one role per function.

use serde_json::{Value, json};

use crate::support::*;

pub(crate) const ROLE: &str = "svc-shared";
pub(crate) const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/svc-shared";
/// The smallest valid zip archive (an empty one): the emulator does not run the code.
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The functions of the service (each does a different part of the shared role's work).
pub(crate) const FUNCTIONS: [&str; 3] = ["svc-list", "svc-read", "svc-write"];

/// The shared role `svc-shared` (tagged as a target) with `policy`, its three functions, the
/// parameter they read and write, and a trail logging to the bucket `svc-trail`.
pub(crate) async fn shared_service(root: &aws_config::SdkConfig, policy: &str) {
    let iam = aws_sdk_iam::Client::new(root);
    create_role(&iam, ROLE, &[("whittle:managed", "true")]).await;
    iam.put_role_policy()
        .role_name(ROLE)
        .policy_name("svc")
        .policy_document(policy)
        .send()
        .await
        .expect("the shared policy");
    let lambda = aws_sdk_lambda::Client::new(root);
    for name in FUNCTIONS {
        lambda
            .create_function()
            .function_name(name)
            .runtime(aws_sdk_lambda::types::Runtime::Python312)
            .handler("app.handler")
            .role(ROLE_ARN)
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(aws_sdk_lambda::primitives::Blob::new(EMPTY_ZIP.to_vec()))
                    .build(),
            )
            .send()
            .await
            .expect("function");
    }
    whittle_tests::s3_client(root)
        .create_bucket()
        .bucket("svc-trail")
        .send()
        .await
        .expect("bucket");
    aws_sdk_ssm::Client::new(root)
        .put_parameter()
        .name("/svc/endpoint")
        .value("https://svc.internal")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("parameter");
    start_trail(root, "svc-trail", "svc-trail").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_roles_functions_are_shown_apart_and_planned_one_role_each() {
    let emulator = whittle_tests::Emulator::start(&[]);
    let root = emulator.sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&root);
    let (admin_id, admin_secret) = admin_user(&iam).await;
    let admin = emulator
        .sdk_config_with(&admin_id, &admin_secret, None)
        .await;
    // sqs:* goes unused: the shared role itself has something to lose.
    shared_service(
        &root,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:GetParameter","ssm:PutParameter","s3:ListAllMyBuckets","kms:ListKeys","sqs:*"],"Resource":"*"}]}"#,
    )
    .await;

    // Each function does its own part; an EC2 instance shares the role too.
    let read = emulator.assume_role(&admin, ROLE_ARN, "svc-read").await;
    aws_sdk_ssm::Client::new(&read)
        .get_parameter()
        .name("/svc/endpoint")
        .send()
        .await
        .expect("GetParameter");
    let write = emulator.assume_role(&admin, ROLE_ARN, "svc-write").await;
    aws_sdk_ssm::Client::new(&write)
        .put_parameter()
        .name("/svc/endpoint")
        .value("https://svc-2.internal")
        .overwrite(true)
        .send()
        .await
        .expect("PutParameter");
    let list = emulator.assume_role(&admin, ROLE_ARN, "svc-list").await;
    whittle_tests::s3_client(&list)
        .list_buckets()
        .send()
        .await
        .expect("ListBuckets");
    let instance = emulator
        .assume_role(&admin, ROLE_ARN, "i-0123456789abcdef0")
        .await;
    aws_sdk_kms::Client::new(&instance)
        .list_keys()
        .send()
        .await
        .expect("ListKeys");
    emulator.post_json("/whittle-emulator/deliver", &json!({}));

    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "svc");
    ws.append_config(
        &config,
        r#"
[mining]
last_accessed = false
[[mining.sources]]
name = "trail"
kind = "s3"
account = "staging"
bucket = "svc-trail"
[planner]
min_observation_days = 0
"#,
    );
    let c = config.to_str().expect("utf-8");
    let out = whittle(&["--config", c, "mine", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = whittle(&["--config", c, "discover"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3 function(s)"),
        "{}",
        text(&out.stdout)
    );

    let out = whittle(&[
        "--config", c, "usage", "--role", ROLE_ARN, "--format", "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("usage JSON");
    let role = &report["roles"][0];
    let per_session: Vec<(String, Value, Vec<String>)> = role["session_usage"]
        .as_array()
        .expect("session_usage")
        .iter()
        .map(|s| {
            (
                s["session"].as_str().unwrap_or_default().to_owned(),
                s["function"].clone(),
                s["actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["action"].as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .collect();
    let function = |name: &str| {
        json!(format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{name}"
        ))
    };
    assert_eq!(
        per_session,
        [
            (
                "svc-list".to_owned(),
                function("svc-list"),
                vec!["s3:ListAllMyBuckets".to_owned()]
            ),
            (
                "svc-read".to_owned(),
                function("svc-read"),
                vec!["ssm:GetParameter".to_owned()]
            ),
            (
                "svc-write".to_owned(),
                function("svc-write"),
                vec!["ssm:PutParameter".to_owned()]
            ),
        ]
    );
    let others: Vec<&str> = role["other_sessions"]
        .as_array()
        .expect("other_sessions")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert_eq!(others, ["kms:ListKeys"]);

    let out = whittle(&["--config", c, "usage", "--role", ROLE_ARN]);
    let shown = text(&out.stdout);
    assert!(shown.contains("  functions (3):"), "{shown}");
    assert!(
        shown.contains("    other sessions  (1 actions)\n      kms:ListKeys  1"),
        "{shown}"
    );

    // The plan: one role per function with exactly what it used; the instance's call
    // stays on the shared role.
    let out = whittle(&["--config", c, "plan", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let role = plan["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["role_arn"] == ROLE_ARN)
        .expect("the shared role");
    let split: Vec<(String, Vec<String>)> = role["split"]["functions"]
        .as_array()
        .expect("a split")
        .iter()
        .map(|f| {
            (
                f["role_name"].as_str().unwrap_or_default().to_owned(),
                f["kept"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k["action"].as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        split,
        [
            (
                "svc-shared-svc-list".to_owned(),
                vec!["s3:ListAllMyBuckets".to_owned()]
            ),
            (
                "svc-shared-svc-read".to_owned(),
                vec!["ssm:GetParameter".to_owned()]
            ),
            (
                "svc-shared-svc-write".to_owned(),
                vec!["ssm:PutParameter".to_owned()]
            ),
        ]
    );
    assert_eq!(role["split"]["shared_keeps"], json!(["kms:ListKeys"]));
    let id = plan["id"].as_str().expect("plan id");
    let out = whittle(&["--config", c, "plan", "show", id, "--format", "serverless"]);
    let serverless = text(&out.stdout);
    assert!(
        serverless.contains("  svc-read:\n    iamRoleStatementsName: svc-shared-svc-read\n"),
        "{serverless}"
    );
}
