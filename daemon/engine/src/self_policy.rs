//! `whittle self-policy`: the IAM policies whittle's own credentials need, derived from the
//! configuration (and the playbooks it names), one document per account, plus one for the
//! base credentials when an account is reached by assuming a role.
//!
//! [`self_policy`] is a pure function of the validated configuration and its loaded playbooks
//! ([`Playbooks::load`] does the reading): what a feature does not use, it does not grant.
//! Every statement has a `Sid` naming the feature it serves, so a reviewer can see why each
//! permission is there, and `whittle plan --self` can say which statements went unused.
//!
//! Where each action comes from: every SDK call of `daemon/adapters/src/aws/` and
//! `daemon/adapters/src/secrets.rs` is one action (the table in [`self_policy`] names the
//! adapter function of each). `sts:GetCallerIdentity` needs no permission (AWS: "No
//! permissions are required to perform this operation"), so it is never granted.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use whittle_planner::catalog::Catalog;
use whittle_planner::plan::INLINE_ROLE_POLICY_LIMIT;
use whittle_planner::policy::document::VERSION_2012;
use whittle_planner::policy::{
    ConditionBlock, ConditionValue, Effect, OneOrMany, PolicyDocument, Statement,
};
use whittle_playbooks::rotation::machine::Store;
use whittle_playbooks::rotation::{Playbook, RandomSource};
use whittle_playbooks::trial::TrialPlaybook;

use crate::config::{AccountConfig, Config, SourceKind};

/// Why the policies could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SelfPolicyError {
    #[error("no account named `{0}` in [[aws.accounts]]")]
    UnknownAccount(String),
    #[error("rotation `{rotation}`: playbook {path}: {message}")]
    RotationPlaybook {
        rotation: String,
        path: PathBuf,
        message: String,
    },
    #[error("trial playbook {path}: {message}")]
    TrialPlaybook { path: PathBuf, message: String },
    #[error(
        "the policy for {principal} is {size} characters (IAM allows {limit} in a role's inline policies): configure fewer secrets or sources per account"
    )]
    TooLarge {
        principal: String,
        size: usize,
        limit: usize,
    },
    #[error("the policy for {principal} is not valid: {message}")]
    Invalid { principal: String, message: String },
}

/// The playbooks the configuration names, loaded: what a trial exercises (Lambda, CloudWatch)
/// and how each rotation works (KMS randomness, IAM access keys, native rotation) decide
/// what is granted.
#[derive(Debug, Clone, Default)]
pub struct Playbooks {
    /// `[trial] playbook`, when set.
    pub trial: Option<TrialPlaybook>,
    /// Each `[[rotation]]`'s playbook, by rotation name.
    pub rotation: BTreeMap<String, Playbook>,
}

