//! Writes a plan as `whittle plan --format json` would (docs/plan-schema.md), without AWS,
//! for the report tests and benchmarks (`tests/browser/`):
//!
//! ```text
//! plan-fixture [--roles N] [--accounts N] [--demo] [--shared-functions N] [--html] [--out FILE]
//! ```
//!
//! - by default N generated roles (2,000) of the shapes in `whittle_planner::benchgen`
//!   (seeded: the same N gives the same plan), spread over `--accounts` accounts (4), each
//!   planned as `whittle plan` plans it (`propose`, with the embedded catalog);
//! - `--demo`: a handful of hand-made roles like the demo's staging account (an application
//!   role with service wildcards, one with an AWS-managed policy, a deployer that loses
//!   `iam:PassRole`, a role observed too briefly to shrink, one fully used), in two accounts,
//!   and a role that three Lambda functions and an EC2 instance share, with its split into
//!   one role per function (`whittle_planner::benchgen::bench_shared_role`);
//! - `--shared-functions N`: one role shared by N functions (`orders-handler-000`, …) and
//!   an instance, with its split.
//!
//! - `--html`: the plan's HTML report (what `whittle plan render FILE --format html` makes of
//!   the JSON) instead of the JSON: a 2,000-role plan's JSON is 1.4 GB, which the report tests
//!   would spend over a minute writing and reading back; the small fixtures go through
//!   `whittle plan render`.
//!
//! The plan's time is fixed, so the output is the same on every run.

use std::path::PathBuf;
use std::process::ExitCode;

use whittle_planner::benchgen::{bench_roles, bench_shared_role};
use whittle_planner::catalog::Catalog;
use whittle_planner::plan::split::{ListedFunction, propose_split};
use whittle_planner::plan::{
    Evidence, InlinePolicy, ManagedPolicy, PLAN_SCHEMA, Plan, PlanStatus, RolePlan, RolePolicies,
    Settings, propose,
};
use whittle_planner::trail::PrincipalKind;
use whittle_planner::usage::{ActionUsage, PrincipalUsage};

/// 2026-11-24T10:00:00Z, the plan's time.
const NOW_MS: i64 = 1_795_514_400_000;
const CREATED_AT: &str = "2026-11-24T10:00:00Z";
const DAY_MS: i64 = 86_400_000;
const ACCOUNTS: [&str; 6] = [
    "123456789012",
    "210987654321",
    "333344445555",
    "444455556666",
    "555566667777",
    "666677778888",
];

struct Args {
    roles: usize,
    accounts: usize,
    demo: bool,
    shared_functions: Option<usize>,
    html: bool,
    out: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut parsed = Args {
        roles: 2_000,
        accounts: 4,
        demo: false,
        shared_functions: None,
        html: false,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    let number = |value: Option<String>, flag: &str| -> Result<usize, String> {
        value
            .and_then(|n| n.replace('_', "").parse().ok())
            .ok_or_else(|| format!("{flag} needs a number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--roles" => parsed.roles = number(args.next(), "--roles")?,
            "--accounts" => {
                parsed.accounts = number(args.next(), "--accounts")?;
                if !(1..=ACCOUNTS.len()).contains(&parsed.accounts) {
                    return Err(format!("--accounts takes 1 to {}", ACCOUNTS.len()));
                }
            }
            "--demo" => parsed.demo = true,
            "--shared-functions" => {
                parsed.shared_functions = Some(number(args.next(), "--shared-functions")?);
            }
            "--html" => parsed.html = true,
            "--out" => parsed.out = Some(args.next().ok_or("--out needs a file")?.into()),
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: plan-fixture [--roles N] [--accounts N] [--demo] [--shared-functions N] [--html] [--out FILE]"
                ));
            }
        }
    }
    Ok(parsed)
}

fn settings() -> Settings {
    Settings {
        lookback_days: 90,
        min_observation_days: 14,
        scope_resources: false,
        keep: vec!["ssm:GetParameter*".to_owned()],
        keep_unobservable: true,
        now_ms: NOW_MS,
    }
}

