//! The planning benchmark: `cargo bench -p whittle-planner --bench plan [-- --roles N]`.
//!
//! Plans N seeded roles (default 2,000) of the shapes in [`whittle_planner::benchgen`], with
//! the embedded IAM catalog, and reports the time per role and in all (the pure planning
//! cost: reading policies from IAM is network-bound and not measured here). Each proposal
//! goes through the evaluator's safety check, as in `whittle plan`. Prints a Markdown table
//! for BENCHMARKS.md.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use whittle_planner::benchgen::{Shape, bench_roles};
use whittle_planner::catalog::Catalog;
use whittle_planner::plan::{Evidence, RoleStatus, Settings, propose};

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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let settings = Settings {
        lookback_days: 90,
        min_observation_days: 14,
        scope_resources: false,
        keep: vec!["ssm:GetParameter*".to_owned()],
        keep_unobservable: true,
        now_ms: now,
    };
    let inputs = bench_roles(catalog, roles, now, 42);
    let mut rows = Vec::new();
    for shape in Shape::ALL {
        let of_shape: Vec<_> = inputs.iter().filter(|r| r.shape == shape).collect();
        let start = Instant::now();
        let mut changed = 0;
        for role in &of_shape {
            let plan = propose(
                &role.policies,
                &Evidence {
                    usage: Some(&role.usage),
                    ..Evidence::default()
                },
                &settings,
                catalog,
            );
            assert!(plan.error.is_none(), "{:?}", plan.error);
            changed += usize::from(plan.status == RoleStatus::Changes);
        }
        let seconds = start.elapsed().as_secs_f64();
        rows.push((shape.label(), of_shape.len(), changed, seconds));
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
    let count: usize = rows.iter().map(|r| r.1).sum();
    println!(
        "| all | {count} | | {total:.2} s | {:.1} ms | |",
        total * 1000.0 / count as f64
    );
}
