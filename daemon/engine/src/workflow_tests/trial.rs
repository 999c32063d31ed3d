//! Trials: apply in staging, exercise, watch, roll back on a denial, keep what was needed.

use whittle_planner::plan::PlanStatus;
use whittle_playbooks::trial::TrialPlaybook;

use super::{EVENTS_SOURCE, TABLE, allow, mine, plan};
use crate::plan::ApplyOutcome;
use crate::records::{NeededActions, Signal, TrialRecord, TrialStatus, open_trials};
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
    assert_eq!(plan_status(&t, &first.id), PlanStatus::Proposed);

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
    assert_eq!(plan_status(&t, &second.id), PlanStatus::Trialled);
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
            .contains("5 errors of function orders-fn since the apply, against 0 before it"),
        "{records:?}"
    );
    assert_eq!(
        records[0].signal,
        Some(Signal::ErrorMetric {
            function: "orders-fn".to_owned(),
            before: 0.0,
            after: 5.0,
            max_increase: 1.0
        })
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

/// The workload from now on: only the table reads every plan keeps.
fn reads_only(t: &TestEngine, role: &str) {
    t.fake.world().workload = vec![Call {
        role_arn: role.to_owned(),
        action: "dynamodb:GetItem".to_owned(),
        resource: TABLE.to_owned(),
    }];
}

fn plan_status(t: &TestEngine, id: &str) -> PlanStatus {
    crate::plan::load_plan(&t.engine.state, id)
        .expect("plan")
        .status
}

/// A trial playbook for the timing tests: a 15-second window looked at every second.
fn timed_playbook(extra: &str, exercise: bool) -> TrialPlaybook {
    let text = format!(
        "kind = \"trial\"\nwindow = \"15s\"\ndetection_interval = \"1s\"\ndead_man = \"1h\"\n{extra}\n{}",
        if exercise {
            "[exercise]\ncommand = [\"exercise\"]\ntimeout = \"1m\"\n"
        } else {
            ""
        }
    );
    whittle_playbooks::trial::parse("test playbook", &text).expect("a trial playbook")
}

/// The live traffic of `role`: `action` on the table at `after` from now.
fn call_later(t: &TestEngine, role: &str, action: &str, after: std::time::Duration) {
    let mut world = t.fake.world();
    let at = world.now.plus(after);
    world.scheduled.push((
        at,
        Call {
            role_arn: role.to_owned(),
            action: action.to_owned(),
            resource: TABLE.to_owned(),
        },
    ));
}

#[tokio::test]
async fn a_denial_in_the_last_second_of_the_window_made_visible_after_it_rolls_back() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = occasional_role(&t);
    mine(&t.engine).await;
    let before = t.fake.policies_of(&role).expect("role");
    let plan = plan(&t.engine).await;
    // CloudTrail shows an event 10 s after the call; the workload calls the dropped action
    // only 14.9 s into the 15 s window, so its denial becomes visible 10 s after the window.
    t.fake.world().lookup_lag = std::time::Duration::from_secs(10);
    reads_only(&t, &role);
    call_later(
        &t,
        &role,
        "dynamodb:DescribeTable",
        std::time::Duration::from_millis(14_900),
    );
    let records = crate::trial::run(&t.engine, &plan.id, &[], &timed_playbook("", true))
        .await
        .expect("a verdict");
    let record = &records[0];
    assert_eq!(record.status, TrialStatus::RolledBack, "{record:?}");
    assert_eq!(record.signal, Some(Signal::Denial { count: 1 }));
    assert_eq!(record.denied[0].action, "dynamodb:DescribeTable");
    assert!(t.fake.policies_of(&role).expect("role").same_as(&before));
    assert_eq!(plan_status(&t, &plan.id), PlanStatus::Proposed);
}

