//! The ports: everything the engine needs from outside the process, as traits over whittle's
//! own types. `daemon/adapters` implements them with the AWS SDK, one HTTPS client, the
//! process runner and the system clock; the engine's tests implement them in memory
//! (`crate::testing`).
//!
//! Every method names the configured account it acts in; the adapter keeps one SDK
//! configuration per account. Errors are [`AwsError`]s classified from the SDK's typed error
//! codes, so the engine decides on a kind (`NotFound`, `Throttled`, …), never on message text.

use std::future::Future;
use std::time::Duration;

pub use whittle_planner::plan::{InlinePolicy, ManagedPolicy, RolePolicies};
pub use whittle_planner::targets::RoleSummary;
pub use whittle_planner::usage::ServiceLastAccessed;
pub use whittle_playbooks::rotation::machine::{HttpCall, PortError, Ports as SecretPorts};
pub use whittle_state::Clock;

/// What kind of failure an AWS call had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// The entity does not exist (`NoSuchEntity`, `ResourceNotFoundException`, …).
    NotFound,
    /// The entity exists already (`EntityAlreadyExists`).
    AlreadyExists,
    /// The service throttled the call (`ThrottlingException`, `Throttling`).
    Throttled,
    /// The caller may not make the call.
    AccessDenied,
    /// The entity changed since the caller read it: a `RevisionId` that no longer matches
    /// (Lambda's `PreconditionFailedException`).
    Stale,
    /// Not possible yet, possible soon: a role IAM has not yet made assumable by Lambda
    /// (`InvalidParameterValueException` on a role switch), or a function whose last update
    /// is still in progress (`ResourceConflictException`). Retried by the caller.
    NotReady,
    /// Anything else: no connection, a timeout, another service error.
    Other,
}

/// A failed AWS call: its kind, and one line naming the call and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AwsError {
    pub kind: AwsErrorKind,
    pub message: String,
}

impl AwsError {
    pub fn new(kind: AwsErrorKind, message: impl Into<String>) -> AwsError {
        AwsError {
            kind,
            message: message.into(),
        }
    }
}

pub type AwsResult<T> = Result<T, AwsError>;

/// Who an account's credentials are (sts:GetCallerIdentity).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
}

/// What a read of a whole account asks IAM for besides its roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotScope {
    /// Roles only, each with its tags, inline policies and the ARNs of its attached policies
    /// and boundary: enough to choose the targets (`discover`).
    Roles,
    /// Roles and the account's managed policies (customer-managed, and the AWS-managed ones in
    /// use) at their default versions: enough to plan every role.
    RolesAndPolicies,
}

/// One role as iam:GetAccountAuthorizationDetails describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDetail {
    /// ARN, path and tags.
    pub summary: RoleSummary,
    /// Inline policies, documents URL-decoded, sorted by name.
    pub inline: Vec<InlinePolicy>,
    /// The ARNs of the attached managed policies.
    pub attached: Vec<String>,
    /// The ARN of the permissions boundary, if any.
    pub boundary: Option<String>,
}

/// One page of iam:GetAccountAuthorizationDetails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizationPage {
    pub roles: Vec<RoleDetail>,
    /// Managed policies at their default version, documents URL-decoded (each once in the
    /// account, however many roles it is attached to).
    pub policies: Vec<ManagedPolicy>,
    /// Where the next page starts; `None` on the last page.
    pub marker: Option<String>,
}

/// A role as iam:GetRole describes it: what a role made in its image copies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleDefinition {
    pub arn: String,
    pub path: String,
    /// The trust policy (`AssumeRolePolicyDocument`), URL-decoded.
    pub trust_policy: String,
    pub tags: std::collections::BTreeMap<String, String>,
    /// The permissions boundary's ARN.
    pub boundary: Option<String>,
}

/// A role to create (iam:CreateRole, with its tags and boundary in the same call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRole<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub trust_policy: &'a str,
    pub tags: &'a std::collections::BTreeMap<String, String>,
    pub boundary: Option<&'a str>,
    pub description: &'a str,
}

