//! A shared role's split put in place: tried in staging (functions switched to roles of
//! their own, watched, switched back), applied, rolled back, refused when stale, and undone
//! by the reconcile pass after a crash at any step, never leaving a function without a role
//! that works.

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;
use whittle_planner::plan::{Plan, PlanStatus};
use whittle_playbooks::trial::TrialPlaybook;

use super::{EVENTS_SOURCE, TABLE, allow, mine, plan};
use crate::plan::ApplyOutcome;
use crate::ports::{AwsErrorKind, FunctionSummary};
use crate::records::{ChangeStatus, NeededActions, SplitRecord, TrialStatus};
use crate::testing::{ACCOUNT_ID, FunctionCall, TestEngine};

const QUEUE: &str = "arn:aws:sqs:us-east-1:111111111111:audit";
const BUCKET: &str = "arn:aws:s3:::orders/data.json";

/// What each of the service's three functions does: a different subset of the shared role.
const WORK: [(&str, &str, &str); 4] = [
    ("orders-read", "s3:GetObject", BUCKET),
    ("orders-read", "dynamodb:GetItem", TABLE),
    ("orders-write", "dynamodb:PutItem", TABLE),
    ("orders-audit", "sqs:SendMessage", QUEUE),
];

fn playbook() -> TrialPlaybook {
    whittle_playbooks::trial::parse(
        "test playbook",
        "kind = \"trial\"\nwindow = \"2m\"\ndetection_interval = \"30s\"\n[exercise]\ncommand = [\"exercise\"]\ntimeout = \"1m\"\n",
    )
    .expect("a trial playbook")
}

fn work(calls: &[(&str, &str, &str)]) -> Vec<FunctionCall> {
    calls
        .iter()
        .map(|(function, action, resource)| FunctionCall {
            function: (*function).to_owned(),
            action: (*action).to_owned(),
            resource: (*resource).to_owned(),
        })
        .collect()
}

