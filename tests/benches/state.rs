//! The state bench: `cargo bench -p whittle-tests --bench state [-- --roles N] [--whittle PATH]
//! [--runs N] [--keep DIR] [--no-digest]`.
//!
//! Builds a state directory as a large organization's looks (issue 17, item 3): N principals'
//! mined usage (10,000 by default) and one stored plan of the same N roles, from the seeded
//! roles of `whittle_planner::benchgen` (three shapes in equal numbers, spread over four
//! accounts), planned with the planner's `plan_roles` and stored through the engine's own
//! records (`StoredUsage` with its `UsageHead`, `StoredPlan`, `RoleInventory`) and the state's typed API. Then it
//! times the real `whittle` binary on it, each command `--runs` times (3), with its peak RSS
//! (GNU time's %M):
//! 1. with no daemon (the command opens the state itself): `whittle usage` (text and JSON:
//!    the summary) and `whittle usage --full` (every principal in full, text and JSON),
//!    `whittle status`, `whittle plan show ID` (text and `--format json`);
//! 2. with `whittle daemon` holding the state (against the emulator, which it checks its
//!    credentials with): `GET /healthz`, and the same commands, which the daemon answers;
//!    the daemon's peak RSS (VmHWM) after them.
//!
//! The whittle binary is built in release mode first (what users run); `--whittle PATH`
//! measures another build instead, e.g. `target/debug/whittle`. Prints a Markdown table for
//! BENCHMARKS.md. `--keep DIR` builds the state and configuration in DIR and leaves them there
//! (to profile a command on them). `--no-digest` stores the plan without its digest, as
//! whittle did before digests (`plan show` then summarises the whole plan): the "before" of
//! `plan show`'s figures on the same machine and state.

use std::path::{Path, PathBuf};
use std::time::Instant;

use whittle_engine::records::{RoleInventory, StoredPlan, StoredUsage, store_plan};
use whittle_planner::benchgen::{BenchRole, bench_roles, bench_settings};
use whittle_planner::catalog::Catalog;
use whittle_planner::plan::{AccountRead, PLAN_SCHEMA, Plan, PlanStatus, RoleInput, plan_roles};
use whittle_state::{LockOwner, State, Timestamp, WriteBatch};
use whittle_tests::bench::{
    cpu_model, fail, free_address, load_average, number, peak_rss_mb, release_whittle, rss_of,
    spawn_daemon, stop, wait_for_healthz, whittle_command,
};
use whittle_tests::{Emulator, http_request, repo_root};

/// The four accounts the roles are spread over: (configured name, id).
const ACCOUNTS: [(&str, &str); 4] = [
    ("prod-a", "210000000001"),
    ("prod-b", "210000000002"),
    ("prod-c", "210000000003"),
    ("prod-d", "210000000004"),
];
/// Principals written per transaction.
const BATCH: usize = 512;

struct Args {
    roles: usize,
    runs: usize,
    whittle: Option<PathBuf>,
    keep: Option<PathBuf>,
    no_digest: bool,
}

fn args() -> Args {
    let mut parsed = Args {
        roles: 10_000,
        runs: 3,
        whittle: None,
        keep: None,
        no_digest: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--roles" => parsed.roles = number(args.next(), "--roles"),
            "--runs" => parsed.runs = number::<usize>(args.next(), "--runs").max(1),
            "--whittle" => {
                parsed.whittle = Some(
                    args.next()
                        .unwrap_or_else(|| fail("--whittle needs a path"))
                        .into(),
                );
            }
            "--keep" => {
                parsed.keep = Some(
                    args.next()
                        .unwrap_or_else(|| fail("--keep needs a directory"))
                        .into(),
                );
            }
            "--no-digest" => parsed.no_digest = true,
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            other => fail(&format!(
                "unknown argument {other}; usage: state [--roles N] [--runs N] [--whittle PATH] [--keep DIR] [--no-digest]"
            )),
        }
    }
    parsed
}

/// One command's measurement: the fastest and slowest of its runs, its peak RSS (the largest
/// of the runs) and its output's size.
struct Measure {
    label: String,
    fastest: f64,
    slowest: f64,
    rss_mb: Option<f64>,
    bytes: usize,
}

