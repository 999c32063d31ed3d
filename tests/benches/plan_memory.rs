//! The planning-memory bench: `cargo bench -p whittle-tests --bench plan_memory [-- --roles N]
//! [--whittle PATH] [--runs N]`.
//!
//! What a user meets when the daemon plans an organization (issue 17, item 3: "the daemon's
//! memory while planning 10,000 roles stays under 300 MB"). The daemon has no scheduled plan
//! job: `whittle plan` run while `whittle daemon` holds the state is handed to the daemon,
//! which runs the same `make_plan` as the command alone and answers with the rendered plan.
//! So the bench:
//! 1. starts the emulator and seeds N roles (10,000 by default) across 4 accounts with the
//!    accounts test's seeding (`whittle_tests::scale::seed`: an inline policy of four kinds,
//!    two shared customer-managed policies, a small AWS-managed one on every other role, a
//!    boundary on every tenth), read by the daemon with GetAccountAuthorizationDetails;
//! 2. writes each role's mined usage into a new state (`StoredUsage`, 2–3 used actions over
//!    60 days, as mining stores it);
//! 3. starts the release `whittle daemon` on that state, reads its peak RSS (VmHWM, from
//!    /proc) once it answers `/healthz`, then runs `whittle plan --format json` `--runs`
//!    times (1) through it and reads the daemon's VmHWM after each: the peak of planning;
//! 4. with the daemon stopped, runs the same `whittle plan --format json` alone under GNU
//!    time: the command's own peak.
//!
//! The whittle binary is built in release mode first; `--whittle PATH` measures another
//! build. Prints a Markdown table for BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use whittle_engine::records::StoredUsage;
use whittle_planner::trail::PrincipalKind;
use whittle_planner::usage::{ActionUsage, PrincipalUsage};
use whittle_state::{LockOwner, State, WriteBatch};
use whittle_tests::bench::{
    cpu_model, fail, free_address, load_average, number, peak_rss_mb, release_whittle, rss_of,
    spawn_daemon, stop, wait_for_healthz, whittle_command,
};
use whittle_tests::scale::{inline_actions, role_name, seed};
use whittle_tests::{Emulator, repo_root};

/// The four accounts the roles are spread over: (configured name, id).
const ACCOUNTS: [(&str, &str); 4] = [
    ("prod-a", "210000000001"),
    ("prod-b", "210000000002"),
    ("prod-c", "210000000003"),
    ("prod-d", "210000000004"),
];
/// Principals' usage written per transaction.
const BATCH: usize = 512;
const DAY_MS: i64 = 86_400_000;

struct Args {
    roles: usize,
    runs: usize,
    whittle: Option<PathBuf>,
}

fn args() -> Args {
    let mut parsed = Args {
        roles: 10_000,
        runs: 1,
        whittle: None,
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
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            other => fail(&format!(
                "unknown argument {other}; usage: plan_memory [--roles N] [--runs N] [--whittle PATH]"
            )),
        }
    }
    parsed
}

/// One `whittle plan`: seconds, roles planned, output bytes, the peak RSS measured.
struct Run {
    seconds: f64,
    roles: usize,
    bytes: usize,
    peak_mb: Option<f64>,
}

fn main() {
    let args = args();
    let whittle = match &args.whittle {
        Some(path) => repo_root().join(path),
        None => release_whittle(env!("CARGO")),
    };
    let per_account = args.roles / ACCOUNTS.len();
    let ids: Vec<&str> = ACCOUNTS.iter().map(|(_, id)| *id).collect();

    let emulator = Emulator::start(&[]);
    let started = Instant::now();
    seed(&emulator, &ids, per_account);
    eprintln!(
        "{} roles seeded in {} accounts in {:.1} s",
        per_account * ACCOUNTS.len(),
        ACCOUNTS.len(),
        started.elapsed().as_secs_f64()
    );

    let work = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("temporary dir: {e}")));
    let state_dir = work.path().join("state");
    write_usage(&state_dir, per_account);
    let listen = free_address();
    let config = work.path().join("whittle.toml");
    std::fs::write(&config, config_text(&emulator.url, &state_dir, &listen))
        .unwrap_or_else(|e| fail(&format!("config: {e}")));

    let log = work.path().join("daemon.log");
    let mut daemon = spawn_daemon(&whittle, &config, &log);
    wait_for_healthz(&listen, &mut daemon, &log);
    let idle_mb = peak_rss_mb(daemon.id());
    let mut served = Vec::new();
    for _ in 0..args.runs {
        let mut run = plan(&whittle, &config);
        run.peak_mb = peak_rss_mb(daemon.id());
        served.push(run);
    }
    stop(&mut daemon);
    let alone = plan(&whittle, &config);

    println!(
        "\n{} roles in {} accounts (emulator), each with usage in the state; {}; {}; load average at the end {}",
        per_account * ACCOUNTS.len(),
        ACCOUNTS.len(),
        whittle.display(),
        cpu_model(),
        load_average()
    );
    let mb = |m: Option<f64>| m.map_or_else(|| "?".to_owned(), |m| format!("{m:.0} MB"));
    println!("\n| `whittle plan --format json` | wall | roles planned | output | peak RSS |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| daemon started, before planning | | | | {} (daemon VmHWM) |",
        mb(idle_mb)
    );
    for (i, run) in served.iter().enumerate() {
        println!(
            "| handed to the daemon, run {} | {:.1} s | {} | {:.1} MB | {} (daemon VmHWM) |",
            i + 1,
            run.seconds,
            run.roles,
            run.bytes as f64 / 1e6,
            mb(run.peak_mb)
        );
    }
    println!(
        "| alone (no daemon) | {:.1} s | {} | {:.1} MB | {} (GNU time) |",
        alone.seconds,
        alone.roles,
        alone.bytes as f64 / 1e6,
        mb(alone.peak_mb)
    );
}

