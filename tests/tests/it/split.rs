//! A shared role's split against the emulator (auth mode: every call is checked against the
//! caller's role): three functions that share a role, each using a different subset of it;
//! the plan's split tried in staging (functions switched to roles of their own, exercised,
//! switched back), applied and rolled back; a trial in which one function is denied rolls
//! every function back; `whittle apply` killed after each journal step leaves every function
//! a working role, and the restarted daemon puts everything back as it was.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::functions::{FUNCTIONS, ROLE_ARN, shared_service};
use crate::support::*;

/// What each function does (the workload script's spec): a different subset of the role.
fn work(extra: Option<Value>) -> Value {
    let mut spec = json!({
        "svc-read": [["ssm", "get_parameter", {"Name": "/svc/endpoint"}]],
        "svc-write": [["ssm", "put_parameter", {"Name": "/svc/endpoint", "Value": "https://svc-2.internal", "Type": "String", "Overwrite": true}]],
        "svc-list": [["s3", "list_buckets", {}]],
    });
    if let Some(Value::Object(extra)) = extra {
        for (function, calls) in extra {
            spec[&function]
                .as_array_mut()
                .expect("calls")
                .extend(calls.as_array().cloned().unwrap_or_default());
        }
    }
    spec
}

struct Service {
    ws: Workspace,
    config: PathBuf,
    admin: (String, String),
    iam: aws_sdk_iam::Client,
    lambda: aws_sdk_lambda::Client,
    url: String,
}

impl Service {
    fn whittle(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command(args).output().expect("whittle");
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut all = vec!["--config", self.config.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        let mut command = command(&all);
        command
            .env("AWS_ACCESS_KEY_ID", &self.admin.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.admin.1);
        command
    }

    /// Runs each function's work as its role of the moment; true when nothing was denied.
    fn workload(&self, spec: &Value) -> bool {
        let path = self.ws.path("work.json");
        std::fs::write(&path, spec.to_string()).expect("spec");
        std::process::Command::new(whittle_tests::python())
            .arg(workload_script())
            .arg(&self.url)
            .arg(&path)
            .env("AWS_ACCESS_KEY_ID", &self.admin.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.admin.1)
            .status()
            .expect("workload")
            .success()
    }

    /// Function -> its role now.
    async fn function_roles(&self) -> BTreeMap<String, String> {
        let mut roles = BTreeMap::new();
        for name in FUNCTIONS {
            let config = self
                .lambda
                .get_function_configuration()
                .function_name(name)
                .send()
                .await
                .expect("function configuration");
            roles.insert(
                name.to_owned(),
                config.role().unwrap_or_default().to_owned(),
            );
        }
        roles
    }

    async fn role_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .iam
            .list_roles()
            .send()
            .await
            .expect("roles")
            .roles()
            .iter()
            .map(|r| r.role_name().to_owned())
            .collect();
        names.sort();
        names
    }
}

fn workload_script() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("emulator/function_workload.py")
}