/// A service whose three functions share the role `orders-service` (which also allows
/// `unused`), mined and discovered; returns the shared role's ARN and the plan, whose split
/// gives each function its subset.
async fn service(t: &TestEngine, unused: &[&str]) -> (String, Plan) {
    let mut granted = vec![
        "s3:GetObject",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "sqs:SendMessage",
    ];
    granted.extend(unused);
    let shared = t.fake.add_role(
        "orders-service",
        &[("whittle", "managed"), ("team", "orders")],
        &[("svc", &allow(&granted))],
    );
    t.fake.world().functions = ["orders-read", "orders-write", "orders-audit"]
        .into_iter()
        .map(|name| FunctionSummary {
            name: name.to_owned(),
            arn: format!("arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{name}"),
            role: shared.clone(),
            revision: Some(format!("rev-{name}")),
        })
        .collect();
    t.fake.world().function_workload = work(&WORK);
    assert_eq!(t.fake.exercise(), 0);
    mine(&t.engine).await;
    crate::jobs::discover(&t.engine, &CancellationToken::new())
        .await
        .expect("discovery");
    let plan = plan(&t.engine).await;
    let split = plan.roles[0].split.as_ref().expect("a split proposal");
    let kept: Vec<(&str, Vec<&str>)> = split
        .functions
        .iter()
        .map(|f| {
            (
                f.function.as_str(),
                f.kept.iter().map(|k| k.action.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        [
            ("orders-audit", vec!["sqs:SendMessage"]),
            ("orders-read", vec!["dynamodb:GetItem", "s3:GetObject"]),
            ("orders-write", vec!["dynamodb:PutItem"]),
        ],
        "each function gets exactly its subset"
    );
    (shared, plan)
}

/// Function name -> its role now.
fn function_roles(t: &TestEngine) -> BTreeMap<String, String> {
    t.fake
        .world()
        .functions
        .iter()
        .map(|f| (f.name.clone(), f.role.clone()))
        .collect()
}

fn role_names(t: &TestEngine) -> Vec<String> {
    t.fake.world().roles.keys().cloned().collect()
}

fn splits(t: &TestEngine) -> Vec<SplitRecord> {
    t.engine
        .state
        .tree::<SplitRecord>()
        .expect("tree")
        .iter()
        .map(|s| s.expect("readable").1)
        .collect()
}

/// Whether the calls the workload made under `role_name` since `from` (event index) exist.
fn calls_under(t: &TestEngine, role_name: &str, from: usize) -> bool {
    t.fake.world().events[from..]
        .iter()
        .any(|(_, e)| e.contains(&format!("assumed-role/{role_name}/")))
}

#[tokio::test]
async fn a_split_trial_switches_every_function_passes_and_then_apply_and_rollback_leave_all_as_before()
 {
    let t = TestEngine::new(EVENTS_SOURCE);
    let (shared, plan) = service(&t, &[]).await;
    let (roles_before, functions_before) = (role_names(&t), function_roles(&t));
    let events_before = t.fake.world().events.len();

    let records = crate::trial::run(&t.engine, &plan.id, &[], &playbook())
        .await
        .expect("the trial runs");
    let split_trial = records.iter().find(|r| r.split).expect("a split trial");
    assert_eq!(split_trial.status, TrialStatus::Passed, "{split_trial:?}");
    assert!(
        calls_under(&t, "orders-service-orders-read", events_before),
        "the exercise ran as the function's own role"
    );
    assert_eq!(function_roles(&t), functions_before, "switched back");
    assert_eq!(
        role_names(&t),
        roles_before,
        "the trial's roles are deleted"
    );
    let status = crate::plan::load_plan(&t.engine.state, &plan.id)
        .expect("plan")
        .status;
    assert_eq!(status, PlanStatus::Trialled);

    let outcomes = crate::plan::apply(&t.engine, &plan.id, &[], false)
        .await
        .expect("a trialled plan applies");
    let applied = outcomes
        .iter()
        .find(|o| o.detail.starts_with("split:"))
        .expect("the split's outcome");
    assert_eq!(applied.outcome, ApplyOutcome::Applied, "{outcomes:?}");
    let id = applied.change_id.clone().expect("an id to roll back");
    assert!(id.starts_with("split-"), "{id}");
    let now = function_roles(&t);
    for function in ["orders-read", "orders-write", "orders-audit"] {
        assert_eq!(
            now[function],
            format!("arn:aws:iam::{ACCOUNT_ID}:role/orders-service-{function}")
        );
    }
    let world_role = t.fake.world().roles[&now["orders-write"]].clone();
    assert_eq!(world_role.tags["team"], "orders", "the shared role's tags");
    assert_eq!(world_role.tags["whittle:split"], id);
    assert_eq!(t.fake.exercise(), 0, "each function's role serves it");
    // A function that now tries what another function does is denied: least privilege.
    t.fake.world().function_workload = work(&[("orders-audit", "dynamodb:PutItem", TABLE)]);
    assert_eq!(t.fake.exercise(), 1);
    t.fake.world().function_workload = work(&WORK);
    assert!(
        t.fake.policies_of(&shared).is_some(),
        "the shared role stays for its other callers"
    );

    // `whittle status` tells the split's trial and the split from the role's own.
    let status = crate::status::build(&t.engine.config, &t.engine.state, None, t.engine.now())
        .expect("status");
    let text = crate::status::render_text(&status);
    assert!(
        text.contains(&format!("passed  split of {shared}")),
        "{text}"
    );
    let change = text
        .lines()
        .find(|l| l.trim_start().starts_with(&id))
        .unwrap_or_else(|| panic!("the split among the changes: {text}"));
    assert!(
        change.contains(&format!("applied  {shared}"))
            && change.ends_with(
                ": split, orders-audit, orders-read, orders-write on roles of their own"
            ),
        "{change}"
    );

    // Applying again finds it done.
    let again = crate::plan::apply(&t.engine, &plan.id, &[], false)
        .await
        .expect("apply");
    assert!(
        again
            .iter()
            .any(|o| o.outcome == ApplyOutcome::Skipped && o.detail.contains("already applied")),
        "{again:?}"
    );

    // `whittle rollback --role SHARED` undoes the role's latest change: this split.
    let out = crate::commands::run(
        &t.engine,
        &crate::commands::StateCommand::Rollback(crate::commands::RollbackCommand {
            change_id: None,
            role: Some(shared.clone()),
            format: crate::commands::OutputFormat::Text,
        }),
        crate::commands::Terminal {
            color: false,
            progress: false,
        },
        &CancellationToken::new(),
    )
    .await
    .expect("rolled back");
    assert!(
        out.stdout
            .starts_with(&format!("moved the functions of split {id}")),
        "{}",
        out.stdout
    );
    assert_eq!(splits(&t)[0].status, ChangeStatus::RolledBack);
    assert_eq!(function_roles(&t), functions_before);
    assert_eq!(role_names(&t), roles_before);
    assert_eq!(t.fake.exercise(), 0);
    assert!(
        crate::switch::rollback(&t.engine, &id)
            .await
            .expect_err("twice")
            .to_string()
            .contains("rolled back already")
    );
}

#[tokio::test]
async fn a_split_trial_in_which_one_function_is_denied_rolls_every_function_back() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let (shared, plan) = service(&t, &["dynamodb:DescribeTable"]).await;
    let (roles_before, functions_before) = (role_names(&t), function_roles(&t));
    // Since mining, orders-write also describes its table now and then.
    t.fake.world().function_workload.extend(work(&[(
        "orders-write",
        "dynamodb:DescribeTable",
        TABLE,
    )]));

    let records = crate::trial::run(&t.engine, &plan.id, &[], &playbook())
        .await
        .expect("the trial runs");
    let record = records.iter().find(|r| r.split).expect("a split trial");
    assert_eq!(record.status, TrialStatus::RolledBack, "{record:?}");
    assert_eq!(record.denied[0].action, "dynamodb:DescribeTable");
    assert_eq!(function_roles(&t), functions_before, "every function back");
    assert_eq!(role_names(&t), roles_before, "no role of the split is left");
    let status = crate::plan::load_plan(&t.engine.state, &plan.id)
        .expect("plan")
        .status;
    assert_eq!(status, PlanStatus::Proposed);
    let needed = t
        .engine
        .state
        .tree::<NeededActions>()
        .expect("tree")
        .get(&shared)
        .expect("read")
        .expect("recorded");
    assert!(needed.actions.contains_key("dynamodb:DescribeTable"));

    // The next plan's split keeps it, and its trial passes.
    let next = super::plan(&t.engine).await;
    let split = next.roles[0].split.as_ref().expect("split");
    let write = split
        .functions
        .iter()
        .find(|f| f.function == "orders-write")
        .expect("orders-write");
    assert!(
        write
            .kept
            .iter()
            .any(|k| k.action == "dynamodb:DescribeTable")
    );
    let records = crate::trial::run(&t.engine, &next.id, &[], &playbook())
        .await
        .expect("the trial runs");
    assert!(
        records
            .iter()
            .all(|r| r.status == TrialStatus::Passed || !r.split),
        "{records:?}"
    );
}

#[tokio::test]
async fn a_function_deployed_since_the_plan_is_refused_as_stale_before_any_change() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let (_, plan) = service(&t, &[]).await;
    let roles_before = role_names(&t);
    t.fake.world().functions[1].revision = Some("rev-after-a-deploy".to_owned());

    let outcomes = crate::plan::apply(&t.engine, &plan.id, &[], true)
        .await
        .expect("apply");
    let split = outcomes
        .iter()
        .find(|o| o.detail.contains("changed since plan"))
        .unwrap_or_else(|| panic!("refused as stale: {outcomes:?}"));
    assert_eq!(split.outcome, ApplyOutcome::Failed);
    assert!(split.detail.contains("another deploy"), "{}", split.detail);
    assert_eq!(role_names(&t), roles_before, "nothing created");
    assert!(splits(&t).is_empty());

    let records = crate::trial::run(&t.engine, &plan.id, &[], &playbook())
        .await
        .expect("the trial runs");
    let refused = records.iter().find(|r| r.split).expect("split trial");
    assert_eq!(refused.status, TrialStatus::Refused, "{refused:?}");

    // A function deleted since: refused too, naming it.
    t.fake
        .world()
        .functions
        .retain(|f| f.name != "orders-audit");
    let outcomes = crate::plan::apply(&t.engine, &plan.id, &[], true)
        .await
        .expect("apply");
    assert!(
        outcomes
            .iter()
            .any(|o| o.detail.contains("function orders-audit no longer exists")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn each_function_a_split_moves_counts_against_the_role_limits() {
    let mut t = TestEngine::new(EVENTS_SOURCE);
    let (shared, plan) = service(&t, &["sns:Publish"]).await;
    let roles_before = role_names(&t);
    // Three functions get roles of their own, and the shared role's own policies change.
    let mut config = (*t.engine.config).clone();
    config.planner.max_roles_per_apply = 3;
    config.targets.max_roles_per_run = 3;
    t.engine = t.engine.with_config(config.clone());
    let error = crate::trial::run(&t.engine, &plan.id, &[], &playbook())
        .await
        .expect_err("a trial of four roles, the limit is three");
    assert!(
        error.to_string().contains(
            "would try 4 roles (a split counts each function it gives a role of its own), more than [targets] max_roles_per_run = 3"
        ),
        "{error}"
    );
    let error = crate::plan::apply(&t.engine, &plan.id, &[], true)
        .await
        .expect_err("four roles change, the limit is three");
    assert!(
        error.to_string().contains(
            "changes 4 roles (a split counts each function it gives a role of its own), more than [planner] max_roles_per_apply = 3"
        ),
        "{error}"
    );
    assert_eq!(role_names(&t), roles_before, "nothing created");
    assert!(splits(&t).is_empty());

    config.planner.max_roles_per_apply = 4;
    t.engine = t.engine.with_config(config);
    crate::plan::apply(&t.engine, &plan.id, &[], true)
        .await
        .expect("within the limit");
    assert!(
        function_roles(&t).values().all(|role| *role != shared),
        "every function on a role of its own: {:?}",
        function_roles(&t)
    );
}

#[tokio::test]
async fn a_switch_waits_while_iam_makes_the_new_role_assumable() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let (_, plan) = service(&t, &[]).await;
    t.fake.fail_in(
        "lambda:UpdateFunctionConfiguration",
        "staging",
        AwsErrorKind::NotReady,
        3,
    );
    let started = t.engine.now();
    let outcomes = crate::plan::apply(&t.engine, &plan.id, &[], true)
        .await
        .expect("apply");
    assert!(
        outcomes
            .iter()
            .any(|o| o.outcome == ApplyOutcome::Applied && o.detail.starts_with("split:")),
        "{outcomes:?}"
    );
    assert!(
        t.engine.now().0 - started.0 >= 6_000,
        "it waited between tries"
    );
    assert_eq!(t.fake.exercise(), 0);
}

#[tokio::test]
async fn a_split_killed_after_any_journal_step_leaves_a_working_role_and_is_undone_on_restart() {
    for point in [
        "split:begin",
        "split:role-created",
        "split:role-filled",
        "split:switched",
    ] {
        killed_and_restarted(point, false).await;
    }
}

#[tokio::test]
async fn a_split_trial_killed_after_any_journal_step_is_undone_on_restart() {
    for point in [
        "trial:begin",
        "split:role-created",
        "split:role-filled",
        "split:switched",
        "trial:applied",
        "trial:verdict",
    ] {
        killed_and_restarted(point, true).await;
    }
}

/// Kills an apply (or a trial) of the split at `point`; every function must still run under
/// a role that serves it, and the reconcile pass must put everything back as before.
async fn killed_and_restarted(point: &str, trial: bool) {
    let t = TestEngine::new(EVENTS_SOURCE);
    let (_, plan) = service(&t, &[]).await;
    let (roles_before, functions_before) = (role_names(&t), function_roles(&t));
    t.fake.world().crash_at = Some(point.to_owned());
    let engine = t.engine.clone();
    let id = plan.id.clone();
    let died = tokio::spawn(async move {
        if trial {
            crate::trial::run(&engine, &id, &[], &playbook())
                .await
                .map(|_| ())
        } else {
            crate::plan::apply(&engine, &id, &[], true)
                .await
                .map(|_| ())
        }
    })
    .await;
    assert!(died.is_err(), "{point}: it died");
    t.fake.world().crash_at = None;
    // At the crash: every function runs under a role that serves it.
    assert_eq!(
        t.fake.exercise(),
        0,
        "{point}: a function without a working role"
    );
    if point == "split:switched" {
        assert_ne!(
            function_roles(&t),
            functions_before,
            "{point}: one switched"
        );
    }

    let summary = crate::reconcile::reconcile(&t.restarted())
        .await
        .expect("reconciled");
    assert_eq!(summary.recovered, 1, "{point}");
    assert_eq!(function_roles(&t), functions_before, "{point}");
    assert_eq!(role_names(&t), roles_before, "{point}");
    if !trial {
        assert_eq!(splits(&t)[0].status, ChangeStatus::RolledBack, "{point}");
    }
    assert!(
        t.engine
            .state
            .journal_unfinished()
            .expect("journals")
            .is_empty()
    );
}
