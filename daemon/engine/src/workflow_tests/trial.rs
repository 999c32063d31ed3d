//! Trials: apply in staging, exercise, watch, roll back on a denial, keep what was needed.

use whittle_planner::plan::PlanStatus;
use whittle_playbooks::trial::TrialPlaybook;

use super::{EVENTS_SOURCE, TABLE, allow, mine, plan};
use crate::plan::ApplyOutcome;
use crate::records::{NeededActions, TrialStatus, open_trials};
use crate::testing::{Call, TestEngine};

fn playbook(extra: &str) -> TrialPlaybook {
    let text = format!(
        "kind = \"trial\"\nwindow = \"2m\"\ndetection_interval = \"30s\"\n{extra}\n[exercise]\ncommand = [\"exercise\"]\ntimeout = \"1m\"\n"
    );
    whittle_playbooks::trial::parse("test playbook", &text).expect("a trial playbook")
}

/// A role that reads a table on every run and describes it only now and then: the first
/// plan, made from runs that did not describe it, drops `dynamodb:DescribeTable`.
fn occasional_role(t: &TestEngine) -> String {
    let role = t.fake.add_role(
        "orders",
        &[("whittle", "managed")],
        &[(
            "app",
            &allow(&[
                "dynamodb:GetItem",
                "dynamodb:DescribeTable",
                "dynamodb:DeleteTable",
            ]),
        )],
    );
    let call = |action: &str| Call {
        role_arn: role.clone(),
        action: action.to_owned(),
        resource: TABLE.to_owned(),
    };
    t.fake.world().workload = vec![call("dynamodb:GetItem")];
    t.fake.exercise();
    t.fake.world().workload = vec![call("dynamodb:GetItem"), call("dynamodb:DescribeTable")];
    role
}

#[tokio::test]
async fn a_denied_trial_rolls_back_and_the_next_plan_keeps_the_action_then_passes() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = occasional_role(&t);
    mine(&t.engine).await;
    let before = t.fake.policies_of(&role).expect("role");
    let first = plan(&t.engine).await;
    assert!(
        first.roles[0]
            .removed
            .iter()
            .any(|r| r.action == "dynamodb:DescribeTable")
    );

    let records = crate::trial::run(&t.engine, &first.id, &[], &playbook(""))
        .await
        .expect("the trial runs");
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.status, TrialStatus::RolledBack, "{record:?}");
    assert!(
        record
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("dynamodb:DescribeTable"),
        "{record:?}"
    );
    assert_eq!(record.denied.len(), 1);
    assert_eq!(record.denied[0].action, "dynamodb:DescribeTable");
    assert!(
        t.fake.policies_of(&role).expect("role").same_as(&before),
        "rolled back to the snapshot"
    );
    assert!(
        t.fake.world().policies.is_empty(),
        "the trial boundary policy is deleted"
    );
    let needed = t
        .engine
        .state
        .tree::<NeededActions>()
        .expect("tree")
        .get(&role)
        .expect("read")
        .expect("recorded");
    assert!(needed.actions.contains_key("dynamodb:DescribeTable"));
    assert!(
        t.fake.world().posted.is_empty(),
        "no webhook is configured: the alert is a log line only"
    );
    // Untrialled: apply needs --force.
    assert_eq!(
        crate::plan::load_plan(&t.engine.state, &first.id)
            .expect("plan")
            .status,
        PlanStatus::Proposed
    );

    let second = plan(&t.engine).await;
    assert!(
        second.roles[0]
            .kept
            .iter()
            .any(|k| k.action == "dynamodb:DescribeTable"),
        "the next plan keeps what the trial found needed"
    );
    let records = crate::trial::run(&t.engine, &second.id, &[], &playbook(""))
        .await
        .expect("the trial runs");
    assert_eq!(records[0].status, TrialStatus::Passed, "{records:?}");
    assert!(t.fake.policies_of(&role).expect("role").same_as(&before));
    assert_eq!(
        crate::plan::load_plan(&t.engine.state, &second.id)
            .expect("plan")
            .status,
        PlanStatus::Trialled
    );
    let outcomes = crate::plan::apply(&t.engine, &second.id, &[], false)
        .await
        .expect("a trialled plan applies without --force");
    assert_eq!(outcomes[0].outcome, ApplyOutcome::Applied);
    assert_eq!(t.fake.exercise(), 0, "the applied plan serves the workload");
}

