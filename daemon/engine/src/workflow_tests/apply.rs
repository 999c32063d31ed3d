//! `plan`, `apply` and `rollback`.

use whittle_planner::plan::{PlanStatus, RoleStatus};

use super::{EVENTS_SOURCE, TABLE, allow, mine, plan};
use crate::plan::ApplyOutcome;
use crate::records::{ChangeRecord, ChangeStatus};
use crate::testing::{Call, TestEngine};

fn orders_role(t: &TestEngine) -> String {
    let role = t.fake.add_role(
        "orders",
        &[("whittle", "managed")],
        &[
            ("app", &allow(&["dynamodb:GetItem", "dynamodb:PutItem"])),
            ("admin", &allow(&["dynamodb:DeleteTable"])),
        ],
    );
    t.fake.world().workload = vec![Call {
        role_arn: role.clone(),
        action: "dynamodb:GetItem".to_owned(),
        resource: TABLE.to_owned(),
    }];
    role
}

#[tokio::test]
async fn a_plan_keeps_what_was_used_and_apply_then_rollback_restores_exactly() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = orders_role(&t);
    // Roles whittle may not touch are never planned.
    t.fake
        .add_role("untagged", &[], &[("app", &allow(&["s3:*"]))]);
    assert_eq!(t.fake.exercise(), 0);
    mine(&t.engine).await;
    let before = t.fake.policies_of(&role).expect("the role");

    let plan = plan(&t.engine).await;
    assert_eq!(plan.roles.len(), 1, "only the target is planned");
    let planned = &plan.roles[0];
    assert_eq!(planned.status, RoleStatus::Changes);
    let removed: Vec<String> = planned.removed.iter().map(|r| r.action).collect();
    assert!(
        removed.iter().any(|r| r == "dynamodb:DeleteTable"),
        "{removed:?}"
    );
    assert!(
        removed.iter().any(|r| r == "dynamodb:PutItem"),
        "{removed:?}"
    );
    assert!(planned.kept.iter().any(|k| k.action == "dynamodb:GetItem"));
    assert!(
        t.fake
            .world()
            .calls
            .iter()
            .all(|c| !c.contains("Put") && !c.contains("Delete")),
        "a plan changes nothing on AWS"
    );

    let untried = crate::plan::apply(&t.engine, &plan.id, &[], false).await;
    assert!(
        untried
            .expect_err("refused")
            .to_string()
            .contains("has not passed a trial"),
    );
    let outcomes = crate::plan::apply(&t.engine, &plan.id, &[], true)
        .await
        .expect("applied");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].outcome, ApplyOutcome::Applied, "{outcomes:?}");
    let after = t.fake.policies_of(&role).expect("the role");
    assert!(!after.same_as(&before), "the role changed");
    assert_eq!(t.fake.exercise(), 0, "the workload still works");
    t.fake.world().workload[0].action = "dynamodb:DeleteTable".to_owned();
    assert_eq!(t.fake.exercise(), 1, "what was not used is gone");
    let stored = crate::plan::load_plan(&t.engine.state, &plan.id).expect("stored");
    assert_eq!(stored.status, PlanStatus::Applied);

    let change_id = outcomes[0].change_id.clone().expect("a change id");
    let undone = crate::plan::rollback(&t.engine, Some(&change_id), None)
        .await
        .expect("rolled back");
    assert_eq!(undone.status, ChangeStatus::RolledBack);
    assert!(t.fake.policies_of(&role).expect("role").same_as(&before));
    assert!(
        t.engine
            .state
            .journal_unfinished()
            .expect("journals")
            .is_empty()
    );
}

#[tokio::test]
async fn an_apply_that_fails_part_way_restores_the_snapshot() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = orders_role(&t);
    t.fake.exercise();
    mine(&t.engine).await;
    let before = t.fake.policies_of(&role).expect("the role");
    let plan = plan(&t.engine).await;
    let proposal = &plan.roles[0].proposal;
    assert_eq!(proposal.delete_inline, ["admin"], "{proposal:?}");
    // The narrowed policy goes in, then taking the unused one away fails.
    t.fake.fail("iam:DeleteRolePolicy", 1);
    let outcomes = crate::plan::apply(&t.engine, &plan.id, &[], true)
        .await
        .expect("an outcome per role");
    assert_eq!(outcomes[0].outcome, ApplyOutcome::Failed, "{outcomes:?}");
    assert!(
        outcomes[0].detail.contains("injected fault"),
        "{outcomes:?}"
    );
    assert!(t.fake.policies_of(&role).expect("role").same_as(&before));
    let change = t
        .engine
        .state
        .tree::<ChangeRecord>()
        .expect("tree")
        .iter()
        .next()
        .expect("one change")
        .expect("readable")
        .1;
    assert_eq!(change.status, ChangeStatus::RolledBack);
    assert!(
        t.engine
            .state
            .journal_unfinished()
            .expect("journals")
            .is_empty()
    );
}