#[tokio::test]
async fn a_role_never_called_during_the_window_is_inconclusive_and_not_trialled() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = occasional_role(&t);
    mine(&t.engine).await;
    let before = t.fake.policies_of(&role).expect("role");
    let plan = plan(&t.engine).await;
    let records = crate::trial::run(&t.engine, &plan.id, &[], &timed_playbook("", false))
        .await
        .expect("a verdict");
    let record = &records[0];
    assert_eq!(record.status, TrialStatus::Inconclusive, "{record:?}");
    assert!(
        record
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("the role was not used"),
        "{record:?}"
    );
    assert!(t.fake.policies_of(&role).expect("role").same_as(&before));
    assert_eq!(plan_status(&t, &plan.id), PlanStatus::Proposed);

    // A playbook may ask for more calls of the role than an exercise that ran.
    reads_only(&t, &role);
    let records = crate::trial::run(
        &t.engine,
        &plan.id,
        &[],
        &timed_playbook("[signals]\nmin_role_calls = 5", true),
    )
    .await
    .expect("a verdict");
    assert_eq!(records[0].status, TrialStatus::Inconclusive, "{records:?}");
    assert_eq!(records[0].evidence.as_ref().map(|e| e.role_calls), Some(1));
}

/// CloudTrail's event times are to the second. A call of the role in the second of the apply
/// may have come before it: no evidence that the role works under the trial's policy.
#[tokio::test]
async fn a_call_in_the_second_of_the_apply_but_before_it_is_no_evidence_of_use() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = occasional_role(&t);
    mine(&t.engine).await;
    let plan = plan(&t.engine).await;
    {
        let mut world = t.fake.world();
        // 0.2 s into a second the role calls; the trial applies 0.5 s later, in that second.
        world.now = whittle_state::Timestamp(world.now.0 / 1000 * 1000 + 1200);
        crate::testing::record_session_event(
            &mut world,
            &role,
            "fn",
            "dynamodb:GetItem",
            TABLE,
            false,
        );
        world.now = whittle_state::Timestamp(world.now.0 + 500);
    }
    let records = crate::trial::run(&t.engine, &plan.id, &[], &timed_playbook("", false))
        .await
        .expect("a verdict");
    assert_eq!(records[0].status, TrialStatus::Inconclusive, "{records:?}");
    assert_eq!(records[0].evidence.as_ref().map(|e| e.role_calls), Some(0));
}

#[tokio::test]
async fn a_passing_trial_settles_until_cloudtrail_shows_the_window_then_passes() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = occasional_role(&t);
    mine(&t.engine).await;
    // The role's only calls are ones the plan keeps: the plan is right for this workload.
    reads_only(&t, &role);
    let plan = plan(&t.engine).await;
    t.fake.world().lookup_lag = std::time::Duration::from_secs(10);
    let started = t.fake.world().now;
    let records = crate::trial::run(&t.engine, &plan.id, &[], &timed_playbook("", true))
        .await
        .expect("a verdict");
    let record = &records[0];
    assert_eq!(record.status, TrialStatus::Passed, "{record:?}");
    let evidence = record.evidence.as_ref().expect("evidence");
    assert!(evidence.complete && evidence.exercised, "{evidence:?}");
    // Not at the window's end (15 s) but once an event after it was visible (10 s later).
    let ended = record.ended_at.expect("ended");
    assert!(
        ended.0 >= started.0 + 25_000,
        "ended {} ms after the start",
        ended.0 - started.0
    );
    assert!(t.fake.world().steps.iter().any(|s| s == "trial:settling"));
    assert_eq!(plan_status(&t, &plan.id), PlanStatus::Trialled);
}

#[tokio::test]
async fn evidence_still_incomplete_after_max_settle_passes_only_if_the_playbook_allows() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = occasional_role(&t);
    mine(&t.engine).await;
    reads_only(&t, &role);
    let plan = plan(&t.engine).await;
    // CloudTrail is an hour behind: nothing after the window shows within a minute.
    t.fake.world().lookup_lag = std::time::Duration::from_secs(3600);
    let records = crate::trial::run(
        &t.engine,
        &plan.id,
        &[],
        &timed_playbook("max_settle = \"1m\"", true),
    )
    .await
    .expect("a verdict");
    assert_eq!(
        records[0].status,
        TrialStatus::PassedWithoutCompleteEvidence,
        "{records:?}"
    );
    assert!(t.fake.policies_of(&role).expect("role").boundary.is_none());
    assert_eq!(plan_status(&t, &plan.id), PlanStatus::Proposed);
    let records = crate::trial::run(
        &t.engine,
        &plan.id,
        &[],
        &timed_playbook(
            "max_settle = \"1m\"\npass_without_complete_evidence = true",
            true,
        ),
    )
    .await
    .expect("a verdict");
    assert_eq!(records[0].status, TrialStatus::Passed, "{records:?}");
    assert!(
        records[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("without complete evidence")
    );
}