#[tokio::test]
async fn a_trial_outside_staging_is_refused_before_any_change() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = occasional_role(&t);
    mine(&t.engine).await;
    let plan = plan(&t.engine).await;
    let mut config = (*t.engine.config).clone();
    config.trial.staging_accounts = vec!["other".to_owned()];
    let engine = t.engine.with_config(config);
    let calls_before = t.fake.world().calls.len();
    let records = crate::trial::run(&engine, &plan.id, &[], &playbook(""))
        .await
        .expect("a verdict");
    assert_eq!(records[0].status, TrialStatus::Refused);
    assert!(
        records[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("not in [trial] staging_accounts"),
        "{records:?}"
    );
    let world = t.fake.world();
    assert!(
        world.calls[calls_before..]
            .iter()
            .all(|c| !c.contains("Put") && !c.contains("Create") && !c.contains("Delete")),
        "{:?}",
        &world.calls[calls_before..]
    );
    assert!(world.roles[&role].boundary.is_none());
}

#[tokio::test]
async fn an_error_metric_rise_rolls_back_a_trial_without_denials() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = occasional_role(&t);
    // The workload is denied nothing in this trial: only its error count rises.
    t.fake.world().workload.truncate(1);
    mine(&t.engine).await;
    let plan = plan(&t.engine).await;
    let at = t.fake.world().now.as_millis_i64();
    t.fake
        .world()
        .lambda_errors
        .insert("orders-fn".to_owned(), vec![(at + 10_000, 5.0)]);
    let records = crate::trial::run(
        &t.engine,
        &plan.id,
        &[],
        &playbook("[signals]\nerror_metric = { function = \"orders-fn\", max_increase = 1 }"),
    )
    .await
    .expect("a verdict");
    assert_eq!(records[0].status, TrialStatus::RolledBack, "{records:?}");
    assert!(
        records[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("5 errors of function orders-fn"),
        "{records:?}"
    );
    assert!(records[0].denied.is_empty());
    assert!(t.fake.policies_of(&role).expect("role").boundary.is_none());
}

#[tokio::test]
async fn a_trial_interrupted_after_the_apply_is_rolled_back_by_the_reconcile_pass() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = occasional_role(&t);
    mine(&t.engine).await;
    let before = t.fake.policies_of(&role).expect("role");
    let plan = plan(&t.engine).await;
    // The process dies right after the boundary is in place (the journal says `applied`,
    // no verdict), as a SIGKILL would leave it.
    t.fake.world().crash_at = Some("trial:applied".to_owned());
    let engine = t.engine.clone();
    let plan_id = plan.id.clone();
    let trial =
        tokio::spawn(async move { crate::trial::run(&engine, &plan_id, &[], &playbook("")).await });
    assert!(trial.await.is_err(), "the trial died");
    t.fake.world().crash_at = None;
    let (entry, _) = open_trials(&t.engine.state)
        .expect("journals")
        .next()
        .expect("the trial's journal is open");
    assert_eq!(entry.last_step(), Some("applied"));
    assert!(t.fake.policies_of(&role).expect("role").boundary.is_some());

    let summary = crate::reconcile::reconcile(&t.restarted())
        .await
        .expect("reconciled");
    assert_eq!(summary.recovered, 1);
    assert!(t.fake.policies_of(&role).expect("role").same_as(&before));
    assert!(
        t.engine
            .state
            .journal_unfinished()
            .expect("journals")
            .is_empty()
    );
    let records: Vec<_> = t
        .engine
        .state
        .tree::<crate::records::TrialRecord>()
        .expect("tree")
        .iter()
        .map(|r| r.expect("readable").1)
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, TrialStatus::RolledBack);
}