#[tokio::test]
async fn apply_refuses_a_stale_role_and_more_roles_than_the_limit() {
    let mut t = TestEngine::new(EVENTS_SOURCE);
    let mut config = (*t.engine.config).clone();
    config.planner.max_roles_per_apply = 1;
    t.engine = t.engine.with_config(config);
    let role = orders_role(&t);
    let other = t.fake.add_role(
        "billing",
        &[("whittle", "managed")],
        &[("app", &allow(&["sqs:SendMessage", "sqs:DeleteQueue"]))],
    );
    t.fake.world().workload.push(crate::testing::Call {
        role_arn: other.clone(),
        action: "sqs:SendMessage".to_owned(),
        resource: "arn:aws:sqs:us-east-1:111111111111:q".to_owned(),
    });
    t.fake.exercise();
    mine(&t.engine).await;
    let plan = plan(&t.engine).await;
    let error = crate::plan::apply(&t.engine, &plan.id, &[], true)
        .await
        .expect_err("two roles, limit one");
    assert!(
        error.to_string().contains("max_roles_per_apply = 1"),
        "{error}"
    );

    // Someone edits the role after the plan: the plan is stale for it.
    t.fake
        .world()
        .roles
        .get_mut(&role)
        .expect("role")
        .inline
        .insert("hotfix".to_owned(), allow(&["sns:Publish"]));
    let outcomes = crate::plan::apply(&t.engine, &plan.id, std::slice::from_ref(&role), true)
        .await
        .expect("an outcome");
    assert_eq!(outcomes[0].outcome, ApplyOutcome::Failed);
    assert!(
        outcomes[0].detail.contains("changed since plan"),
        "{outcomes:?}"
    );
    assert_eq!(t.fake.policies_of(&role).expect("role").inline.len(), 3);
}

/// `[planner.organization_policies]`: an unobservable permission the account's SCPs close
/// is not kept, and the plan says which SCP closes it.
#[tokio::test]
async fn a_plan_drops_what_the_accounts_scps_close() {
    let t = TestEngine::new(&format!(
        "{EVENTS_SOURCE}\n[planner.organization_policies]\nstaging = [\"tests/fixtures/policy/scp-root.json\", \"tests/fixtures/policy/scp-ou.json\"]\n"
    ));
    let role = t.fake.add_role(
        "orders",
        &[("whittle", "managed")],
        &[(
            "app",
            &allow(&[
                "dynamodb:GetItem",
                "iam:PassRole",
                "kms:Decrypt",
                "sqs:SendMessage",
            ]),
        )],
    );
    t.fake.world().workload = vec![Call {
        role_arn: role.clone(),
        action: "sqs:SendMessage".to_owned(),
        resource: "arn:aws:sqs:us-east-1:111111111111:orders".to_owned(),
    }];
    assert_eq!(t.fake.exercise(), 0);
    mine(&t.engine).await;
    let plan = plan(&t.engine).await;
    let planned = &plan.roles[0];
    let kept: Vec<&str> = planned.kept.iter().map(|k| k.action.as_str()).collect();
    // The OU's SCP allows only SQS and S3: the unobservable IAM and KMS permissions could
    // never be used, and the unused DynamoDB one goes as unused.
    assert_eq!(kept, ["sqs:SendMessage"], "{:#?}", planned.notes);
    assert!(
        planned.notes.iter().any(|n| n
            == "`iam:PassRole` is not kept (unobservable): no SCP at level 2 of 2 (tests/fixtures/policy/scp-ou.json) allows iam:PassRole, so it grants nothing"),
        "{:#?}",
        planned.notes
    );

    // Validation names a file that is not an SCP, located in the configuration...
    let error = crate::config::parse_in(
        &format!(
            "{}\n[planner.organization_policies]\nstaging = [\"tests/fixtures/policy/queue-policy.json\"]\nnowhere = [\"tests/fixtures/policy/scp-root.json\"]\n",
            crate::testing::BASE_CONFIG
        ),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    )
    .expect_err("refused");
    let messages = format!("{error:?}");
    assert!(
        messages.contains("queue-policy.json is not a service control policy: Statement[0]: an SCP cannot name a Principal"),
        "{messages}"
    );
    assert!(
        messages.contains("account `nowhere` is not one of the [[aws.accounts]] names"),
        "{messages}"
    );
    // ...and a file broken after the configuration was loaded stops the plan, named.
    let dir = tempfile::tempdir().expect("tempdir");
    let scp = dir.path().join("root.json");
    std::fs::write(
        &scp,
        r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
    )
    .expect("write");
    let later = TestEngine::new(&format!(
        "{EVENTS_SOURCE}\n[planner.organization_policies]\nstaging = [{:?}]\n",
        scp.display().to_string()
    ));
    std::fs::write(&scp, "{").expect("write");
    let error = crate::plan::make_plan(&later.engine, &[])
        .await
        .expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("root.json is not a valid policy"),
        "{error}"
    );
}

