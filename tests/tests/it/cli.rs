//! The CLI's answers to good and bad input: located config errors, exit codes, precedence.

use crate::support::{Workspace, text, whittle};

#[test]
fn validate_accepts_the_shipped_example() {
    let example = whittle_tests::repo_root().join("config.toml");
    let out = whittle(&["validate", "--config", example.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("valid (1 account(s), 3 job(s), 2 rotation(s))"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn validate_reports_three_mistakes_located_and_exits_1() {
    let ws = Workspace::new();
    let config = ws.write_config(
        r#"[aws]
region = "us-east-1"
retries = 3

[[aws.accounts]]
name = "staging"
id = 123456789012

[targets]
arn_patterns = ["arn:aws:iam::*:role/app-*"]

[jobs.discover]
cron = "0 61 * * * *"
"#,
    );
    let out = whittle(&["validate", "--config", config.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let path = config.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("{path}:3:1: unknown field `retries`")),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{path}:7:6: aws.accounts[0].id: invalid type: integer"
        )),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "{path}:13:8: invalid cron expression `0 61 * * * *`"
        )),
        "{stderr}"
    );
    assert_eq!(lines[3], format!("error: 3 problem(s) in {path}"));
    assert!(out.stdout.is_empty(), "diagnostics go to stderr");
}

