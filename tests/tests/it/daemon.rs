//! The daemon end to end against the emulator: scheduled jobs, their records, the status
//! endpoint, the state lock, signals, a crash, and the reconcile pass.

use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Emulator, Workspace, create_role, signal, spawn_daemon, status_json, text, wait_exit, wait_for,
    whittle,
};

fn last_outcome(report: &Value, job: &str) -> Option<String> {
    report["jobs"]
        .as_array()?
        .iter()
        .find(|j| j["name"] == job)?["last_run"]["outcome"]
        .as_str()
        .map(str::to_owned)
}

/// GET from the daemon's status endpoint: status code and body text.
fn http_get(address: &str, path: &str) -> (u16, String) {
    let (status, body) = whittle_tests::http_request(address, "GET", path, b"", "text/plain")
        .expect("status endpoint");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_runs_scheduled_jobs_serves_status_and_stops_on_sigterm() {
    let emulator = Emulator::shared();
    let iam = aws_sdk_iam::Client::new(&emulator.sdk_config().await);
    create_role(&iam, "itd-app-orders", &[("whittle:managed", "true")]).await;
    create_role(&iam, "itd-app-billing", &[("whittle:managed", "true")]).await;
    create_role(&iam, "itd-app-untagged", &[]).await;
    create_role(&iam, "itd-break-glass", &[("whittle:managed", "true")]).await;

    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "itd");
    let log = ws.path("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);

    let report = wait_for(Duration::from_secs(40), "both jobs to succeed", || {
        let report = status_json(&config)?;
        let done = last_outcome(&report, "check-aws").as_deref() == Some("succeeded")
            && last_outcome(&report, "discover").as_deref() == Some("succeeded");
        done.then_some(report)
    });
    assert_eq!(
        report["daemon"]["pid"],
        daemon.id(),
        "status asked the running daemon"
    );
    let staging = &report["accounts"][0];
    assert_eq!(staging["account_id"], "123456789012");
    let targets: Vec<&str> = staging["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        targets,
        [
            "arn:aws:iam::123456789012:role/itd-app-billing",
            "arn:aws:iam::123456789012:role/itd-app-orders"
        ]
    );
    assert_eq!(
        staging["protected"][0]["arn"],
        "arn:aws:iam::123456789012:role/itd-break-glass"
    );
    assert!(
        staging["protected"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("protected pattern")
    );

    // The status endpoint.
    let address = report["daemon"]["listen"]
        .as_str()
        .expect("listen address")
        .to_owned();
    let (status, health) = http_get(&address, "/healthz");
    assert_eq!(status, 200, "{health}");
    let body: Value = serde_json::from_str(&health).expect("healthz JSON");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .any(|j| j["name"] == "discover" && j["last_run"]["outcome"] == "succeeded")
    );
    let (status, metrics) = http_get(&address, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains(r#"whittle_job_runs_total{job="check-aws",outcome="succeeded"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("whittle_job_run_duration_seconds_bucket"),
        "{metrics}"
    );

    // Work is handed over only with the token of the lock file (0600), which only who may
    // open the state can read: any local user reaches a loopback port.
    let (status, body) = whittle_tests::http_request(
        &address,
        "POST",
        "/command",
        br#"{"command":"plan","args":{"show":null,"roles":[],"format":"text"},"config_text":"","terminal":{"color":false,"progress":false}}"#,
        "application/json",
    )
    .expect("status endpoint");
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let lock = ws.state_dir().join("whittle.lock");
    let owner: Value =
        serde_json::from_str(&std::fs::read_to_string(&lock).expect("lock file")).expect("json");
    assert!(
        owner["token"].as_str().is_some_and(|t| t.len() == 32),
        "{owner}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&lock).expect("lock").permissions().mode() & 0o777,
        0o600
    );

    // A second daemon on the same state is refused and names the first.
    let second = whittle(&["daemon", "--config", config.to_str().expect("path")]);
    assert_eq!(second.status.code(), Some(1));
    let refusal = text(&second.stderr);
    assert!(
        refusal.contains(&format!("already running (pid {})", daemon.id())),
        "{refusal}"
    );

    // Text status through the daemon.
    let out = whittle(&["status", "--config", config.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("daemon running") && shown.contains("2 target(s), 1 protected"),
        "{shown}"
    );

    signal(&daemon, "TERM");
    let exit = wait_exit(&mut daemon, Duration::from_secs(30));
    assert_eq!(
        exit.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("Daemon stopped"), "{logged}");

    // After the stop, status reads the state itself: the history is there.
    let after = status_json(&config).expect("status after stop");
    assert!(after["daemon"].is_null());
    let runs = &after["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["name"] == "check-aws")
        .expect("check-aws")["runs"];
    assert!(runs["succeeded"].as_u64().expect("count") >= 1, "{runs}");
    assert!(
        runs.get("running").is_none(),
        "a clean stop leaves no run in progress: {runs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_run_then_restart_records_the_run_as_interrupted() {
    // A private emulator: the delay fault below must not hold another test's calls.
    let emulator = Emulator::start(&[]);
    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "itk");
    let log = ws.path("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    wait_for(Duration::from_secs(30), "a check-aws run", || {
        (last_outcome(&status_json(&config)?, "check-aws")? == "succeeded").then_some(())
    });

    // Hold the next identity call so that a run is in progress when the daemon dies.
    emulator.post_json(
        "/whittle-emulator/faults",
        &serde_json::json!({"service": "sts", "action": "GetCallerIdentity", "delay_seconds": 15, "count": 1}),
    );
    // The held run: one still running, with the same start, a second and a half after it was
    // first seen (another job's ordinary run, discover's half a second, once was taken for it
    // and had ended by the kill).
    let mut seen: Vec<(String, String)> = Vec::new();
    let held_job = wait_for(Duration::from_secs(30), "a run to be held", || {
        let report = status_json(&config)?;
        let running: Vec<(String, String)> = report["jobs"]
            .as_array()?
            .iter()
            .filter(|j| j["last_run"]["outcome"] == "running")
            .map(|j| {
                (
                    j["name"].as_str().unwrap_or_default().to_owned(),
                    j["last_run"]["started_at"].to_string(),
                )
            })
            .collect();
        let held = running
            .iter()
            .find(|run| seen.contains(run))
            .map(|run| run.0.clone());
        if held.is_none() {
            seen = running;
            std::thread::sleep(Duration::from_millis(1500));
        }
        held
    });
    signal(&daemon, "KILL");
    wait_exit(&mut daemon, Duration::from_secs(10));
    // The run is recorded `running` before its first call, so the kill may come before the
    // held call was made: clear the fault so it cannot hold the restarted daemon instead.
    emulator.post_json("/whittle-emulator/reset", &serde_json::json!({}));

    // The kernel released the lock with the process: a new daemon starts on the same state,
    // and its reconcile pass records the run the killed one left `running` as interrupted.
    let log2 = ws.path("daemon2.log");
    let mut again = spawn_daemon(&config, &log2);
    wait_for(
        Duration::from_secs(30),
        "the restarted daemon to answer",
        || {
            if let Some(exit) = again.try_wait().expect("try_wait") {
                panic!(
                    "the restarted daemon exited with {exit}: {}",
                    std::fs::read_to_string(&log2).unwrap_or_default()
                );
            }
            let report = status_json(&config)?;
            (report["daemon"]["pid"] == again.id()).then_some(())
        },
    );
    // The daemon takes signals once it has started (before, SIGINT would end it at once, or
    // be lost where the test runs with SIGINT ignored, as a shell's background job does).
    crate::support::wait_for_log(&log2, "Daemon started");
    signal(&again, "INT");
    assert_eq!(
        wait_exit(&mut again, Duration::from_secs(30)).code(),
        Some(0)
    );

    let report = status_json(&config).expect("status after stop");
    let jobs = report["jobs"].as_array().expect("jobs");
    let held = jobs
        .iter()
        .find(|j| j["name"] == held_job.as_str())
        .expect("the held job");
    assert_eq!(held["runs"]["interrupted"], 1, "{held}");
    for job in jobs {
        assert!(
            job["runs"].get("running").is_none(),
            "no run may still claim to be running: {job}"
        );
    }
    let logged = std::fs::read_to_string(&log2).expect("log");
    assert!(
        logged.contains("Marked job runs of a previous process as interrupted"),
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_job_skips_its_ticks_and_sigterm_lets_the_running_step_finish() {
    // A private emulator: the delay fault below must not hold another test's calls.
    let emulator = Emulator::start(&[]);
    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "itb");
    let log = ws.path("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    let address = wait_for(Duration::from_secs(30), "a check-aws run", || {
        let report = status_json(&config)?;
        (last_outcome(&report, "check-aws")? == "succeeded")
            .then(|| report["daemon"]["listen"].as_str().map(str::to_owned))?
    });

    // Hold one identity call for 6 s. check-aws ticks every second, so while its run waits
    // the next ticks must be skipped, not started beside it.
    emulator.post_json(
        "/whittle-emulator/faults",
        &serde_json::json!({"service": "sts", "action": "GetCallerIdentity", "delay_seconds": 6, "count": 1}),
    );
    // The held job is the one whose ticks are skipped (another job's run may be in progress
    // at any moment without being held, so being `running` says nothing).
    let held_job = wait_for(Duration::from_secs(20), "a tick skipped while busy", || {
        let (_, metrics) = http_get(&address, "/metrics");
        metrics.lines().find_map(|line| {
            let rest = line.strip_prefix("whittle_job_runs_total{job=\"")?;
            let (job, rest) = rest.split_once('"')?;
            let count: u64 = rest
                .strip_prefix(",outcome=\"skipped\"} ")?
                .trim()
                .parse()
                .ok()?;
            (count >= 1).then(|| job.to_owned())
        })
    });

    // SIGTERM while the run is held: no new run starts, the held one is let finish.
    signal(&daemon, "TERM");
    let exit = wait_exit(&mut daemon, Duration::from_secs(30));
    let logged = std::fs::read_to_string(&log).expect("log");
    assert_eq!(exit.code(), Some(0), "{logged}");
    assert!(
        logged.contains("Waiting for running jobs to finish their current step"),
        "{logged}"
    );
    assert!(
        logged.contains("Skipped a tick: the previous run is still busy"),
        "{logged}"
    );

    let report = status_json(&config).expect("status after stop");
    let held = report["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["name"] == held_job.as_str())
        .expect("the held job")
        .clone();
    // Had the daemon exited without waiting, the run would still read `running` here.
    assert_eq!(held["last_run"]["outcome"], "succeeded", "{held}");
    assert!(held["runs"].get("running").is_none(), "{held}");
    assert!(held["runs"].get("interrupted").is_none(), "{held}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unfinished_journal_without_recovery_stops_the_start() {
    let emulator = Emulator::shared();
    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "itj");
    {
        let owner = whittle_state::LockOwner::this_process();
        let state = whittle_state::State::open(&ws.state_dir(), &owner).expect("open state");
        state
            .journal_begin(
                // A kind no recovery of this build handles (one written by a newer whittle).
                "from-a-newer-whittle",
                "arn:aws:iam::123456789012:role/itj-app",
                serde_json::json!({}),
                whittle_state::Timestamp(1),
            )
            .expect("journal");
    }
    let out = whittle(&["daemon", "--config", config.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unfinished journal j-") && stderr.contains("kind `from-a-newer-whittle`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Job started"),
        "nothing may be scheduled before reconciling: {stderr}"
    );

    // status shows the journal that blocks the start.
    let report = status_json(&config).expect("status");
    assert_eq!(
        report["unfinished_journals"][0]["kind"],
        "from-a-newer-whittle"
    );
}

/// A local process holding connections open must not hold the daemon: one sends a partial
/// request (no blank line), twenty trickle a header a byte at a time, and SIGTERM still stops
/// the daemon within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn half_open_and_trickling_connections_do_not_hold_the_daemon_after_sigterm() {
    use std::io::Write as _;
    use std::net::TcpStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let emulator = Emulator::shared();
    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "ith");
    let log = ws.path("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    let address = wait_for(Duration::from_secs(30), "the status endpoint", || {
        let report = status_json(&config)?;
        report["daemon"]["listen"].as_str().map(str::to_owned)
    });

    let mut half_open = TcpStream::connect(&address).expect("connect");
    half_open
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("partial request");
    let done = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<_> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).expect("connect");
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                if stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
                    .is_err()
                {
                    return;
                }
                while !done.load(Ordering::Relaxed) {
                    if stream.write_all(b"a").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        })
        .collect();
    // The endpoint still answers beside them.
    let (status, health) = http_get(&address, "/healthz");
    assert_eq!(status, 200, "{health}");
    std::thread::sleep(Duration::from_millis(500));

    signal(&daemon, "TERM");
    let start = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = daemon.try_wait().expect("try_wait") {
            break Some(exit);
        }
        if start.elapsed() > Duration::from_secs(5) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    done.store(true, Ordering::Relaxed);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let Some(exit) = exit else {
        let _ = daemon.kill();
        let _ = daemon.wait();
        panic!("the daemon still ran 5 s after SIGTERM:\n{logged}");
    };
    assert_eq!(exit.code(), Some(0), "{logged}");
    assert!(logged.contains("Daemon stopped"), "{logged}");
    drop(half_open);
    for trickler in tricklers {
        trickler.join().expect("trickler");
    }
}

