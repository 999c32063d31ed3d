//! Reading whole accounts: `plan` and the `discover` job read each account once (paged
//! iam:GetAccountAuthorizationDetails), several accounts at once up to the configured bound,
//! back off while IAM throttles, and report an account they cannot read while planning the
//! others.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use whittle_planner::plan::{Plan, RoleStatus};

use super::allow;
use crate::ports::AwsErrorKind;
use crate::records::RoleInventory;
use crate::testing::{ACCOUNT_ID, TestEngine};

const GAAD: &str = "iam:GetAccountAuthorizationDetails";
const SHARED: &str = "arn:aws:iam::111111111111:policy/shared";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyLike";
const FENCE: &str = "arn:aws:iam::aws:policy/FenceLike";

/// Accounts `a` to `d` (ids 1…, 2…, 3…, 4…), every role tagged a target.
fn accounts(names: &[&str], concurrent: usize) -> TestEngine {
    let mut text = format!("[aws]\nconcurrent_accounts = {concurrent}\n");
    for name in names {
        text.push_str(&format!(
            "[[aws.accounts]]\nname = \"{name}\"\nid = \"{}\"\n",
            id_of(name)
        ));
    }
    text.push_str(
        "[targets]\ntags = { whittle = \"managed\" }\n[planner]\nmin_observation_days = 0\n",
    );
    let t = TestEngine::from_text(&text);
    for name in names {
        t.fake
            .world()
            .account_ids
            .insert((*name).to_owned(), id_of(name));
    }
    t
}

fn id_of(name: &str) -> String {
    let digit = match name {
        "a" => '1',
        "b" => '2',
        "c" => '3',
        _ => '4',
    };
    std::iter::repeat_n(digit, 12).collect()
}

/// `n` target roles in the account: an inline policy each, the shared customer-managed
/// policy and an AWS-managed one attached to all, an AWS-managed boundary on the first; and
/// one role that is not a target.
fn seed(t: &TestEngine, account: &str, n: usize) -> Vec<String> {
    let id = id_of(account);
    {
        let mut world = t.fake.world();
        world.policies.insert(
            SHARED.replace(ACCOUNT_ID, &id),
            (
                "shared".to_owned(),
                allow(&["s3:GetObject", "s3:PutObject"]),
            ),
        );
        world.policies.insert(
            READ_ONLY.to_owned(),
            ("ReadOnlyLike".to_owned(), allow(&["sqs:Get*", "sqs:List*"])),
        );
        world
            .policies
            .insert(FENCE.to_owned(), ("FenceLike".to_owned(), allow(&["*"])));
    }
    let mut arns = Vec::new();
    for i in 0..n {
        let arn = t.fake.add_role_in(
            &id,
            &format!("app-{i}"),
            &[("whittle", "managed")],
            &[("own", &allow(&["dynamodb:GetItem", "dynamodb:DeleteTable"]))],
        );
        let mut world = t.fake.world();
        let role = world.roles.get_mut(&arn).expect("the role");
        role.attached = vec![SHARED.replace(ACCOUNT_ID, &id), READ_ONLY.to_owned()];
        if i == 0 {
            role.boundary = Some(FENCE.to_owned());
        }
        arns.push(arn);
    }
    t.fake
        .add_role_in(&id, "untagged", &[], &[("x", &allow(&["s3:*"]))]);
    arns
}

fn without_read_times(plan: &Plan) -> Vec<serde_json::Value> {
    plan.roles
        .iter()
        .map(|r| {
            let mut value = serde_json::to_value(r).expect("JSON");
            value.as_object_mut().expect("an object").remove("read_at");
            value
        })
        .collect()
}

