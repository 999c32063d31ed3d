//! Trials end to end against the emulator in auth mode: a staging role with an over-broad
//! policy, a workload that uses the role's assumed-role credentials, a plan that drops an
//! action the workload needs only now and then; the trial applies it, the workload is denied,
//! the denial is seen, the role is rolled back, and the next plan keeps the action; that plan
//! passes its trial and applies without --force; a non-staging account is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const ROLE: &str = "trial-app";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/trial-app";

/// The workload, as a staging service would run it: assume the role, read its configuration
/// on every run, and (this run being one of the occasional ones) read its API key.
const WORKLOAD: &str = r#"
import sys, boto3
from botocore.exceptions import ClientError
endpoint, occasional = sys.argv[1], sys.argv[2] == "yes"
sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1")
c = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/trial-app", RoleSessionName="app-fn")["Credentials"]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=c["AccessKeyId"],
          aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
try:
    for _ in range(3):
        boto3.client("ssm", **kw).get_parameter(Name="/trial/config")
    if occasional:
        boto3.client("secretsmanager", **kw).get_secret_value(SecretId="trial/api-key")
except ClientError as e:
    print(f"workload failed: {e.response['Error']['Code']}", file=sys.stderr)
    sys.exit(1)
"#;

fn python() -> PathBuf {
    whittle_tests::repo_root().join(".venv-moto/bin/python")
}

struct Setup {
    ws: Workspace,
    config: PathBuf,
    admin_id: String,
    admin_secret: String,
    iam: aws_sdk_iam::Client,
    workload: PathBuf,
}

impl Setup {
    fn whittle(&self, args: &[&str]) -> (i32, String, String) {
        self.whittle_with(&self.config, args)
    }

    fn whittle_with(&self, config: &Path, args: &[&str]) -> (i32, String, String) {
        let out = self.command(config, args).output().expect("whittle");
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }

    /// `whittle --config CONFIG ARGS` as the admin user.
    fn command(&self, config: &Path, args: &[&str]) -> std::process::Command {
        let mut all = vec!["--config", config.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        let mut command = command(&all);
        command
            .env("AWS_ACCESS_KEY_ID", &self.admin_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.admin_secret);
        command
    }

    /// `whittle trial PLAN`, aborted right after the journal step `point`.
    fn trial_killed_at(&self, plan_id: &str, point: &str) {
        let out = self
            .command(&self.config, &["trial", plan_id])
            .env("WHITTLE_CRASH_AFTER", point)
            .output()
            .expect("whittle");
        assert!(!out.status.success(), "{point}: whittle must have died");
        assert!(
            text(&out.stderr).contains("aborting"),
            "{point}: {}",
            text(&out.stderr)
        );
    }

    /// The day-to-day workload (configuration reads only), mined, and the plan made from it:
    /// it drops everything else, the occasional secret read included. Returns the plan id.
    fn mined_plan(&self, url: &str) -> String {
        self.mined_plan_of(url, false)
    }

    /// The plan made from the workload mined with (`occasional`) or without its occasional
    /// secret read. Returns the plan id.
    fn mined_plan_of(&self, url: &str, occasional: bool) -> String {
        assert!(self.workload(url, occasional));
        let (code, _, stderr) = self.whittle(&["mine", "--no-progress"]);
        assert_eq!(code, 0, "{stderr}");
        let (code, stdout, stderr) =
            self.whittle(&["plan", "--role", ROLE_ARN, "--format", "json"]);
        assert_eq!(code, 2, "{stdout}\n{stderr}");
        serde_json::from_str::<Value>(&stdout).expect("plan")["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// `whittle daemon` as the admin user, its log in `log_name`, once the log says `ready`.
    fn daemon(&self, log_name: &str, ready: Option<&str>) -> (Daemon, PathBuf) {
        let log = self.ws.path(log_name);
        let daemon = spawn_daemon_as(&self.config, &log, &self.admin_id, &self.admin_secret);
        if let Some(line) = ready {
            wait_for_log(&log, line);
        }
        (daemon, log)
    }

    /// Runs the workload as the trial's exercise would; true when it worked.
    fn workload(&self, url: &str, occasional: bool) -> bool {
        std::process::Command::new(python())
            .arg(&self.workload)
            .arg(url)
            .arg(if occasional { "yes" } else { "no" })
            .env("AWS_ACCESS_KEY_ID", &self.admin_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.admin_secret)
            .status()
            .expect("workload")
            .success()
    }

    async fn policies(&self) -> (BTreeMap<String, Value>, Option<String>) {
        let inline = inline_policies(&self.iam, ROLE).await;
        let boundary = self
            .iam
            .get_role()
            .role_name(ROLE)
            .send()
            .await
            .expect("role")
            .role
            .and_then(|r| r.permissions_boundary)
            .and_then(|b| b.permissions_boundary_arn);
        (inline, boundary)
    }
}

async fn setup(emulator: &whittle_tests::Emulator) -> Setup {
    let root = emulator.sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&root);
    let (admin_id, admin_secret) = admin_user(&iam).await;
    create_role(&iam, ROLE, &[("whittle:managed", "true")]).await;
    iam.put_role_policy()
        .role_name(ROLE)
        .policy_name("broad")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:*","secretsmanager:*","sqs:*","s3:*"],"Resource":"*"}]}"#)
        .send()
        .await
        .expect("broad policy");
    aws_sdk_ssm::Client::new(&root)
        .put_parameter()
        .name("/trial/config")
        .value("{}")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("parameter");
    aws_sdk_secretsmanager::Client::new(&root)
        .create_secret()
        .name("trial/api-key")
        .secret_string("not-a-real-key")
        .send()
        .await
        .expect("secret");
    let ws = Workspace::new();
    let workload = ws.path("workload.py");
    std::fs::write(&workload, WORKLOAD).expect("workload");
    write_trial_playbook(&ws, &workload, &emulator.url, "8s");
    let config = ws.emulator_config(&emulator.url, "trial");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .expect("config")
            .replace(
                "[trial]\nstaging_accounts = [\"staging\"]",
                "[trial]\nstaging_accounts = [\"staging\"]\nplaybook = \"trial.toml\"",
            )
            + "\n[mining]\nlast_accessed = false\n[[mining.sources]]\nname = \"recent\"\nkind = \"lookup-events\"\naccount = \"staging\"\n\n[planner]\nmin_observation_days = 0\nkeep_unobservable = false\n",
    )
    .expect("config");
    // Every later IAM call works in auth mode too: made as the admin user.
    let admin = emulator
        .sdk_config_with(&admin_id, &admin_secret, None)
        .await;
    Setup {
        ws,
        config,
        admin_id,
        admin_secret,
        iam: aws_sdk_iam::Client::new(&admin),
        workload,
    }
}

/// Writes `trial.toml`, the config's [trial] playbook: a boundary-mode trial watched for
/// `window`, whose exercise is the workload with its occasional secret read.
fn write_trial_playbook(ws: &Workspace, workload: &Path, url: &str, window: &str) {
    std::fs::write(
        ws.path("trial.toml"),
        format!(
            "kind = \"trial\"\nwindow = \"{window}\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\n[exercise]\ncommand = [\"{}\", \"{}\", \"{url}\", \"yes\"]\ntimeout = \"30s\"\n",
            python().display(),
            workload.display(),
        ),
    )
    .expect("playbook");
}

fn kept(plan: &Value) -> Vec<(String, String)> {
    plan["roles"][0]["kept"]
        .as_array()
        .expect("kept")
        .iter()
        .map(|k| {
            (
                k["action"].as_str().unwrap_or_default().to_owned(),
                k["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trial_rolls_back_on_a_denial_and_the_next_plan_keeps_the_action() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    emulator.enable_auth();
    // Day to day the workload reads only its configuration: that is all the trail shows.
    assert!(s.workload(&emulator.url, false));
    let (code, _, stderr) = s.whittle(&["mine", "--no-progress"]);
    assert_eq!(code, 0, "{stderr}");
    let before = s.policies().await;

    let (code, stdout, stderr) = s.whittle(&["plan", "--role", ROLE_ARN, "--format", "json"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("plan");
    assert_eq!(
        kept(&plan),
        [("ssm:GetParameter".to_owned(), "used".to_owned())]
    );
    let plan_id = plan["id"].as_str().expect("id").to_owned();

    // The trial: the occasional secret read is denied, seen, and the role rolled back, at
    // once rather than at the end of its window (long, so that a slow machine cannot blur
    // the two).
    write_trial_playbook(&s.ws, &s.workload, &emulator.url, "40s");
    let started = Instant::now();
    let (code, stdout, stderr) = s.whittle(&["trial", &plan_id]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("rolled-back {ROLE_ARN}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("denied secretsmanager:GetSecretValue"),
        "{stdout}"
    );
    assert!(
        took < Duration::from_secs(25),
        "rolled back well within the 40 s window, not at its end: {took:?}"
    );
    assert_eq!(s.policies().await, before, "the role is exactly as before");
    assert!(s.workload(&emulator.url, true), "the workload works again");
    let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
    assert_eq!(status["trials"][0]["status"], "rolled-back", "{status:#}");
    assert_eq!(
        status["trials"][0]["denied"][0],
        "secretsmanager:GetSecretValue"
    );
    let (code, _, stderr) = s.whittle(&["apply", &plan_id]);
    assert_eq!(code, 1, "a rolled-back plan is not trialled");
    assert!(stderr.contains("has not passed a trial"), "{stderr}");

    // The next plan keeps the action the trial found needed; its trial passes.
    let (code, stdout, _) = s.whittle(&["plan", "--role", ROLE_ARN, "--format", "json"]);
    assert_eq!(code, 2, "{stdout}");
    let plan: Value = serde_json::from_str(&stdout).expect("plan");
    assert_eq!(
        kept(&plan),
        [
            (
                "secretsmanager:GetSecretValue".to_owned(),
                "needed".to_owned()
            ),
            ("ssm:GetParameter".to_owned(), "used".to_owned()),
        ]
    );
    let plan_id = plan["id"].as_str().expect("id").to_owned();
    // A passing trial watches to the end of its window (and at least until the exercise,
    // with the occasional read, has run): a short one proves the pass as well.
    write_trial_playbook(&s.ws, &s.workload, &emulator.url, "3s");
    let (code, stdout, stderr) = s.whittle(&["trial", &plan_id]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("passed {ROLE_ARN}")),
        "{stdout}"
    );
    assert_eq!(s.policies().await.1, None, "the trial boundary is gone");
    let (code, stdout, stderr) = s.whittle(&["apply", &plan_id]);
    assert_eq!(
        code, 0,
        "a trialled plan applies without --force: {stdout}\n{stderr}"
    );
    assert!(
        s.workload(&emulator.url, true),
        "the workload works with the applied plan"
    );
    let (inline, _) = s.policies().await;
    let text = inline["broad"].to_string();
    assert!(
        text.contains("secretsmanager:GetSecretValue") && !text.contains("sqs:*"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trial_in_an_account_not_listed_as_staging_is_refused_before_any_change() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    let plan_id = s.mined_plan(&emulator.url);
    let prod = s.ws.path("prod.toml");
    std::fs::write(
        &prod,
        std::fs::read_to_string(&s.config)
            .expect("config")
            .replace("staging_accounts = [\"staging\"]", "staging_accounts = []"),
    )
    .expect("config");
    let before = s.policies().await;
    let (code, stdout, _) = s.whittle_with(&prod, &["trial", &plan_id]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.starts_with(&format!("refused {ROLE_ARN}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("is not in [trial] staging_accounts"),
        "{stdout}"
    );
    assert_eq!(s.policies().await, before);
}

/// Kills `whittle trial` right after each journal step (SIGKILL-like abort); the restarted
/// daemon's reconcile pass rolls the role back to exactly its snapshot every time, and the
/// trial is recorded as rolled back.
#[test]
fn a_trial_killed_after_any_journal_step_is_rolled_back_on_restart() {
    let cases = [
        "trial:begin",
        "trial:policy-created",
        "trial:applied",
        "trial:verdict",
    ]
    .map(|point| (point.to_owned(), point))
    .to_vec();
    run_cases(cases, |point| async move {
        let emulator = &whittle_tests::Emulator::start(&[]);
        let s = setup(emulator).await;
        emulator.enable_auth();
        let plan_id = s.mined_plan(&emulator.url);
        let before = s.policies().await;
        s.trial_killed_at(&plan_id, point);
        if point == "trial:applied" {
            assert!(
                s.policies().await.1.is_some(),
                "{point}: the trial boundary is on"
            );
        }
        // Started: after its reconcile pass, and taking signals.
        let (mut daemon, _) = s.daemon(
            &format!("daemon-{}.log", point.replace(':', "-")),
            Some("Daemon started"),
        );
        assert_eq!(
            s.policies().await,
            before,
            "{point}: the role is back at its snapshot"
        );
        let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
        assert_eq!(
            status["trials"][0]["status"], "rolled-back",
            "{point}: {status:#}"
        );
        if point == "trial:verdict" {
            // Killed after the failing verdict was journalled: the restart finishes the trial
            // as it ended, with its reason and the denial the next plan must keep. (The
            // verdict is whichever signal the trial saw first: the exercise exiting on its
            // denial, or the denial itself in LookupEvents.)
            let trial = &status["trials"][0];
            assert!(
                trial["reason"].as_str().is_some_and(|r| {
                    r.starts_with("the exercise failed")
                        || r == "1 denial(s) of the role after the apply: secretsmanager:GetSecretValue"
                }),
                "{trial:#}"
            );
            assert_eq!(trial["denied"], json!(["secretsmanager:GetSecretValue"]));
        }
        signal(&daemon, "TERM");
        assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
    });
}

/// A trial whose playbook says `on_restart = "resume"`: whittle killed right after the apply,
/// the restarted daemon watches the rest of the window instead of rolling back, and the
/// trial passes with the boundary removed.
#[tokio::test(flavor = "multi_thread")]
async fn a_trial_set_to_resume_is_watched_to_its_end_after_a_restart() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    std::fs::write(
        s.ws.path("trial.toml"),
        "kind = \"trial\"\nwindow = \"3s\"\ndetection_interval = \"1s\"\non_restart = \"resume\"\n",
    )
    .expect("playbook");
    emulator.enable_auth();
    let plan_id = s.mined_plan(&emulator.url);
    let before = s.policies().await;
    s.trial_killed_at(&plan_id, "trial:applied");
    assert!(s.policies().await.1.is_some(), "the trial boundary is on");
    // Live traffic during the window: the role is used (a quiet role would prove nothing),
    // from the second after the apply's: CloudTrail's times are to the second, and a call in
    // the apply's second is no evidence (it may have come before the apply).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(s.workload(&emulator.url, false));
    // Started: after its reconcile pass, and taking signals.
    let (mut daemon, log) = s.daemon("daemon.log", Some("Daemon started"));
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("resumed and ended passed"), "{logged}");
    let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
    assert_eq!(status["trials"][0]["status"], "passed", "{status:#}");
    assert_eq!(
        s.policies().await,
        before,
        "the boundary is gone after the pass"
    );
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}

/// The trial boundary's dead-man statement: whittle killed right after the apply and never
/// restarted, the role still gets its permissions back at the deadline.
#[tokio::test(flavor = "multi_thread")]
async fn permissions_come_back_at_the_dead_man_deadline_without_whittle() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    std::fs::write(
        s.ws.path("trial.toml"),
        "kind = \"trial\"\nwindow = \"2s\"\ndetection_interval = \"1s\"\ndead_man = \"15s\"\n",
    )
    .expect("playbook");
    // The dead man's deadline: long enough for the check under the boundary to finish before
    // it on a loaded machine.
    let dead_man = Duration::from_secs(15);
    emulator.enable_auth();
    let plan_id = s.mined_plan(&emulator.url);
    let applied = Instant::now();
    s.trial_killed_at(&plan_id, "trial:applied");
    // The deadline is at most this plus `dead_man`.
    let applied_by = Instant::now();
    assert!(
        !s.workload(&emulator.url, true),
        "the dropped action is denied under the boundary"
    );
    assert!(
        applied.elapsed() < dead_man,
        "the check under the boundary ended after the deadline, in {:?}: the machine is too slow for this test",
        applied.elapsed()
    );
    assert!(s.policies().await.1.is_some(), "the trial boundary is on");
    tokio::time::sleep((dead_man + Duration::from_secs(1)).saturating_sub(applied_by.elapsed()))
        .await;
    assert!(
        s.workload(&emulator.url, true),
        "after the deadline the boundary allows everything again, with no whittle running"
    );
}

/// A `replace`-mode trial that passes leaves the proposal in place (apply has nothing left to
/// do); a trial whose function's error metric rises above its baseline is rolled back.
#[tokio::test(flavor = "multi_thread")]
async fn replace_mode_and_the_error_metric_signal() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    emulator.enable_auth();
    let plan_id = s.mined_plan(&emulator.url);
    let before = s.policies().await;

    // The function's errors rise during the trial (the exercise reports 5 of them).
    let errors = s.ws.path("errors.py");
    std::fs::write(
        &errors,
        "import sys, boto3, datetime\nboto3.client('cloudwatch', endpoint_url=sys.argv[1], region_name='us-east-1').put_metric_data(Namespace='AWS/Lambda', MetricData=[{'MetricName': 'Errors', 'Dimensions': [{'Name': 'FunctionName', 'Value': 'orders-fn'}], 'Value': 5, 'Timestamp': datetime.datetime.now(datetime.timezone.utc)}])\n",
    )
    .expect("script");
    let playbook = s.ws.path("metric.toml");
    std::fs::write(
        &playbook,
        format!(
            "kind = \"trial\"\nwindow = \"6s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\n[exercise]\ncommand = [\"{}\", \"{}\", \"{}\"]\n[signals]\nerror_metric = {{ function = \"orders-fn\", max_increase = 1 }}\n",
            python().display(),
            errors.display(),
            emulator.url
        ),
    )
    .expect("playbook");
    let (code, stdout, stderr) = s.whittle(&[
        "trial",
        &plan_id,
        "--playbook",
        playbook.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("5 errors of function orders-fn since the apply"),
        "{stdout}"
    );
    assert_eq!(s.policies().await, before);

    // Replace mode: the role's policies are replaced for the trial and stay after a pass.
    let replace = s.ws.path("replace.toml");
    std::fs::write(
        &replace,
        format!(
            "kind = \"trial\"\nmode = \"replace\"\nwindow = \"3s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\n[exercise]\ncommand = [\"{}\", \"{}\", \"{}\", \"no\"]\n",
            python().display(),
            s.workload.display(),
            emulator.url
        ),
    )
    .expect("playbook");
    let (code, stdout, stderr) = s.whittle(&[
        "trial",
        &plan_id,
        "--playbook",
        replace.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("passed {ROLE_ARN}")),
        "{stdout}"
    );
    let (inline, boundary) = s.policies().await;
    assert_eq!(boundary, None);
    assert!(
        !inline["broad"].to_string().contains("sqs:*"),
        "the proposal is in place"
    );
    let (code, stdout, _) = s.whittle(&["apply", &plan_id]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("already in place: trial"), "{stdout}");
    // And a replace-mode trial's policies can be rolled back by hand, by role.
    let (code, stdout, stderr) = s.whittle(&["rollback", "--role", ROLE_ARN]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(s.policies().await, before);
}

/// While a daemon holds the state, the other commands are handed to it too, and a running
/// trial is ended by `whittle rollback TRIAL_ID` at once.
#[tokio::test(flavor = "multi_thread")]
async fn while_the_daemon_runs_commands_are_handed_to_it_and_a_trial_can_be_ended_by_hand() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    emulator.enable_auth();
    let plan_id = s.mined_plan(&emulator.url);
    let before = s.policies().await;
    let (mut daemon, log) = s.daemon("daemon.log", Some("Daemon started"));
    let handed = "The daemon holds the state: handing the command to it";

    // Reading and making plans, and mining, while the daemon holds the state.
    let (code, stdout, stderr) = s.whittle(&["plan", "show", &plan_id, "--format", "json"]);
    assert_eq!(code, 2, "the exit code is the plan's: {stdout}\n{stderr}");
    assert!(stderr.contains(handed), "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).expect("plan")["id"],
        plan_id.as_str()
    );
    let (code, stdout, stderr) = s.whittle(&["mine", "--format", "json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("\"sources\""), "{stdout}");
    let (code, stdout, stderr) = s.whittle(&["plan", "--role", ROLE_ARN, "--format", "json"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let plan_id = serde_json::from_str::<Value>(&stdout).expect("plan")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // An error in the daemon reads as the command's own.
    let (code, _, stderr) = s.whittle(&["apply", "plan-nonexistent", "--force"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("error: no plan `plan-nonexistent`"),
        "{stderr}"
    );

    // A trial that would run for ten minutes, handed to the daemon.
    std::fs::write(
        s.ws.path("long.toml"),
        "kind = \"trial\"\nwindow = \"10m\"\ndetection_interval = \"1s\"\ndead_man = \"30m\"\n[exercise]\ncommand = [\"sleep\", \"600\"]\ntimeout = \"15m\"\n",
    )
    .expect("playbook");
    let long = s.ws.path("long.toml");
    let (code, stdout, stderr) = s.whittle(&[
        "trial",
        &plan_id,
        "--playbook",
        long.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let trial_id = wait_for(Duration::from_secs(30), "the trial to run", || {
        let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
        status["trials"]
            .as_array()?
            .iter()
            .find(|t| t["status"] == "running" && t["plan_id"] == plan_id.as_str())
            .and_then(|t| t["id"].as_str().map(str::to_owned))
    });
    let boundary = wait_for(Duration::from_secs(30), "the trial boundary", || {
        let rt = tokio::runtime::Handle::current();
        let (_, boundary) = tokio::task::block_in_place(|| rt.block_on(s.policies()));
        boundary
    });
    assert!(boundary.contains(&trial_id), "{boundary}");

    // Nothing else changes the role meanwhile.
    let (code, stdout, stderr) = s.whittle(&["apply", &plan_id, "--force"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("trial {trial_id} is running on {ROLE_ARN}")),
        "{stdout}"
    );

    // Ended by hand: the role is as before at once, and the trial says why it ended.
    let started = Instant::now();
    let (code, stdout, stderr) = s.whittle(&["rollback", &trial_id]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("restored {ROLE_ARN}")),
        "{stdout}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(s.policies().await, before);
    let ended = wait_for(Duration::from_secs(30), "the trial's record", || {
        let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
        status["trials"]
            .as_array()?
            .iter()
            .find(|t| t["id"] == trial_id.as_str() && t["status"] != "running")
            .cloned()
    });
    assert_eq!(ended["status"], "rolled-back", "{ended}");
    assert_eq!(ended["reason"], "rolled back by hand", "{ended}");
    // The trial's own task stops watching (and its exercise) instead of concluding later.
    wait_for_log(&log, "Trial ended by a rollback by hand");

    // A daemon that loaded another configuration does not run a command with it.
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config).expect("config") + "\n# edited\n",
    )
    .expect("config");
    let (code, _, stderr) = s.whittle(&["plan"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("loaded a different configuration"),
        "{stderr}"
    );

    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(30)).success());
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(!logged.contains("Trial failed to run"), "{logged}");
    assert_eq!(s.policies().await, before);
}

/// With a daemon holding the state, `whittle trial` hands the trial to it: at once, or with
/// --wait until the verdict (and its exit code).
#[tokio::test(flavor = "multi_thread")]
async fn a_running_daemon_takes_the_trial_and_wait_reports_its_verdict() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    emulator.enable_auth();
    let plan_id = s.mined_plan(&emulator.url);
    let before = s.policies().await;
    let (mut daemon, _) = s.daemon("daemon.log", Some("Daemon started"));
    let (code, stdout, stderr) = s.whittle(&["trial", &plan_id, "--wait"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("rolled-back {ROLE_ARN}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("denied secretsmanager:GetSecretValue"),
        "{stdout}"
    );
    assert_eq!(s.policies().await, before);
    let started = Instant::now();
    let (code, stdout, _) = s.whittle(&["trial", &plan_id]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("handed to the daemon"), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "without --wait it returns at once"
    );
    wait_for(Duration::from_secs(30), "the second verdict", || {
        let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
        let done = status["trials"]
            .as_array()?
            .iter()
            .filter(|t| t["status"] == "rolled-back")
            .count();
        (done >= 2).then_some(())
    });
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(30)).success());
    assert_eq!(s.policies().await, before);
}

/// The daemon's `trial` job tries the newest untried plan on its own; here the playbook's
/// exercise invokes a Lambda function (the emulator runs it without Docker) and the plan
/// passes.
#[tokio::test(flavor = "multi_thread")]
async fn the_trial_job_tries_the_newest_plan_with_a_lambda_exercise() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    let root = emulator.sdk_config().await;
    emulator.post_json(
        "/moto-api/config",
        &serde_json::json!({"lambda": {"use_docker": false}}),
    );
    let mut zip = Vec::new();
    {
        // The smallest valid zip: an empty archive (the emulator never runs the code).
        zip.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06]);
        zip.extend_from_slice(&[0; 18]);
    }
    aws_sdk_lambda::Client::new(&root)
        .create_function()
        .function_name("orders-fn")
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .role(ROLE_ARN)
        .handler("index.handler")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(zip))
                .build(),
        )
        .send()
        .await
        .expect("function");
    std::fs::write(
        s.ws.path("trial.toml"),
        "kind = \"trial\"\nwindow = \"2s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\n[exercise]\ninvoke = { function = \"orders-fn\", payloads = ['{\"order\": 1}', '{\"order\": 2}'] }\n",
    )
    .expect("playbook");
    emulator.enable_auth();
    let plan_id = s.mined_plan(&emulator.url);
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config).expect("config")
            + "\n[jobs.trial]\ncron = \"*/2 * * * * *\"\n",
    )
    .expect("config");
    // (Until its status endpoint listens, `whittle status` fails: the daemon holds the state.)
    let (mut daemon, log) = s.daemon("daemon.log", Some("Daemon started"));
    let status = wait_for(Duration::from_secs(40), "the trial job's verdict", || {
        let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
        (status["trials"][0]["status"] == "passed").then_some(status)
    });
    assert_eq!(
        status["trials"][0]["plan_id"],
        plan_id.as_str(),
        "{status:#}"
    );
    let plan = status["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .find(|p| p["id"] == plan_id.as_str())
        .cloned()
        .expect("plan");
    assert_eq!(plan["status"], "trialled");
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(30)).success());
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(
        log_text.contains("job=trial") && log_text.contains("Job succeeded"),
        "{log_text}"
    );
}

/// A denial that only the trail's log files show (a data event: s3:GetObject; LookupEvents
/// has management events only), from a workload that keeps going (exit 0) after the error:
/// the trial still sees it and rolls back.
#[tokio::test(flavor = "multi_thread")]
async fn a_data_event_denial_in_the_trail_files_rolls_the_trial_back() {
    data_event_denial_rolls_back(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_event_denial_in_an_organization_trails_files_rolls_the_trial_back() {
    // The files are under AWSLogs/o-…/ACCOUNT/…: mined for the plan, watched in the trial.
    data_event_denial_rolls_back(true).await;
}

/// A trial's workload is denied an S3 data event, which only the trail files show
/// (LookupEvents has management events only); the trial must see it there and roll back.
async fn data_event_denial_rolls_back(organization_trail: bool) {
    let emulator = &whittle_tests::Emulator::start(&[("WHITTLE_EMULATOR_DELIVERY_SECONDS", "1")]);
    let s = setup(emulator).await;
    let root = emulator.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&root)
            .force_path_style(true)
            .build(),
    );
    for bucket in ["trial-trail", "trial-data"] {
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket");
    }
    s3.put_object()
        .bucket("trial-data")
        .key("report.csv")
        .body(b"a,b".to_vec().into())
        .send()
        .await
        .expect("object");
    start_trail_of(&root, "trial-trail", "trial-trail", organization_trail).await;
    // Live traffic that logs an error and carries on.
    let live = s.ws.path("live.py");
    std::fs::write(
        &live,
        WORKLOAD.replace(
            "    if occasional:\n        boto3.client(\"secretsmanager\", **kw).get_secret_value(SecretId=\"trial/api-key\")",
            "    if occasional:\n        try:\n            boto3.client(\"s3\", **kw).get_object(Bucket=\"trial-data\", Key=\"report.csv\")\n        except ClientError as e:\n            print(f\"report skipped: {e}\", file=sys.stderr)",
        ),
    )
    .expect("live workload");
    std::fs::write(
        s.ws.path("trial.toml"),
        format!(
            "kind = \"trial\"\nwindow = \"10s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\n[exercise]\ncommand = [\"{}\", \"{}\", \"{}\", \"yes\"]\n",
            python().display(),
            live.display(),
            emulator.url
        ),
    )
    .expect("playbook");
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config).expect("config")
            + "\n[[mining.sources]]\nname = \"trail\"\nkind = \"s3\"\naccount = \"staging\"\nbucket = \"trial-trail\"\n",
    )
    .expect("config");
    emulator.enable_auth();
    assert!(s.workload(&emulator.url, false));
    let (code, _, stderr) = s.whittle(&["mine", "--no-progress"]);
    assert_eq!(code, 0, "{stderr}");
    let (_, stdout, _) = s.whittle(&["plan", "--role", ROLE_ARN, "--format", "json"]);
    let plan: Value = serde_json::from_str(&stdout).expect("plan");
    assert_eq!(
        kept(&plan),
        [("ssm:GetParameter".to_owned(), "used".to_owned())]
    );
    let plan_id = plan["id"].as_str().expect("id").to_owned();
    let before = s.policies().await;
    let (code, stdout, stderr) = s.whittle(&["trial", &plan_id]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("denial(s) of the role after the apply: s3:GetObject"),
        "{stdout}"
    );
    assert_eq!(s.policies().await, before);
    if organization_trail {
        // Auth mode is on: list as the admin user.
        let admin = emulator
            .sdk_config_with(&s.admin_id, &s.admin_secret, None)
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&admin)
                .force_path_style(true)
                .build(),
        );
        let keys = s3
            .list_objects_v2()
            .bucket("trial-trail")
            .send()
            .await
            .expect("list");
        assert!(
            keys.contents()
                .iter()
                .filter_map(|o| o.key())
                .all(|k| k.starts_with("AWSLogs/o-")),
            "the emulator wrote the organization layout"
        );
    }
}