fn plan_role(policies: &RolePolicies, usage: &PrincipalUsage) -> RolePlan {
    let mut role = propose(
        policies,
        &Evidence {
            usage: Some(usage),
            ..Evidence::default()
        },
        &settings(),
        Catalog::embedded(),
    );
    role.read_at = Some("2026-11-24T09:59:58Z".to_owned());
    role
}

/// The generated roles, spread round-robin over the accounts, planned on every core (in
/// the order generated).
fn generated(roles: usize, accounts: usize) -> Vec<RolePlan> {
    let mut inputs = bench_roles(Catalog::embedded(), roles, NOW_MS, 42);
    for (i, role) in inputs.iter_mut().enumerate() {
        role.policies.role_arn = role
            .policies
            .role_arn
            .replace("123456789012", ACCOUNTS[i % accounts]);
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = inputs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = inputs
            .chunks(chunk)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|role| plan_role(&role.policies, &role.usage))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
            .collect()
    })
}

/// Usage of each `(action, days ago, resources)`.
fn usage(actions: &[(&str, i64, &[&str])]) -> PrincipalUsage {
    let mut usage = PrincipalUsage::new(PrincipalKind::Role);
    for (i, (action, days_ago, resources)) in actions.iter().enumerate() {
        let t = NOW_MS - days_ago * DAY_MS;
        let mut u = ActionUsage::default();
        u.counts.add(t - 20 * DAY_MS.min(t), t, 40 + 7 * i as u64);
        for resource in *resources {
            u.resources.insert((*resource).to_owned(), t);
        }
        u.sample_event_id = Some(format!("5f0c{i:04}-1b2e-4c3d-9e8f-7a6b5c4d3e2f"));
        usage.actions.insert((*action).to_owned(), u);
    }
    usage
}

fn policies(
    account: &str,
    name: &str,
    inline: &[(&str, &str)],
    managed: &[(&str, &str)],
) -> RolePolicies {
    RolePolicies {
        role_arn: format!("arn:aws:iam::{account}:role/{name}"),
        role_name: name.to_owned(),
        inline: inline
            .iter()
            .map(|(name, document)| InlinePolicy {
                name: (*name).to_owned(),
                document: (*document).into(),
            })
            .collect(),
        managed: managed
            .iter()
            .map(|(arn, document)| ManagedPolicy {
                arn: (*arn).to_owned(),
                name: arn.rsplit('/').next().unwrap_or_default().to_owned(),
                aws_managed: arn.starts_with("arn:aws:iam::aws:"),
                version: "v1".to_owned(),
                document: (*document).into(),
            })
            .collect(),
        boundary: None,
    }
}

/// The role `name` shared by `functions` and an EC2 instance, planned, with its split.
fn shared_role(name: &str, functions: &[&str]) -> RolePlan {
    let shared = bench_shared_role(name, functions, NOW_MS, 42);
    let mut role = plan_role(&shared.policies, &shared.usage);
    let listed: Vec<ListedFunction<'_>> = shared
        .functions
        .iter()
        .map(|(name, arn)| ListedFunction {
            name,
            arn,
            revision: Some("7c1e0f6a-0000-4000-8000-000000000001"),
        })
        .collect();
    role.split = propose_split(
        &role,
        &shared.usage,
        &listed,
        &[],
        &settings(),
        Catalog::embedded(),
    );
    role
}

