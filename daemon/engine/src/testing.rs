//! In-memory ports for the engine's tests, built on the engine's own data types: an AWS
//! account whose IAM, trail bucket, LookupEvents, Lambda, CloudWatch, Secrets Manager and
//! KMS live in a `Mutex`, a clock the test moves (sleeping advances it at once), and a
//! workload that calls AWS as a role: each call is decided by the planner's IAM evaluator
//! against the role's policies and boundary as they are *now*, and recorded as a CloudTrail
//! event (a denial when it is denied), so a trial sees exactly what a real one would.
//!
//! Faults: `fail(call, n)` makes the next `n` calls of a port method fail.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use whittle_planner::plan::{InlinePolicy, ManagedPolicy, RolePolicies};
use whittle_planner::policy::{Context, Decision, PolicyDocument, Request, evaluate, named};
use whittle_planner::targets::RoleSummary;
use whittle_planner::usage::ServiceLastAccessed;
use whittle_playbooks::rotation::SecretValue;
use whittle_playbooks::rotation::machine::{AccessKey, HttpCall, Inspection, PortError, Spec};
use whittle_state::{Clock, LockOwner, State, Timestamp};

use crate::Engine;
use crate::config::Config;
use crate::ports::{
    Athena, AthenaQuery, AthenaResult, AuthorizationPage, AwsError, AwsErrorKind, AwsResult, Iam,
    Identity, LookupEvents, LookupPage, NewRole, OrgParent, OrgPolicySummary, Organizations,
    RoleDefinition, RoleDetail, SecretPorts, SnapshotScope, TrailStore, Web, WebRequest, Workload,
};

/// The account every test works in.
pub const ACCOUNT_ID: &str = "111111111111";
/// whittle's own identity there.
pub const WHITTLE_ARN: &str = "arn:aws:iam::111111111111:user/whittle";

/// The trust policy of a role the fake creates without one: Lambda may assume it.
const LAMBDA_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// 2026-11-24T10:00:00Z, where every test's clock starts.
pub const START: Timestamp = Timestamp(1_795_514_400_000);

#[derive(Debug, Clone, Default)]
pub struct Role {
    pub path: String,
    /// The trust policy; empty reads as Lambda's.
    pub trust: String,
    pub tags: BTreeMap<String, String>,
    pub inline: BTreeMap<String, String>,
    pub attached: Vec<String>,
    pub boundary: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Secret {
    /// Version id -> (value, stages).
    pub versions: BTreeMap<String, (String, Vec<String>)>,
    pub rotation_enabled: bool,
}

impl Secret {
    pub fn with_value(value: &str) -> Secret {
        Secret {
            versions: BTreeMap::from([(
                "v-initial".to_owned(),
                (value.to_owned(), vec!["AWSCURRENT".to_owned()]),
            )]),
            rotation_enabled: false,
        }
    }

    pub fn version_with(&self, stage: &str) -> Option<(&String, &String)> {
        self.versions
            .iter()
            .find(|(_, (_, stages))| stages.iter().any(|s| s == stage))
            .map(|(id, (value, _))| (id, value))
    }

    fn move_stage(&mut self, stage: &str, to: Option<&str>) {
        for (id, (_, stages)) in &mut self.versions {
            stages.retain(|s| s != stage);
            if Some(id.as_str()) == to {
                stages.push(stage.to_owned());
            }
        }
    }
}

/// One call the workload makes as a role.
#[derive(Debug, Clone)]
pub struct Call {
    pub role_arn: String,
    pub action: String,
    pub resource: String,
}

/// One call a Lambda function makes, as its execution role at the time of the call (Lambda
/// names the session after the function).
#[derive(Debug, Clone)]
pub struct FunctionCall {
    pub function: String,
    pub action: String,
    pub resource: String,
}

/// Everything in the fake account.
#[derive(Debug, Default)]
pub struct World {
    pub now: Timestamp,
    pub roles: BTreeMap<String, Role>,
    /// Managed policy ARN -> (name, document).
    pub policies: BTreeMap<String, (String, String)>,
    pub last_accessed: HashMap<String, Vec<ServiceLastAccessed>>,
    /// (bucket, key) -> bytes.
    pub objects: BTreeMap<(String, String), Vec<u8>>,
    /// CloudTrail records (JSON text) that LookupEvents serves, with their times. Every
    /// call of an AWS API through the fake is recorded too (as whittle's own role), as
    /// CloudTrail records whittle's calls in a real account.
    pub events: Vec<(i64, String)>,
    /// How long after its call an event becomes visible to LookupEvents (CloudTrail's delay).
    pub lookup_lag: Duration,
    pub athena_rows: Vec<Vec<Option<String>>>,
    /// What each Athena query reports as scanned.
    pub athena_bytes_scanned: u64,
    /// The SQL of every Athena query run, in order.
    pub athena_queries: Vec<String>,
    /// Function -> error data points (time ms, count).
    pub lambda_errors: BTreeMap<String, Vec<(i64, f64)>>,
    pub invocations: Vec<String>,
    /// The Lambda functions ListFunctions lists.
    pub functions: Vec<crate::ports::FunctionSummary>,
    /// What the workload does when exercised (`run(["exercise", ...])` or an invocation).
    pub workload: Vec<Call>,
    /// What the workload's functions do when exercised, each as its role of the moment.
    pub function_workload: Vec<FunctionCall>,
    /// Calls the workload makes by itself (live traffic) when the clock reaches their time.
    pub scheduled: Vec<(Timestamp, Call)>,
    pub secrets: BTreeMap<String, Secret>,
    /// AWS Organizations: child (account id or `ou-…`) -> parent (`ou-…` or `r-…`).
    pub org_parents: BTreeMap<String, String>,
    /// Target (root, OU or account id) -> the ids of the SCPs attached to it.
    pub org_attached: BTreeMap<String, Vec<String>>,
    /// SCP id -> (name, document).
    pub org_policies: BTreeMap<String, (String, String)>,
    /// Whether Organizations refuses whittle's credentials (not the management account).
    pub org_denied: bool,
    /// Calls made, by name (`iam:PutRolePolicy`, …), in order.
    pub calls: Vec<String>,
    /// Port method name -> how many more calls fail.
    pub faults: HashMap<String, u32>,
    /// (call, configured account) -> how the next calls in that account fail, and how many.
    pub account_faults: HashMap<(String, String), (AwsErrorKind, u32)>,
    /// Calls made, with the configured account they were made in (the calls that name one).
    pub account_calls: Vec<(String, String)>,
    /// Configured account name -> its account id (every name is `ACCOUNT_ID` unless set).
    pub account_ids: BTreeMap<String, String>,
    /// Entities per page of iam:GetAccountAuthorizationDetails.
    pub page_size: usize,
    /// Accounts whose whole-account read has begun (first page served) and not ended (last
    /// page served), and the most there were at once.
    pub reading: std::collections::BTreeSet<String>,
    pub most_reading: usize,
    pub posted: Vec<(String, Vec<u8>)>,
    pub next_id: u64,
    /// Crash points passed, in order.
    pub steps: Vec<String>,
    /// The crash point at which the process "dies": the task running the workflow panics
    /// there, right after the journal write, leaving the state as a SIGKILL would.
    pub crash_at: Option<String>,
}

/// The in-memory ports.
#[derive(Debug, Clone, Default)]
pub struct Fake {
    pub world: Arc<Mutex<World>>,
}

impl Fake {
    pub fn new() -> Fake {
        let fake = Fake::default();
        fake.world().now = START;
        fake.world().page_size = 100;
        fake
    }

