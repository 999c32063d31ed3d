//! `whittle usage` over many principals: above `usage::SUMMARISE_ABOVE` it is a summary read
//! from the principals' heads, which must say what the full report says; `--role` and
//! `--full` give the detail; a state written before heads existed gets them on first need,
//! also after a crash half-way through building them; heads leave with their usage.

use std::time::Duration;

use super::{EVENTS_SOURCE, mine};
use crate::commands::UsageQuery;
use crate::records::{StoredUsage, UsageHead, UsageHeadsBuilt};
use crate::testing::{ACCOUNT_ID, TestEngine, record_session_event};
use crate::usage::{PrincipalSummary, SUMMARISE_ABOVE, UsageView};
use whittle_planner::usage::UsageReport;

fn role(i: usize) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/app-{i:03}")
}

/// A CloudTrail event of `role_arn` now: `action` allowed, denied (with an AccessDenied
/// error) or, for a service outside the catalog, unmapped.
fn event(t: &TestEngine, role_arn: &str, session: &str, action: &str, denied: bool) {
    record_session_event(&mut t.fake.world(), role_arn, session, action, "", denied);
}

/// `n` principals, each with its own mix of used, denied and unmapped calls and sessions.
fn traffic(t: &TestEngine, n: usize) {
    const ACTIONS: [&str; 4] = [
        "s3:GetObject",
        "dynamodb:GetItem",
        "sqs:SendMessage",
        "kms:Decrypt",
    ];
    for i in 0..n {
        for action in &ACTIONS[..=i % ACTIONS.len()] {
            event(t, &role(i), &format!("worker-{}", i % 3), action, false);
        }
        if i % 5 == 0 {
            event(t, &role(i), "worker-0", "dynamodb:PutItem", true);
        }
        if i % 7 == 0 {
            event(t, &role(i), "worker-1", "example:FrobnicateThing", false);
        }
    }
}

fn query(since_ms: i64) -> UsageQuery {
    UsageQuery {
        roles: Vec::new(),
        since_ms,
        full: false,
        unmapped: false,
    }
}

fn view(t: &TestEngine, query: &UsageQuery) -> UsageView {
    crate::usage::view(&t.engine, query).expect("usage")
}

/// What each principal's summary must say: the full report's lists, counted.
fn counted(report: &UsageReport) -> Vec<PrincipalSummary> {
    report
        .roles
        .iter()
        .map(|r| PrincipalSummary {
            arn: r.arn.clone(),
            kind: r.kind,
            sessions: r.sessions.len(),
            functions: 0,
            actions: r.actions.len(),
            denied: r.denied.len(),
            unmapped: r.unmapped.len(),
            first_seen: r.first_seen.clone().expect("first seen"),
            last_seen: r.last_seen.clone().expect("last seen"),
        })
        .collect()
}

fn summary_of(view: UsageView) -> Vec<PrincipalSummary> {
    match view {
        UsageView::Summary(summary) => {
            assert!(summary.summary);
            assert!(summary.detail.contains("--full"), "{}", summary.detail);
            summary.principal_summaries
        }
        UsageView::Report(report) => panic!("a report of {} roles", report.roles.len()),
    }
}

fn report_of(view: UsageView) -> UsageReport {
    match view {
        UsageView::Report(report) => report,
        UsageView::Summary(summary) => panic!(
            "a summary of {} principals",
            summary.principal_summaries.len()
        ),
    }
}