/// Each seeded role's usage, keyed by its ARN as mining keys it: the first two actions of
/// its inline policy and `s3:GetObject` of its shared managed policy, on a few days within
/// the last 60.
fn write_usage(dir: &Path, per_account: usize) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let state = State::open(dir, &LockOwner::this_process())
        .unwrap_or_else(|e| fail(&format!("open {}: {e}", dir.display())));
    let arns: Vec<(usize, String)> = ACCOUNTS
        .iter()
        .flat_map(|(_, id)| {
            (0..per_account).map(move |i| (i, format!("arn:aws:iam::{id}:role/{}", role_name(i))))
        })
        .collect();
    for chunk in arns.chunks(BATCH) {
        let mut batch = WriteBatch::new();
        for (i, arn) in chunk {
            let mut usage = PrincipalUsage::new(PrincipalKind::Role);
            let used = inline_actions(*i)
                .iter()
                .take(2)
                .chain(["s3:GetObject"].iter());
            for (n, action) in used.enumerate() {
                let mut counted = ActionUsage::default();
                for day in [3, 17, 45 + (*i % 15) as i64] {
                    let at = now_ms - day * DAY_MS - n as i64 * 60_000;
                    counted
                        .counts
                        .add(at, at, 1 + (*i as u64 + day as u64) % 40);
                }
                counted.sample_event_id = Some(format!("{:08x}-{n}", i));
                usage.actions.insert((*action).to_owned(), counted);
            }
            let record = StoredUsage {
                usage,
                folded_through: None,
            };
            batch
                .put::<StoredUsage>(arn, &record)
                .unwrap_or_else(|e| fail(&format!("usage record: {e}")));
        }
        state
            .commit(batch)
            .unwrap_or_else(|e| fail(&format!("commit: {e}")));
    }
}

/// The accounts test's configuration (each account reached by assuming a role in it, the
/// seeded `scale-*` roles tagged `whittle:managed` as targets), with a status address.
fn config_text(endpoint: &str, state: &Path, listen: &str) -> String {
    let mut text = format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nmax_attempts = 1\noperation_timeout = \"300s\"\n"
    );
    for (name, id) in ACCOUNTS {
        text.push_str(&format!(
            "[[aws.accounts]]\nname = \"{name}\"\nid = \"{id}\"\nrole_arn = \"arn:aws:iam::{id}:role/whittle-reader\"\n"
        ));
    }
    text.push_str(&format!(
        "[state]\ndir = \"{}\"\n[status]\nlisten = \"{listen}\"\n[targets]\narn_patterns = [\"arn:aws:iam::*:role/scale-*\"]\ntags = {{ \"whittle:managed\" = \"true\" }}\n[planner]\nmin_observation_days = 0\n",
        state.display()
    ));
    text
}

/// `whittle plan --format json` (handed to the daemon when one holds the state): its time,
/// the roles in its output, the output's size and the command's own peak RSS (GNU time).
fn plan(whittle: &Path, config: &Path) -> Run {
    let started = Instant::now();
    let output = whittle_command(whittle, config, &["plan", "--format", "json"])
        .output()
        .unwrap_or_else(|e| fail(&format!("whittle plan: {e}")));
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // `whittle plan` exits 2 when the plan changes roles.
    if !matches!(output.status.code(), Some(0 | 2)) {
        fail(&format!("whittle plan: {}\n{stderr}", output.status));
    }
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| fail(&format!("whittle plan's JSON: {e}\n{stderr}")));
    let roles = plan["roles"].as_array().map_or(0, Vec::len);
    eprintln!("whittle plan: {seconds:.1} s, {roles} roles");
    Run {
        seconds,
        roles,
        bytes: output.stdout.len(),
        peak_mb: rss_of(&stderr),
    }
}
