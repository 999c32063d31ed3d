//! The engine's workflows end to end, in process, against the in-memory ports of
//! `crate::testing`: what a user relies on from `plan`, `apply`, `rollback`, `trial`,
//! `rotate`, the reconcile pass and `status`, with a clock the tests move.

mod accounts;
mod apply;
mod athena;
mod functions;
mod reconcile;
mod rotate;
mod split;
mod trial;
mod usage;

use tokio_util::sync::CancellationToken;
use whittle_planner::plan::Plan;

use crate::Engine;
use crate::testing::Fake;

/// A lookup-events mining source over the fake account.
pub const EVENTS_SOURCE: &str = r#"
[[mining.sources]]
name = "events"
kind = "lookup-events"
account = "staging"
"#;

/// An inline policy allowing `actions` on everything.
pub fn allow(actions: &[&str]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]
    })
    .to_string()
}

pub const TABLE: &str = "arn:aws:dynamodb:us-east-1:111111111111:table/orders";

/// Mines the fake account's events into the usage store, a minute after they happened.
pub async fn mine(engine: &Engine<Fake>) {
    engine.ports.advance(std::time::Duration::from_secs(60));
    let report = crate::mine::mine(
        engine,
        &crate::mine::MineRequest::default(),
        &CancellationToken::new(),
    )
    .await
    .expect("mining runs");
    assert!(!report.nothing_read(), "{report:?}");
}

pub async fn plan(engine: &Engine<Fake>) -> Plan {
    crate::plan::make_plan(engine, &[]).await.expect("a plan")
}