/// SIGTERM while a handed-over command waits on AWS: the command is let finish its step and
/// its answer reaches the command, though it outlasts the grace idle connections get.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_handed_over_command_answer_before_the_daemon_exits() {
    // A private emulator: the delay fault below must not hold another test's calls.
    let emulator = Emulator::start(&[]);
    let iam = aws_sdk_iam::Client::new(&emulator.sdk_config().await);
    create_role(&iam, "itc-app-orders", &[("whittle:managed", "true")]).await;
    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "itc");
    // No scheduled job: only the handed-over command calls AWS.
    let written = std::fs::read_to_string(&config).expect("config");
    let jobs = written.find("[jobs.check-aws]").expect("jobs");
    let trial = written.find("[trial]").expect("trial");
    std::fs::write(
        &config,
        format!("{}{}", &written[..jobs], &written[trial..]),
    )
    .expect("config");
    let log = ws.path("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    crate::support::wait_for_log(&log, "Daemon started");

    emulator.post_json(
        "/whittle-emulator/faults",
        &serde_json::json!({"service": "iam", "action": "*", "delay_seconds": 5, "count": 1}),
    );
    let started = std::time::Instant::now();
    let command = crate::support::command(&[
        "plan",
        "--role",
        "arn:aws:iam::123456789012:role/itc-app-orders",
        "--format",
        "json",
        "--config",
        config.to_str().expect("path"),
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawn plan");
    crate::support::wait_for_log(&log, "Running a command handed over by whittle");
    std::thread::sleep(Duration::from_millis(500));
    signal(&daemon, "TERM");

    let out = command.wait_with_output().expect("plan");
    let stderr = text(&out.stderr);
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "the command did not wait on the held call: {stderr}"
    );
    assert!(
        stderr.contains("The daemon holds the state: handing the command to it")
            && !stderr.contains("cannot reach the daemon"),
        "{stderr}"
    );
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{}: {}\n{stderr}",
        out.status,
        text(&out.stdout)
    );
    let exit = wait_exit(&mut daemon, Duration::from_secs(30));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(exit.code(), Some(0), "{logged}");
}