#[tokio::test]
async fn a_plan_reads_each_account_once_and_proposes_what_per_role_reads_would() {
    let t = accounts(&["a", "b"], 4);
    t.fake.world().page_size = 2;
    let mut arns = seed(&t, "a", 5);
    arns.extend(seed(&t, "b", 3));
    arns.sort();

    let plan = super::plan(&t.engine).await;
    let planned: Vec<&str> = plan.roles.iter().map(|r| r.role_arn.as_str()).collect();
    assert_eq!(planned, arns, "every target of both accounts, sorted");
    assert!(plan.roles.iter().all(|r| r.status != RoleStatus::Error));
    // Account a: 6 roles (one not a target) and 2 policies (its customer-managed one, the
    // AWS-managed one attached) at 2 a page; the AWS-managed policy used only as a boundary
    // is not listed, so it is read on its own, once.
    assert_eq!(
        t.fake.calls_in("a", GAAD),
        4,
        "(6 roles + 2 policies) / 2 a page"
    );
    assert_eq!(
        t.fake.calls_in("b", GAAD),
        3,
        "(4 roles + 2 policies) / 2 a page"
    );
    assert_eq!(t.fake.calls_in("a", "iam:GetPolicy"), 1, "FenceLike, once");
    assert_eq!(t.fake.calls_in("b", "iam:GetPolicy"), 1);
    let calls = t.fake.world().calls.clone();
    assert!(
        !calls.iter().any(|c| c == "iam:GetRole"),
        "no per-role reads: {calls:?}"
    );
    let first = plan
        .roles
        .iter()
        .find(|r| r.role_arn.ends_with("/app-0") && r.role_arn.contains(&id_of("a")))
        .expect("app-0 of a");
    assert_eq!(first.current.managed.len(), 2);
    assert_eq!(
        first.current.boundary.as_ref().map(|b| b.arn.as_str()),
        Some(FENCE)
    );
    assert_eq!(first.read_at.as_deref(), Some("2026-11-24T10:00:00Z"));
    assert_eq!(plan.accounts.len(), 2);
    assert!(
        plan.accounts
            .iter()
            .all(|a| a.error.is_none() && a.read_at.is_some())
    );

    // The same roles named one by one are read per role, and planned the same.
    let named = crate::plan::make_plan(&t.engine, &arns)
        .await
        .expect("a plan of named roles");
    assert!(named.accounts.is_empty());
    assert_eq!(without_read_times(&named), without_read_times(&plan));
    assert!(t.fake.world().calls.iter().any(|c| c == "iam:GetRole"));
}

