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
    // The summary of many principals counts the same functions, from the role's head.
    let summary = crate::usage::summarise(&t.engine, 0).expect("summary");
    let line = summary
        .principal_summaries
        .iter()
        .find(|p| p.arn == shared)
        .expect("the shared role");
    assert_eq!((line.functions, line.sessions), (2, role.sessions.len()));
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

#[tokio::test]
async fn a_split_leaves_a_deleted_functions_session_and_the_roles_other_callers_on_the_shared_role()
{
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
                "sqs:ReceiveMessage",
            ]),
        )],
    );
    t.fake.world().functions = vec![
        function("orders-read", "orders-service"),
        function("orders-write", "orders-service"),
        // A function of another account listed with this role: no role of this account can
        // be its execution role.
        FunctionSummary {
            arn: "arn:aws:lambda:us-east-1:999999999999:function:orders-audit".to_owned(),
            ..function("orders-audit", "orders-service")
        },
    ];
    calls(
        &t,
        &[
            ("orders-read", "s3:GetObject"),
            ("orders-write", "dynamodb:PutItem"),
            // Deleted (or renamed) since: discovery no longer lists it.
            ("orders-old", "dynamodb:GetItem"),
            ("i-0123456789abcdef0", "sqs:SendMessage"),
            ("orders-audit", "sqs:ReceiveMessage"),
        ],
    );
    mine(&t.engine).await;
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
    let functions: Vec<&str> = split
        .functions
        .iter()
        .map(|f| f.function.as_str())
        .collect();
    assert_eq!(functions, ["orders-read", "orders-write"]);
    assert_eq!(
        split.shared_keeps,
        ["dynamodb:GetItem", "sqs:ReceiveMessage", "sqs:SendMessage"]
    );
    let notes = split.notes.join("\n");
    assert!(
        notes.contains("function orders-audit stays on the shared role: it is in account 999999999999 and the role in account 111111111111"),
        "{notes}"
    );
    assert!(notes.contains("orders-old (dynamodb:GetItem)"), "{notes}");
    assert!(
        notes.contains("(1 EC2 instance session (i-0123456789abcdef0)) keep sqs:SendMessage (1 call) on the shared role"),
        "{notes}"
    );
    // The text plan says the same.
    let text = whittle_planner::plan::render::text(&plan, false);
    assert!(
        text.contains("    note: 1 session(s) named like a function"),
        "{text}"
    );
}