    /// Makes the next `n` calls of `call` in the configured `account` fail with `kind`
    /// (`Throttled`: as IAM throttles an account).
    pub fn fail_in(&self, call: &str, account: &str, kind: AwsErrorKind, n: u32) {
        self.world()
            .account_faults
            .insert((call.to_owned(), account.to_owned()), (kind, n));
    }

    /// How many calls of `call` were made in `account`.
    pub fn calls_in(&self, account: &str, call: &str) -> usize {
        self.world()
            .account_calls
            .iter()
            .filter(|(a, c)| a == account && c == call)
            .count()
    }

    /// A role in another account (by id) of the fake.
    pub fn add_role_in(
        &self,
        account_id: &str,
        name: &str,
        tags: &[(&str, &str)],
        inline: &[(&str, &str)],
    ) -> String {
        let arn = format!("arn:aws:iam::{account_id}:role/{name}");
        self.world().roles.insert(
            arn.clone(),
            Role {
                path: "/".to_owned(),
                trust: String::new(),
                tags: tags
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                inline: inline
                    .iter()
                    .map(|(n, d)| ((*n).to_owned(), (*d).to_owned()))
                    .collect(),
                attached: Vec::new(),
                boundary: None,
            },
        );
        arn
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        // A panicking test poisons it; the next assertion should still see the world.
        self.world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the next `n` calls of `call` (e.g. `iam:DeleteRolePolicy`) fail.
    pub fn fail(&self, call: &str, n: u32) {
        self.world().faults.insert(call.to_owned(), n);
    }

    pub fn add_role(&self, name: &str, tags: &[(&str, &str)], inline: &[(&str, &str)]) -> String {
        self.add_role_in(ACCOUNT_ID, name, tags, inline)
    }

    pub fn advance(&self, by: Duration) {
        let mut world = self.world();
        let end = world.now.plus(by);
        // Live traffic due by then happens at its own time, under the policies of that time.
        world.scheduled.sort_by_key(|(at, _)| *at);
        while world.scheduled.first().is_some_and(|(at, _)| *at <= end) {
            let (at, call) = world.scheduled.remove(0);
            world.now = at.max(world.now);
            let allowed = allows(&world, &call);
            record_event(
                &mut world,
                &call.role_arn,
                &call.action,
                &call.resource,
                !allowed,
            );
        }
        world.now = end;
    }

    /// An allowed call (`service:Operation`) of `role_arn` under `session`, as CloudTrail
    /// records it.
    pub fn record_session_call(&self, role_arn: &str, session: &str, action: &str) {
        record_session_event(&mut self.world(), role_arn, session, action, "", false);
    }

    /// The role's policies as IAM would return them now.
    pub fn policies_of(&self, role_arn: &str) -> Option<RolePolicies> {
        let world = self.world();
        policies_in(&world, role_arn)
    }

    /// The workload's calls, each decided against the role's policies now and recorded.
    /// Returns how many were denied.
    pub fn exercise(&self) -> usize {
        let mut world = self.world();
        let calls = world.workload.clone();
        let mut denied = 0;
        for call in calls {
            let allowed = allows(&world, &call);
            if !allowed {
                denied += 1;
            }
            record_event(
                &mut world,
                &call.role_arn,
                &call.action,
                &call.resource,
                !allowed,
            );
        }
        for call in world.function_workload.clone() {
            let Some(role_arn) = world
                .functions
                .iter()
                .find(|f| f.name == call.function)
                .map(|f| f.role.clone())
            else {
                continue;
            };
            let allowed = allows(
                &world,
                &Call {
                    role_arn: role_arn.clone(),
                    action: call.action.clone(),
                    resource: call.resource.clone(),
                },
            );
            if !allowed {
                denied += 1;
            }
            record_session_event(
                &mut world,
                &role_arn,
                &call.function,
                &call.action,
                &call.resource,
                !allowed,
            );
        }
        denied
    }
}

fn policies_in(world: &World, role_arn: &str) -> Option<RolePolicies> {
    let role = world.roles.get(role_arn)?;
    let managed = |arn: &String| {
        world
            .policies
            .get(arn)
            .map(|(name, document)| ManagedPolicy {
                arn: arn.clone(),
                name: name.clone(),
                aws_managed: arn.contains(":iam::aws:policy/"),
                version: "v1".to_owned(),
                document: document.as_str().into(),
            })
    };
    Some(RolePolicies {
        role_arn: role_arn.to_owned(),
        role_name: role_arn.rsplit('/').next().unwrap_or_default().to_owned(),
        inline: role
            .inline
            .iter()
            .map(|(name, document)| InlinePolicy {
                name: name.clone(),
                document: document.as_str().into(),
            })
            .collect(),
        managed: role.attached.iter().filter_map(managed).collect(),
        boundary: role.boundary.as_ref().and_then(managed),
    })
}

/// Whether IAM would allow the call now (identity policies and boundary).
fn allows(world: &World, call: &Call) -> bool {
    let Some(policies) = policies_in(world, &call.role_arn) else {
        return false;
    };
    let parse = |name: &str, text: &str| {
        PolicyDocument::from_iam(text)
            .map(|d| (name.to_owned(), d))
            .ok()
    };
    let identity: Vec<(String, PolicyDocument)> = policies
        .inline
        .iter()
        .filter_map(|p| parse(&p.name, &p.document))
        .chain(
            policies
                .managed
                .iter()
                .filter_map(|p| parse(&p.name, &p.document)),
        )
        .collect();
    let boundary: Vec<(String, PolicyDocument)> = policies
        .boundary
        .iter()
        .filter_map(|p| parse(&p.name, &p.document))
        .collect();
    let mut context = Context::complete();
    context.insert("aws:CurrentTime", &crate::time::format(world.now));
    let request = Request {
        action: &call.action,
        resource: &call.resource,
        principal: Some(&call.role_arn),
        context: &context,
    };
    let evaluation = if boundary.is_empty() {
        evaluate(&named(&identity), &[], &request)
    } else {
        evaluate(&named(&identity), &named(&boundary), &request)
    };
    evaluation.decision == Decision::Allowed
}

/// Records a call of `role_arn` under the session `fn` as CloudTrail would, denied or not;
/// `resource` is empty for a call on no particular resource.
fn record_event(world: &mut World, role_arn: &str, action: &str, resource: &str, denied: bool) {
    record_session_event(world, role_arn, "fn", action, resource, denied);
}

/// [`record_event`] under the session `session` (Lambda names it after the function).
pub(crate) fn record_session_event(
    world: &mut World,
    role_arn: &str,
    session: &str,
    action: &str,
    resource: &str,
    denied: bool,
) {
    world.next_id += 1;
    let (service, name) = action.split_once(':').unwrap_or((action, ""));
    let role_name = role_arn.rsplit('/').next().unwrap_or_default();
    let mut record = json!({
        "eventVersion": "1.08",
        "eventTime": crate::time::format(world.now),
        "eventSource": format!("{service}.amazonaws.com"),
        "eventName": name,
        "awsRegion": "us-east-1",
        "eventID": format!("event-{}", world.next_id),
        "recipientAccountId": ACCOUNT_ID,
        "userIdentity": {
            "type": "AssumedRole",
            "arn": format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role_name}/{session}"),
            "accountId": ACCOUNT_ID,
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role_arn}},
        },
    });
    if !resource.is_empty() {
        record["resources"] = json!([{ "ARN": resource }]);
    }
    if denied {
        record["errorCode"] = json!("AccessDenied");
        record["errorMessage"] = json!(format!(
            "User: arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role_name}/{session} is not authorized to perform: {action} on resource: {resource}"
        ));
    }
    let at = world.now.as_millis_i64();
    world.events.push((at, record.to_string()));
}