#[tokio::test]
async fn throttled_accounts_back_off_and_an_unreadable_account_is_reported_not_planned() {
    let t = accounts(&["a", "b", "c", "d"], 4);
    t.fake.world().page_size = 3;
    let mut expected = seed(&t, "a", 2);
    expected.extend(seed(&t, "b", 2));
    seed(&t, "c", 2);
    seed(&t, "d", 2);
    expected.sort();
    // b: throttled twice, then answers; c: throttled past the back-off; d: refused.
    t.fake.fail_in(GAAD, "b", AwsErrorKind::Throttled, 2);
    t.fake.fail_in(GAAD, "c", AwsErrorKind::Throttled, 100);
    t.fake.fail_in(GAAD, "d", AwsErrorKind::AccessDenied, 1);
    let started = t.engine.now();

    let plan = super::plan(&t.engine).await;
    let planned: Vec<&str> = plan.roles.iter().map(|r| r.role_arn.as_str()).collect();
    assert_eq!(planned, expected, "a and b planned, c and d not");
    let error_of = |name: &str| {
        plan.accounts
            .iter()
            .find(|a| a.account == name)
            .and_then(|a| a.error.clone())
    };
    assert_eq!(error_of("a"), None);
    assert_eq!(error_of("b"), None, "two throttles are waited out");
    let throttled = error_of("c").expect("c is reported");
    assert!(throttled.contains("throttled 6 times"), "{throttled}");
    assert!(throttled.contains("account `c`"), "{throttled}");
    assert!(
        error_of("d")
            .expect("d is reported")
            .contains("AccessDenied")
    );
    // b waited 1 s and 2 s; c the whole back-off (1+2+4+8+16 s) before giving up.
    assert_eq!(t.fake.calls_in("c", GAAD), 6);
    assert!(t.engine.now().0 - started.0 >= 31_000);

    let out = crate::commands::render_plan(
        &plan,
        crate::commands::PlanFormat::Text,
        None,
        crate::commands::Terminal {
            color: false,
            progress: false,
        },
    )
    .expect("rendered");
    assert_eq!(out.exit_code, 1, "an account not read fails the command");
    assert!(
        out.stdout
            .contains("account c not read, its roles are not in this plan"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn accounts_are_read_at_once_up_to_the_configured_bound() {
    for bound in [1, 2] {
        let t = accounts(&["a", "b", "c", "d"], bound);
        t.fake.world().page_size = 1;
        for name in ["a", "b", "c", "d"] {
            seed(&t, name, 3);
        }
        let plan = super::plan(&t.engine).await;
        assert_eq!(plan.roles.len(), 12);
        assert_eq!(t.fake.world().most_reading, bound, "bound {bound}");
    }
}

#[tokio::test]
async fn the_discover_job_stores_what_it_read_and_names_the_account_it_could_not() {
    let t = accounts(&["a", "b"], 2);
    seed(&t, "a", 2);
    seed(&t, "b", 1);
    t.fake.fail_in(GAAD, "b", AwsErrorKind::Other, 1);
    let run = crate::jobs::run(
        &crate::records::JobName::Discover,
        &t.engine,
        &CancellationToken::new(),
    )
    .await;
    let error = run.expect_err("b failed").to_string();
    assert!(error.contains("account `b`"), "{error}");
    assert!(
        error.contains("a: 2 target(s), 0 protected, 1 not selected"),
        "{error}"
    );
    let inventories = t.engine.state.tree::<RoleInventory>().expect("tree");
    let a = inventories
        .get(&"a".to_owned())
        .expect("read")
        .expect("a stored");
    assert_eq!(a.targets.len(), 2);
    assert_eq!(a.account_id, id_of("a"));
    assert!(inventories.get(&"b".to_owned()).expect("read").is_none());
    // Discovery needs no policy documents: one page, roles only.
    assert_eq!(t.fake.calls_in("a", GAAD), 1);
    assert_eq!(t.fake.calls_in("a", "iam:GetPolicy"), 0);

    // The next run reads b again and succeeds.
    t.engine.ports.advance(Duration::from_secs(60));
    let summary = crate::jobs::run(
        &crate::records::JobName::Discover,
        &t.engine,
        &CancellationToken::new(),
    )
    .await
    .expect("both read");
    assert!(summary.contains("b: 1 target(s)"), "{summary}");
}

#[tokio::test]
async fn a_managed_policy_gone_during_the_read_fails_only_the_roles_that_use_it() {
    let t = accounts(&["a"], 1);
    let arns = seed(&t, "a", 3);
    let gone = "arn:aws:iam::aws:policy/Gone";
    t.fake
        .world()
        .roles
        .get_mut(&arns[1])
        .expect("role")
        .attached
        .push(gone.to_owned());
    // Attached, yet not listed and not found: as a policy deleted between the pages and now.
    let plan = super::plan(&t.engine).await;
    let statuses: Vec<(&str, RoleStatus)> = plan
        .roles
        .iter()
        .map(|r| (r.role_arn.as_str(), r.status))
        .collect();
    assert_eq!(statuses.len(), 3);
    let broken = &plan.roles[1];
    assert_eq!(broken.status, RoleStatus::Error, "{statuses:?}");
    assert!(
        broken.error.as_deref().unwrap_or_default().contains(gone),
        "{:?}",
        broken.error
    );
    assert!(
        plan.roles
            .iter()
            .filter(|r| r.role_arn != arns[1])
            .all(|r| r.status != RoleStatus::Error)
    );
    assert!(plan.accounts[0].error.is_none());
}