/// A small plan like the demo's: the roles a staging account and a tooling account hold.
fn demo() -> Vec<RolePlan> {
    let (staging, tooling) = (ACCOUNTS[0], ACCOUNTS[1]);
    let orders = policies(
        staging,
        "app-orders",
        &[(
            "app-orders-policy",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","sqs:*","dynamodb:*"],"Resource":"*"},{"Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]}"#,
        )],
        &[],
    );
    let orders_used = usage(&[
        (
            "s3:GetObject",
            2,
            &["arn:aws:s3:::orders-staging/incoming/1.json"],
        ),
        (
            "s3:PutObject",
            3,
            &["arn:aws:s3:::orders-staging/done/1.json"],
        ),
        (
            "sqs:SendMessage",
            1,
            &["arn:aws:sqs:us-east-1:123456789012:orders"],
        ),
        (
            "sqs:ReceiveMessage",
            1,
            &["arn:aws:sqs:us-east-1:123456789012:orders"],
        ),
        (
            "dynamodb:PutItem",
            4,
            &["arn:aws:dynamodb:us-east-1:123456789012:table/orders"],
        ),
        (
            "dynamodb:GetItem",
            40,
            &["arn:aws:dynamodb:us-east-1:123456789012:table/orders"],
        ),
    ]);
    let reports = policies(
        staging,
        "app-reports",
        &[],
        &[(
            "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*","s3:Describe*","s3-object-lambda:Get*","s3-object-lambda:List*"],"Resource":"*"}]}"#,
        )],
    );
    let reports_used = usage(&[
        (
            "s3:GetObject",
            1,
            &["arn:aws:s3:::reports-staging/daily.csv"],
        ),
        ("s3:ListBucket", 1, &["arn:aws:s3:::reports-staging"]),
    ]);
    let deployer = policies(
        tooling,
        "ci-deployer",
        &[(
            "deploy",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["lambda:*","iam:PassRole","iam:CreateRole","iam:AttachRolePolicy","cloudformation:*"],"Resource":"*"}]}"#,
        )],
        &[],
    );
    let deployer_used = usage(&[
        ("lambda:UpdateFunctionCode", 3, &[]),
        ("lambda:GetFunction", 3, &[]),
        ("cloudformation:DescribeStacks", 3, &[]),
        ("cloudformation:UpdateStack", 3, &[]),
    ]);
    let batch = policies(
        staging,
        "app-batch",
        &[(
            "batch",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","logs:*"],"Resource":"*"}]}"#,
        )],
        &[],
    );
    // Seen for five days only: reported, not shrunk.
    let mut batch_used = PrincipalUsage::new(PrincipalKind::Role);
    let mut u = ActionUsage::default();
    u.counts.add(NOW_MS - 5 * DAY_MS, NOW_MS - DAY_MS, 12);
    u.sample_event_id = Some("9a8b7c6d-0000-4000-8000-000000000001".to_owned());
    batch_used.actions.insert("s3:GetObject".to_owned(), u);
    let metrics = policies(
        tooling,
        "metrics-reader",
        &[(
            "metrics",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["cloudwatch:GetMetricData","cloudwatch:ListMetrics"],"Resource":"*"}]}"#,
        )],
        &[],
    );
    let metrics_used = usage(&[
        ("cloudwatch:GetMetricData", 1, &[]),
        ("cloudwatch:ListMetrics", 2, &[]),
    ]);
    vec![
        plan_role(&orders, &orders_used),
        plan_role(&reports, &reports_used),
        plan_role(&deployer, &deployer_used),
        plan_role(&batch, &batch_used),
        plan_role(&metrics, &metrics_used),
        shared_role(
            "orders-service",
            &["orders-api", "orders-worker", "orders-report"],
        ),
    ]
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("plan-fixture: {e}");
            return ExitCode::from(2);
        }
    };
    let (id, roles) = if args.demo {
        ("plan-20261124100000-demo".to_owned(), demo())
    } else if let Some(n) = args.shared_functions {
        let names: Vec<String> = (0..n).map(|i| format!("orders-handler-{i:03}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        (
            format!("plan-20261124100000-shared{n}"),
            vec![shared_role("orders-service", &names)],
        )
    } else {
        (
            format!("plan-20261124100000-gen{}", args.roles),
            generated(args.roles, args.accounts),
        )
    };
    let plan = Plan {
        schema: PLAN_SCHEMA,
        id,
        created_at: CREATED_AT.to_owned(),
        catalog: Catalog::embedded().version.to_string(),
        lookback_days: 90,
        status: PlanStatus::Proposed,
        accounts: Vec::new(),
        roles,
    };
    let json = if args.html {
        whittle_planner::plan::html::html(&plan)
    } else {
        match serde_json::to_string(&plan) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("plan-fixture: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let written = match &args.out {
        Some(path) => std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(json.as_bytes())
                .map_err(|e| format!("stdout: {e}"))
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plan-fixture: {e}");
            ExitCode::FAILURE
        }
    }
}