/// The workload as live traffic that logs an error and carries on (exit 0), its occasional
/// call replaced by `occasional` (Python, indented 4, using `kw`), after `delay_s` seconds.
fn live_workload(s: &Setup, occasional: &str, delay_s: f64) -> PathBuf {
    let live = s.ws.path("live.py");
    std::fs::write(
        &live,
        WORKLOAD.replace(
            "    if occasional:\n        boto3.client(\"secretsmanager\", **kw).get_secret_value(SecretId=\"trial/api-key\")",
            &format!(
                "    if occasional:\n        import time\n        time.sleep({delay_s})\n        try:\n{occasional}\n        except ClientError as e:\n            print(f\"occasional call failed: {{e}}\", file=sys.stderr)"
            ),
        ),
    )
    .expect("live workload");
    live
}

fn set_lookup_lag(emulator: &whittle_tests::Emulator, seconds: f64) {
    emulator.post_json(
        "/whittle-emulator/visibility-lag",
        &json!({ "lookup_seconds": seconds }),
    );
}

/// CloudTrail's delay, honestly: with events visible 10 s after the call, a plan that drops
/// an action the workload calls only in the last second of a 15 s window is rolled back
/// when the denial becomes visible, after the window (a timer would have passed it).
#[tokio::test(flavor = "multi_thread")]
async fn a_denial_in_the_last_second_visible_only_after_the_window_rolls_back() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    emulator.enable_auth();
    let plan_id = s.mined_plan(&emulator.url);
    let before = s.policies().await;
    let live = live_workload(
        &s,
        "            boto3.client(\"secretsmanager\", **kw).get_secret_value(SecretId=\"trial/api-key\")",
        14.0,
    );
    std::fs::write(
        s.ws.path("trial.toml"),
        format!(
            "kind = \"trial\"\nwindow = \"15s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\nmax_settle = \"2m\"\n[exercise]\ncommand = [\"{}\", \"{}\", \"{}\", \"yes\"]\ntimeout = \"40s\"\n",
            python().display(),
            live.display(),
            emulator.url
        ),
    )
    .expect("playbook");
    set_lookup_lag(emulator, 10.0);
    let started = Instant::now();
    let (code, stdout, stderr) = s.whittle(&["trial", &plan_id]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("denial(s) of the role after the apply: secretsmanager:GetSecretValue"),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("settling"), "{stderr}");
    assert!(
        started.elapsed() > Duration::from_secs(20),
        "the verdict came after the window and the lag: {:?}",
        started.elapsed()
    );
    assert_eq!(s.policies().await, before, "rolled back");
}