#[test]
fn missing_config_is_one_line_naming_the_file() {
    let out = whittle(&["validate", "--config", "/nonexistent/whittle.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("/nonexistent/whittle.toml: cannot read the configuration"),
        "{stderr}"
    );
    assert!(stderr.contains("--config"), "says what to do: {stderr}");
}

/// Global options (`--config`, `--state`, `--format`) are taken before or after any
/// subcommand, nested ones included: each spelling reaches the command, which then reports
/// the missing configuration by the name it was given (not clap's usage error, exit 2).
#[test]
fn global_options_work_before_and_after_a_nested_subcommand() {
    for argv in [
        &["plan", "--config", "/nonexistent/c.toml", "show", "plan-1"][..],
        &["--config", "/nonexistent/c.toml", "plan", "show", "plan-1"],
        &["plan", "show", "plan-1", "--config", "/nonexistent/c.toml"],
        &[
            "plan",
            "show",
            "--state",
            "/nonexistent/s",
            "plan-1",
            "--format",
            "json",
            "--config",
            "/nonexistent/c.toml",
        ],
    ] {
        let out = whittle(argv);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{argv:?}: {stderr}");
        assert!(
            stderr.contains("/nonexistent/c.toml: cannot read the configuration"),
            "{argv:?}: {stderr}"
        );
    }
}

#[test]
fn state_dir_precedence_is_flag_then_environment_then_file() {
    let ws = Workspace::new();
    let from_file = ws.path("from-file");
    let config = ws.write_config(&format!(
        "[[aws.accounts]]\nname = \"s\"\n[targets]\ntags = {{ team = \"*\" }}\n[state]\ndir = \"{}\"\n",
        from_file.display()
    ));
    let config = config.to_str().expect("path");
    // `status` on a state directory that does not exist names the directory it looked at.
    let named = |out: std::process::Output| {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        stderr
    };
    let file_only = named(whittle(&["status", "--config", config]));
    assert!(
        file_only.contains(&from_file.display().to_string()),
        "{file_only}"
    );

    let env_dir = ws.path("from-env");
    let out = crate::support::command(&["status", "--config", config])
        .env("WHITTLE_STATE_DIR", &env_dir)
        .output()
        .expect("run");
    let env_wins = named(out);
    assert!(
        env_wins.contains(&env_dir.display().to_string()),
        "{env_wins}"
    );

    let flag_dir = ws.path("from-flag");
    let out = crate::support::command(&[
        "status",
        "--config",
        config,
        "--state",
        flag_dir.to_str().expect("path"),
    ])
    .env("WHITTLE_STATE_DIR", &env_dir)
    .output()
    .expect("run");
    let flag_wins = named(out);
    assert!(
        flag_wins.contains(&flag_dir.display().to_string()),
        "{flag_wins}"
    );
}

#[test]
fn help_documents_exit_codes() {
    let out = whittle(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("2  (whittle plan) changes are proposed"),
        "{help}"
    );
    for command in ["validate", "daemon", "status", "version"] {
        assert!(help.contains(command), "{command} missing from --help");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = whittle(&["version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("whittle {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unreachable_endpoint_is_one_line_and_writes_no_state() {
    let ws = Workspace::new();
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let config = ws.emulator_config("http://127.0.0.1:1", "none");
    let out = whittle(&["daemon", "--config", config.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(error.contains("cannot reach http://127.0.0.1:1"), "{error}");
    assert!(
        error.contains("endpoint_url"),
        "says what to check: {error}"
    );
    assert!(
        !ws.state_dir().exists(),
        "nothing may be written to the state on a refused start"
    );

    let out = whittle(&[
        "status",
        "--check-aws",
        "--config",
        config.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

#[test]
fn state_path_that_is_a_file_is_refused() {
    let ws = Workspace::new();
    let emulator = whittle_tests::Emulator::shared();
    let config = ws.emulator_config(&emulator.url, "file-state");
    std::fs::write(ws.state_dir(), b"not a directory").expect("write");
    let out = whittle(&["daemon", "--config", config.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is not a directory"), "{stderr}");
}

/// `whittle policy eval` over the committed policy fixtures, from a directory without any
/// configuration: it needs neither config.toml nor AWS.
fn policy_eval(args: &[&str]) -> (Option<i32>, String, String) {
    let fixtures = whittle_tests::repo_root().join("tests/fixtures/policy");
    let empty = tempfile::tempdir().expect("tempdir");
    let out = crate::support::command(&[&["policy", "eval"], args].concat())
        .current_dir(&fixtures)
        .env("WHITTLE_CONFIG", empty.path().join("absent.toml"))
        .output()
        .expect("run whittle");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn decision(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let (code, stdout, stderr) = policy_eval(&all);
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str(&stdout).expect("JSON")
}

#[test]
fn policy_eval_decides_like_iam_and_names_the_deciding_statement() {
    let office = "aws:SourceIp=203.0.113.9";
    let (code, stdout, stderr) = policy_eval(&[
        "--identity",
        "identity.json",
        "--action",
        "S3:GetObject",
        "--resource",
        "arn:aws:s3:::orders/2026/1.json",
        "--context",
        office,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "Allowed\n  allowed by identity.json statement 0 (Sid ReadOrders)\n"
    );

    // The IP condition of the Deny: outside the office it is an explicit deny.
    let outside = decision(&[
        "--identity",
        "identity.json",
        "--action",
        "s3:GetObject",
        "--resource",
        "arn:aws:s3:::orders/k",
        "--context",
        "aws:SourceIp=198.51.100.1",
    ]);
    assert_eq!(outside["decision"], "ExplicitlyDenied");
    assert_eq!(outside["deciding"][0]["sid"], "OfficeOnly");
    // No source IP at all: NotIpAddress on a missing key is true, so the Deny applies.
    let no_ip = decision(&[
        "--identity",
        "identity.json",
        "--action",
        "s3:GetObject",
        "--resource",
        "arn:aws:s3:::orders/k",
    ]);
    assert_eq!(no_ip["decision"], "ExplicitlyDenied");
    // The planner's view: an unknown source IP makes the answer depend on the condition.
    let partial = decision(&[
        "--identity",
        "identity.json",
        "--action",
        "s3:GetObject",
        "--resource",
        "arn:aws:s3:::orders/k",
        "--partial-context",
    ]);
    assert_eq!(partial["decision"], "DependsOnCondition");
    assert_eq!(partial["undecided"][0]["sid"], "OfficeOnly");

    // A repeated --context key is multi-valued: every tag key must be allowed.
    let tagging = |keys: &[&str]| {
        let mut args = vec![
            "--identity",
            "identity.json",
            "--action",
            "s3:PutObjectTagging",
            "--resource",
            "arn:aws:s3:::orders/k",
            "--context",
            office,
        ];
        let pairs: Vec<String> = keys.iter().map(|k| format!("aws:TagKeys={k}")).collect();
        for pair in &pairs {
            args.extend(["--context", pair.as_str()]);
        }
        decision(&args)["decision"].clone()
    };
    assert_eq!(tagging(&["env", "team"]), "Allowed");
    assert_eq!(tagging(&["env", "cost"]), "ImplicitlyDenied");

    // Policy variables come from --principal (aws:username of an IAM user).
    let home = |principal: &str| {
        decision(&[
            "--identity",
            "identity.json",
            "--action",
            "s3:PutObject",
            "--resource",
            "arn:aws:s3:::orders/home/alice/notes.txt",
            "--principal",
            principal,
            "--context",
            office,
        ])["decision"]
            .clone()
    };
    assert_eq!(home("arn:aws:iam::123456789012:user/alice"), "Allowed");
    assert_eq!(
        home("arn:aws:iam::123456789012:user/bob"),
        "ImplicitlyDenied"
    );

    // The boundary intersects, URL-encoded as IAM returns it or not.
    for boundary in ["boundary.json", "boundary-url-encoded.txt"] {
        let list = decision(&[
            "--identity",
            "identity.json",
            "--boundary",
            boundary,
            "--action",
            "s3:ListBucket",
            "--resource",
            "arn:aws:s3:::orders",
            "--context",
            office,
        ]);
        assert_eq!(list["decision"], "ImplicitlyDenied", "{boundary}");
        assert_eq!(
            list["reason"],
            "the permissions boundary does not allow s3:ListBucket on arn:aws:s3:::orders"
        );
    }
}

/// The requests that IAM's evaluation logic decides differently from identity policies
/// alone: each answer is what AWS answers.
#[test]
fn policy_eval_answers_as_aws_where_identity_policies_alone_mislead() {
    // No identity policy at all is a principal without permissions, not an argument error.
    let nothing = decision(&[
        "--action",
        "s3:GetObject",
        "--resource",
        "arn:aws:s3:::orders/k",
    ]);
    assert_eq!(nothing["decision"], "ImplicitlyDenied");
    assert_eq!(nothing["layer"], "identity");

    // A resource in another account needs its resource-based policy to allow the request.
    let cross = decision(&[
        "--identity",
        "admin.json",
        "--principal",
        "arn:aws:iam::111111111111:role/app",
        "--action",
        "sqs:SendMessage",
        "--resource",
        "arn:aws:sqs:us-east-1:222222222222:orders",
    ]);
    assert_eq!(cross["decision"], "ImplicitlyDenied", "{cross}");
    assert_eq!(cross["layer"], "resource");

    // AWS refuses to modify what it owns, whatever the policies allow.
    for (action, resource) in [
        (
            "iam:CreatePolicyVersion",
            "arn:aws:iam::aws:policy/AdministratorAccess",
        ),
        (
            "iam:DeleteRole",
            "arn:aws:iam::111111111111:role/aws-service-role/elasticbeanstalk.amazonaws.com/AWSServiceRoleForElasticBeanstalk",
        ),
        (
            "kms:DeleteAlias",
            "arn:aws:kms:us-east-1:111111111111:alias/aws/s3",
        ),
    ] {
        let owned = decision(&[
            "--identity",
            "admin.json",
            "--principal",
            "arn:aws:iam::111111111111:role/app",
            "--action",
            action,
            "--resource",
            resource,
        ]);
        assert_eq!(owned["decision"], "ExplicitlyDenied", "{action}: {owned}");
        assert_eq!(owned["layer"], "aws", "{action}");
    }

    // sts:GetCallerIdentity needs no permission: even an explicit Deny does not stop it.
    let whoami = decision(&[
        "--identity",
        "deny-sts.json",
        "--action",
        "sts:GetCallerIdentity",
    ]);
    assert_eq!(whoami["decision"], "Allowed", "{whoami}");
    assert_eq!(whoami["layer"], "aws");

    // An incomplete ARN in a Resource is completed with wildcards in every missing field.
    let queue = decision(&[
        "--identity",
        "incomplete-arn.json",
        "--action",
        "sqs:SendMessage",
        "--resource",
        "arn:aws:sqs:eu-west-1:111111111111:orders",
    ]);
    assert_eq!(queue["decision"], "Allowed", "{queue}");
    assert_eq!(queue["deciding"][0]["sid"], "AnyQueue");
}

/// Every layer from files: the resource's policy, SCP levels, RCPs, session policies, and
/// the accounts of both sides.
#[test]
fn policy_eval_takes_every_layer() {
    let app = "arn:aws:iam::111111111111:role/app";
    let queue = "arn:aws:sqs:us-east-1:222222222222:orders";
    let ask = |extra: &[&str], action: &str| {
        let mut args = vec!["--identity", "admin.json", "--action", action];
        args.extend(extra);
        decision(&args)
    };

    // Cross-account: the queue's policy names the role, the identity policy allows.
    let sent = ask(
        &[
            "--principal",
            app,
            "--resource-policy",
            "queue-policy.json",
            "--resource",
            queue,
        ],
        "sqs:SendMessage",
    );
    assert_eq!(sent["decision"], "Allowed", "{sent}");
    assert_eq!(sent["layer"], "resource");
    let layers: Vec<&str> = sent["deciding"]
        .as_array()
        .expect("deciding")
        .iter()
        .map(|s| s["layer"].as_str().expect("layer"))
        .collect();
    assert_eq!(layers, ["identity", "resource"]);
    let received = ask(
        &[
            "--principal",
            app,
            "--resource-policy",
            "queue-policy.json",
            "--resource",
            queue,
        ],
        "sqs:ReceiveMessage",
    );
    assert_eq!(received["decision"], "ImplicitlyDenied");
    assert_eq!(received["layer"], "resource");

    // SCP levels: every level must allow; a deny at any level wins.
    let scps = [
        "--principal",
        app,
        "--scp",
        "scp-root.json",
        "--scp",
        "scp-ou.json",
        "--resource",
        "arn:aws:sqs:us-east-1:111111111111:own",
    ];
    assert_eq!(ask(&scps, "sqs:SendMessage")["decision"], "Allowed");
    let purge = ask(&scps, "sqs:PurgeQueue");
    assert_eq!(purge["decision"], "ExplicitlyDenied");
    assert_eq!(purge["layer"], "scp");
    assert_eq!(purge["deciding"][0]["sid"], "NoPurge");
    let topic = ask(
        &[
            "--principal",
            app,
            "--scp",
            "scp-root.json",
            "--scp",
            "scp-ou.json",
            "--resource",
            "arn:aws:sns:us-east-1:111111111111:t",
        ],
        "sns:Publish",
    );
    assert_eq!(topic["decision"], "ImplicitlyDenied");
    assert_eq!(topic["layer"], "scp");
    assert!(
        topic["reason"]
            .as_str()
            .expect("reason")
            .contains("level 2 of 2 (scp-ou.json)"),
        "{topic}"
    );

    // RCPs of the resource's account, which --resource-account names for an S3 ARN.
    let bucket = |org: &str| {
        let context = format!("aws:PrincipalOrgID={org}");
        ask(
            &[
                "--principal",
                "arn:aws:iam::111111111111:user/dana",
                "--rcp",
                "rcp-perimeter.json",
                "--resource",
                "arn:aws:s3:::exchange/k",
                "--resource-account",
                "111111111111",
                "--context",
                &context,
            ],
            "s3:GetObject",
        )
    };
    assert_eq!(bucket("o-mine")["decision"], "Allowed");
    let outsider = bucket("o-other");
    assert_eq!(outsider["decision"], "ExplicitlyDenied");
    assert_eq!(outsider["layer"], "rcp");

    // A session policy narrows a role session.
    let session = |action: &str| {
        ask(
            &[
                "--principal",
                "arn:aws:sts::111111111111:assumed-role/app/ci",
                "--session-policy",
                "session-read.json",
                "--resource",
                "arn:aws:s3:::orders/k",
                "--resource-account",
                "111111111111",
            ],
            action,
        )
    };
    assert_eq!(session("s3:GetObject")["decision"], "Allowed");
    let put = session("s3:PutObject");
    assert_eq!(put["decision"], "ImplicitlyDenied");
    assert_eq!(put["layer"], "session");

    // An S3 ARN without --resource-account: the principal's account is assumed, and said.
    let (code, stdout, stderr) = policy_eval(&[
        "--identity",
        "admin.json",
        "--principal",
        app,
        "--action",
        "s3:GetObject",
        "--resource",
        "arn:aws:s3:::orders/k",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "Allowed\n  allowed by admin.json statement 0 (Sid Admin)\n  note: the resource's ARN names no account: it is taken to be the principal's, 111111111111\n"
    );
}

#[test]
fn policy_eval_help_shows_every_layer_with_an_example() {
    let out = crate::support::command(&["policy", "eval", "--help"])
        .output()
        .expect("run whittle");
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for flag in [
        "--identity",
        "--boundary",
        "--session-policy",
        "--resource-policy",
        "--scp",
        "--rcp",
        "--resource-account",
        "--principal",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    // One example command per layer.
    let examples = help
        .lines()
        .filter(|line| line.trim_start().starts_with("whittle policy eval"))
        .count();
    assert!(examples >= 6, "{examples} examples in:\n{help}");
    for layer in [
        "scp", "rcp", "resource", "identity", "boundary", "session", "aws",
    ] {
        assert!(help.contains(layer), "{layer} missing");
    }
}

#[test]
fn policy_eval_rejects_bad_layers_clearly() {
    let refused = |args: &[&str], expected: &str| {
        let (code, _, stderr) = policy_eval(args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    refused(
        &["--principal", "role/app", "--action", "s3:GetObject"],
        "error: --principal: `role/app` is not a principal",
    );
    refused(
        &[
            "--resource-policy",
            "admin.json",
            "--action",
            "s3:GetObject",
        ],
        "admin.json is not a resource-based policy: Statement[0]: a resource-based policy statement needs Principal",
    );
    refused(
        &["--scp", "queue-policy.json", "--action", "s3:GetObject"],
        "queue-policy.json is not a service control policy: Statement[0]: an SCP cannot name a Principal",
    );
    refused(
        &["--rcp", "queue-policy.json", "--action", "s3:GetObject"],
        "queue-policy.json is not a resource control policy",
    );
    refused(
        &[
            "--principal",
            "arn:aws:iam::111111111111:user/dana",
            "--session-policy",
            "session-read.json",
            "--action",
            "s3:GetObject",
        ],
        "session policies belong to a role session or a federated user session",
    );
    refused(
        &[
            "--action",
            "sqs:SendMessage",
            "--resource",
            "arn:aws:sqs:us-east-1:222222222222:orders",
            "--resource-account",
            "111111111111",
        ],
        "--resource-account 111111111111: the resource's ARN names account 222222222222",
    );
    refused(
        &["--action", "s3:GetObject", "--resource-account", "1111"],
        "write a 12-digit account id",
    );
}

#[test]
fn policy_eval_rejects_bad_policies_and_arguments_clearly() {
    let (code, _, stderr) = policy_eval(&[
        "--identity",
        "unknown-element.json",
        "--action",
        "s3:GetObject",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim(),
        "error: unknown-element.json is not a valid policy: Statement[0].Resorce: unknown element (a statement has Sid, Effect, Principal, NotPrincipal, Action, NotAction, Resource, NotResource, Condition)"
    );
    let (code, _, stderr) = policy_eval(&["--identity", "absent.json", "--action", "s3:GetObject"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("cannot read policy file absent.json"),
        "{stderr}"
    );
    let (code, _, stderr) = policy_eval(&[
        "--identity",
        "identity.json",
        "--action",
        "s3:GetObject",
        "--context",
        "aws:SourceIp",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("write KEY=VALUE"), "{stderr}");
    let (code, _, stderr) = policy_eval(&["--identity", "identity.json", "--action", "GetObject"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("write service:Action"), "{stderr}");
    // A misspelt action is decided (IAM would too) but flagged.
    let (code, _, stderr) = policy_eval(&[
        "--identity",
        "identity.json",
        "--action",
        "s3:GetObjekt",
        "--resource",
        "arn:aws:s3:::orders/k",
    ]);
    assert_eq!(code, Some(0));
    assert!(
        stderr.contains("`s3:GetObjekt` is not in the IAM action catalog"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_aws_assumes_each_accounts_role_and_refuses_a_wrong_account_id() {
    let emulator = crate::support::Emulator::shared();
    let sdk = emulator.sdk_config().await;
    crate::support::create_role(&aws_sdk_iam::Client::new(&sdk), "itc-auditor", &[]).await;
    let ws = Workspace::new();
    std::fs::create_dir(ws.state_dir()).expect("state dir");
    let config = ws.write_config(&format!(
        r#"
[aws]
endpoint_url = "{endpoint}"
max_attempts = 1

[[aws.accounts]]
name = "staging"
id = "123456789012"

[[aws.accounts]]
name = "audit"
id = "123456789012"
role_arn = "arn:aws:iam::123456789012:role/itc-auditor"
external_id = "itc-external"
session_name = "itc-audit"

[[aws.accounts]]
name = "mistyped"
id = "999999999999"

[state]
dir = "{state}"

[targets]
tags = {{ "whittle:managed" = "true" }}
"#,
        endpoint = emulator.url,
        state = ws.state_dir().display()
    ));
    let out = whittle(&[
        "status",
        "--check-aws",
        "--format",
        "json",
        "--config",
        config.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1), "one account fails");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let by_name = |name: &str| {
        report["aws"]
            .as_array()
            .expect("aws")
            .iter()
            .find(|a| a["account"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {report}"))
    };
    assert_eq!(
        by_name("audit")["identity"]["arn"],
        "arn:aws:sts::123456789012:assumed-role/itc-auditor/itc-audit"
    );
    assert_eq!(
        by_name("staging")["identity"]["account"],
        "123456789012",
        "the base credentials"
    );
    let mistyped = by_name("mistyped");
    assert!(mistyped["identity"].is_null());
    assert!(
        mistyped["error"]
            .as_str()
            .expect("error")
            .contains("credentials are for account 123456789012")
            && mistyped["error"]
                .as_str()
                .expect("error")
                .contains("999999999999"),
        "{mistyped}"
    );

    // The role was assumed with the configured session name and external id.
    let events = aws_sdk_cloudtrail::Client::new(&sdk)
        .lookup_events()
        .lookup_attributes(
            aws_sdk_cloudtrail::types::LookupAttribute::builder()
                .attribute_key(aws_sdk_cloudtrail::types::LookupAttributeKey::EventName)
                .attribute_value("AssumeRole")
                .build()
                .expect("attribute"),
        )
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    // Other tests share this emulator: read every page, not only the newest 50 events.
    let assumed = events
        .iter()
        .flat_map(|page| page.as_ref().expect("lookup").events())
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e.cloud_trail_event()?).ok())
        .find(|e| e["requestParameters"]["roleSessionName"] == "itc-audit")
        .expect("the AssumeRole event");
    assert_eq!(
        assumed["requestParameters"]["externalId"], "itc-external",
        "{assumed}"
    );
}

/// Runs whittle with its standard output a pipe whose reading end is closed before whittle
/// writes (as `whittle … | head -0` does): exit code and stderr.
fn with_stdout_closed(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = crate::support::command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn whittle");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    (out.status, text(&out.stderr))
}

#[test]
fn a_closed_stdout_ends_commands_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    let example = whittle_tests::repo_root().join("config.toml");
    let example = example.to_str().expect("path");
    // `status` reads a state directory (no daemon, no AWS call).
    let ws = Workspace::new();
    let config = ws.emulator_config("http://127.0.0.1:9", "itp");
    drop(
        whittle_state::State::open(&ws.state_dir(), &whittle_state::LockOwner::this_process())
            .expect("state"),
    );
    let config = config.to_str().expect("path");
    let identity = whittle_tests::repo_root().join("tests/fixtures/policy/identity.json");
    let identity = identity.to_str().expect("path");
    let runs: [&[&str]; 5] = [
        &["version"],
        &["validate", "--config", example],
        &["status", "--format", "json", "--config", config],
        &["status", "--config", config],
        &[
            "policy",
            "eval",
            "--identity",
            identity,
            "--action",
            "s3:GetObject",
            "--resource",
            "arn:aws:s3:::orders/2026/1.json",
        ],
    ];
    for args in runs {
        let (status, stderr) = with_stdout_closed(args);
        assert!(
            status.code() == Some(0) || status.code() == Some(141) || status.signal() == Some(13),
            "{args:?}: {status}: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn config_problems_print_one_per_line_then_the_count_on_its_own_line() {
    let ws = Workspace::new();
    // The second unknown key carries a carriage return and an escape: echoed raw, they would
    // overwrite the line's location on a terminal (or start a line of their own).
    let config = ws.write_config(
        "[aws]\nregion = \"us-east-1\"\nretries = 3\n\"a\\rb\\u001b[2K\" = 1\n\n[[aws.accounts]]\nname = \"staging\"\nid = \"123456789012\"\n\n[targets]\narn_patterns = [\"arn:aws:iam::*:role/app-*\"]\n",
    );
    let out = whittle(&["validate", "--config", config.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let path = config.display().to_string();
    assert!(
        !stderr.chars().any(|c| c.is_control() && c != '\n'),
        "{stderr:?}"
    );
    let lines: Vec<&str> = stderr.split('\n').collect();
    assert_eq!(lines.len(), 4, "{stderr:?}");
    assert!(
        lines[0].starts_with(&format!("{path}:3:1: unknown field `retries`")),
        "{stderr:?}"
    );
    assert!(
        lines[1].starts_with(&format!(r"{path}:4:1: unknown field `a\rb\u{{1b}}[2K`")),
        "{stderr:?}"
    );
    assert_eq!(lines[2], format!("error: 2 problem(s) in {path}"));
    assert_eq!(lines[3], "", "the count ends with a newline: {stderr:?}");
    assert!(out.stdout.is_empty());
}