/// whittle's own role in the fake account: its calls (`service:Operation`) are CloudTrail
/// events too, as in a real account.
pub const WHITTLE_ROLE: &str = "arn:aws:iam::111111111111:role/whittle";

impl Fake {
    /// Counts the call and fails it if a fault is armed for it.
    fn call(&self, name: &str) -> AwsResult<MutexGuard<'_, World>> {
        let mut world = self.world();
        world.calls.push(name.to_owned());
        if name.contains(':') {
            record_event(&mut world, WHITTLE_ROLE, name, "", false);
        }
        if let Some(left) = world.faults.get_mut(name)
            && *left > 0
        {
            *left -= 1;
            return Err(AwsError::new(
                AwsErrorKind::Other,
                format!("{name} failed: injected fault"),
            ));
        }
        Ok(world)
    }

    /// [`Fake::call`] in a configured account: counted per account, failed by
    /// [`Fake::fail_in`] first.
    fn call_in(&self, account: &str, name: &str) -> AwsResult<MutexGuard<'_, World>> {
        {
            let mut world = self.world();
            world
                .account_calls
                .push((account.to_owned(), name.to_owned()));
            if let Some((kind, left)) = world
                .account_faults
                .get_mut(&(name.to_owned(), account.to_owned()))
                && *left > 0
            {
                *left -= 1;
                let kind = *kind;
                world.calls.push(name.to_owned());
                return Err(AwsError::new(
                    kind,
                    format!("{name} in {account}: injected {kind:?}"),
                ));
            }
        }
        self.call(name)
    }

    fn account_id(world: &World, account: &str) -> String {
        world
            .account_ids
            .get(account)
            .cloned()
            .unwrap_or_else(|| ACCOUNT_ID.to_owned())
    }

    fn secret_call(&self, name: &str) -> Result<MutexGuard<'_, World>, PortError> {
        self.call(name).map_err(|e| PortError(e.message))
    }
}