/// A role nobody called during the window proves nothing: the trial ends inconclusive, the
/// role is as before, and the plan is not marked trialled (apply still needs --force).
#[tokio::test(flavor = "multi_thread")]
async fn a_trial_whose_role_is_never_called_is_inconclusive() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    emulator.enable_auth();
    let plan_id = s.mined_plan(&emulator.url);
    let before = s.policies().await;
    std::fs::write(
        s.ws.path("trial.toml"),
        "kind = \"trial\"\nwindow = \"3s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\n",
    )
    .expect("playbook");
    let (code, stdout, stderr) = s.whittle(&["trial", &plan_id]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("inconclusive"), "{stdout}\n{stderr}");
    assert_eq!(s.policies().await, before);
    let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
    assert_eq!(status["trials"][0]["status"], "inconclusive", "{status:#}");
    let (code, _, stderr) = s.whittle(&["apply", &plan_id]);
    assert_eq!(code, 1, "an untrialled plan needs --force: {stderr}");
}

/// A correct plan passes only once CloudTrail has shown its whole window: with events
/// visible 6 s after the call, `whittle status` (asked of the daemon running the trial)
/// shows it settling, with until when, and then passed; the plan is trialled.
#[tokio::test(flavor = "multi_thread")]
async fn a_correct_plan_settles_in_status_then_passes() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    emulator.enable_auth();
    // Mined from the whole workload: the plan keeps the occasional secret read too.
    let plan_id = s.mined_plan_of(&emulator.url, true);
    std::fs::write(
        s.ws.path("trial.toml"),
        format!(
            "kind = \"trial\"\nwindow = \"4s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\nmax_settle = \"2m\"\n[exercise]\ncommand = [\"{}\", \"{}\", \"{}\", \"yes\"]\ntimeout = \"30s\"\n",
            python().display(),
            s.workload.display(),
            emulator.url
        ),
    )
    .expect("playbook");
    set_lookup_lag(emulator, 6.0);
    let (mut daemon, _log) = s.daemon("daemon.log", Some("Daemon started"));
    let (code, stdout, stderr) = s.whittle(&["trial", &plan_id]);
    assert_eq!(code, 0, "handed to the daemon: {stdout}\n{stderr}");
    let settling = wait_for(Duration::from_secs(60), "the trial settling", || {
        let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
        (status["trials"][0]["status"] == "settling").then(|| status["trials"][0].clone())
    });
    assert!(settling["settle_until"].is_string(), "{settling:#}");
    let done = wait_for(Duration::from_secs(90), "the verdict", || {
        let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
        let trial = status["trials"][0].clone();
        (trial["status"] != "settling" && trial["status"] != "running").then_some(trial)
    });
    assert_eq!(done["status"], "passed", "{done:#}");
    let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
    assert_eq!(status["plans"][0]["status"], "trialled", "{status:#}");
    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
}