/// IAM and STS: identities, roles and their policies, last-accessed data.
pub trait Iam: Send + Sync {
    /// sts:GetCallerIdentity with the account's credentials.
    fn caller_identity(&self, account: &str) -> impl Future<Output = AwsResult<Identity>> + Send;
    /// One role with its path and tags.
    fn role_summary(
        &self,
        account: &str,
        role_arn: &str,
    ) -> impl Future<Output = AwsResult<RoleSummary>> + Send;
    /// The role's path, trust policy, tags and boundary (iam:GetRole).
    fn role_definition(
        &self,
        account: &str,
        role_arn: &str,
    ) -> impl Future<Output = AwsResult<RoleDefinition>> + Send;
    /// Creates a role; returns its ARN. An existing role of that name is `AlreadyExists`
    /// (never taken over: the caller decides whether it is its own, by its tags).
    fn create_role(
        &self,
        account: &str,
        role: &NewRole<'_>,
    ) -> impl Future<Output = AwsResult<String>> + Send;
    /// Deletes a role that has no policies left; one already gone counts as deleted.
    fn delete_role(
        &self,
        account: &str,
        role_arn: &str,
    ) -> impl Future<Output = AwsResult<()>> + Send;
    /// Everything that grants or limits the role's permissions: inline policies, attached
    /// managed policies and the boundary, each managed one at its default version, documents
    /// URL-decoded.
    fn role_policies(
        &self,
        account: &str,
        role_arn: &str,
    ) -> impl Future<Output = AwsResult<RolePolicies>> + Send;
    /// One page of iam:GetAccountAuthorizationDetails (up to 1,000 entities), from `marker`
    /// (`None`: the first page).
    fn authorization_details(
        &self,
        account: &str,
        scope: SnapshotScope,
        marker: Option<String>,
    ) -> impl Future<Output = AwsResult<AuthorizationPage>> + Send;
    /// One managed policy at its default version, document URL-decoded.
    fn managed_policy(
        &self,
        account: &str,
        policy_arn: &str,
    ) -> impl Future<Output = AwsResult<ManagedPolicy>> + Send;
    fn put_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_name: &str,
        document: &str,
    ) -> impl Future<Output = AwsResult<()>> + Send;
    /// Deletes an inline policy; one already gone counts as deleted (a retried step).
    fn delete_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_name: &str,
    ) -> impl Future<Output = AwsResult<()>> + Send;
    /// Attaches a managed policy (idempotent in IAM).
    fn attach_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> impl Future<Output = AwsResult<()>> + Send;
    /// Detaches a managed policy; one not attached counts as detached.
    fn detach_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> impl Future<Output = AwsResult<()>> + Send;
    /// Creates a customer-managed policy and returns its ARN; an existing policy of that
    /// name (a retried step) is returned as it is.
    fn create_policy(
        &self,
        account: &str,
        name: &str,
        document: &str,
        description: &str,
    ) -> impl Future<Output = AwsResult<String>> + Send;
    /// Deletes a customer-managed policy; one already gone counts as deleted.
    fn delete_policy(&self, account: &str, arn: &str)
    -> impl Future<Output = AwsResult<()>> + Send;
    fn put_role_permissions_boundary(
        &self,
        account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> impl Future<Output = AwsResult<()>> + Send;
    /// Removes the role's boundary; a role without one counts as done.
    fn delete_role_permissions_boundary(
        &self,
        account: &str,
        role_arn: &str,
    ) -> impl Future<Output = AwsResult<()>> + Send;
    /// IAM's last-accessed data for one role, at action level where AWS tracks it.
    fn last_accessed(
        &self,
        account: &str,
        role_arn: &str,
    ) -> impl Future<Output = AwsResult<Vec<ServiceLastAccessed>>> + Send;
}

