//! The planning benchmark: `cargo bench -p whittle-tests --bench plan [-- --roles N]`.
//!
//! Plans N seeded roles (default 2,000) of three shapes seen in real accounts, with the
//! embedded IAM catalog, and reports the time per role and in all (the pure planning cost:
//! reading policies from IAM is network-bound and not measured here):
//! - `service wildcards`: `s3:*`, `dynamodb:*`, `sqs:*` plus a Deny, 10 actions used;
//! - `admin`: `Action: "*"`, 30 actions used across services;
//! - `read-only managed`: an AWS-managed policy shaped like ReadOnlyAccess (`svc:Describe*`,
//!   `svc:Get*`, `svc:List*` for every service, ~1,200 patterns), 20 actions used.
//!
//! Each proposal goes through the evaluator's safety check, as in `whittle plan`. Prints a
//! Markdown table for BENCHMARKS.md.

use std::time::Instant;

use whittle_planner::catalog::Catalog;
use whittle_planner::plan::{
    Evidence, InlinePolicy, ManagedPolicy, RolePolicies, RoleStatus, Settings, propose,
};
use whittle_planner::trail::PrincipalKind;
use whittle_planner::usage::{ActionUsage, PrincipalUsage};

const DAY_MS: i64 = 86_400_000;

fn main() {
    let mut roles: usize = 2_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--roles" {
            roles = args
                .next()
                .and_then(|n| n.replace('_', "").parse().ok())
                .unwrap_or_else(|| {
                    eprintln!("--roles needs a number");
                    std::process::exit(2)
                });
        }
    }
    let started = Instant::now();
    let catalog = Catalog::embedded();
    let catalog_ms = started.elapsed().as_secs_f64() * 1000.0;
    let now = chrono::Utc::now().timestamp_millis();
    let settings = Settings {
        lookback_days: 90,
        min_observation_days: 14,
        scope_resources: false,
        keep: vec!["ssm:GetParameter*".to_owned()],
        keep_unobservable: true,
        now_ms: now,
    };
    let all: Vec<&str> = catalog.actions().iter().map(|a| a.name.as_str()).collect();
    let mut rng = 42_u64;
    let mut next = move || {
        // xorshift64*: seeded, reproducible.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let services: std::collections::BTreeSet<&str> =
        all.iter().filter_map(|a| a.split(':').next()).collect();
    let read_only = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Resource": "*",
        "Action": services.iter().flat_map(|s| ["Describe*", "Get*", "List*"].map(|v| format!("{s}:{v}"))).collect::<Vec<_>>(),
    }]})
    .to_string();
    let shapes: [(&str, &str, bool, Vec<&str>); 3] = [
        (
            "service wildcards",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","dynamodb:*","sqs:*"],"Resource":"*"},{"Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]}"#,
            false,
            all.iter()
                .copied()
                .filter(|a| {
                    a.starts_with("s3:") || a.starts_with("dynamodb:") || a.starts_with("sqs:")
                })
                .collect(),
        ),
        (
            "admin",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            false,
            all.clone(),
        ),
        (
            "read-only managed",
            &read_only,
            true,
            all.iter()
                .copied()
                .filter(|a| {
                    let name = a.split(':').nth(1).unwrap_or_default();
                    name.starts_with("Describe")
                        || name.starts_with("Get")
                        || name.starts_with("List")
                })
                .collect(),
        ),
    ];
    let used_per_shape = [10, 30, 20];
    let mut rows = Vec::new();
    for ((label, document, managed, pool), used) in shapes.iter().zip(used_per_shape) {
        let count = roles / shapes.len();
        let inputs: Vec<(RolePolicies, PrincipalUsage)> = (0..count)
            .map(|i| {
                let arn =
                    format!("arn:aws:iam::123456789012:role/bench-{label}-{i}").replace(' ', "-");
                let mut usage = PrincipalUsage::new(PrincipalKind::Role);
                for _ in 0..used {
                    let action = pool[(next() % pool.len() as u64) as usize];
                    let t = now - ((next() % 80) as i64 + 15) * DAY_MS;
                    let mut u = ActionUsage::default();
                    u.counts.add(t, t, 1 + next() % 100);
                    u.sample_event_id = Some(format!("{:016x}", next()));
                    usage.actions.insert(action.to_owned(), u);
                }
                let policies = RolePolicies {
                    role_arn: arn.clone(),
                    role_name: arn.rsplit('/').next().unwrap_or_default().to_owned(),
                    inline: if *managed {
                        Vec::new()
                    } else {
                        vec![InlinePolicy {
                            name: "app".to_owned(),
                            document: (*document).to_owned(),
                        }]
                    },
                    managed: if *managed {
                        vec![ManagedPolicy {
                            arn: "arn:aws:iam::aws:policy/ReadOnlyAccess".to_owned(),
                            name: "ReadOnlyAccess".to_owned(),
                            aws_managed: true,
                            version: "v1".to_owned(),
                            document: (*document).to_owned(),
                        }]
                    } else {
                        Vec::new()
                    },
                    boundary: None,
                };
                (policies, usage)
            })
            .collect();
        let start = Instant::now();
        let mut changed = 0;
        for (policies, usage) in &inputs {
            let plan = propose(
                policies,
                &Evidence {
                    usage: Some(usage),
                    ..Evidence::default()
                },
                &settings,
                catalog,
            );
            assert!(plan.error.is_none(), "{:?}", plan.error);
            changed += usize::from(plan.status == RoleStatus::Changes);
        }
        let seconds = start.elapsed().as_secs_f64();
        rows.push((label.to_string(), count, changed, seconds));
    }
    let fastest = rows
        .iter()
        .map(|(_, n, _, s)| s / *n as f64)
        .fold(f64::INFINITY, f64::min);
    println!("catalog parse (once per process): {catalog_ms:.0} ms\n");
    println!("| shape | roles | changed | total | per role | vs fastest |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut total = 0.0;
    for (label, count, changed, seconds) in &rows {
        total += seconds;
        let per = seconds / *count as f64;
        println!(
            "| {label} | {count} | {changed} | {seconds:.2} s | {:.1} ms | {:.1}x |",
            per * 1000.0,
            per / fastest
        );
    }
    println!(
        "| all | {} | | {total:.2} s | {:.1} ms | |",
        rows.iter().map(|r| r.1).sum::<usize>(),
        total * 1000.0 / rows.iter().map(|r| r.1).sum::<usize>() as f64
    );
}
