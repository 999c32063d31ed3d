//! The planning benchmark:
//! `cargo bench -p whittle-planner --bench plan [-- --roles N] [--threads T] [--store]`.
//!
//! Plans N seeded roles (default 2,000) of the shapes in [`whittle_planner::benchgen`], with
//! the embedded IAM catalog, on T threads (default: every core), as `whittle plan` does
//! ([`plan_roles`]: each distinct document parsed and expanded once, roles planned in
//! parallel), and reports the time per shape, the slowest role of each shape, and all roles
//! planned together (the pure planning cost: reading policies from IAM is network-bound and
//! not measured here). Each proposal goes through the evaluator's safety check. With
//! `--store`, also the plan's stored form (`plan::stored`): its size and the time to write
//! and read it back. Prints a Markdown table for BENCHMARKS.md.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use whittle_planner::benchgen::{BenchRole, Shape, bench_roles};
use whittle_planner::catalog::Catalog;
use whittle_planner::plan::stored::StoredPlan;
use whittle_planner::plan::{
    Evidence, PLAN_SCHEMA, Plan, PlanCache, PlanStatus, RoleInput, RoleStatus, Settings,
    plan_roles, propose_cached,
};

fn number(args: &mut impl Iterator<Item = String>, flag: &str) -> usize {
    args.next()
        .and_then(|n| n.replace('_', "").parse().ok())
        .unwrap_or_else(|| {
            eprintln!("{flag} needs a number");
            std::process::exit(2)
        })
}

fn main() {
    let mut roles: usize = 2_000;
    let mut threads: usize = 0;
    let mut store = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--roles" => roles = number(&mut args, "--roles"),
            "--threads" => threads = number(&mut args, "--threads"),
            "--store" => store = true,
            _ => {}
        }
    }
    // `cargo bench` passes `--bench`; anything else unknown is ignored the same way.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("cannot start {threads} threads: {e}");
            std::process::exit(2)
        });
    pool.install(|| run(roles, store));
}

fn evidence(role: &BenchRole) -> Evidence<'_> {
    Evidence {
        usage: Some(&role.usage),
        ..Evidence::default()
    }
}

fn run(roles: usize, store: bool) {
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
    // Per shape, with a cache of its own (the first role of a shape pays for expanding its
    // document): the time of the shape's roles together and of its slowest role.
    let mut rows = Vec::new();
    for shape in Shape::ALL {
        let of_shape: Vec<_> = inputs.iter().filter(|r| r.shape == shape).collect();
        let cache = PlanCache::new(catalog);
        let start = Instant::now();
        let timed: Vec<(bool, Duration)> = of_shape
            .par_iter()
            .map(|role| {
                let t = Instant::now();
                let plan = propose_cached(&role.policies, &evidence(role), &settings, &cache);
                assert!(plan.error.is_none(), "{:?}", plan.error);
                (plan.status == RoleStatus::Changes, t.elapsed())
            })
            .collect();
        let seconds = start.elapsed().as_secs_f64();
        let changed = timed.iter().filter(|(c, _)| *c).count();
        let slowest = timed.iter().map(|(_, d)| *d).max().unwrap_or_default();
        rows.push((shape.label(), of_shape.len(), changed, seconds, slowest));
    }
    // All roles in one plan, as `whittle plan` makes it.
    let all: Vec<RoleInput<'_>> = inputs
        .iter()
        .map(|role| RoleInput {
            current: &role.policies,
            evidence: evidence(role),
        })
        .collect();
    let start = Instant::now();
    let plans = plan_roles(&all, &settings, catalog);
    let all_seconds = start.elapsed().as_secs_f64();
    let changed = plans
        .iter()
        .filter(|p| p.status == RoleStatus::Changes)
        .count();
    // The plan as the state stores it and reads it back (`whittle plan show`, `status`).
    let plan = Plan {
        schema: PLAN_SCHEMA,
        id: "plan-bench".to_owned(),
        created_at: "2026-12-03T00:00:00Z".to_owned(),
        catalog: catalog.version.to_string(),
        lookback_days: settings.lookback_days,
        status: PlanStatus::Proposed,
        accounts: Vec::new(),
        roles: plans,
    };
    let stored = store.then(|| {
        let start = Instant::now();
        let stored = serde_json::to_vec(&StoredPlan::from_plan(&plan)).expect("JSON");
        let store_ms = start.elapsed().as_secs_f64() * 1000.0;
        let start = Instant::now();
        let read = serde_json::from_slice::<StoredPlan>(&stored)
            .expect("parses")
            .into_plan()
            .expect("a plan");
        let load_ms = start.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(read.roles.len(), plan.roles.len());
        (stored.len(), store_ms, load_ms)
    });
    let fastest = rows
        .iter()
        .map(|(_, n, _, s, _)| s / *n as f64)
        .fold(f64::INFINITY, f64::min);
    println!("catalog parse (once per process): {catalog_ms:.0} ms");
    println!("threads: {}\n", rayon::current_num_threads());
    println!("| shape | roles | changed | total | per role | slowest role | vs fastest |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (label, count, changed, seconds, slowest) in &rows {
        let per = seconds / *count as f64;
        println!(
            "| {label} | {count} | {changed} | {seconds:.2} s | {:.3} ms | {:.1} ms | {:.1}x |",
            per * 1000.0,
            slowest.as_secs_f64() * 1000.0,
            per / fastest
        );
    }
    println!(
        "| all, one plan | {} | {changed} | {all_seconds:.2} s | {:.3} ms | | |",
        plan.roles.len(),
        all_seconds * 1000.0 / plan.roles.len().max(1) as f64
    );
    if let Some((bytes, store_ms, load_ms)) = stored {
        println!(
            "\nstored form: {:.1} MB, written in {store_ms:.0} ms, read back in {load_ms:.0} ms",
            bytes as f64 / 1e6
        );
    }
}
