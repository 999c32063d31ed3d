//! `whittle self-policy`, checked rather than guessed: every workflow of the demo (the split
//! of a shared role among its functions included) runs against
//! the emulator in auth mode as a user whose only policy is `self-policy`'s output, and passes;
//! with any one statement removed, a workflow fails with a denial naming one of its actions
//! (an explicit Deny, which no workflow needs, is shown to stop a change of a protected role
//! that the Allows would let through).

use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;

use crate::support::*;

/// The name of whittle's user in these runs: a denial of its calls names it.
const USER: &str = "whittle-selfpolicy";

/// The demo's configuration (`tests/demo.sh`): the shipped `config.toml` pointed at the
/// emulator, every role of the seed's staging account in reach, observations of any age.
fn demo_config(ws: &Workspace, endpoint: &str) -> PathBuf {
    let root = whittle_tests::repo_root();
    let text = std::fs::read_to_string(root.join("config.toml")).expect("config.toml");
    let mut out = String::new();
    for line in text.lines() {
        let line = if line.starts_with("dir = ") {
            format!("dir = \"{}\"", ws.state_dir().display())
        } else if line.starts_with("# endpoint_url = ") {
            format!("endpoint_url = \"{endpoint}\"\nmax_attempts = 1")
        } else if line.starts_with("max_attempts = ") {
            String::new()
        } else if line.starts_with("listen = ") {
            "listen = \"127.0.0.1:0\"".to_owned()
        } else if line.starts_with("arn_patterns = ") {
            "arn_patterns = [\"arn:aws:iam::*:role/app-*\", \"arn:aws:iam::*:role/aws-service-role/*\"]".to_owned()
        } else if line.starts_with("min_observation_days = ") {
            "min_observation_days = 0".to_owned()
        } else if let Some(rest) = line.strip_prefix("playbook = \"playbooks/") {
            format!("playbook = \"{}/playbooks/{rest}", root.display())
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    ws.write_config(&out)
}

/// `self-policy`'s document for the demo's configuration.
fn generated_policy() -> Value {
    let ws = Workspace::new();
    let config = demo_config(&ws, "http://127.0.0.1:9");
    let config = config.to_str().expect("utf-8 path");
    let out = whittle(&[
        "self-policy",
        "--config",
        config,
        "--account",
        "staging",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "self-policy: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JSON policy document")
}

/// How one run of the demo's workflows went.
struct Outcome {
    /// The first workflow that failed: its command and output.
    failure: Option<String>,
    /// Whether whittle's credentials were refused a change of the protected break-glass
    /// role (which the seed tags `whittle:managed` and the target patterns match).
    protected_refused: bool,
    /// `whittle usage` of whittle's own user, and `whittle plan --self`, after it all.
    own_usage: String,
    plan_self: String,
}

/// The demo against a fresh emulator, whittle running as a user whose only policy is
/// `policy`: rotation, mining, usage, plan, apply and rollback, a trial that rolls back, a
/// trial that passes, apply. Stops at the first workflow that fails.
async fn run_demo(policy: &Value) -> Outcome {
    // Trail files delivered every second: a trial settles once they show its window's end.
    let emulator = Emulator::start(&[
        ("MOTO_IAM_LOAD_MANAGED_POLICIES", "true"),
        ("WHITTLE_EMULATOR_DELIVERY_SECONDS", "1"),
    ]);
    let ws = Workspace::new();
    let config = demo_config(&ws, &emulator.url);
    let config = config.to_str().expect("utf-8 path").to_owned();
    let python = whittle_tests::python();
    let root = whittle_tests::repo_root();

    // The demo's staging account; its operator (allowed everything) runs the workload.
    let operator_env = ws.path("operator.env");
    let seeded = std::process::Command::new(&python)
        .arg(root.join("tests/emulator/seed_demo.py"))
        .arg(&emulator.url)
        .arg(&operator_env)
        .output()
        .expect("run the seed");
    assert!(seeded.status.success(), "seed: {}", text(&seeded.stderr));
    let env = std::fs::read_to_string(&operator_env).expect("operator credentials");
    let value = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .expect("a credential")
            .to_owned()
    };
    let (operator_key, operator_secret) =
        (value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY"));
    emulator.post_json("/whittle-emulator/deliver", &serde_json::json!({}));

    let iam = aws_sdk_iam::Client::new(&emulator.sdk_config().await);
    iam.create_user()
        .user_name(USER)
        .send()
        .await
        .expect("user");
    iam.put_user_policy()
        .user_name(USER)
        .policy_name("self-policy")
        .policy_document(policy.to_string())
        .send()
        .await
        .expect("whittle's policy");
    let key = iam
        .create_access_key()
        .user_name(USER)
        .send()
        .await
        .expect("key")
        .access_key
        .expect("access key");
    emulator.enable_auth();

    let trial = ws.path("trial.toml");
    std::fs::write(
        &trial,
        format!(
            "kind = \"trial\"\nwindow = \"4s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\n[exercise]\ncommand = [\"env\", \"AWS_ACCESS_KEY_ID={operator_key}\", \"AWS_SECRET_ACCESS_KEY={operator_secret}\", \"{}\", \"{}\", \"{}\"]\ntimeout = \"60s\"\n",
            python.display(),
            root.join("tests/emulator/demo_workload.py").display(),
            emulator.url
        ),
    )
    .expect("trial playbook");
    let trial = trial.to_str().expect("utf-8 path").to_owned();
    // The catalog service's trial: its three functions' work, each as its role of the moment.
    let catalog_trial = ws.path("trial-catalog.toml");
    std::fs::write(
        &catalog_trial,
        format!(
            "kind = \"trial\"\nwindow = \"4s\"\ndetection_interval = \"1s\"\ndead_man = \"10m\"\n[exercise]\ncommand = [\"env\", \"AWS_ACCESS_KEY_ID={operator_key}\", \"AWS_SECRET_ACCESS_KEY={operator_secret}\", \"{}\", \"{}\", \"{}\", \"{}\"]\ntimeout = \"60s\"\n",
            python.display(),
            root.join("tests/emulator/function_workload.py").display(),
            emulator.url,
            root.join("tests/emulator/catalog_service.json").display()
        ),
    )
    .expect("trial playbook");
    let catalog_trial = catalog_trial.to_str().expect("utf-8 path").to_owned();

    let (key_id, secret) = (key.access_key_id, key.secret_access_key);
    let run = |args: &[&str], expected: i32| -> Result<String, String> {
        let out = command(args)
            .env("AWS_ACCESS_KEY_ID", &key_id)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("AWS_REGION", "us-east-1")
            .output()
            .expect("run whittle");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let denied = format!("user/{USER} is not authorized to perform");
        if out.status.code() != Some(expected)
            || stdout.contains(&denied)
            || stderr.contains(&denied)
        {
            return Err(format!(
                "whittle {} exited {:?} (expected {expected})\n{stdout}\n{stderr}",
                args.join(" "),
                out.status.code()
            ));
        }
        Ok(stdout)
    };
    let plan_id = |stdout: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("plan "))
            .and_then(|l| l.split_whitespace().next())
            .expect("a plan id")
            .to_owned()
    };
    let c = config.as_str();
    let orders = "arn:aws:iam::123456789012:role/app-orders";
    let catalog = "arn:aws:iam::123456789012:role/app-catalog";
    let workflows = async {
        run(&["discover", "--config", c], 0)?;
        run(&["rotate", "--config", c, "--now"], 0)?;
        run(&["status", "--config", c, "--check-aws"], 0)?;
        run(&["mine", "--config", c, "--no-progress"], 0)?;
        run(&["usage", "--config", c], 0)?;
        let plan = plan_id(&run(&["plan", "--config", c], 2)?);
        let applied = run(&["apply", "--config", c, &plan, "--force"], 0)?;
        run(&["rollback", "--config", c, "--role", orders], 0)?;
        run(
            &[
                "rollback",
                "--config",
                c,
                "--role",
                "arn:aws:iam::123456789012:role/app-billing",
            ],
            0,
        )?;
        // The catalog service's split, undone as the demo does.
        let split = applied
            .split("(undo: whittle rollback ")
            .filter_map(|rest| rest.split(')').next())
            .find(|id| id.starts_with("split-"))
            .ok_or_else(|| format!("the apply split no role: {applied}"))?;
        run(&["rollback", "--config", c, split], 0)?;
        let plan = plan_id(&run(&["plan", "--config", c, "--role", orders], 2)?);
        // The first plan drops dynamodb:DescribeTable, which the workload needs: rolled back.
        run(&["trial", "--config", c, "--playbook", &trial, &plan], 1)?;
        let plan = plan_id(&run(&["plan", "--config", c, "--role", orders], 2)?);
        run(&["trial", "--config", c, "--playbook", &trial, &plan], 0)?;
        run(&["apply", "--config", c, &plan], 0)?;
        let plan = plan_id(&run(&["plan", "--config", c, "--role", catalog], 2)?);
        run(
            &["trial", "--config", c, "--playbook", &catalog_trial, &plan],
            0,
        )?;
        run(&["apply", "--config", c, &plan], 0)?;
        // Eating our own cooking: whittle's calls are in the trail like anyone's.
        emulator.post_json("/whittle-emulator/deliver", &serde_json::json!({}));
        run(&["mine", "--config", c, "--no-progress"], 0)?;
        let usage = run(
            &[
                "usage",
                "--config",
                c,
                "--role",
                &format!("arn:aws:iam::123456789012:user/{USER}"),
            ],
            0,
        )?;
        let plan_self = run(&["plan", "--config", c, "--self"], 0)?;
        Ok::<(String, String), String>((usage, plan_self))
    };
    let (failure, own_usage, plan_self) = match workflows.await {
        Ok((usage, plan_self)) => (None, usage, plan_self),
        Err(failure) => (Some(failure), String::new(), String::new()),
    };

    let as_whittle =
        aws_sdk_iam::Client::new(&emulator.sdk_config_with(&key_id, &secret, None).await);
    let protected_refused = as_whittle
        .put_role_policy()
        .role_name("app-break-glass")
        .policy_name("whittle-probe")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#)
        .send()
        .await
        .is_err();
    Outcome {
        failure,
        protected_refused,
        own_usage,
        plan_self,
    }
}

fn actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_demo_runs_under_exactly_the_generated_policy() {
    let started = Instant::now();
    let outcome = run_demo(&generated_policy()).await;
    assert_eq!(
        outcome.failure, None,
        "a workflow failed under the whole policy"
    );
    assert!(
        outcome.protected_refused,
        "whittle's credentials could change the protected break-glass role"
    );
    // whittle's own principal is mined like any other, and every statement was used.
    assert!(
        outcome.own_usage.contains(&format!("user/{USER}"))
            && outcome.own_usage.contains("secretsmanager:PutSecretValue")
            && outcome.own_usage.contains("iam:PutRolePermissionsBoundary"),
        "whittle's own usage:\n{}",
        outcome.own_usage
    );
    assert!(
        outcome.plan_self.starts_with(&format!(
            "whittle-staging for arn:aws:iam::123456789012:user/{USER}: 0 of "
        )),
        "plan --self:\n{}",
        outcome.plan_self
    );
    eprintln!(
        "self-policy: the demo under the whole policy in {:.0?}",
        started.elapsed()
    );
}

#[test]
fn every_statement_of_the_generated_policy_is_needed() {
    let started = Instant::now();
    let policy = generated_policy();
    let statements = policy["Statement"].as_array().expect("statements").clone();
    // Longest first: the cases share a few slots, and this test is the integration run's
    // longest. Without the Deny the whole demo runs; the statements of later workflows
    // (trials, rotation, LookupEvents) come later in the policy and fail later in the demo
    // or after retries. Started last, the Deny's run alone took the test's last 10 s.
    let cases: Vec<(String, (Value, Value))> = statements
        .iter()
        .enumerate()
        .rev()
        .map(|(i, statement)| {
            let mut without = policy.clone();
            without["Statement"]
                .as_array_mut()
                .expect("statements")
                .remove(i);
            let sid = statement["Sid"].as_str().expect("a Sid");
            (format!("without-{sid}"), (statement.clone(), without))
        })
        .collect();
    run_cases(cases, |(statement, policy): (Value, Value)| async move {
        let case_started = Instant::now();
        let outcome = run_demo(&policy).await;
        eprintln!(
            "self-policy: without {} in {:.0?}",
            statement["Sid"],
            case_started.elapsed()
        );
        if statement["Effect"] == "Deny" {
            assert_eq!(outcome.failure, None, "a workflow failed without the Deny");
            assert!(
                !outcome.protected_refused,
                "without the Deny whittle still could not change the protected role: the Deny is dead weight"
            );
            return;
        }
        let failure = outcome
            .failure
            .unwrap_or_else(|| panic!("every workflow passed without {}", statement["Sid"]));
        let named = actions(&statement);
        assert!(
            named
                .iter()
                .any(|a| failure.contains(&format!("is not authorized to perform: {a}"))),
            "the failure does not name one of {named:?}:\n{failure}"
        );
    });
    eprintln!(
        "self-policy: {} statements, each removed, in {:.0?}",
        statements.len(),
        started.elapsed()
    );
}