/// whittle killed while a trial settles: on restart the trial resumes and passes, or is
/// rolled back, as its playbook's `on_restart` says.
#[tokio::test(flavor = "multi_thread")]
async fn a_trial_killed_while_settling_resumes_or_rolls_back_on_restart() {
    for (on_restart, expected) in [("resume", "passed"), ("rollback", "rolled-back")] {
        let emulator = &whittle_tests::Emulator::start(&[]);
        let s = setup(emulator).await;
        emulator.enable_auth();
        let plan_id = s.mined_plan_of(&emulator.url, true);
        let before = s.policies().await;
        std::fs::write(
            s.ws.path("trial.toml"),
            format!(
                "kind = \"trial\"\nwindow = \"3s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\nmax_settle = \"2m\"\non_restart = \"{on_restart}\"\n[exercise]\ncommand = [\"{}\", \"{}\", \"{}\", \"yes\"]\ntimeout = \"30s\"\n",
                python().display(),
                s.workload.display(),
                emulator.url
            ),
        )
        .expect("playbook");
        set_lookup_lag(emulator, 5.0);
        s.trial_killed_at(&plan_id, "trial:settling");
        let (mut daemon, log) = s.daemon("daemon.log", Some("Daemon started"));
        let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
        assert_eq!(
            status["trials"][0]["status"],
            expected,
            "{on_restart}: {status:#}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert_eq!(
            s.policies().await,
            before,
            "{on_restart}: the boundary is gone"
        );
        signal(&daemon, "TERM");
        assert!(wait_exit(&mut daemon, Duration::from_secs(20)).success());
    }
}

