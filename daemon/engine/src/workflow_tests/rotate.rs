//! Rotations on their timetable, their records, status, and the reconcile pass.

use std::time::Duration;

use crate::records::{RotationOutcome, RotationRecord};
use crate::rotate::ReportOutcome;
use crate::status::RotationState;
use crate::testing::{Secret, TestEngine};

const ROTATION: &str = r#"
[[rotation]]
name = "api-key"
account = "staging"
store = "secrets-manager"
secret = "app/api-key"
playbook = "playbooks/rotate-random.toml"
cron = "0 0 3 * * *"
"#;

const OLD: &str = r#"{"api_key":"old-value","user":"svc"}"#;

fn with_secret() -> TestEngine {
    let t = TestEngine::new(ROTATION);
    t.fake
        .world()
        .secrets
        .insert("app/api-key".to_owned(), Secret::with_value(OLD));
    t
}

fn current(t: &TestEngine) -> serde_json::Value {
    let world = t.fake.world();
    let (_, value) = world.secrets["app/api-key"]
        .version_with("AWSCURRENT")
        .expect("a current version");
    serde_json::from_str(value).expect("JSON")
}

#[tokio::test]
async fn a_due_rotation_rotates_records_it_and_is_not_due_again_until_its_time() {
    let t = with_secret();
    let reports = crate::rotate::run(&t.engine, &[], false, false)
        .await
        .expect("rotations run");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].outcome, ReportOutcome::Rotated, "{reports:?}");
    assert_eq!(reports[0].when, "never rotated by whittle");
    let now = current(&t);
    assert_ne!(now["api_key"], "old-value");
    assert_eq!(now["api_key"].as_str().map(str::len), Some(40));
    assert_eq!(
        now["user"], "svc",
        "the other fields of the JSON secret stay"
    );
    {
        let world = t.fake.world();
        let secret = &world.secrets["app/api-key"];
        assert_eq!(
            secret.version_with("AWSPREVIOUS").map(|(_, v)| v.as_str()),
            Some(OLD)
        );
        assert!(secret.version_with("AWSPENDING").is_none());
    }
    let record = t
        .engine
        .state
        .tree::<RotationRecord>()
        .expect("tree")
        .get(&"api-key".to_owned())
        .expect("read")
        .expect("recorded");
    assert_eq!(record.last_outcome, RotationOutcome::Rotated);
    assert_eq!(record.last_rotated_at, Some(t.engine.now()));
    let state_text = format!(
        "{:?}",
        t.engine.state.journal_unfinished().expect("journals")
    );
    assert!(!state_text.contains(now["api_key"].as_str().unwrap_or("?")));

    // Rotated at 10:00: not due until 03:00 the next day.
    let again = crate::rotate::run(&t.engine, &[], false, false)
        .await
        .expect("runs");
    assert_eq!(again[0].outcome, ReportOutcome::NotDue);
    assert!(
        again[0].when.starts_with("next due 2026-11-25T03:00:00Z"),
        "{again:?}"
    );
    let status = crate::status::build(&t.engine.config, &t.engine.state, None, t.engine.now())
        .expect("status");
    assert_eq!(status.rotations[0].state, RotationState::Idle);
    assert_eq!(
        status.rotations[0].next_due.as_deref(),
        Some("2026-11-25T03:00:00Z")
    );
    t.fake.advance(Duration::from_secs(18 * 3600));
    let due = crate::rotate::run(&t.engine, &[], false, true)
        .await
        .expect("a dry run");
    assert_eq!(due[0].outcome, ReportOutcome::WouldRotate, "{due:?}");
    assert!(!due[0].steps.is_empty());
}

#[tokio::test]
async fn a_foreign_pending_version_refuses_the_rotation_and_alerts() {
    let t = with_secret();
    let mut config = (*t.engine.config).clone();
    config.notify.webhook_url = Some("https://hooks.example/whittle".to_owned());
    let engine = t.engine.with_config(config);
    t.fake
        .world()
        .secrets
        .get_mut("app/api-key")
        .expect("secret")
        .versions
        .insert(
            "someone-else".to_owned(),
            ("x".to_owned(), vec!["AWSPENDING".to_owned()]),
        );
    let reports = crate::rotate::run(&engine, &[], true, false)
        .await
        .expect("runs");
    assert_eq!(reports[0].outcome, ReportOutcome::Refused);
    assert_eq!(current(&t)["api_key"], "old-value");
    let posted = t.fake.world().posted.clone();
    assert_eq!(posted.len(), 1);
    let alert: serde_json::Value = serde_json::from_slice(&posted[0].1).expect("JSON");
    assert_eq!(alert["kind"], "rotation-refused");
    assert_eq!(alert["subject"], "api-key");
    let status =
        crate::status::build(&engine.config, &engine.state, None, engine.now()).expect("status");
    assert_eq!(status.rotations[0].state, RotationState::Refused);
}

#[tokio::test]
async fn a_rotation_killed_after_promoting_is_finished_by_the_reconcile_pass_once() {
    let t = with_secret();
    t.fake.world().crash_at = Some("rotation:promoting".to_owned());
    let engine = t.engine.clone();
    let died =
        tokio::spawn(async move { crate::rotate::run(&engine, &[], true, false).await }).await;
    assert!(died.is_err(), "the rotation died at the crash point");
    t.fake.world().crash_at = None;
    let status = crate::status::build(&t.engine.config, &t.engine.state, None, t.engine.now())
        .expect("status");
    assert_eq!(status.rotations[0].state, RotationState::InProgress);
    assert_eq!(status.rotations[0].step.as_deref(), Some("promoting"));

    let summary = crate::reconcile::reconcile(&t.restarted())
        .await
        .expect("reconciled");
    assert_eq!(summary.recovered, 1);
    assert!(
        t.engine
            .state
            .journal_unfinished()
            .expect("journals")
            .is_empty()
    );
    let world = t.fake.world();
    let secret = &world.secrets["app/api-key"];
    assert_eq!(secret.versions.len(), 2, "exactly one new version");
    assert!(secret.version_with("AWSPENDING").is_none());
    assert_eq!(
        secret.version_with("AWSPREVIOUS").map(|(_, v)| v.as_str()),
        Some(OLD)
    );
}