#[tokio::test]
async fn usage_of_many_principals_is_a_summary_that_counts_what_the_report_lists() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let n = SUMMARISE_ABOVE + 1;
    traffic(&t, n);
    mine(&t.engine).await;

    let full = crate::usage::build(&t.engine, &[], 0).expect("the full report");
    assert_eq!(full.roles.len(), n);
    let summary = summary_of(view(&t, &query(0)));
    assert_eq!(summary, counted(&full));
    // The traffic's mix shows in the counts (so the comparison above compares something).
    assert_eq!(summary[3].actions, 4);
    assert_eq!((summary[5].denied, summary[7].unmapped), (1, 1));
    assert_eq!((summary[1].denied, summary[1].unmapped), (0, 0));

    // Later use by a few principals: `--since` counts only it, as the report does, and
    // starts their span at `--since`.
    t.fake.advance(Duration::from_secs(2 * 86_400));
    let since = t.fake.world().now.as_millis_i64() - 1000;
    for i in 0..3 {
        event(&t, &role(i), "late", "sns:Publish", false);
    }
    event(&t, &role(0), "late", "sns:Subscribe", true);
    mine(&t.engine).await;
    let since_report = crate::usage::build(&t.engine, &[], since).expect("report since");
    assert_eq!(since_report.roles.len(), 3);
    let since_summary = crate::usage::summarise(&t.engine, since).expect("summary since");
    assert_eq!(since_summary.principal_summaries, counted(&since_report));
    assert_eq!(
        (
            since_summary.principal_summaries[0].actions,
            since_summary.principal_summaries[0].denied
        ),
        (1, 1)
    );
    // Three principals are few enough to show in full, as the same report.
    let few = report_of(view(&t, &query(since)));
    assert_eq!(counted(&few), counted(&since_report));

    // Over the threshold again, with the newest use counted in.
    let summary = summary_of(view(&t, &query(0)));
    assert_eq!(
        summary,
        counted(&crate::usage::build(&t.engine, &[], 0).expect("full"))
    );
    assert_eq!(summary[0].actions, 2);

    // `--role` and `--full` show principals in full, however many.
    let one = report_of(view(
        &t,
        &UsageQuery {
            roles: vec![role(4)],
            ..query(0)
        },
    ));
    assert_eq!(one.roles.len(), 1);
    assert_eq!(one.roles[0].actions.len(), 1);
    let all = report_of(view(
        &t,
        &UsageQuery {
            full: true,
            ..query(0)
        },
    ));
    // (Besides the app roles, whittle's own role read the trail by then.)
    assert_eq!(counted(&all), summary);
    // `--unmapped` needs only the principals with unmapped calls, in full.
    let unmapped = report_of(view(
        &t,
        &UsageQuery {
            unmapped: true,
            ..query(0)
        },
    ));
    let with_unmapped: Vec<String> = (0..n).filter(|i| i % 7 == 0).map(role).collect();
    let arns: Vec<String> = unmapped.roles.iter().map(|r| r.arn.clone()).collect();
    assert_eq!(arns, with_unmapped);
    assert_eq!(
        crate::usage::unmapped(&unmapped)[0].principals,
        with_unmapped.len()
    );
}

#[tokio::test]
async fn a_state_without_heads_gets_them_on_first_need_even_after_a_crash_while_building() {
    let t = TestEngine::new(EVENTS_SOURCE);
    let n = SUMMARISE_ABOVE + 5;
    traffic(&t, n);
    mine(&t.engine).await;
    let full = crate::usage::build(&t.engine, &[], 0).expect("the full report");
    let state = &t.engine.state;
    let heads = state.tree::<UsageHead>().expect("heads");
    let usage = state.tree::<StoredUsage>().expect("usage");
    assert_eq!(heads.len(), usage.len());

    // As an older whittle left it (usage only), then a newer one that crashed while building
    // the heads: some written, the marker not.
    state
        .tree::<UsageHeadsBuilt>()
        .expect("marker")
        .remove(&"heads".to_owned())
        .expect("remove the marker");
    for (i, arn) in usage.keys().enumerate() {
        let arn = arn.expect("key");
        if i % 2 == 0 {
            heads.remove(&arn).expect("remove a head");
        }
    }
    assert!(heads.len() < usage.len());

    let summary = summary_of(view(&t, &query(0)));
    assert_eq!(summary, counted(&full));
    assert_eq!(heads.len(), n);
    assert!(
        state
            .tree::<UsageHeadsBuilt>()
            .expect("marker")
            .get(&"heads".to_owned())
            .expect("read")
            .is_some()
    );
}

#[tokio::test]
async fn heads_age_out_with_their_usage() {
    let t = TestEngine::new(EVENTS_SOURCE);
    traffic(&t, 3);
    mine(&t.engine).await;
    let heads = t.engine.state.tree::<UsageHead>().expect("heads");
    assert_eq!(heads.len(), 3);

    // Past the look-back window, with new use by one principal: the others age out whole.
    let lookback = u64::from(t.engine.config.mining.lookback_days);
    t.fake.advance(Duration::from_secs((lookback + 2) * 86_400));
    event(&t, &role(1), "worker-1", "s3:PutObject", false);
    mine(&t.engine).await;
    let keys: Vec<String> = heads.keys().collect::<Result<_, _>>().expect("keys");
    assert_eq!(keys, vec![role(1)]);
    let report = report_of(view(&t, &query(0)));
    assert_eq!(report.roles.len(), 1);
    assert_eq!(report.roles[0].actions.len(), 1);
    let summary = crate::usage::summarise(&t.engine, 0).expect("summary");
    assert_eq!(summary.principal_summaries, counted(&report));
}