/// SIGTERM while the daemon is still starting (here: its credentials check held 3 s by the
/// emulator) stops it cleanly once the step in progress is done — exit 0, nothing scheduled —
/// instead of killing it as an unhandled signal would.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_start_up_stops_the_daemon_cleanly() {
    // A private emulator: the delay fault below must not hold another test's calls.
    let emulator = Emulator::start(&[]);
    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "early");
    emulator.post_json(
        "/whittle-emulator/faults",
        &serde_json::json!({"service": "sts", "action": "GetCallerIdentity", "delay_seconds": 3, "count": 1}),
    );
    let log = ws.path("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    crate::support::wait_for_log(&log, "Daemon starting");
    std::thread::sleep(Duration::from_millis(300));
    signal(&daemon, "TERM");
    let exit = wait_exit(&mut daemon, Duration::from_secs(30));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(exit.code(), Some(0), "{exit}: {logged}");
    assert!(logged.contains("AWS credentials verified"), "{logged}");
    assert!(
        logged.contains("Shutdown requested during start-up") && !logged.contains("Daemon started"),
        "{logged}"
    );
}

/// A flood of connections to the status endpoint is held to 64 at a time: the daemon never
/// holds more sockets than that however many a local process opens, and once the flood
/// stops the endpoint answers again at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_flood_is_bounded_and_the_endpoint_recovers() {
    use std::io::Write as _;
    use std::net::TcpStream;

    let emulator = Emulator::shared();
    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "flood");
    let log = ws.path("daemon.log");
    let mut daemon = spawn_daemon(&config, &log);
    let address = wait_for(Duration::from_secs(30), "the status endpoint", || {
        let report = status_json(&config)?;
        report["daemon"]["listen"].as_str().map(str::to_owned)
    });
    let port: u16 = address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("the listen address's port");
    // The connections the daemon has accepted on its endpoint, not every socket it holds: its
    // AWS clients open and pool connections to the emulator whenever a scheduled job runs,
    // which once took a count of all its sockets one over the bound.
    let accepted = || accepted_connections(daemon.id(), port);
    let before = accepted().len();
    // 200 connections, each with a request head that never ends.
    let flood: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).expect("connect");
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let during = accepted();
    // The daemon serves at most 64 connections at once (`MAX_CONNECTIONS`); the rest wait in
    // the listen backlog, held by the kernel, not by the daemon.
    assert!(
        during.len() <= 64 && during.len() > before,
        "the daemon holds {} connections with 200 open (it held {before} before):\n{}",
        during.len(),
        during.values().cloned().collect::<Vec<_>>().join("\n")
    );
    drop(flood);
    let started = std::time::Instant::now();
    let (status, body) = http_get(&address, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered {:?} after the flood ended",
        started.elapsed()
    );
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}

/// The established connections process `pid` holds on local TCP port `port` (IPv4 or IPv6),
/// by socket inode, each with its line of the kernel's socket tables: its fds' socket inodes
/// matched against `/proc/PID/net/tcp{,6}`, whose `local_address` is `HEXIP:HEXPORT`, `st`
/// the state (`0A` listening) and the tenth column the inode. Those tables are read a page
/// at a time, and a socket can appear twice when others open and close between two pages
/// (the other tests' connections): a socket is counted once, by its inode.
fn accepted_connections(pid: u32, port: u16) -> std::collections::BTreeMap<String, String> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's fds")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let local_port = format!(":{port:04X}");
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let connection = columns.len() > 9
                && columns[1].ends_with(&local_port)
                && columns[3] != "0A"
                && inodes.contains(columns[9]);
            connection.then(|| (columns[9].to_owned(), line.clone()))
        })
        .collect()
}