/// Where CloudTrail delivers its log files: S3.
pub trait TrailStore: Send + Sync {
    /// The key of every object under `prefix`.
    fn list_objects(
        &self,
        account: &str,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = AwsResult<Vec<String>>> + Send;
    /// The folders directly under `prefix` (common prefixes for `/`), each ending with `/`.
    fn list_folders(
        &self,
        account: &str,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = AwsResult<Vec<String>>> + Send;
    /// Writes one object into the file `dest` (created or truncated), streamed: memory holds
    /// a chunk of it, never the object. Returns its size in bytes.
    fn download_object(
        &self,
        account: &str,
        bucket: &str,
        key: &str,
        dest: &std::path::Path,
    ) -> impl Future<Output = AwsResult<u64>> + Send;
}

/// One page of LookupEvents.
#[derive(Debug, Clone, Default)]
pub struct LookupPage {
    /// Each event's `CloudTrailEvent`: the record as a JSON string.
    pub events: Vec<String>,
    pub next_token: Option<String>,
}

/// CloudTrail's LookupEvents API.
pub trait LookupEvents: Send + Sync {
    /// One page of events between two times (ms), in `region`, at most 50 events.
    fn lookup_events(
        &self,
        account: &str,
        region: &str,
        start_ms: i64,
        end_ms: i64,
        next_token: Option<String>,
    ) -> impl Future<Output = AwsResult<LookupPage>> + Send;
}

/// An Athena query and where to run it.
#[derive(Debug, Clone)]
pub struct AthenaQuery {
    pub sql: String,
    pub database: String,
    pub workgroup: Option<String>,
    pub output_location: String,
    /// The expected column names, to recognise the header row.
    pub columns: Vec<String>,
}

/// What a finished Athena query returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AthenaResult {
    /// The rows, header row removed, each a list of nullable strings.
    pub rows: Vec<Vec<Option<String>>>,
    /// The bytes the query read (`Statistics.DataScannedInBytes`): what Athena bills.
    pub bytes_scanned: u64,
}

/// Athena.
pub trait Athena: Send + Sync {
    /// Runs one query to completion and returns its rows and the bytes it scanned. A query
    /// that fails returns an error carrying Athena's reason. `cancelled` is polled between
    /// status checks; when it says yes the query is stopped and an error returned.
    fn athena_query(
        &self,
        account: &str,
        query: &AthenaQuery,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> impl Future<Output = AwsResult<AthenaResult>> + Send;
}

/// A Lambda function as lambda:ListFunctions lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FunctionSummary {
    pub name: String,
    pub arn: String,
    /// The execution role's ARN: the role whose sessions carry the function's name.
    pub role: String,
    /// Changes with every update of the function's code or configuration (`RevisionId`).
    pub revision: Option<String>,
}

/// The workload a trial exercises and watches, and the functions discovery lists: Lambda
/// and CloudWatch.
pub trait Workload: Send + Sync {
    /// Every function of the account in whittle's region (lambda:ListFunctions, paged).
    fn list_functions(
        &self,
        account: &str,
    ) -> impl Future<Output = AwsResult<Vec<FunctionSummary>>> + Send;
    /// One function's configuration (lambda:GetFunctionConfiguration): its role and
    /// `RevisionId`.
    fn function_configuration(
        &self,
        account: &str,
        function: &str,
    ) -> impl Future<Output = AwsResult<FunctionSummary>> + Send;
    /// Sets the function's execution role (lambda:UpdateFunctionConfiguration); with
    /// `revision`, only if the function is still at that `RevisionId` (else `Stale`). Returns
    /// the function's new `RevisionId`. A role IAM has not yet made assumable is `NotReady`.
    fn set_function_role(
        &self,
        account: &str,
        function: &str,
        role_arn: &str,
        revision: Option<&str>,
    ) -> impl Future<Output = AwsResult<Option<String>>> + Send;
    /// Invokes a function synchronously; an error names a function error too.
    fn invoke_function(
        &self,
        account: &str,
        function: &str,
        payload: &str,
    ) -> impl Future<Output = AwsResult<()>> + Send;
    /// The sum of a function's `Errors` (AWS/Lambda) between two times (ms).
    fn lambda_errors(
        &self,
        account: &str,
        function: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> impl Future<Output = AwsResult<f64>> + Send;
}

/// Where an account or organizational unit sits in an AWS organization: its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgParent {
    /// `r-…` for the root, `ou-…` for an organizational unit.
    pub id: String,
    /// Whether the parent is the organization's root (the top of the chain).
    pub is_root: bool,
}

/// A service control policy attached to a root, OU or account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPolicySummary {
    /// `p-…` (`p-FullAWSAccess` for AWS's own).
    pub id: String,
    pub name: String,
}

/// AWS Organizations, read-only, through an account allowed to read the organization's
/// policies (the management account or a delegated administrator).
pub trait Organizations: Send + Sync {
    /// The parent of an account or OU (organizations:ListParents; a child has exactly one).
    fn org_parent(
        &self,
        account: &str,
        child_id: &str,
    ) -> impl Future<Output = AwsResult<OrgParent>> + Send;
    /// The SCPs attached directly to a root, OU or account (organizations:
    /// ListPoliciesForTarget with the SERVICE_CONTROL_POLICY filter, every page).
    fn org_scps_for_target(
        &self,
        account: &str,
        target_id: &str,
    ) -> impl Future<Output = AwsResult<Vec<OrgPolicySummary>>> + Send;
    /// A policy's document, as text (organizations:DescribePolicy).
    fn org_policy_content(
        &self,
        account: &str,
        policy_id: &str,
    ) -> impl Future<Output = AwsResult<String>> + Send;
}

/// An outbound HTTP(S) request that is not a playbook's (which go through
/// [`SecretPorts::http`], HTTPS only): a webhook, AWS's Service Reference.
#[derive(Debug, Clone)]
pub struct WebRequest {
    pub method: &'static str,
    pub url: String,
    /// Extra headers (names in lower case).
    pub headers: Vec<(&'static str, String)>,
    /// `content-type: application/json` when set.
    pub json_body: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// Outbound HTTP(S), TLS verified against the system's roots.
pub trait Web: Send + Sync {
    /// Sends the request; returns the status and the body. Err when no answer came.
    fn send(
        &self,
        request: &WebRequest,
    ) -> impl Future<Output = Result<(u16, Vec<u8>), String>> + Send;
}

/// Everything the engine's workflows need, as one bound: the AWS services, outbound HTTP,
/// the rotation machine's ports (Secrets Manager, SSM, KMS, IAM access keys, playbook HTTPS
/// and scripts, the clock).
pub trait Ports:
    Iam
    + TrailStore
    + LookupEvents
    + Athena
    + Workload
    + Organizations
    + Web
    + SecretPorts
    + Clock
    + 'static
{
}

impl<T> Ports for T where
    T: Iam
        + TrailStore
        + LookupEvents
        + Athena
        + Workload
        + Organizations
        + Web
        + SecretPorts
        + Clock
        + 'static
{
}