#[tokio::test]
async fn a_trial_killed_while_settling_resumes_or_rolls_back_as_its_playbook_says() {
    for (on_restart, expected) in [
        ("resume", TrialStatus::Passed),
        ("rollback", TrialStatus::RolledBack),
    ] {
        let t = TestEngine::new(EVENTS_SOURCE);
        let role = occasional_role(&t);
        mine(&t.engine).await;
        reads_only(&t, &role);
        let before = t.fake.policies_of(&role).expect("role");
        let plan = plan(&t.engine).await;
        t.fake.world().lookup_lag = std::time::Duration::from_secs(10);
        t.fake.world().crash_at = Some("trial:settling".to_owned());
        let engine = t.engine.clone();
        let plan_id = plan.id.clone();
        let playbook = timed_playbook(&format!("on_restart = \"{on_restart}\""), true);
        let trial =
            tokio::spawn(async move { crate::trial::run(&engine, &plan_id, &[], &playbook).await });
        assert!(trial.await.is_err(), "the trial died while settling");
        t.fake.world().crash_at = None;
        // `whittle status` shows it settling, and until when.
        let report = crate::status::build(&t.engine.config, &t.engine.state, None, t.engine.now())
            .expect("status");
        assert_eq!(
            report.trials[0].status,
            TrialStatus::Settling,
            "{on_restart}"
        );
        assert!(report.trials[0].settle_until.is_some(), "{on_restart}");

        crate::reconcile::reconcile(&t.restarted())
            .await
            .expect("reconciled");
        let records: Vec<TrialRecord> = t
            .engine
            .state
            .tree::<TrialRecord>()
            .expect("tree")
            .iter()
            .map(|item| item.expect("record").1)
            .collect();
        assert_eq!(records[0].status, expected, "{on_restart}: {records:?}");
        assert!(
            t.fake.policies_of(&role).expect("role").same_as(&before),
            "{on_restart}: the boundary is gone either way"
        );
    }
}

#[tokio::test]
async fn a_denial_naming_a_non_action_records_the_events_action_as_needed() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let role = occasional_role(&t);
    mine(&t.engine).await;
    let plan = plan(&t.engine).await;
    t.fake.world().workload = Vec::new();
    // As the emulator's S3 once said of a denied GetBucketTagging: an API name, not an action.
    let record = |t: &TestEngine| {
        let world = t.fake.world();
        serde_json::json!({
            "eventVersion": "1.08",
            "eventTime": crate::time::format(world.now.plus(std::time::Duration::from_secs(2))),
            "eventSource": "s3.amazonaws.com",
            "eventName": "GetBucketTagging",
            "awsRegion": "us-east-1",
            "eventID": "tagging-denied",
            "errorCode": "AccessDenied",
            "errorMessage": "User: arn:aws:sts::111111111111:assumed-role/orders/fn is not authorized to perform: s3:ListObjects",
            "userIdentity": {
                "type": "AssumedRole",
                "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role}},
            },
        })
    };
    let event = record(&t);
    let at = t.fake.world().now.as_millis_i64() + 2000;
    t.fake.world().events.push((at, event.to_string()));
    let records = crate::trial::run(&t.engine, &plan.id, &[], &timed_playbook("", false))
        .await
        .expect("a verdict");
    let record = &records[0];
    assert_eq!(record.status, TrialStatus::RolledBack, "{record:?}");
    assert_eq!(record.denied.len(), 1, "{record:?}");
    assert_eq!(record.denied[0].action, "s3:GetBucketTagging");
    assert!(
        record.denied[0]
            .note
            .as_deref()
            .unwrap_or("")
            .contains("s3:ListObjects"),
        "{record:?}"
    );
    let needed = t
        .engine
        .state
        .tree::<NeededActions>()
        .expect("tree")
        .get(&role)
        .expect("read")
        .expect("recorded");
    assert_eq!(
        needed.actions.keys().collect::<Vec<_>>(),
        ["s3:GetBucketTagging"]
    );
}