/// `[planner] organization_from`: the SCPs above the account are read through AWS
/// Organizations, level by level from the root, each policy described once; what they close
/// is dropped as with files, the note naming the SCP and the OU it is attached to.
#[tokio::test]
async fn a_plan_reads_the_accounts_scps_through_organizations() {
    let t = TestEngine::new(&format!(
        "{EVENTS_SOURCE}\n[planner]\norganization_from = \"staging\"\n"
    ));
    let full =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let no_iam = r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoPassRole","Effect":"Deny","Action":["iam:PassRole","kms:*"],"Resource":"*"}]}"#;
    {
        let mut world = t.fake.world();
        world.org_parents = [
            ("111111111111", "ou-ab12-workloads"),
            ("ou-ab12-workloads", "r-ab12"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into();
        // AWS's FullAWSAccess at every level (as Organizations attaches it), the Deny on the OU.
        world.org_attached = [
            ("r-ab12", vec!["p-FullAWSAccess"]),
            ("ou-ab12-workloads", vec!["p-FullAWSAccess", "p-nopassrole"]),
            ("111111111111", vec!["p-FullAWSAccess"]),
        ]
        .map(|(a, b)| (a.to_owned(), b.into_iter().map(str::to_owned).collect()))
        .into();
        world.org_policies = [
            ("p-FullAWSAccess", ("FullAWSAccess", full)),
            ("p-nopassrole", ("no-passrole", no_iam)),
        ]
        .map(|(id, (name, doc))| (id.to_owned(), (name.to_owned(), doc.to_owned())))
        .into();
    }
    let role = t.fake.add_role(
        "orders",
        &[("whittle", "managed")],
        &[(
            "app",
            &allow(&["iam:PassRole", "kms:Decrypt", "sqs:SendMessage"]),
        )],
    );
    t.fake.world().workload = vec![Call {
        role_arn: role.clone(),
        action: "sqs:SendMessage".to_owned(),
        resource: "arn:aws:sqs:us-east-1:111111111111:orders".to_owned(),
    }];
    assert_eq!(t.fake.exercise(), 0);
    mine(&t.engine).await;
    let plan = plan(&t.engine).await;
    let planned = &plan.roles[0];
    let kept: Vec<&str> = planned.kept.iter().map(|k| k.action.as_str()).collect();
    assert_eq!(kept, ["sqs:SendMessage"], "{:#?}", planned.notes);
    assert!(
        planned.notes.iter().any(|n| n.starts_with(
            "`iam:PassRole` is not kept (unobservable): SCP `no-passrole` (p-nopassrole) on ou-ab12-workloads statement 0 (Sid NoPassRole) denies iam:PassRole everywhere"
        )),
        "{:#?}",
        planned.notes
    );
    let calls = t.fake.world().calls.clone();
    let count = |name: &str| calls.iter().filter(|c| *c == name).count();
    // Three levels listed, two parents asked, and each distinct policy described once.
    assert_eq!(count("organizations:ListPoliciesForTarget"), 3, "{calls:?}");
    assert_eq!(count("organizations:ListParents"), 2, "{calls:?}");
    assert_eq!(count("organizations:DescribePolicy"), 2, "{calls:?}");

    // Credentials Organizations refuses stop the plan, saying what the account needs.
    t.fake.world().org_denied = true;
    let error = crate::plan::make_plan(&t.engine, &[])
        .await
        .expect_err("refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("organization_from = \"staging\" needs an account that may call organizations:ListParents, ListPoliciesForTarget and DescribePolicy"),
        "{message}"
    );
    // A name that is not a configured account is a located configuration error.
    let error = crate::config::parse_in(
        &crate::testing::BASE_CONFIG.replace(
            "[planner]\n",
            "[planner]\norganization_from = \"management\"\n",
        ),
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    )
    .expect_err("refused");
    assert!(
        format!("{error:?}")
            .contains("account `management` is not one of the [[aws.accounts]] names"),
        "{error:?}"
    );
}