impl Playbooks {
    /// Reads the playbooks the configuration names.
    pub fn load(config: &Config) -> Result<Playbooks, SelfPolicyError> {
        let mut playbooks = Playbooks::default();
        if let Some(path) = &config.trial.playbook {
            let path = config.base_dir.join(path);
            let trial = whittle_playbooks::trial::load(&path).map_err(|e| {
                SelfPolicyError::TrialPlaybook {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
            playbooks.trial = Some(trial);
        }
        for rotation in &config.rotation {
            let path = rotation.playbook_path(&config.base_dir);
            let playbook = whittle_playbooks::rotation::load(&path).map_err(|e| {
                SelfPolicyError::RotationPlaybook {
                    rotation: rotation.name.clone(),
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
            playbooks.rotation.insert(rotation.name.clone(), playbook);
        }
        Ok(playbooks)
    }
}

/// Whose credentials a policy belongs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "account")]
pub enum Holder {
    /// The credentials whittle uses in this account (by name): its role there, or the base
    /// credentials when the account has no `role_arn`.
    Account(String),
    /// The base credentials (profile or default chain), which assume the accounts' roles.
    Base,
}

/// One policy for one holder.
#[derive(Debug, Clone, Serialize)]
pub struct HolderPolicy {
    pub holder: Holder,
    /// The account id, when the configuration has it.
    pub account_id: Option<String>,
    /// A name for the policy: `whittle-ACCOUNT`, or `whittle-assume-roles`.
    pub name: String,
    pub document: PolicyDocument,
}

/// The policies whittle needs for `config`: one per account (sorted by name), then the base
/// credentials' `sts:AssumeRole` policy when any account has a `role_arn`. Every document is
/// checked with the planner's parser (as an identity policy), every action against the IAM
/// catalog, and the size against IAM's inline limit.
pub fn self_policy(
    config: &Config,
    playbooks: &Playbooks,
) -> Result<Vec<HolderPolicy>, SelfPolicyError> {
    let mut out = Vec::new();
    let mut accounts: Vec<&AccountConfig> = config.aws.accounts.iter().collect();
    accounts.sort_by(|a, b| a.name.cmp(&b.name));
    for account in &accounts {
        let statements = account_statements(config, playbooks, account);
        out.push(HolderPolicy {
            holder: Holder::Account(account.name.clone()),
            account_id: account.id.as_ref().map(|id| id.0.clone()),
            name: format!("whittle-{}", account.name),
            document: document(statements),
        });
    }
    // adapters/aws/mod.rs `account_config`: an account with `role_arn` is reached through
    // aws_config's AssumeRoleProvider (sts:AssumeRole) from the base credentials.
    let roles: Vec<String> = accounts.iter().filter_map(|a| a.role_arn.clone()).collect();
    if !roles.is_empty() {
        out.push(HolderPolicy {
            holder: Holder::Base,
            account_id: None,
            name: "whittle-assume-roles".to_owned(),
            document: document(vec![allow(
                "AssumeAccountRoles",
                &["sts:AssumeRole"],
                roles,
            )]),
        });
    }
    for policy in &out {
        check(policy)?;
    }
    Ok(out)
}

/// Only the policy of one account (by name).
pub fn for_account(
    config: &Config,
    playbooks: &Playbooks,
    account: &str,
) -> Result<HolderPolicy, SelfPolicyError> {
    self_policy(config, playbooks)?
        .into_iter()
        .find(|p| p.holder == Holder::Account(account.to_owned()))
        .ok_or_else(|| SelfPolicyError::UnknownAccount(account.to_owned()))
}

fn document(statements: Vec<Statement>) -> PolicyDocument {
    PolicyDocument {
        version: Some(VERSION_2012.to_owned()),
        id: None,
        statement: OneOrMany::Many(statements),
    }
}

fn check(policy: &HolderPolicy) -> Result<(), SelfPolicyError> {
    let principal = match &policy.holder {
        Holder::Account(name) => format!("account `{name}`"),
        Holder::Base => "the base credentials".to_owned(),
    };
    let invalid = |message: String| SelfPolicyError::Invalid {
        principal: principal.clone(),
        message,
    };
    let text = policy.document.to_compact();
    let parsed = PolicyDocument::parse(&text).map_err(|e| invalid(e.to_string()))?;
    parsed
        .check_identity_policy()
        .map_err(|e| invalid(e.to_string()))?;
    let catalog = Catalog::embedded();
    for statement in parsed.statements() {
        let sid = statement.sid.as_deref().unwrap_or_default();
        if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(format!("statement id `{sid}` is not alphanumeric")));
        }
        for action in statement.action.iter().flat_map(OneOrMany::iter) {
            if catalog.lookup(action).is_none() {
                return Err(invalid(format!(
                    "{sid}: `{action}` is not in the IAM action catalog"
                )));
            }
        }
    }
    if text.len() > INLINE_ROLE_POLICY_LIMIT {
        return Err(SelfPolicyError::TooLarge {
            principal,
            size: text.len(),
            limit: INLINE_ROLE_POLICY_LIMIT,
        });
    }
    Ok(())
}

/// What ARNs of one account look like.
struct Scope<'a> {
    partition: &'static str,
    region: &'a str,
    /// The account id, or `*` when the configuration does not give it.
    account: String,
}

impl Scope<'_> {
    fn arn(&self, service: &str, region: bool, rest: &str) -> String {
        let region = if region { self.region } else { "" };
        format!(
            "arn:{}:{service}:{region}:{}:{rest}",
            self.partition, self.account
        )
    }
}

fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

fn allow(sid: &str, actions: &[&str], resources: Vec<String>) -> Statement {
    let mut statement =
        Statement::allow(actions.iter().map(|a| (*a).to_owned()).collect(), resources);
    statement.sid = Some(sid.to_owned());
    statement
}

fn condition(operator: &str, key: &str, values: Vec<String>) -> ConditionBlock {
    let mut block = BTreeMap::new();
    add_condition(&mut block, operator, key, values);
    block
}

fn add_condition(block: &mut ConditionBlock, operator: &str, key: &str, values: Vec<String>) {
    block.entry(operator.to_owned()).or_default().insert(
        key.to_owned(),
        OneOrMany::from_vec(
            values
                .into_iter()
                .map(|v| ConditionValue(serde_json::Value::String(v)))
                .collect(),
        ),
    );
}

/// `SourceName` from `source-name`: a statement id is alphanumeric.
fn sid_part(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The role changes whittle makes on target roles (apply, rollback, trials in replace mode),
/// and the boundary changes of trials: what the protected-roles Deny covers.
const ROLE_CHANGES: &[&str] = &[
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
];
const BOUNDARY_CHANGES: &[&str] = &[
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
];

fn account_statements(
    config: &Config,
    playbooks: &Playbooks,
    account: &AccountConfig,
) -> Vec<Statement> {
    let scope = Scope {
        partition: partition(&config.aws.region),
        region: &config.aws.region,
        account: account
            .id
            .as_ref()
            .map_or_else(|| "*".to_owned(), |id| id.0.clone()),
    };
    let mut out = Vec::new();
    let all_roles = vec![scope.arn("iam", false, "role/*")];
    // The target roles: the ARN patterns as resources (IAM's `*` and `?` are the patterns'
    // globs), every role of the account when only tags select; the tags as conditions.
    let targets: Vec<String> = if config.targets.arn_patterns.is_empty() {
        all_roles.clone()
    } else {
        config
            .targets
            .arn_patterns
            .iter()
            .map(|p| p.0.as_str().to_owned())
            .collect()
    };
    let mut tagged = BTreeMap::new();
    for (key, value) in &config.targets.tags {
        // `iam:ResourceTag/KEY` is the role's tag (IAM's condition keys for role actions);
        // the configuration's `*` means "any value": the tag must exist.
        if value == "*" {
            add_condition(
                &mut tagged,
                "Null",
                &format!("iam:ResourceTag/{key}"),
                vec!["false".to_owned()],
            );
        } else {
            add_condition(
                &mut tagged,
                "StringEquals",
                &format!("iam:ResourceTag/{key}"),
                vec![value.clone()],
            );
        }
    }
    let with_tags = |mut statement: Statement| {
        if !tagged.is_empty() {
            statement.condition = Some(tagged.clone());
        }
        statement
    };
    let staging = config.trial.staging_accounts.contains(&account.name);

    // Discovery and whole-account plans (targets.rs `read_all`, snapshot.rs): adapters
    // iam.rs `authorization_details` calls iam:GetAccountAuthorizationDetails, which has no
    // resource type (`*`); `managed_policy` fetches a policy the pages lack (below). iam.rs
    // `role_summary` calls iam:GetRole for a role named on the command line.
    out.push(allow(
        "DiscoverReadAccount",
        &["iam:GetAccountAuthorizationDetails"],
        vec!["*".to_owned()],
    ));
    out.push(allow(
        "DiscoverReadRoles",
        &["iam:GetRole"],
        all_roles.clone(),
    ));
    // jobs.rs `discover` (and `whittle discover`): iam.rs `list_functions` calls
    // lambda:ListFunctions, which supports no resource-level permissions (`*`), to tell a
    // shared role's sessions apart by function.
    out.push(allow(
        "DiscoverListFunctions",
        &["lambda:ListFunctions"],
        vec!["*".to_owned()],
    ));
    // Planning, apply, trial snapshots: iam.rs `role_policies` (ListRolePolicies,
    // GetRolePolicy, ListAttachedRolePolicies on the target) and `managed_policy` (GetPolicy,
    // GetPolicyVersion on any policy attached to it: the account's or AWS's own).
    out.push(allow(
        "PlanReadTargetPolicies",
        &[
            "iam:ListRolePolicies",
            "iam:GetRolePolicy",
            "iam:ListAttachedRolePolicies",
        ],
        targets.clone(),
    ));
    out.push(allow(
        "PlanReadManagedPolicies",
        &["iam:GetPolicy", "iam:GetPolicyVersion"],
        vec![
            scope.arn("iam", false, "policy/*"),
            format!("arn:{}:iam::aws:policy/*", scope.partition),
        ],
    ));
    // Planning with [planner] organization_from naming this account: organization.rs walks
    // each planned account up to the root (adapters organizations.rs: ListParents,
    // ListPoliciesForTarget, DescribePolicy). Their resources' ARNs carry the organization's
    // id, which the configuration does not know, so `*`; all three only read.
    if config.planner.organization_from.as_deref() == Some(account.name.as_str()) {
        out.push(allow(
            "PlanReadOrganizationScps",
            &[
                "organizations:ListParents",
                "organizations:ListPoliciesForTarget",
                "organizations:DescribePolicy",
            ],
            vec!["*".to_owned()],
        ));
    }
    // Apply and rollback (plan.rs `apply_role`, `restore`): iam.rs `put_role_policy`,
    // `delete_role_policy`, `attach_role_policy` (rollback re-attaches what apply detached),
    // `detach_role_policy`; only on tagged targets.
    out.push(with_tags(allow(
        "ApplyChangeTargetRoles",
        ROLE_CHANGES,
        targets.clone(),
    )));
    // A split (switch.rs `put_in_place`, `undo`), applied or trialled: iam.rs `create_role`
    // makes each function's role (CreateRole, with its tags: TagRole) under the target
    // patterns, and `delete_role` removes it again (only roles carrying the target tags,
    // which the new roles copy from the shared role); its policies go through
    // ApplyChangeTargetRoles. Switching a function's role needs iam:PassRole on the role
    // (Lambda API reference, UpdateFunctionConfiguration `Role`; the emulator does not check
    // it, AWS does). iam.rs `function_configuration` / `set_function_role` on the account's
    // functions.
    out.push(allow(
        "SplitCreateRoles",
        &["iam:CreateRole", "iam:TagRole", "iam:PassRole"],
        targets.clone(),
    ));
    out.push(with_tags(allow(
        "SplitDeleteRoles",
        &["iam:DeleteRole"],
        targets.clone(),
    )));
    out.push(allow(
        "SplitSwitchFunctions",
        &[
            "lambda:GetFunctionConfiguration",
            "lambda:UpdateFunctionConfiguration",
        ],
        vec![function_arn(&scope, "*")],
    ));

    // Mining. Sources of this account.
    let sources: Vec<_> = config
        .mining
        .sources
        .iter()
        .filter(|s| s.account.as_deref() == Some(&account.name))
        .collect();
    let mines = !config.mining.sources.is_empty();
    for source in &sources {
        let name = sid_part(&source.name);
        match source.kind {
            SourceKind::Directory => {}
            SourceKind::S3 => {
                // mining.rs `list` (s3:ListObjectsV2 -> s3:ListBucket) under
                // `[prefix/]AWSLogs/` (mine/sources.rs `s3`, trial.rs `poll_files`), and
                // `download_object` (s3:GetObject) of the log files below it.
                let bucket = source.bucket.clone().unwrap_or_default();
                let logs = match source.prefix.as_deref().map(|p| p.trim_matches('/')) {
                    Some(p) if !p.is_empty() => format!("{p}/AWSLogs/"),
                    _ => "AWSLogs/".to_owned(),
                };
                let mut list = allow(
                    &format!("MineListTrail{name}"),
                    &["s3:ListBucket"],
                    vec![format!("arn:{}:s3:::{bucket}", scope.partition)],
                );
                // `s3:prefix` is the listing's prefix parameter (S3's condition keys).
                list.condition = Some(condition(
                    "StringLike",
                    "s3:prefix",
                    vec![format!("{logs}*")],
                ));
                out.push(list);
                out.push(allow(
                    &format!("MineReadTrail{name}"),
                    &["s3:GetObject"],
                    vec![format!("arn:{}:s3:::{bucket}/{logs}*", scope.partition)],
                ));
            }
            SourceKind::LookupEvents => {}
            SourceKind::Athena => {
                // mining.rs `athena_query`: StartQueryExecution, GetQueryExecution,
                // GetQueryResults, StopQueryExecution, all on the workgroup.
                let workgroup = source.workgroup.as_deref().unwrap_or("primary");
                out.push(allow(
                    &format!("MineAthena{name}"),
                    &[
                        "athena:StartQueryExecution",
                        "athena:GetQueryExecution",
                        "athena:GetQueryResults",
                        "athena:StopQueryExecution",
                    ],
                    vec![scope.arn("athena", true, &format!("workgroup/{workgroup}"))],
                ));
                // Athena reads the table's definition from the Glue Data Catalog and writes
                // the results to the output location with the caller's permissions (Athena
                // User Guide, "Identity and access management in Athena"); the table's own
                // S3 location is in Glue, not in the configuration (see the note printed).
                let database = source.database.clone().unwrap_or_default();
                let table = source.table.clone().unwrap_or_default();
                out.push(allow(
                    &format!("MineAthenaCatalog{name}"),
                    &["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"],
                    vec![
                        scope.arn("glue", true, "catalog"),
                        scope.arn("glue", true, &format!("database/{database}")),
                        scope.arn("glue", true, &format!("table/{database}/{table}")),
                    ],
                ));
                let output = source.output_location.clone().unwrap_or_default();
                let path = output.trim_start_matches("s3://");
                let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
                out.push(allow(
                    &format!("MineAthenaOutputBucket{name}"),
                    &["s3:GetBucketLocation", "s3:ListBucket"],
                    vec![format!("arn:{}:s3:::{bucket}", scope.partition)],
                ));
                out.push(allow(
                    &format!("MineAthenaOutput{name}"),
                    &[
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts",
                    ],
                    vec![format!("arn:{}:s3:::{bucket}/{key}*", scope.partition)],
                ));
            }
        }
    }
    // mining.rs `lookup_events`: a lookup-events source, and every trial's watch
    // (trial.rs `poll_lookup`). LookupEvents has no resource type: `*`.
    if staging || sources.iter().any(|s| s.kind == SourceKind::LookupEvents) {
        out.push(allow(
            "LookupEvents",
            &["cloudtrail:LookupEvents"],
            vec!["*".to_owned()],
        ));
    }
    // mining.rs `last_accessed` for every target (mine/sources.rs `last_accessed`, run after
    // the sources when [mining] last_accessed is on): the job is generated on the role, and
    // read back by job id (GetServiceLastAccessedDetails has no resource type).
    if mines && config.mining.last_accessed {
        out.push(allow(
            "MineLastAccessed",
            &["iam:GenerateServiceLastAccessedDetails"],
            targets.clone(),
        ));
        out.push(allow(
            "MineLastAccessedResults",
            &["iam:GetServiceLastAccessedDetails"],
            vec!["*".to_owned()],
        ));
    }

    // Trials, in staging accounts only (trial.rs `trial_role`, `rollback`): iam.rs
    // `create_policy` / `delete_policy` for the boundary named `whittle-TRIAL`, and
    // `put_role_permissions_boundary` / `delete_role_permissions_boundary` on the target.
    if staging {
        out.push(allow(
            "TrialBoundaryPolicies",
            &["iam:CreatePolicy", "iam:DeletePolicy"],
            vec![scope.arn("iam", false, "policy/whittle-*")],
        ));
        // `iam:PermissionsBoundary` is the boundary a PutRolePermissionsBoundary sets: only
        // whittle's own trial boundaries.
        let mut set = with_tags(allow(
            "TrialSetBoundary",
            &["iam:PutRolePermissionsBoundary"],
            targets.clone(),
        ));
        add_condition(
            set.condition.get_or_insert_with(BTreeMap::new),
            "ArnLike",
            "iam:PermissionsBoundary",
            vec![scope.arn("iam", false, "policy/whittle-*")],
        );
        out.push(set);
        out.push(with_tags(allow(
            "TrialRemoveBoundary",
            &["iam:DeleteRolePermissionsBoundary"],
            targets.clone(),
        )));
        if let Some(trial) = &playbooks.trial {
            // iam.rs `invoke_function` (lambda:Invoke -> lambda:InvokeFunction).
            if let Some(invoke) = &trial.exercise.invoke {
                out.push(allow(
                    "TrialInvokeFunction",
                    &["lambda:InvokeFunction"],
                    vec![function_arn(&scope, &invoke.function)],
                ));
            }
            // iam.rs `lambda_errors`; GetMetricStatistics has no resource type.
            if trial.error_metric.is_some() {
                out.push(allow(
                    "TrialErrorMetric",
                    &["cloudwatch:GetMetricStatistics"],
                    vec!["*".to_owned()],
                ));
            }
        }
    }

    rotation_statements(config, playbooks, account, &scope, &mut out);

    // Never on protected roles, whatever an Allow above says: the configured patterns,
    // service-linked roles (always under /aws-service-role/) and whittle's own role.
    let mut protected: Vec<String> = config
        .targets
        .protected_patterns
        .iter()
        .map(|p| p.0.as_str().to_owned())
        .collect();
    protected.push(scope.arn("iam", false, "role/aws-service-role/*"));
    if let Some(own) = &account.role_arn {
        protected.push(own.clone());
    }
    let mut deny = allow(
        "ProtectedRolesNeverChange",
        // A split's role is named after the shared role and a function: never one that a
        // protected pattern matches either.
        &[
            ROLE_CHANGES,
            BOUNDARY_CHANGES,
            &["iam:CreateRole", "iam:DeleteRole"],
        ]
        .concat(),
        protected,
    );
    deny.effect = Effect::Deny;
    out.push(deny);
    out
}

fn function_arn(scope: &Scope<'_>, function: &str) -> String {
    if function.starts_with("arn:") {
        function.to_owned()
    } else {
        scope.arn("lambda", true, &format!("function:{function}"))
    }
}

fn rotation_statements(
    config: &Config,
    playbooks: &Playbooks,
    account: &AccountConfig,
    scope: &Scope<'_>,
    out: &mut Vec<Statement>,
) {
    let rotations: Vec<_> = config
        .rotation
        .iter()
        .filter(|r| r.enabled && r.account == account.name)
        .collect();
    let (mut secrets, mut native, mut parameters) = (Vec::new(), Vec::new(), Vec::new());
    let (mut key_arns, mut aliases, mut users) = (Vec::new(), Vec::new(), Vec::new());
    let mut kms_random = false;
    for rotation in &rotations {
        let playbook = playbooks.rotation.get(&rotation.name);
        match rotation.store {
            Store::SecretsManager => {
                // Secrets Manager adds `-` and six random characters to a secret's name in
                // its ARN; `-??????` matches exactly those (Secrets Manager User Guide,
                // "Permissions policy examples").
                let arn = if rotation.secret.starts_with("arn:") {
                    rotation.secret.clone()
                } else {
                    scope.arn(
                        "secretsmanager",
                        true,
                        &format!("secret:{}-??????", rotation.secret),
                    )
                };
                if matches!(playbook, Some(Playbook::Native { .. })) {
                    native.push(arn.clone());
                }
                secrets.push(arn);
            }
            Store::Ssm => {
                // A parameter's ARN is `parameter` followed by its name, which for a
                // hierarchical name starts with its own `/`.
                let arn = if rotation.secret.starts_with("arn:") {
                    rotation.secret.clone()
                } else if rotation.secret.starts_with('/') {
                    scope.arn("ssm", true, &format!("parameter{}", rotation.secret))
                } else {
                    scope.arn("ssm", true, &format!("parameter/{}", rotation.secret))
                };
                parameters.push(arn);
            }
        }
        if let Some(key) = &rotation.kms_key {
            // A key named by an alias cannot be named in `Resource` (it would be the alias
            // resource, not the key): KMS's `kms:ResourceAliases` condition selects the key
            // by its alias (KMS Developer Guide, "Use aliases to control access to KMS keys").
            if let Some(alias) = key
                .strip_prefix("alias/")
                .or_else(|| key.split_once(":alias/").map(|(_, a)| a))
            {
                aliases.push(format!("alias/{alias}"));
            } else if key.starts_with("arn:") {
                key_arns.push(key.clone());
            } else {
                key_arns.push(scope.arn("kms", true, &format!("key/{key}")));
            }
        }
        match playbook {
            Some(Playbook::Random(generate)) | Some(Playbook::Command { generate, .. })
                if generate.source == RandomSource::Kms =>
            {
                kms_random = true;
            }
            Some(Playbook::IamAccessKey(keys)) => {
                users.push(scope.arn("iam", false, &format!("user/{}", keys.user)));
            }
            _ => {}
        }
    }
    let dedup = |mut v: Vec<String>| {
        v.sort();
        v.dedup();
        v
    };
    // secrets.rs: `inspect` (DescribeSecret, GetSecretValue), `put_pending`
    // (PutSecretValue), `read_pending` (GetSecretValue), `promote` and `clear_pending`
    // (UpdateSecretVersionStage).
    if !secrets.is_empty() {
        out.push(allow(
            "RotateSecrets",
            &[
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:UpdateSecretVersionStage",
            ],
            dedup(secrets),
        ));
    }
    // secrets.rs `rotate_native`.
    if !native.is_empty() {
        out.push(allow(
            "RotateSecretsNative",
            &["secretsmanager:RotateSecret"],
            dedup(native),
        ));
    }
    // secrets.rs: `inspect` (GetParameter), `promote` (PutParameter,
    // LabelParameterVersion).
    if !parameters.is_empty() {
        out.push(allow(
            "RotateParameters",
            &[
                "ssm:GetParameter",
                "ssm:PutParameter",
                "ssm:LabelParameterVersion",
            ],
            dedup(parameters),
        ));
    }
    // secrets.rs `encrypt` / `decrypt` (the pending value in the journal); SSM also calls
    // kms:Encrypt / kms:Decrypt with the caller's permissions for a SecureString under a
    // customer managed key (Systems Manager User Guide, "How Parameter Store uses KMS").
    let kms = &["kms:Encrypt", "kms:Decrypt"];
    if !key_arns.is_empty() {
        out.push(allow("RotateKmsKeys", kms, dedup(key_arns)));
    }
    if !aliases.is_empty() {
        let mut by_alias = allow(
            "RotateKmsAliases",
            kms,
            vec![scope.arn("kms", true, "key/*")],
        );
        by_alias.condition = Some(condition(
            "ForAnyValue:StringEquals",
            "kms:ResourceAliases",
            dedup(aliases),
        ));
        out.push(by_alias);
    }
    // secrets.rs `kms_random`; GenerateRandom has no resource type.
    if kms_random {
        out.push(allow(
            "RotateKmsRandom",
            &["kms:GenerateRandom"],
            vec!["*".to_owned()],
        ));
    }
    // secrets.rs: `access_keys` (ListAccessKeys), `create_access_key`,
    // `deactivate_access_key` (UpdateAccessKey), `delete_access_key`,
    // `access_key_last_used` (GetAccessKeyLastUsed, on the key's user). The new key's test
    // (sts:GetCallerIdentity) needs no permission.
    if !users.is_empty() {
        out.push(allow(
            "RotateAccessKeys",
            &[
                "iam:ListAccessKeys",
                "iam:CreateAccessKey",
                "iam:UpdateAccessKey",
                "iam:DeleteAccessKey",
                "iam:GetAccessKeyLastUsed",
            ],
            dedup(users),
        ));
    }
}

/// Where a policy goes, for the comments of the IaC forms.
fn placement(policy: &HolderPolicy) -> String {
    match (&policy.holder, &policy.account_id) {
        (Holder::Account(name), Some(id)) => format!("whittle's role in account {name} ({id})"),
        (Holder::Account(name), None) => format!("whittle's role in account {name}"),
        (Holder::Base, _) => {
            "the base credentials' role (it assumes each account's role_arn)".to_owned()
        }
    }
}

/// JSON: one policy's document as IAM takes it (`aws iam put-role-policy
/// --policy-document`), or, for several, `{"policies": [{holder, account_id, name,
/// document}]}`.
pub fn render_json(policies: &[HolderPolicy]) -> String {
    match policies {
        [one] => one.document.to_pretty(),
        many => serde_json::to_string_pretty(&serde_json::json!({ "policies": many }))
            .unwrap_or_default(),
    }
}

/// Terraform: one `aws_iam_role_policy` per policy on `aws_iam_role.whittle` (the role the
/// README's install section defines), through the planner's IaC renderer.
pub fn render_terraform(policies: &[HolderPolicy]) -> String {
    let mut out = String::from(
        "# whittle self-policy: the permissions whittle needs for this configuration.\n# Attach to the role whittle runs as (aws_iam_role.whittle); regenerate when the configuration changes.\n",
    );
    for policy in policies {
        out.push_str(&format!("\n# On {}\n", placement(policy)));
        out.push_str(&whittle_planner::plan::render::terraform_role_policy(
            &whittle_planner::plan::render::terraform_identifier(&[&policy.name]),
            &policy.name,
            "aws_iam_role.whittle.id",
            &policy.document,
        ));
        out.push('\n');
    }
    out
}

/// CloudFormation (YAML): one `AWS::IAM::RolePolicy` per policy on the template's
/// `WhittleRole`, through the planner's IaC renderer.
pub fn render_cloudformation(policies: &[HolderPolicy]) -> String {
    let mut out = String::from(
        "# whittle self-policy: the permissions whittle needs for this configuration.\n# Add to the Resources of the template that defines WhittleRole (the role whittle runs as).\nResources:\n",
    );
    for policy in policies {
        out.push_str(&format!("  # On {}\n", placement(policy)));
        out.push_str(&whittle_planner::plan::render::cloudformation_role_policy(
            &whittle_planner::plan::render::cloudformation_logical_id(&[&policy.name, "Policy"]),
            "!Ref WhittleRole",
            &policy.name,
            &policy.document,
        ));
        out.push('\n');
    }
    out
}

/// `whittle plan --self`: one statement of whittle's own policy against what whittle's
/// principal used in the mined trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementUse {
    pub sid: String,
    /// A Deny grants nothing, so it is never "unused": it is listed as such.
    pub deny: bool,
    /// Each action of the statement with its calls in the look-back (0: not seen).
    pub actions: Vec<(String, u64)>,
}

impl StatementUse {
    pub fn used(&self) -> bool {
        self.deny || self.actions.iter().any(|(_, count)| *count > 0)
    }
}

/// One holder's policy against its principal's usage.
#[derive(Debug, Clone, Serialize)]
pub struct SelfPlan {
    pub name: String,
    /// whittle's principal there (a role for an assumed role's session, else the user).
    pub principal: String,
    pub statements: Vec<StatementUse>,
}

/// Compares each statement of `policy` with `used` (action, in IAM's spelling -> calls in the
/// look-back, as `whittle usage` reports them for whittle's principal). Actions compare
/// case-insensitively, as IAM matches them.
pub fn compare(policy: &HolderPolicy, principal: &str, used: &BTreeMap<String, u64>) -> SelfPlan {
    let used: BTreeMap<String, u64> = used
        .iter()
        .map(|(action, count)| (action.to_ascii_lowercase(), *count))
        .collect();
    let statements = policy
        .document
        .statements()
        .iter()
        .map(|statement| StatementUse {
            sid: statement.sid.clone().unwrap_or_default(),
            deny: statement.effect == Effect::Deny,
            actions: statement
                .action
                .iter()
                .flat_map(OneOrMany::iter)
                .map(|action| {
                    let count = used.get(&action.to_ascii_lowercase()).copied().unwrap_or(0);
                    (action.clone(), count)
                })
                .collect(),
        })
        .collect();
    SelfPlan {
        name: policy.name.clone(),
        principal: principal.to_owned(),
        statements,
    }
}

/// The text of `whittle plan --self`.
pub fn render_self_plans(plans: &[SelfPlan], lookback_days: u32) -> String {
    let mut out = String::new();
    for plan in plans {
        let unused = plan.statements.iter().filter(|s| !s.used()).count();
        out.push_str(&format!(
            "{} for {}: {} of {} statements unused in the last {lookback_days} days\n",
            plan.name,
            plan.principal,
            unused,
            plan.statements.len()
        ));
        for statement in &plan.statements {
            let detail = if statement.deny {
                "a Deny (protects roles; never used by design)".to_owned()
            } else {
                statement
                    .actions
                    .iter()
                    .map(|(action, count)| format!("{action} ({count})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mark = if statement.used() { "used  " } else { "UNUSED" };
            out.push_str(&format!("  {mark} {:<28} {detail}\n", statement.sid));
        }
    }
    out
}

/// What the user should know that the documents cannot say (printed to stderr).
pub fn notes(config: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    for source in &config.mining.sources {
        if source.kind == SourceKind::Athena {
            notes.push(format!(
                "source `{}`: Athena reads the table's S3 location with whittle's permissions; grant s3:GetObject and s3:ListBucket on it (it is in the Glue table, not in the configuration)",
                source.name
            ));
        }
    }
    if config
        .rotation
        .iter()
        .any(|r| r.store == Store::SecretsManager)
    {
        notes.push("a secret encrypted with a customer managed KMS key also needs kms:Decrypt and kms:GenerateDataKey on that key".to_owned());
    }
    notes
}

#[cfg(test)]
mod tests;