/// A denial whose message once named a non-action (the emulator's S3 said `s3:ListObjects`
/// for GetBucketTagging): the trial records `s3:GetBucketTagging` as needed, the next plan
/// keeps it, and that plan's trial passes.
#[tokio::test(flavor = "multi_thread")]
async fn a_denied_get_bucket_tagging_is_recorded_as_that_action_and_the_next_trial_passes() {
    let emulator = &whittle_tests::Emulator::start(&[]);
    let s = setup(emulator).await;
    let root = emulator.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&root)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("trial-data")
        .send()
        .await
        .expect("bucket");
    s3.put_bucket_tagging()
        .bucket("trial-data")
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .tag_set(
                    aws_sdk_s3::types::Tag::builder()
                        .key("team")
                        .value("orders")
                        .build()
                        .expect("tag"),
                )
                .build()
                .expect("tagging"),
        )
        .send()
        .await
        .expect("tags");
    // The occasional call is GetBucketTagging; the workload fails when it is denied.
    let tagging = s.ws.path("tagging.py");
    std::fs::write(
        &tagging,
        WORKLOAD.replace(
            "boto3.client(\"secretsmanager\", **kw).get_secret_value(SecretId=\"trial/api-key\")",
            "boto3.client(\"s3\", **kw).get_bucket_tagging(Bucket=\"trial-data\")",
        ),
    )
    .expect("workload");
    std::fs::write(
        s.ws.path("trial.toml"),
        format!(
            "kind = \"trial\"\nwindow = \"3s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\n[exercise]\ncommand = [\"{}\", \"{}\", \"{}\", \"yes\"]\ntimeout = \"30s\"\n",
            python().display(),
            tagging.display(),
            emulator.url
        ),
    )
    .expect("playbook");
    emulator.enable_auth();
    let plan_id = s.mined_plan(&emulator.url);
    let (code, stdout, stderr) = s.whittle(&["trial", &plan_id]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let status = status_json_as(&s.config, &s.admin_id, &s.admin_secret);
    assert_eq!(
        status["trials"][0]["denied"],
        json!(["s3:GetBucketTagging"]),
        "{status:#}"
    );
    let (code, stdout, stderr) = s.whittle(&["plan", "--role", ROLE_ARN, "--format", "json"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("plan");
    assert!(
        kept(&plan).contains(&("s3:GetBucketTagging".to_owned(), "needed".to_owned())),
        "{:?}",
        kept(&plan)
    );
    let plan_id = plan["id"].as_str().expect("id").to_owned();
    let (code, stdout, stderr) = s.whittle(&["trial", &plan_id]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}
