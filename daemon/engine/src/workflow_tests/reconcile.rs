//! The start-up reconcile pass.

use serde_json::json;
use whittle_state::Timestamp;

use super::{EVENTS_SOURCE, TABLE, allow, mine, plan};
use crate::records::{ChangeRecord, ChangeStatus, JobHistory, JobName, JobRun, RunOutcome};
use crate::testing::{Call, TestEngine};

#[tokio::test]
async fn an_unknown_journal_kind_stops_the_start_and_is_left_for_its_build() {
    let t = TestEngine::new("");
    t.engine
        .state
        .journal_begin("from-the-future", "secret/x", json!({}), Timestamp(1))
        .expect("begin");
    let error = crate::reconcile::reconcile(&t.engine)
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("kind `from-the-future`"),
        "{error}"
    );
    assert_eq!(
        t.engine.state.journal_unfinished().expect("journals").len(),
        1
    );
}

#[tokio::test]
async fn runs_left_running_by_a_dead_process_become_interrupted() {
    let t = TestEngine::new("");
    let history = JobHistory::new(&t.engine.state);
    history
        .record(&JobRun {
            job: JobName::Mine,
            started_at: Timestamp(1),
            ended_at: None,
            outcome: RunOutcome::Running,
            detail: String::new(),
        })
        .expect("recorded");
    let summary = crate::reconcile::reconcile(&t.engine).await.expect("ok");
    assert_eq!(summary.interrupted_runs, 1);
    let run = history.last(&JobName::Mine).expect("read").expect("a run");
    assert_eq!(run.outcome, RunOutcome::Interrupted);
    assert_eq!(run.ended_at, Some(t.engine.now()));
}

#[tokio::test]
async fn an_apply_killed_after_any_journal_step_is_undone_on_restart() {
    for point in ["apply:begin", "apply:put-inline", "apply:delete-inline"] {
        let t = TestEngine::new(EVENTS_SOURCE);
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
        t.fake.exercise();
        mine(&t.engine).await;
        let before = t.fake.policies_of(&role).expect("role");
        let plan = plan(&t.engine).await;
        t.fake.world().crash_at = Some(point.to_owned());
        let engine = t.engine.clone();
        let died =
            tokio::spawn(async move { crate::plan::apply(&engine, &plan.id, &[], true).await })
                .await;
        assert!(died.is_err(), "{point}: the apply died");
        t.fake.world().crash_at = None;
        assert_eq!(
            t.engine.state.journal_unfinished().expect("journals").len(),
            1
        );

        let summary = crate::reconcile::reconcile(&t.restarted())
            .await
            .expect("reconciled");
        assert_eq!(summary.recovered, 1, "{point}");
        assert!(
            t.fake.policies_of(&role).expect("role").same_as(&before),
            "{point}: the role is back at its snapshot"
        );
        let changes: Vec<ChangeRecord> = t
            .engine
            .state
            .tree::<ChangeRecord>()
            .expect("tree")
            .iter()
            .map(|c| c.expect("readable").1)
            .collect();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].status, ChangeStatus::RolledBack, "{point}");
        assert!(
            t.engine
                .state
                .journal_unfinished()
                .expect("journals")
                .is_empty()
        );
    }
}
