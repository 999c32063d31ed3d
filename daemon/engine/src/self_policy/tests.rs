use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

/// The repository root: configurations here name the shipped playbooks.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn config(text: &str) -> Config {
    crate::config::parse_in(text, &root()).unwrap_or_else(|d| panic!("invalid config: {d:?}"))
}

fn policies(text: &str) -> Vec<HolderPolicy> {
    let config = config(text);
    let playbooks = Playbooks::load(&config).expect("the playbooks load");
    self_policy(&config, &playbooks).expect("a policy")
}

fn statements(policy: &HolderPolicy) -> Vec<Value> {
    policy.document.to_value()["Statement"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn sids(policy: &HolderPolicy) -> Vec<String> {
    statements(policy)
        .iter()
        .map(|s| s["Sid"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn statement(policy: &HolderPolicy, sid: &str) -> Value {
    statements(policy)
        .into_iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {:?}", sids(policy)))
}

const BASE: &str = r#"
[[aws.accounts]]
name = "staging"
id = "123456789012"
[targets]
arn_patterns = ["arn:aws:iam::*:role/app-*"]
tags = { "whittle:managed" = "true" }
protected_patterns = ["arn:aws:iam::*:role/app-break-glass*"]
"#;

#[test]
fn the_example_configuration_grants_each_feature_it_turns_on() {
    let text = std::fs::read_to_string(root().join("config.toml")).expect("config.toml");
    let all = policies(&text);
    assert_eq!(all.len(), 1, "one account, no assumed role");
    let policy = &all[0];
    assert_eq!(policy.holder, Holder::Account("staging".to_owned()));
    assert_eq!(
        sids(policy),
        [
            "DiscoverReadAccount",
            "DiscoverReadRoles",
            "DiscoverListFunctions",
            "PlanReadTargetPolicies",
            "PlanReadManagedPolicies",
            "ApplyChangeTargetRoles",
            "SplitCreateRoles",
            "SplitDeleteRoles",
            "SplitSwitchFunctions",
            "MineListTrailStagingTrail",
            "MineReadTrailStagingTrail",
            "LookupEvents",
            "MineLastAccessed",
            "MineLastAccessedResults",
            "TrialBoundaryPolicies",
            "TrialSetBoundary",
            "TrialRemoveBoundary",
            "RotateSecrets",
            "RotateParameters",
            "RotateKmsAliases",
            "RotateKmsRandom",
            "ProtectedRolesNeverChange",
        ]
    );
    let apply = statement(policy, "ApplyChangeTargetRoles");
    assert_eq!(apply["Resource"], "arn:aws:iam::*:role/app-*");
    assert_eq!(
        apply["Condition"],
        json!({"StringEquals": {"iam:ResourceTag/whittle:managed": "true"}})
    );
    let set = statement(policy, "TrialSetBoundary");
    assert_eq!(
        set["Condition"]["ArnLike"],
        json!({"iam:PermissionsBoundary": "arn:aws:iam::123456789012:policy/whittle-*"})
    );
    let list = statement(policy, "MineListTrailStagingTrail");
    assert_eq!(list["Resource"], "arn:aws:s3:::staging-cloudtrail-logs");
    assert_eq!(
        list["Condition"],
        json!({"StringLike": {"s3:prefix": "AWSLogs/*"}})
    );
    assert_eq!(
        statement(policy, "MineReadTrailStagingTrail")["Resource"],
        "arn:aws:s3:::staging-cloudtrail-logs/AWSLogs/*"
    );
    assert_eq!(
        statement(policy, "RotateSecrets")["Resource"],
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:demo/payments-api-key-??????"
    );
    assert_eq!(
        statement(policy, "RotateParameters")["Resource"],
        "arn:aws:ssm:us-east-1:123456789012:parameter/staging/orders/db-password"
    );
    assert_eq!(
        statement(policy, "RotateKmsAliases")["Condition"],
        json!({"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/whittle-rotation"}})
    );
    let deny = statement(policy, "ProtectedRolesNeverChange");
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(
        deny["Resource"],
        json!([
            "arn:aws:iam::*:role/app-break-glass*",
            "arn:aws:iam::123456789012:role/aws-service-role/*"
        ])
    );
    // Lambda only to list functions and switch their roles (a split), no CloudWatch: no
    // playbook invokes a function or reads a metric.
    let text = policy.document.to_compact();
    // (Three actions, and the functions' ARNs.)
    assert_eq!(text.matches("lambda:").count(), 4, "{text}");
    assert!(!text.contains("lambda:Invoke") && !text.contains("cloudwatch:"));
    // No service-wide action (`s3:*`, `*`); resources may end in `*` (`function:*`).
    let wide: Vec<String> = statements(policy)
        .iter()
        .flat_map(|st| match &st["Action"] {
            Value::String(one) => vec![one.clone()],
            Value::Array(many) => many
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .filter(|a| a == "*" || a.ends_with(":*"))
        .collect();
    assert!(wide.is_empty(), "{wide:?}");
}

#[test]
fn features_left_off_grant_nothing() {
    let all = policies(BASE);
    assert_eq!(
        sids(&all[0]),
        [
            "DiscoverReadAccount",
            "DiscoverReadRoles",
            "DiscoverListFunctions",
            "PlanReadTargetPolicies",
            "PlanReadManagedPolicies",
            "ApplyChangeTargetRoles",
            "SplitCreateRoles",
            "SplitDeleteRoles",
            "SplitSwitchFunctions",
            "ProtectedRolesNeverChange",
        ],
        "no mining source, no staging account, no rotation"
    );
    // A directory source reads local files only; last-accessed data still needs IAM.
    let all = policies(&format!(
        "{BASE}\n[mining]\nlast_accessed = false\n[[mining.sources]]\nname = \"local\"\nkind = \"directory\"\npath = \"/tmp\"\n"
    ));
    assert!(!sids(&all[0]).iter().any(|s| s.starts_with("Mine")));
    let all = policies(&format!(
        "{BASE}\n[[mining.sources]]\nname = \"local\"\nkind = \"directory\"\npath = \"/tmp\"\n"
    ));
    assert!(sids(&all[0]).contains(&"MineLastAccessed".to_owned()));
}

#[test]
fn playbooks_and_sources_add_exactly_their_services() {
    let trial =
        std::env::temp_dir().join(format!("whittle-self-policy-{}.toml", std::process::id()));
    std::fs::write(
        &trial,
        "kind = \"trial\"\n[exercise]\ninvoke = { function = \"orders\" }\n[signals]\nerror_metric = { function = \"orders\" }\n",
    )
    .expect("write the trial playbook");
    let text = format!(
        r#"
[[aws.accounts]]
name = "staging"
id = "123456789012"
role_arn = "arn:aws:iam::123456789012:role/whittle"
[[aws.accounts]]
name = "prod"
[targets]
tags = {{ "whittle:managed" = "*" }}
[trial]
staging_accounts = ["staging"]
playbook = "{}"
[[mining.sources]]
name = "org-athena"
kind = "athena"
account = "staging"
database = "default"
table = "cloudtrail_logs"
output_location = "s3://athena-results/whittle/"
[[mining.sources]]
name = "recent"
kind = "lookup-events"
account = "prod"
[[rotation]]
name = "reports-key"
account = "staging"
store = "secrets-manager"
secret = "svc/reports-access-key"
playbook = "playbooks/rotate-iam-access-key.toml"
cron = "0 0 4 1 * *"
[[rotation]]
name = "db"
account = "staging"
store = "secrets-manager"
secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
playbook = "playbooks/rotate-native.toml"
cron = "0 0 4 1 * *"
[[rotation]]
name = "off"
account = "prod"
store = "secrets-manager"
secret = "never"
playbook = "playbooks/rotate-random.toml"
cron = "0 0 4 1 * *"
enabled = false
"#,
        trial.display()
    );
    let all = policies(&text);
    std::fs::remove_file(&trial).ok();
    assert_eq!(all.len(), 3, "prod, staging, then the base credentials");
    let (prod, staging, base) = (&all[0], &all[1], &all[2]);
    assert_eq!(prod.holder, Holder::Account("prod".to_owned()));
    assert_eq!(base.holder, Holder::Base);
    assert_eq!(
        statements(base),
        [
            json!({"Sid": "AssumeAccountRoles", "Effect": "Allow", "Action": "sts:AssumeRole",
                "Resource": "arn:aws:iam::123456789012:role/whittle"})
        ]
    );

    // Tags alone select: every role of the account, the tag required to exist.
    let apply = statement(staging, "ApplyChangeTargetRoles");
    assert_eq!(apply["Resource"], "arn:aws:iam::123456789012:role/*");
    assert_eq!(
        apply["Condition"],
        json!({"Null": {"iam:ResourceTag/whittle:managed": "false"}})
    );
    assert_eq!(
        statement(staging, "TrialInvokeFunction")["Resource"],
        "arn:aws:lambda:us-east-1:123456789012:function:orders"
    );
    statement(staging, "TrialErrorMetric");
    statement(staging, "MineAthenaOrgAthena");
    assert_eq!(
        statement(staging, "MineAthenaOutputOrgAthena")["Resource"],
        "arn:aws:s3:::athena-results/whittle/*"
    );
    assert_eq!(
        statement(staging, "RotateAccessKeys")["Resource"],
        "arn:aws:iam::123456789012:user/svc-reports"
    );
    assert_eq!(
        statement(staging, "RotateSecretsNative")["Resource"],
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
    );
    // whittle's own role is protected in its account.
    let deny = statement(staging, "ProtectedRolesNeverChange");
    assert!(deny["Resource"].to_string().contains("role/whittle\""));

    // prod: LookupEvents for its source; no trial (not staging); a disabled rotation grants
    // nothing; an account without an id is scoped to any account (`*`).
    let prod_sids = sids(prod);
    assert!(prod_sids.contains(&"LookupEvents".to_owned()));
    assert!(
        !prod_sids
            .iter()
            .any(|s| s.starts_with("Trial") || s.starts_with("Rotate"))
    );
    assert_eq!(
        statement(prod, "DiscoverReadRoles")["Resource"],
        "arn:aws:iam::*:role/*"
    );
    assert!(!staging.document.to_compact().contains("athena:*"));
}

#[test]
fn every_document_is_a_valid_identity_policy_with_unique_statement_ids() {
    let text = std::fs::read_to_string(root().join("config.toml")).expect("config.toml");
    for policy in policies(&text) {
        let parsed = PolicyDocument::parse(&policy.document.to_pretty()).expect("parses");
        parsed.check_identity_policy().expect("an identity policy");
        let mut ids = sids(&policy);
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "statement ids are unique");
    }
}

#[test]
fn a_policy_over_the_inline_limit_is_refused() {
    let mut text = BASE.to_owned();
    for i in 0..200 {
        text.push_str(&format!(
            "[[rotation]]\nname = \"s{i}\"\naccount = \"staging\"\nstore = \"secrets-manager\"\nsecret = \"team/service-{i}/api-key\"\nplaybook = \"playbooks/rotate-random.toml\"\ncron = \"0 0 4 1 * *\"\n"
        ));
    }
    let config = config(&text);
    let playbooks = Playbooks::load(&config).expect("the playbooks load");
    match self_policy(&config, &playbooks) {
        Err(SelfPolicyError::TooLarge { size, limit, .. }) => assert!(size > limit),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn one_account_is_selected_by_name() {
    let config = config(BASE);
    let playbooks = Playbooks::default();
    assert_eq!(
        for_account(&config, &playbooks, "staging")
            .expect("staging")
            .name,
        "whittle-staging"
    );
    assert!(matches!(
        for_account(&config, &playbooks, "nope"),
        Err(SelfPolicyError::UnknownAccount(_))
    ));
}

#[test]
fn the_forms_carry_the_same_documents() {
    let text = std::fs::read_to_string(root().join("config.toml")).expect("config.toml");
    let all = policies(&text);
    let json: Value = serde_json::from_str(&render_json(&all)).expect("JSON");
    assert_eq!(
        json,
        all[0].document.to_value(),
        "one policy: the bare document"
    );
    let terraform = render_terraform(&all);
    assert!(terraform.contains("resource \"aws_iam_role_policy\" \"whittle_staging\""));
    assert!(terraform.contains("role   = aws_iam_role.whittle.id"));
    assert!(terraform.contains("\"Sid\": \"RotateSecrets\""));
    let cloudformation = render_cloudformation(&all);
    assert!(cloudformation.contains("WhittleStagingPolicy:\n    Type: AWS::IAM::RolePolicy"));
    assert!(cloudformation.contains("RoleName: !Ref WhittleRole"));
    let two = [all[0].clone(), all[0].clone()];
    let json: Value = serde_json::from_str(&render_json(&two)).expect("JSON");
    assert_eq!(
        json["policies"][1]["holder"],
        json!({"kind": "account", "account": "staging"})
    );
}

#[test]
fn plan_self_names_the_statements_whittle_did_not_use() {
    let policy = policies(BASE).remove(0);
    let used: BTreeMap<String, u64> = [
        ("iam:GetAccountAuthorizationDetails".to_owned(), 3),
        ("IAM:GETROLE".to_owned(), 1),
        ("lambda:ListFunctions".to_owned(), 1),
        ("iam:GetPolicy".to_owned(), 2),
        ("s3:GetObject".to_owned(), 9),
    ]
    .into_iter()
    .collect();
    let plan = compare(&policy, "arn:aws:iam::123456789012:role/whittle", &used);
    let unused: Vec<&str> = plan
        .statements
        .iter()
        .filter(|s| !s.used())
        .map(|s| s.sid.as_str())
        .collect();
    assert_eq!(
        unused,
        [
            "PlanReadTargetPolicies",
            "ApplyChangeTargetRoles",
            "SplitCreateRoles",
            "SplitDeleteRoles",
            "SplitSwitchFunctions"
        ]
    );
    let managed = plan
        .statements
        .iter()
        .find(|s| s.sid == "PlanReadManagedPolicies")
        .expect("statement");
    assert_eq!(
        managed.actions,
        [
            ("iam:GetPolicy".to_owned(), 2),
            ("iam:GetPolicyVersion".to_owned(), 0)
        ]
    );
    let text = render_self_plans(&[plan], 90);
    assert!(text.starts_with(
        "whittle-staging for arn:aws:iam::123456789012:role/whittle: 5 of 10 statements unused in the last 90 days\n"
    ));
    assert!(text.contains("  UNUSED ApplyChangeTargetRoles"));
    assert!(text.contains("  used   ProtectedRolesNeverChange    a Deny"));
}

/// `[planner] organization_from`: the account it names may read the organization's SCPs,
/// and no other account gets that statement.
#[test]
fn organization_from_grants_the_organizations_reads_to_that_account_only() {
    let two = format!(
        "{BASE}[[aws.accounts]]\nname = \"management\"\nid = \"210987654321\"\n[planner]\norganization_from = \"management\"\n"
    );
    let all = policies(&two);
    let of = |name: &str| {
        all.iter()
            .find(|p| p.holder == Holder::Account(name.to_owned()))
            .unwrap_or_else(|| panic!("no policy for {name}"))
    };
    assert_eq!(
        statement(of("management"), "PlanReadOrganizationScps"),
        json!({
            "Sid": "PlanReadOrganizationScps",
            "Effect": "Allow",
            "Action": [
                "organizations:ListParents",
                "organizations:ListPoliciesForTarget",
                "organizations:DescribePolicy"
            ],
            "Resource": "*"
        })
    );
    assert!(!sids(of("staging")).contains(&"PlanReadOrganizationScps".to_owned()));
}