/// The service, its usage mined in auth mode and its functions discovered; returns it and
/// the plan's id (a plan whose split gives each function exactly its subset).
async fn service(emulator: &whittle_tests::Emulator) -> (Service, String) {
    let root = emulator.sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&root);
    let admin = admin_user(&iam).await;
    shared_service(
        &root,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:GetParameter","ssm:PutParameter","s3:ListAllMyBuckets"],"Resource":"*"}]}"#,
    )
    .await;
    let ws = Workspace::new();
    let config = ws.emulator_config(&emulator.url, "svc");
    let playbook = ws.path("trial.toml");
    std::fs::write(
        &playbook,
        format!(
            "kind = \"trial\"\nwindow = \"3s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\n[exercise]\ncommand = [\"{}\", \"{}\", \"{}\", \"{}\"]\ntimeout = \"60s\"\n",
            whittle_tests::python().display(),
            workload_script().display(),
            emulator.url,
            ws.path("work.json").display()
        ),
    )
    .expect("playbook");
    ws.append_config(
        &config,
        r#"
[mining]
last_accessed = false
[[mining.sources]]
name = "trail"
kind = "s3"
account = "staging"
bucket = "svc-trail"
[planner]
min_observation_days = 0
"#,
    );
    // The trial's playbook: [trial] is in the base configuration already.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "[trial]\n",
            &format!("[trial]\nplaybook = \"{}\"\n", playbook.display()),
        ),
    )
    .expect("config");
    // In auth mode the test reads IAM and Lambda as the admin user too.
    let as_admin = emulator.sdk_config_with(&admin.0, &admin.1, None).await;
    let s = Service {
        ws,
        config,
        admin,
        iam: aws_sdk_iam::Client::new(&as_admin),
        lambda: aws_sdk_lambda::Client::new(&as_admin),
        url: emulator.url.clone(),
    };
    emulator.enable_auth();
    assert!(s.workload(&work(None)), "the service works");
    emulator.post_json("/whittle-emulator/deliver", &json!({}));
    for args in [&["mine", "--no-progress"][..], &["discover"]] {
        let (code, _, stderr) = s.whittle(args);
        assert_eq!(code, 0, "{stderr}");
    }
    let (code, stdout, stderr) = s.whittle(&["plan", "--role", ROLE_ARN, "--format", "json"]);
    assert!(code == 0 || code == 2, "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("plan JSON");
    let split: Vec<(String, Vec<String>)> = plan["roles"][0]["split"]["functions"]
        .as_array()
        .expect("a split")
        .iter()
        .map(|f| {
            (
                f["function"].as_str().unwrap_or_default().to_owned(),
                f["kept"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k["action"].as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        split,
        [
            (
                "svc-list".to_owned(),
                vec!["s3:ListAllMyBuckets".to_owned()]
            ),
            ("svc-read".to_owned(), vec!["ssm:GetParameter".to_owned()]),
            ("svc-write".to_owned(), vec!["ssm:PutParameter".to_owned()]),
        ],
        "each function gets exactly its subset"
    );
    let id = plan["id"].as_str().expect("id").to_owned();
    (s, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_is_trialled_applied_and_rolled_back_and_a_denied_trial_switches_every_function_back()
 {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let (s, plan_id) = service(emulator).await;
    let (functions_before, roles_before) = (s.function_roles().await, s.role_names().await);

    // The trial: each function runs under its own role during the window, then goes back.
    std::fs::write(s.ws.path("work.json"), work(None).to_string()).expect("spec");
    let (code, stdout, stderr) = s.whittle(&["trial", &plan_id]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("passed split of {ROLE_ARN}")),
        "{stdout}"
    );
    assert_eq!(s.function_roles().await, functions_before, "switched back");
    assert_eq!(
        s.role_names().await,
        roles_before,
        "the trial's roles deleted"
    );

    // Applied: each function on its own role, which serves it and nothing more.
    let (code, stdout, stderr) = s.whittle(&["apply", &plan_id]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let split_id = stdout
        .split("(undo: whittle rollback ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("an undo id: {stdout}"))
        .to_owned();
    assert!(split_id.starts_with("split-"), "{stdout}");
    let now = s.function_roles().await;
    for name in FUNCTIONS {
        assert_eq!(
            now[name],
            format!("arn:aws:iam::123456789012:role/svc-shared-{name}")
        );
    }
    assert!(s.workload(&work(None)), "each function's role serves it");
    let reads_too = work(Some(
        json!({"svc-list": [["ssm", "get_parameter", {"Name": "/svc/endpoint"}]]}),
    ));
    assert!(
        !s.workload(&reads_too),
        "a function may no longer do what another function does"
    );

    // Rolled back: exactly as before.
    let (code, stdout, stderr) = s.whittle(&["rollback", &split_id]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(s.function_roles().await, functions_before);
    assert_eq!(s.role_names().await, roles_before);

    // A trial in which svc-write needs an action its new role lacks: every function goes
    // back to the shared role, no role of the split is left, and the action is recorded.
    let writes_and_reads = work(Some(
        json!({"svc-write": [["ssm", "get_parameter", {"Name": "/svc/endpoint"}]]}),
    ));
    std::fs::write(s.ws.path("work.json"), writes_and_reads.to_string()).expect("spec");
    let (code, stdout, stderr) = s.whittle(&["trial", &plan_id]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("rolled-back split of {ROLE_ARN}")),
        "{stdout}"
    );
    assert!(stdout.contains("denied ssm:GetParameter"), "{stdout}");
    assert_eq!(s.function_roles().await, functions_before);
    assert_eq!(s.role_names().await, roles_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_apply_killed_after_any_journal_step_leaves_working_roles_and_is_undone_on_restart()
{
    let emulator =
        &whittle_tests::Emulator::start(&[("WHITTLE_EMULATOR_DELIVERY_SECONDS", "3600")]);
    let (s, plan_id) = service(emulator).await;
    let (functions_before, roles_before) = (s.function_roles().await, s.role_names().await);
    for point in [
        "split:begin",
        "split:role-created",
        "split:role-filled",
        "split:switched",
    ] {
        let out = s
            .command(&["apply", &plan_id, "--force"])
            .env("WHITTLE_CRASH_AFTER", point)
            .output()
            .expect("whittle");
        assert!(!out.status.success(), "{point}: whittle must have died");
        assert!(text(&out.stderr).contains("aborting"), "{point}");
        assert!(
            s.workload(&work(None)),
            "{point}: every function has a working role"
        );
        if point == "split:switched" {
            assert_ne!(s.function_roles().await, functions_before, "{point}");
        }
        let log =
            s.ws.path(&format!("daemon-{}.log", point.replace(':', "-")));
        let mut daemon = spawn_daemon_as(&s.config, &log, &s.admin.0, &s.admin.1);
        wait_for_log(&log, "Reconcile pass done");
        let reconciled = std::fs::read_to_string(&log).expect("log");
        assert!(reconciled.contains("recovered=1"), "{point}: {reconciled}");
        assert_eq!(s.function_roles().await, functions_before, "{point}");
        assert_eq!(s.role_names().await, roles_before, "{point}");
        wait_for_log(&log, "Daemon started");
        signal(&daemon, "TERM");
        assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
    }
}