fn main() {
    let args = args();
    let root = repo_root();
    let whittle = match &args.whittle {
        Some(path) => root.join(path),
        None => release_whittle(env!("CARGO")),
    };
    let temporary = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temporary dir: {e}")));
    let work = args
        .keep
        .clone()
        .unwrap_or_else(|| temporary.path().to_owned());
    let state_dir = work.join("state");
    let started = Instant::now();
    let plan_id = build_state(&state_dir, args.roles, !args.no_digest);
    eprintln!(
        "state with {} principals and plan {plan_id} built in {:.1} s ({:.1} MB on disk)",
        args.roles,
        started.elapsed().as_secs_f64(),
        dir_size(&state_dir) as f64 / 1e6
    );

    let emulator = Emulator::start(&[]);
    let listen = free_address();
    let config = work.join("whittle.toml");
    std::fs::write(&config, config_text(&emulator.url, &state_dir, &listen))
        .unwrap_or_else(|e| fail(&format!("config: {e}")));
    if args.keep.is_some() {
        eprintln!(
            "kept: {} (its emulator is gone: commands that need AWS fail)",
            config.display()
        );
        return;
    }
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("whittle usage", vec!["usage"]),
        (
            "whittle usage --format json",
            vec!["usage", "--format", "json"],
        ),
        // Every principal in full: what `whittle usage` printed before the summary.
        ("whittle usage --full", vec!["usage", "--full"]),
        (
            "whittle usage --full --format json",
            vec!["usage", "--full", "--format", "json"],
        ),
        ("whittle status", vec!["status"]),
        ("whittle plan show ID", vec!["plan", "show", &plan_id]),
        (
            "whittle plan show ID --format json",
            vec!["plan", "show", &plan_id, "--format", "json"],
        ),
    ];

    let mut alone = Vec::new();
    for (label, command) in &commands {
        alone.push(measure(&whittle, &config, label, command, args.runs));
    }

    let daemon_log = work.join("daemon.log");
    let mut daemon = spawn_daemon(&whittle, &config, &daemon_log);
    wait_for_healthz(&listen, &mut daemon, &daemon_log);
    let mut served = vec![measure_healthz(&listen, args.runs)];
    for (label, command) in &commands {
        served.push(measure(&whittle, &config, label, command, args.runs));
    }
    let daemon_peak = peak_rss_mb(daemon.id());
    stop(&mut daemon);

    let cpu = cpu_model();
    println!(
        "\n{} principals in the usage store, a {}-role plan stored{}; {}; {}; load average at the end {}",
        args.roles,
        args.roles,
        if args.no_digest {
            " without its digest"
        } else {
            ""
        },
        whittle.display(),
        cpu,
        load_average()
    );
    println!(
        "\n| command | where | fastest | slowest (of {}) | peak RSS | output |",
        args.runs
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (place, measures) in [("no daemon", &alone), ("daemon runs", &served)] {
        for m in measures.iter() {
            println!(
                "| `{}` | {place} | {:.3} s | {:.3} s | {} | {} |",
                m.label,
                m.fastest,
                m.slowest,
                m.rss_mb
                    .map_or_else(|| "?".to_owned(), |r| format!("{r:.0} MB")),
                human_bytes(m.bytes)
            );
        }
    }
    println!(
        "\nthe daemon's peak RSS (VmHWM) after serving them: {}",
        daemon_peak.map_or_else(|| "?".to_owned(), |r| format!("{r:.0} MB"))
    );
}

/// Writes `roles` principals' usage, the accounts' inventories and one plan of those roles
/// into a new state at `dir`; returns the plan's id.
fn build_state(dir: &Path, roles: usize, digest: bool) -> String {
    let catalog = Catalog::embedded();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let now = Timestamp::from_millis_i64(now_ms);
    let mut inputs = bench_roles(catalog, roles, now_ms, 42);
    for (i, role) in inputs.iter_mut().enumerate() {
        // Round-robin over the accounts, as an organization's roles are spread.
        let account = ACCOUNTS[i % ACCOUNTS.len()].1;
        role.policies.role_arn = role.policies.role_arn.replace("123456789012", account);
    }
    inputs.sort_by(|a, b| a.policies.role_arn.cmp(&b.policies.role_arn));
    let state = State::open(dir, &LockOwner::this_process())
        .unwrap_or_else(|e| fail(&format!("open {}: {e}", dir.display())));
    // As whittle's first fold does on a new state: the (empty) store has every head.
    whittle_engine::mine::build_heads(&state)
        .unwrap_or_else(|e| fail(&format!("usage heads: {e}")));
    for chunk in inputs.chunks(BATCH) {
        let mut batch = WriteBatch::new();
        for role in chunk {
            let record = StoredUsage {
                usage: role.usage.clone(),
                folded_through: None,
            };
            // The usage and its head, as the mining fold writes them.
            whittle_engine::mine::put_usage(&mut batch, &role.policies.role_arn, &record)
                .unwrap_or_else(|e| fail(&format!("usage record: {e}")));
        }
        state
            .commit(batch)
            .unwrap_or_else(|e| fail(&format!("commit: {e}")));
    }
    let inventories = state
        .tree::<RoleInventory>()
        .unwrap_or_else(|e| fail(&format!("inventory tree: {e}")));
    for (name, id) in ACCOUNTS {
        let inventory = RoleInventory {
            account: name.to_owned(),
            account_id: id.to_owned(),
            refreshed_at: now,
            targets: inputs
                .iter()
                .map(|r| r.policies.role_arn.clone())
                .filter(|arn| arn.contains(id))
                .collect(),
            protected: Vec::new(),
            not_selected: 0,
        };
        inventories
            .put(&name.to_owned(), &inventory)
            .unwrap_or_else(|e| fail(&format!("inventory: {e}")));
    }
    // The settings of the configuration below (the defaults but the observation window).
    let settings = bench_settings(now_ms);
    let role_inputs: Vec<RoleInput<'_>> = inputs.iter().map(BenchRole::input).collect();
    let read_at = whittle_planner::trail::format_time(now_ms);
    let mut planned = plan_roles(&role_inputs, &settings, catalog);
    for role in &mut planned {
        role.read_at = Some(read_at.clone());
    }
    let plan = Plan {
        schema: PLAN_SCHEMA,
        id: whittle_engine::time::new_id("plan", now),
        created_at: read_at.clone(),
        catalog: catalog.version.to_string(),
        lookback_days: settings.lookback_days,
        status: PlanStatus::Proposed,
        accounts: ACCOUNTS
            .iter()
            .map(|(name, _)| AccountRead {
                account: (*name).to_owned(),
                read_at: Some(read_at.clone()),
                error: None,
            })
            .collect(),
        roles: planned,
    };
    let id = plan.id.clone();
    if digest {
        store_plan(&state, plan).map(drop)
    } else {
        state
            .tree::<StoredPlan>()
            .and_then(|plans| plans.put(&id, &StoredPlan(plan)))
    }
    .unwrap_or_else(|e| fail(&format!("store the plan: {e}")));
    state
        .flush()
        .unwrap_or_else(|e| fail(&format!("flush: {e}")));
    id
}