fn not_found(what: String) -> AwsError {
    AwsError::new(AwsErrorKind::NotFound, format!("{what}: NoSuchEntity"))
}

impl Clock for Fake {
    fn now(&self) -> Timestamp {
        self.world().now
    }

    async fn sleep(&self, duration: Duration) {
        self.advance(duration);
        // Let spawned tasks (a trial's exercise) run, as real time would.
        tokio::task::yield_now().await;
    }
}

impl Iam for Fake {
    async fn caller_identity(&self, account: &str) -> AwsResult<Identity> {
        let world = self.call_in(account, "sts:GetCallerIdentity")?;
        let id = Fake::account_id(&world, account);
        Ok(Identity {
            arn: WHITTLE_ARN.replace(ACCOUNT_ID, &id),
            account: id,
            user_id: "AIDAWHITTLE".to_owned(),
        })
    }

    async fn authorization_details(
        &self,
        account: &str,
        scope: SnapshotScope,
        marker: Option<String>,
    ) -> AwsResult<AuthorizationPage> {
        let page = {
            let mut world = self.call_in(account, "iam:GetAccountAuthorizationDetails")?;
            let id = Fake::account_id(&world, account);
            let in_account = |arn: &String| arn.split(':').nth(4) == Some(id.as_str());
            let roles: Vec<RoleDetail> = world
                .roles
                .iter()
                .filter(|(arn, _)| in_account(arn))
                .map(|(arn, role)| RoleDetail {
                    summary: RoleSummary {
                        arn: arn.clone(),
                        path: role.path.clone(),
                        tags: role.tags.clone(),
                    },
                    inline: role
                        .inline
                        .iter()
                        .map(|(name, document)| InlinePolicy {
                            name: name.clone(),
                            document: document.as_str().into(),
                        })
                        .collect(),
                    attached: role.attached.clone(),
                    boundary: role.boundary.clone(),
                })
                .collect();
            // As IAM does: the account's customer-managed policies, and the AWS-managed ones
            // attached in it (one used only as a boundary is not listed).
            let attached: std::collections::BTreeSet<&String> =
                roles.iter().flat_map(|r| &r.attached).collect();
            let policies: Vec<ManagedPolicy> = if scope == SnapshotScope::RolesAndPolicies {
                world
                    .policies
                    .iter()
                    .filter(|(arn, _)| in_account(arn) || attached.contains(arn))
                    .map(|(arn, (name, document))| ManagedPolicy {
                        arn: arn.clone(),
                        name: name.clone(),
                        aws_managed: arn.contains(":iam::aws:policy/"),
                        version: "v1".to_owned(),
                        document: document.as_str().into(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let start: usize = marker.as_deref().map_or(0, |m| m.parse().unwrap_or(0));
            let end = (start + world.page_size.max(1)).min(roles.len() + policies.len());
            let mut page = AuthorizationPage::default();
            for index in start..end {
                match roles.get(index) {
                    Some(role) => page.roles.push(role.clone()),
                    None => page.policies.push(policies[index - roles.len()].clone()),
                }
            }
            if end < roles.len() + policies.len() {
                page.marker = Some(end.to_string());
            }
            if marker.is_none() {
                world.reading.insert(account.to_owned());
                world.most_reading = world.most_reading.max(world.reading.len());
            }
            if page.marker.is_none() {
                world.reading.remove(account);
            }
            page
        };
        // A network call: other tasks (other accounts' reads) run meanwhile.
        tokio::task::yield_now().await;
        Ok(page)
    }

    async fn managed_policy(&self, account: &str, policy_arn: &str) -> AwsResult<ManagedPolicy> {
        let world = self.call_in(account, "iam:GetPolicy")?;
        let (name, document) = world
            .policies
            .get(policy_arn)
            .ok_or_else(|| not_found(format!("iam:GetPolicy {policy_arn}")))?;
        Ok(ManagedPolicy {
            arn: policy_arn.to_owned(),
            name: name.clone(),
            aws_managed: policy_arn.contains(":iam::aws:policy/"),
            version: "v1".to_owned(),
            document: document.as_str().into(),
        })
    }

    async fn role_summary(&self, _account: &str, role_arn: &str) -> AwsResult<RoleSummary> {
        let world = self.call("iam:GetRole")?;
        let role = world
            .roles
            .get(role_arn)
            .ok_or_else(|| not_found(format!("iam:GetRole {role_arn}")))?;
        Ok(RoleSummary {
            arn: role_arn.to_owned(),
            path: role.path.clone(),
            tags: role.tags.clone(),
        })
    }

    async fn role_definition(&self, account: &str, role_arn: &str) -> AwsResult<RoleDefinition> {
        let world = self.call_in(account, "iam:GetRole")?;
        let role = world
            .roles
            .get(role_arn)
            .ok_or_else(|| not_found(format!("iam:GetRole {role_arn}")))?;
        Ok(RoleDefinition {
            arn: role_arn.to_owned(),
            path: role.path.clone(),
            trust_policy: if role.trust.is_empty() {
                LAMBDA_TRUST.to_owned()
            } else {
                role.trust.clone()
            },
            tags: role.tags.clone(),
            boundary: role.boundary.clone(),
        })
    }

    async fn create_role(&self, account: &str, new: &NewRole<'_>) -> AwsResult<String> {
        let mut world = self.call_in(account, "iam:CreateRole")?;
        let id = Fake::account_id(&world, account);
        let arn = format!("arn:aws:iam::{id}:role{}{}", new.path, new.name);
        if world.roles.contains_key(&arn) {
            return Err(AwsError::new(
                AwsErrorKind::AlreadyExists,
                format!("iam:CreateRole {}: EntityAlreadyExists", new.name),
            ));
        }
        world.roles.insert(
            arn.clone(),
            Role {
                path: new.path.to_owned(),
                trust: new.trust_policy.to_owned(),
                tags: new.tags.clone(),
                inline: BTreeMap::new(),
                attached: Vec::new(),
                boundary: new.boundary.map(str::to_owned),
            },
        );
        Ok(arn)
    }

    async fn delete_role(&self, account: &str, role_arn: &str) -> AwsResult<()> {
        let mut world = self.call_in(account, "iam:DeleteRole")?;
        if let Some(role) = world.roles.get(role_arn)
            && (!role.inline.is_empty() || !role.attached.is_empty())
        {
            // IAM: DeleteConflict, "Cannot delete entity, must delete policies first."
            return Err(AwsError::new(
                AwsErrorKind::Other,
                format!("iam:DeleteRole {role_arn}: DeleteConflict"),
            ));
        }
        world.roles.remove(role_arn);
        Ok(())
    }

    async fn role_policies(&self, _account: &str, role_arn: &str) -> AwsResult<RolePolicies> {
        let world = self.call("iam:GetRole")?;
        policies_in(&world, role_arn).ok_or_else(|| not_found(format!("iam:GetRole {role_arn}")))
    }

    async fn put_role_policy(
        &self,
        _account: &str,
        role_arn: &str,
        policy_name: &str,
        document: &str,
    ) -> AwsResult<()> {
        let mut world = self.call("iam:PutRolePolicy")?;
        let role = world
            .roles
            .get_mut(role_arn)
            .ok_or_else(|| not_found(format!("iam:PutRolePolicy {role_arn}")))?;
        role.inline
            .insert(policy_name.to_owned(), document.to_owned());
        Ok(())
    }

    async fn delete_role_policy(
        &self,
        _account: &str,
        role_arn: &str,
        policy_name: &str,
    ) -> AwsResult<()> {
        let mut world = self.call("iam:DeleteRolePolicy")?;
        if let Some(role) = world.roles.get_mut(role_arn) {
            role.inline.remove(policy_name);
        }
        Ok(())
    }

    async fn attach_role_policy(
        &self,
        _account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> AwsResult<()> {
        let mut world = self.call("iam:AttachRolePolicy")?;
        let role = world
            .roles
            .get_mut(role_arn)
            .ok_or_else(|| not_found(format!("iam:AttachRolePolicy {role_arn}")))?;
        if !role.attached.iter().any(|a| a == policy_arn) {
            role.attached.push(policy_arn.to_owned());
        }
        Ok(())
    }

    async fn detach_role_policy(
        &self,
        _account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> AwsResult<()> {
        let mut world = self.call("iam:DetachRolePolicy")?;
        if let Some(role) = world.roles.get_mut(role_arn) {
            role.attached.retain(|a| a != policy_arn);
        }
        Ok(())
    }

    async fn create_policy(
        &self,
        _account: &str,
        name: &str,
        document: &str,
        _description: &str,
    ) -> AwsResult<String> {
        let mut world = self.call("iam:CreatePolicy")?;
        let arn = format!("arn:aws:iam::{ACCOUNT_ID}:policy/{name}");
        world
            .policies
            .entry(arn.clone())
            .or_insert_with(|| (name.to_owned(), document.to_owned()));
        Ok(arn)
    }

    async fn delete_policy(&self, _account: &str, arn: &str) -> AwsResult<()> {
        let mut world = self.call("iam:DeletePolicy")?;
        world.policies.remove(arn);
        Ok(())
    }

    async fn put_role_permissions_boundary(
        &self,
        _account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> AwsResult<()> {
        let mut world = self.call("iam:PutRolePermissionsBoundary")?;
        let role = world
            .roles
            .get_mut(role_arn)
            .ok_or_else(|| not_found(format!("iam:PutRolePermissionsBoundary {role_arn}")))?;
        role.boundary = Some(policy_arn.to_owned());
        Ok(())
    }

    async fn delete_role_permissions_boundary(
        &self,
        _account: &str,
        role_arn: &str,
    ) -> AwsResult<()> {
        let mut world = self.call("iam:DeleteRolePermissionsBoundary")?;
        if let Some(role) = world.roles.get_mut(role_arn) {
            role.boundary = None;
        }
        Ok(())
    }

    async fn last_accessed(
        &self,
        _account: &str,
        role_arn: &str,
    ) -> AwsResult<Vec<ServiceLastAccessed>> {
        let world = self.call("iam:GenerateServiceLastAccessedDetails")?;
        Ok(world
            .last_accessed
            .get(role_arn)
            .cloned()
            .unwrap_or_default())
    }
}

impl TrailStore for Fake {
    async fn list_objects(
        &self,
        _account: &str,
        bucket: &str,
        prefix: &str,
    ) -> AwsResult<Vec<String>> {
        let world = self.call("s3:ListBucket")?;
        Ok(world
            .objects
            .keys()
            .filter(|(b, k)| b == bucket && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .collect())
    }

    async fn list_folders(
        &self,
        _account: &str,
        bucket: &str,
        prefix: &str,
    ) -> AwsResult<Vec<String>> {
        let world = self.call("s3:ListBucket")?;
        let mut folders: Vec<String> = world
            .objects
            .keys()
            .filter(|(b, k)| b == bucket && k.starts_with(prefix))
            .filter_map(|(_, k)| {
                let rest = &k[prefix.len()..];
                rest.split_once('/')
                    .map(|(folder, _)| format!("{prefix}{folder}/"))
            })
            .collect();
        folders.dedup();
        Ok(folders)
    }

    async fn download_object(
        &self,
        _account: &str,
        bucket: &str,
        key: &str,
        dest: &std::path::Path,
    ) -> AwsResult<u64> {
        let world = self.call("s3:GetObject")?;
        let bytes = world
            .objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .ok_or_else(|| not_found(format!("s3:GetObject s3://{bucket}/{key}")))?;
        std::fs::write(dest, bytes)
            .map_err(|e| AwsError::new(AwsErrorKind::Other, format!("{}: {e}", dest.display())))?;
        Ok(bytes.len() as u64)
    }
}

impl LookupEvents for Fake {
    async fn lookup_events(
        &self,
        _account: &str,
        _region: &str,
        start_ms: i64,
        end_ms: i64,
        next_token: Option<String>,
    ) -> AwsResult<LookupPage> {
        let world = self.call("cloudtrail:LookupEvents")?;
        let skip: usize = next_token.and_then(|t| t.parse().ok()).unwrap_or(0);
        let lag = i64::try_from(world.lookup_lag.as_millis()).unwrap_or(i64::MAX);
        let visible_until = world.now.as_millis_i64().saturating_sub(lag);
        let matching: Vec<&String> = world
            .events
            .iter()
            .filter(|(at, _)| *at >= start_ms && *at < end_ms && *at <= visible_until)
            .map(|(_, text)| text)
            .collect();
        let page: Vec<String> = matching
            .iter()
            .skip(skip)
            .take(50)
            .map(|t| (*t).clone())
            .collect();
        let next = skip + page.len();
        Ok(LookupPage {
            events: page,
            next_token: (next < matching.len()).then(|| next.to_string()),
        })
    }
}

impl Athena for Fake {
    async fn athena_query(
        &self,
        _account: &str,
        query: &AthenaQuery,
        _cancelled: &(dyn Fn() -> bool + Sync),
    ) -> AwsResult<AthenaResult> {
        let mut world = self.call("athena:StartQueryExecution")?;
        world.athena_queries.push(query.sql.clone());
        Ok(AthenaResult {
            rows: world.athena_rows.clone(),
            bytes_scanned: world.athena_bytes_scanned,
        })
    }
}

impl Workload for Fake {
    async fn list_functions(
        &self,
        _account: &str,
    ) -> AwsResult<Vec<crate::ports::FunctionSummary>> {
        Ok(self.call("lambda:ListFunctions")?.functions.clone())
    }

    async fn function_configuration(
        &self,
        account: &str,
        function: &str,
    ) -> AwsResult<crate::ports::FunctionSummary> {
        let world = self.call_in(account, "lambda:GetFunctionConfiguration")?;
        world
            .functions
            .iter()
            .find(|f| f.name == function)
            .cloned()
            .ok_or_else(|| not_found(format!("lambda:GetFunctionConfiguration {function}")))
    }

    async fn set_function_role(
        &self,
        account: &str,
        function: &str,
        role_arn: &str,
        revision: Option<&str>,
    ) -> AwsResult<Option<String>> {
        let mut world = self.call_in(account, "lambda:UpdateFunctionConfiguration")?;
        if !world.roles.contains_key(role_arn) {
            return Err(AwsError::new(
                AwsErrorKind::NotReady,
                format!(
                    "lambda:UpdateFunctionConfiguration {function}: the role cannot be assumed by Lambda"
                ),
            ));
        }
        world.next_id += 1;
        let next = format!("rev-{}", world.next_id);
        let f = world
            .functions
            .iter_mut()
            .find(|f| f.name == function)
            .ok_or_else(|| not_found(format!("lambda:UpdateFunctionConfiguration {function}")))?;
        if revision.is_some() && f.revision.as_deref() != revision {
            return Err(AwsError::new(
                AwsErrorKind::Stale,
                format!(
                    "lambda:UpdateFunctionConfiguration {function}: PreconditionFailedException"
                ),
            ));
        }
        f.role = role_arn.to_owned();
        f.revision = Some(next.clone());
        Ok(Some(next))
    }

    async fn invoke_function(
        &self,
        _account: &str,
        function: &str,
        _payload: &str,
    ) -> AwsResult<()> {
        self.call("lambda:Invoke")?
            .invocations
            .push(function.to_owned());
        self.exercise();
        Ok(())
    }

    async fn lambda_errors(
        &self,
        _account: &str,
        function: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> AwsResult<f64> {
        let world = self.call("cloudwatch:GetMetricStatistics")?;
        Ok(world
            .lambda_errors
            .get(function)
            .into_iter()
            .flatten()
            .filter(|(at, _)| *at >= start_ms && *at < end_ms)
            .map(|(_, n)| n)
            .sum())
    }
}

impl Fake {
    fn org_call(&self, name: &str) -> AwsResult<MutexGuard<'_, World>> {
        let world = self.call(name)?;
        if world.org_denied {
            return Err(AwsError::new(
                AwsErrorKind::AccessDenied,
                format!(
                    "{name} failed: AccessDeniedException: You don't have permissions to access this resource."
                ),
            ));
        }
        Ok(world)
    }
}

impl Organizations for Fake {
    async fn org_parent(&self, _account: &str, child_id: &str) -> AwsResult<OrgParent> {
        let world = self.org_call("organizations:ListParents")?;
        let id = world
            .org_parents
            .get(child_id)
            .cloned()
            .ok_or_else(|| not_found(format!("organizations:ListParents of {child_id}")))?;
        Ok(OrgParent {
            is_root: id.starts_with("r-"),
            id,
        })
    }

    async fn org_scps_for_target(
        &self,
        _account: &str,
        target_id: &str,
    ) -> AwsResult<Vec<OrgPolicySummary>> {
        let world = self.org_call("organizations:ListPoliciesForTarget")?;
        Ok(world
            .org_attached
            .get(target_id)
            .into_iter()
            .flatten()
            .map(|id| OrgPolicySummary {
                id: id.clone(),
                name: world
                    .org_policies
                    .get(id)
                    .map_or(id.clone(), |(n, _)| n.clone()),
            })
            .collect())
    }

    async fn org_policy_content(&self, _account: &str, policy_id: &str) -> AwsResult<String> {
        let world = self.org_call("organizations:DescribePolicy")?;
        world
            .org_policies
            .get(policy_id)
            .map(|(_, document)| document.clone())
            .ok_or_else(|| not_found(format!("organizations:DescribePolicy {policy_id}")))
    }
}

impl Web for Fake {
    async fn send(&self, request: &WebRequest) -> Result<(u16, Vec<u8>), String> {
        let mut world = self.call("web").map_err(|e| e.message)?;
        world.posted.push((
            request.url.clone(),
            request.json_body.clone().unwrap_or_default(),
        ));
        Ok((200, Vec::new()))
    }
}

/// Secrets Manager only (the machine's own tests cover SSM, KMS, keys and HTTP).
impl SecretPorts for Fake {
    async fn inspect(&self, spec: &Spec) -> Result<Inspection, PortError> {
        let world = self.secret_call("secretsmanager:DescribeSecret")?;
        let secret = world
            .secrets
            .get(&spec.secret)
            .ok_or_else(|| PortError(format!("no secret {}", spec.secret)))?;
        let (id, value) = secret
            .version_with("AWSCURRENT")
            .ok_or_else(|| PortError("no AWSCURRENT".to_owned()))?;
        Ok(Inspection {
            current: SecretValue::new(value.clone()),
            current_version: id.clone(),
            native_rotation: secret.rotation_enabled,
            pending_versions: secret
                .versions
                .iter()
                .filter(|(_, (_, stages))| stages.iter().any(|s| s == "AWSPENDING"))
                .map(|(id, _)| id.clone())
                .collect(),
        })
    }

    async fn put_pending(
        &self,
        spec: &Spec,
        token: &str,
        value: &SecretValue,
    ) -> Result<(), PortError> {
        let mut world = self.secret_call("secretsmanager:PutSecretValue")?;
        let secret = world
            .secrets
            .get_mut(&spec.secret)
            .ok_or_else(|| PortError(format!("no secret {}", spec.secret)))?;
        secret
            .versions
            .entry(token.to_owned())
            .or_insert_with(|| (value.expose().to_owned(), Vec::new()));
        secret.move_stage("AWSPENDING", Some(token));
        Ok(())
    }

    async fn read_pending(
        &self,
        spec: &Spec,
        token: &str,
    ) -> Result<Option<SecretValue>, PortError> {
        let world = self.secret_call("secretsmanager:GetSecretValue")?;
        Ok(world
            .secrets
            .get(&spec.secret)
            .and_then(|s| s.versions.get(token))
            .map(|(value, _)| SecretValue::new(value.clone())))
    }

    async fn promote(
        &self,
        spec: &Spec,
        token: &str,
        _value: &SecretValue,
    ) -> Result<String, PortError> {
        let mut world = self.secret_call("secretsmanager:UpdateSecretVersionStage")?;
        let secret = world
            .secrets
            .get_mut(&spec.secret)
            .ok_or_else(|| PortError(format!("no secret {}", spec.secret)))?;
        let old = secret.version_with("AWSCURRENT").map(|(id, _)| id.clone());
        if old.as_deref() != Some(token) {
            secret.move_stage("AWSPREVIOUS", old.as_deref());
            secret.move_stage("AWSCURRENT", Some(token));
        }
        secret.move_stage("AWSPENDING", None);
        Ok(token.to_owned())
    }

    async fn clear_pending(&self, spec: &Spec, _token: &str) -> Result<(), PortError> {
        let mut world = self.secret_call("secretsmanager:UpdateSecretVersionStage")?;
        if let Some(secret) = world.secrets.get_mut(&spec.secret) {
            secret.move_stage("AWSPENDING", None);
        }
        Ok(())
    }

    async fn encrypt(&self, _spec: &Spec, _value: &SecretValue) -> Result<Vec<u8>, PortError> {
        Err(PortError("no KMS in this fake".to_owned()))
    }

    async fn decrypt(&self, _spec: &Spec, _blob: &[u8]) -> Result<SecretValue, PortError> {
        Err(PortError("no KMS in this fake".to_owned()))
    }

    async fn kms_random(&self, _spec: &Spec, bytes: usize) -> Result<Vec<u8>, PortError> {
        Ok((0..bytes).map(|i| (i * 7 % 251) as u8).collect())
    }

    async fn run(
        &self,
        argv: &[String],
        _stdin: &SecretValue,
        _timeout: Duration,
    ) -> Result<(), PortError> {
        drop(self.secret_call("run")?);
        match argv.first().map(String::as_str) {
            Some("exercise") => {
                self.exercise();
                Ok(())
            }
            Some("fail") => Err(PortError(format!(
                "`fail` exited with exit status: 1: {}",
                argv[1..].join(" ")
            ))),
            other => Err(PortError(format!(
                "cannot start `{}`",
                other.unwrap_or_default()
            ))),
        }
    }

    async fn access_keys(&self, _spec: &Spec, _user: &str) -> Result<Vec<AccessKey>, PortError> {
        Err(PortError("no IAM users in this fake".to_owned()))
    }

    async fn create_access_key(
        &self,
        _spec: &Spec,
        _user: &str,
    ) -> Result<(String, SecretValue), PortError> {
        Err(PortError("no IAM users in this fake".to_owned()))
    }

    async fn deactivate_access_key(
        &self,
        _spec: &Spec,
        _user: &str,
        _id: &str,
    ) -> Result<(), PortError> {
        Err(PortError("no IAM users in this fake".to_owned()))
    }

    async fn delete_access_key(
        &self,
        _spec: &Spec,
        _user: &str,
        _id: &str,
    ) -> Result<(), PortError> {
        Err(PortError("no IAM users in this fake".to_owned()))
    }

    async fn access_key_last_used(
        &self,
        _spec: &Spec,
        _id: &str,
    ) -> Result<Option<Timestamp>, PortError> {
        Err(PortError("no IAM users in this fake".to_owned()))
    }

    async fn test_access_key(
        &self,
        _spec: &Spec,
        _id: &str,
        _secret: &SecretValue,
    ) -> Result<(), PortError> {
        Err(PortError("no IAM users in this fake".to_owned()))
    }

    async fn rotate_native(&self, _spec: &Spec, _token: &str) -> Result<(), PortError> {
        Err(PortError("no rotation Lambda in this fake".to_owned()))
    }

    async fn http(&self, call: &HttpCall) -> Result<(u16, Vec<u8>), PortError> {
        Err(PortError(format!(
            "{}: no provider in this fake",
            call.label
        )))
    }

    fn after_step(&self, point: &str) {
        let crash = {
            let mut world = self.world();
            world.steps.push(point.to_owned());
            world.crash_at.as_deref() == Some(point)
        };
        assert!(!crash, "crashed at {point}");
    }
}

/// A test's engine: a configuration from TOML text (relative paths from the repository's
/// root), a fresh state in a temporary directory, and the fake.
#[derive(Debug)]
pub struct TestEngine {
    pub engine: Engine<Fake>,
    pub fake: Fake,
    /// Holds the state directory until the test ends.
    _dir: tempfile::TempDir,
}

/// The configuration every test starts from: one staging account, targets tagged
/// `whittle=managed`, no minimum observation window.
pub const BASE_CONFIG: &str = r#"
[[aws.accounts]]
name = "staging"
id = "111111111111"

[targets]
arn_patterns = ["arn:aws:iam::111111111111:role/*"]
tags = { whittle = "managed" }

[planner]
min_observation_days = 0

[trial]
staging_accounts = ["staging"]
"#;

pub fn config(extra: &str) -> Config {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root");
    // A `[planner]` table in `extra` adds its keys to the base's: TOML allows a table once.
    let (base, extra) = match extra.split_once("[planner]\n") {
        Some((before, after)) => {
            let end = after.find("\n[").map_or(after.len(), |i| i + 1);
            (
                BASE_CONFIG.replace("[planner]\n", &format!("[planner]\n{}", &after[..end])),
                format!("{before}{}", &after[end..]),
            )
        }
        None => (BASE_CONFIG.to_owned(), extra.to_owned()),
    };
    let text = format!("{base}\n{extra}");
    let mut config = crate::config::parse_in(&text, &root)
        .unwrap_or_else(|e| panic!("test configuration: {e:?}\n{text}"));
    config.text = text;
    config
}

impl TestEngine {
    pub fn new(extra_config: &str) -> TestEngine {
        TestEngine::with(config(extra_config))
    }

    /// An engine with the whole configuration `text` (no [`BASE_CONFIG`]).
    pub fn from_text(text: &str) -> TestEngine {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut config = crate::config::parse_in(text, &root)
            .unwrap_or_else(|e| panic!("test configuration: {e:?}\n{text}"));
        config.text = text.to_owned();
        TestEngine::with(config)
    }

    fn with(mut config: Config) -> TestEngine {
        let fake = Fake::new();
        let dir = tempfile::tempdir().expect("a temporary directory");
        config.state.dir = dir.path().join("state");
        let state = State::open(&config.state.dir, &LockOwner::this_process()).expect("the state");
        TestEngine {
            engine: Engine::new(config, state, fake.clone()),
            fake,
            _dir: dir,
        }
    }

    /// The same state and fake with another engine (a restart after a crash).
    pub fn restarted(&self) -> Engine<Fake> {
        Engine {
            turns: Arc::default(),
            ..self.engine.clone()
        }
    }
}
