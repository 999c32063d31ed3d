//! A role that several Lambda functions share: mining keeps each function's own use, the
//! `discover` job lists which functions run under which role, and `whittle usage` tells the
//! role's functions apart from its other sessions.

use tokio_util::sync::CancellationToken;

use super::{EVENTS_SOURCE, mine};
use crate::ports::FunctionSummary;
use crate::records::{FunctionInventory, RoleInventory};
use crate::testing::{ACCOUNT_ID, TestEngine};

/// Calls by the role `orders-service`, each `(session, action)`, as CloudTrail records a
/// Lambda function's (the session is the function's name).
fn calls(t: &TestEngine, calls: &[(&str, &str)]) {
    let role = format!("arn:aws:iam::{ACCOUNT_ID}:role/orders-service");
    for (session, action) in calls {
        t.fake.record_session_call(&role, session, action);
    }
}

fn function(name: &str, role_name: &str) -> FunctionSummary {
    FunctionSummary {
        name: name.to_owned(),
        arn: format!("arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{name}"),
        role: format!("arn:aws:iam::{ACCOUNT_ID}:role/{role_name}"),
        revision: Some(format!("rev-{name}")),
    }
}

#[tokio::test]
async fn usage_shows_a_shared_roles_functions_apart_from_its_other_sessions() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let shared = t
        .fake
        .add_role("orders-service", &[("whittle", "managed")], &[]);
    t.fake.world().functions = vec![
        function("orders-read", "orders-service"),
        function("orders-write", "orders-service"),
        // The same name under another role is not this role's function.
        function("orders-batch", "batch"),
    ];
    calls(
        &t,
        &[
            ("orders-read", "s3:GetObject"),
            ("orders-read", "dynamodb:GetItem"),
            ("orders-write", "dynamodb:PutItem"),
            ("orders-batch", "sqs:SendMessage"),
            ("i-0123456789abcdef0", "sqs:ReceiveMessage"),
        ],
    );
    mine(&t.engine).await;

    let summary = crate::jobs::discover(&t.engine, &CancellationToken::new())
        .await
        .expect("discovery");
    assert!(summary.contains("3 function(s)"), "{summary}");

    let report = crate::usage::build(&t.engine, std::slice::from_ref(&shared), 0).expect("usage");
    let role = &report.roles[0];
    let sessions: Vec<(&str, Option<&str>, Vec<&str>)> = role
        .session_usage
        .iter()
        .map(|s| {
            (
                s.session.as_str(),
                s.function.as_deref(),
                s.actions.iter().map(|a| a.action.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        sessions,
        [
            ("orders-batch", None, vec!["sqs:SendMessage"]),
            (
                "orders-read",
                Some("arn:aws:lambda:us-east-1:111111111111:function:orders-read"),
                vec!["dynamodb:GetItem", "s3:GetObject"]
            ),
            (
                "orders-write",
                Some("arn:aws:lambda:us-east-1:111111111111:function:orders-write"),
                vec!["dynamodb:PutItem"]
            ),
        ]
    );
    let text = crate::usage::render_text(&report);
    assert!(
        text.contains("  functions (2):\n    orders-read  (2 actions)"),
        "{text}"
    );
    // Not a function of this role, and the instance's session: pooled.
    assert!(
        text.contains(
            "    other sessions  (2 actions)\n      sqs:ReceiveMessage  1\n      sqs:SendMessage  1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn discovery_without_lambda_access_still_stores_the_targets() {
    let t = TestEngine::new("");
    t.fake
        .add_role("orders-service", &[("whittle", "managed")], &[]);
    t.fake
        .world()
        .faults
        .insert("lambda:ListFunctions".to_owned(), 1);
    let summary = crate::jobs::discover(&t.engine, &CancellationToken::new())
        .await
        .expect("discovery");
    assert!(summary.contains("functions not listed"), "{summary}");
    let state = &t.engine.state;
    assert!(
        state
            .tree::<RoleInventory>()
            .expect("tree")
            .get(&"staging".to_owned())
            .expect("read")
            .is_some()
    );
    assert!(
        state
            .tree::<FunctionInventory>()
            .expect("tree")
            .get(&"staging".to_owned())
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn a_plan_proposes_one_role_per_discovered_function_of_a_shared_role() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let shared = t.fake.add_role(
        "orders-service",
        &[("whittle", "managed")],
        &[(
            "svc",
            &super::allow(&[
                "s3:GetObject",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "sqs:SendMessage",
            ]),
        )],
    );
    t.fake.world().functions = vec![
        function("orders-read", "orders-service"),
        function("orders-write", "orders-service"),
    ];
    calls(
        &t,
        &[
            ("orders-read", "s3:GetObject"),
            ("orders-read", "dynamodb:GetItem"),
            ("orders-write", "dynamodb:PutItem"),
            ("i-0123456789abcdef0", "sqs:SendMessage"),
        ],
    );
    mine(&t.engine).await;

    // Before discovery no function is known: no split.
    let plan = super::plan(&t.engine).await;
    assert!(plan.roles[0].split.is_none());

    crate::jobs::discover(&t.engine, &CancellationToken::new())
        .await
        .expect("discovery");
    let plan = super::plan(&t.engine).await;
    let role = plan
        .roles
        .iter()
        .find(|r| r.role_arn == shared)
        .expect("the shared role");
    let split = role.split.as_ref().expect("a split proposal");
    let per: Vec<(&str, Vec<&str>, Option<&str>)> = split
        .functions
        .iter()
        .map(|f| {
            (
                f.role_name.as_str(),
                f.kept.iter().map(|k| k.action.as_str()).collect(),
                f.revision.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        per,
        [
            (
                "orders-service-orders-read",
                vec!["dynamodb:GetItem", "s3:GetObject"],
                Some("rev-orders-read")
            ),
            (
                "orders-service-orders-write",
                vec!["dynamodb:PutItem"],
                Some("rev-orders-write")
            ),
        ]
    );
    assert_eq!(split.shared_keeps, ["sqs:SendMessage"]);
}