fn config_text(endpoint: &str, state: &Path, listen: &str) -> String {
    let mut text =
        format!("[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nmax_attempts = 1\n");
    for (name, id) in ACCOUNTS {
        text.push_str(&format!(
            "[[aws.accounts]]\nname = \"{name}\"\nid = \"{id}\"\nrole_arn = \"arn:aws:iam::{id}:role/whittle-reader\"\n"
        ));
    }
    text.push_str(&format!(
        "[state]\ndir = \"{}\"\n[status]\nlisten = \"{listen}\"\n[targets]\narn_patterns = [\"arn:aws:iam::*:role/bench-*\"]\n[planner]\nmin_observation_days = 14\n",
        state.display()
    ));
    text
}

fn measure(whittle: &Path, config: &Path, label: &str, args: &[&str], runs: usize) -> Measure {
    let mut seconds = Vec::new();
    let mut rss: Option<f64> = None;
    let mut bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let output = whittle_command(whittle, config, args)
            .output()
            .unwrap_or_else(|e| fail(&format!("{label}: {e}")));
        seconds.push(started.elapsed().as_secs_f64());
        let stderr = String::from_utf8_lossy(&output.stderr);
        // `plan show` exits 2 when the plan changes roles.
        if !matches!(output.status.code(), Some(0 | 2)) {
            fail(&format!("{label}: {}\n{stderr}", output.status));
        }
        rss = match (rss, rss_of(&stderr)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        bytes = output.stdout.len();
    }
    eprintln!("{label}: {seconds:.3?}");
    Measure {
        label: label.to_owned(),
        fastest: seconds.iter().copied().fold(f64::INFINITY, f64::min),
        slowest: seconds.iter().copied().fold(0.0, f64::max),
        rss_mb: rss,
        bytes,
    }
}

fn measure_healthz(listen: &str, runs: usize) -> Measure {
    let mut seconds = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let (status, body) = http_request(listen, "GET", "/healthz", b"", "text/plain")
            .unwrap_or_else(|e| fail(&format!("/healthz: {e}")));
        seconds.push(started.elapsed().as_secs_f64());
        if status != 200 {
            fail(&format!(
                "/healthz answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        bytes = body.len();
    }
    eprintln!("GET /healthz: {seconds:.3?}");
    Measure {
        label: "GET /healthz".to_owned(),
        fastest: seconds.iter().copied().fold(f64::INFINITY, f64::min),
        slowest: seconds.iter().copied().fold(0.0, f64::max),
        rss_mb: None,
        bytes,
    }
}

fn dir_size(dir: &Path) -> u64 {
    whittle_tests::bench::list(dir)
        .iter()
        .map(|p| whittle_tests::bench::size(p))
        .sum()
}

fn human_bytes(bytes: usize) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else if bytes >= 1_000 {
        format!("{:.0} KB", bytes as f64 / 1e3)
    } else {
        format!("{bytes} B")
    }
}
