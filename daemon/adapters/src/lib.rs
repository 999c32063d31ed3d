//! whittle's adapters: the engine's ports ([`whittle_engine::ports`]) implemented with the
//! AWS SDK, one HTTPS client, child processes and the system clock.
//!
//! [`Adapters`] is the one value the binary builds ([`Adapters::new`]) and hands to
//! [`whittle_engine::Engine`]; it implements every port, so it meets the engine's
//! [`Ports`](whittle_engine::Ports) bound.
//!
//! Invariants:
//! - this is the only crate with the AWS SDK and the TLS stack (hyper, rustls); the engine
//!   sees whittle's own types and [`AwsError`](whittle_engine::ports::AwsError)s only;
//! - an AWS error's kind comes from the SDK's typed error code (or an unparsed HTTP 403),
//!   never from its message text; its message is one line naming the call and what to check;
//! - a secret value never reaches an error or a log line (see `secrets`).
//!
//! Modules: `aws` (SDK configuration per account, IAM, STS, S3, CloudTrail, Athena, Lambda,
//! CloudWatch, Organizations), `https` (the one outbound HTTP(S) client), `secrets` (the rotation
//! machine's ports).

mod aws;
mod https;
mod secrets;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use whittle_engine::Config;
use whittle_engine::ports::{
    Athena, AthenaQuery, AthenaResult, AuthorizationPage, AwsResult, Iam, Identity, LookupEvents,
    LookupPage, ManagedPolicy, NewRole, OrgParent, OrgPolicySummary, Organizations, RoleDefinition,
    RolePolicies, RoleSummary, ServiceLastAccessed, SnapshotScope, TrailStore, Web, WebRequest,
    Workload,
};
use whittle_state::{Clock, Timestamp};

/// Every port the engine needs, in one value: the SDK configuration of each configured
/// account and the outbound HTTP(S) client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Adapters {
    aws: aws::Aws,
    https: https::Https,
}

impl Adapters {
    /// Builds one SDK configuration per `[[aws.accounts]]` entry (no network call is made
    /// until a port is used) and the HTTPS client (which loads the system's root
    /// certificates).
    pub async fn new(config: &Config) -> anyhow::Result<Adapters> {
        Ok(Adapters {
            aws: aws::Aws::new(config).await?,
            https: https::Https::new().map_err(|e| anyhow::anyhow!("{e}"))?,
        })
    }
}

/// The error and its sources as one line of their messages, `outer: inner: …`.
///
/// The SDK's own `DisplayErrorContext` ends with the whole error's `Debug` form (connector
/// internals, raw responses), which buries the cause; the messages alone name it. A source
/// whose message its parent already contains (many wrap with `{source}`) is said once.
pub(crate) fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let message = current.to_string().replace('\n', " ");
        if !message.is_empty() && !parts.iter().any(|p| p.contains(&message)) {
            parts.push(message);
        }
        next = current.source();
    }
    parts.join(": ")
}

impl Clock for Adapters {
    /// The system time; a clock before 1970 (a broken host) reads as the epoch.
    fn now(&self) -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Timestamp(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

impl Iam for Adapters {
    async fn caller_identity(&self, account: &str) -> AwsResult<Identity> {
        self.aws.caller_identity(account).await
    }

    async fn authorization_details(
        &self,
        account: &str,
        scope: SnapshotScope,
        marker: Option<String>,
    ) -> AwsResult<AuthorizationPage> {
        self.aws.authorization_details(account, scope, marker).await
    }

    async fn managed_policy(&self, account: &str, policy_arn: &str) -> AwsResult<ManagedPolicy> {
        self.aws.managed_policy(account, policy_arn).await
    }

    async fn role_summary(&self, account: &str, role_arn: &str) -> AwsResult<RoleSummary> {
        self.aws.role_summary(account, role_arn).await
    }

    async fn role_policies(&self, account: &str, role_arn: &str) -> AwsResult<RolePolicies> {
        self.aws.role_policies(account, role_arn).await
    }

    async fn role_definition(&self, account: &str, role_arn: &str) -> AwsResult<RoleDefinition> {
        self.aws.role_definition(account, role_arn).await
    }

    async fn create_role(&self, account: &str, role: &NewRole<'_>) -> AwsResult<String> {
        self.aws.create_role(account, role).await
    }

    async fn delete_role(&self, account: &str, role_arn: &str) -> AwsResult<()> {
        self.aws.delete_role(account, role_arn).await
    }

    async fn put_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_name: &str,
        document: &str,
    ) -> AwsResult<()> {
        self.aws
            .put_role_policy(account, role_arn, policy_name, document)
            .await
    }

    async fn delete_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_name: &str,
    ) -> AwsResult<()> {
        self.aws
            .delete_role_policy(account, role_arn, policy_name)
            .await
    }

    async fn attach_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> AwsResult<()> {
        self.aws
            .attach_role_policy(account, role_arn, policy_arn)
            .await
    }

    async fn detach_role_policy(
        &self,
        account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> AwsResult<()> {
        self.aws
            .detach_role_policy(account, role_arn, policy_arn)
            .await
    }

    async fn create_policy(
        &self,
        account: &str,
        name: &str,
        document: &str,
        description: &str,
    ) -> AwsResult<String> {
        self.aws
            .create_policy(account, name, document, description)
            .await
    }

    async fn delete_policy(&self, account: &str, arn: &str) -> AwsResult<()> {
        self.aws.delete_policy(account, arn).await
    }

    async fn put_role_permissions_boundary(
        &self,
        account: &str,
        role_arn: &str,
        policy_arn: &str,
    ) -> AwsResult<()> {
        self.aws
            .put_role_permissions_boundary(account, role_arn, policy_arn)
            .await
    }

    async fn delete_role_permissions_boundary(
        &self,
        account: &str,
        role_arn: &str,
    ) -> AwsResult<()> {
        self.aws
            .delete_role_permissions_boundary(account, role_arn)
            .await
    }

    async fn last_accessed(
        &self,
        account: &str,
        role_arn: &str,
    ) -> AwsResult<Vec<ServiceLastAccessed>> {
        self.aws.last_accessed(account, role_arn).await
    }
}

impl TrailStore for Adapters {
    async fn list_objects(
        &self,
        account: &str,
        bucket: &str,
        prefix: &str,
    ) -> AwsResult<Vec<String>> {
        self.aws.list_objects(account, bucket, prefix).await
    }

    async fn list_folders(
        &self,
        account: &str,
        bucket: &str,
        prefix: &str,
    ) -> AwsResult<Vec<String>> {
        self.aws.list_folders(account, bucket, prefix).await
    }

    async fn download_object(
        &self,
        account: &str,
        bucket: &str,
        key: &str,
        dest: &std::path::Path,
    ) -> AwsResult<u64> {
        self.aws.download_object(account, bucket, key, dest).await
    }
}

impl LookupEvents for Adapters {
    async fn lookup_events(
        &self,
        account: &str,
        region: &str,
        start_ms: i64,
        end_ms: i64,
        next_token: Option<String>,
    ) -> AwsResult<LookupPage> {
        self.aws
            .lookup_events(account, region, start_ms, end_ms, next_token)
            .await
    }
}

impl Athena for Adapters {
    async fn athena_query(
        &self,
        account: &str,
        query: &AthenaQuery,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> AwsResult<AthenaResult> {
        self.aws.athena_query(account, query, cancelled).await
    }
}

impl Workload for Adapters {
    async fn list_functions(
        &self,
        account: &str,
    ) -> AwsResult<Vec<whittle_engine::ports::FunctionSummary>> {
        self.aws.list_functions(account).await
    }

    async fn function_configuration(
        &self,
        account: &str,
        function: &str,
    ) -> AwsResult<whittle_engine::ports::FunctionSummary> {
        self.aws.function_configuration(account, function).await
    }

    async fn set_function_role(
        &self,
        account: &str,
        function: &str,
        role_arn: &str,
        revision: Option<&str>,
    ) -> AwsResult<Option<String>> {
        self.aws
            .set_function_role(account, function, role_arn, revision)
            .await
    }

    async fn invoke_function(&self, account: &str, function: &str, payload: &str) -> AwsResult<()> {
        self.aws.invoke_function(account, function, payload).await
    }

    async fn lambda_errors(
        &self,
        account: &str,
        function: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> AwsResult<f64> {
        self.aws
            .lambda_errors(account, function, start_ms, end_ms)
            .await
    }
}

impl Organizations for Adapters {
    async fn org_parent(&self, account: &str, child_id: &str) -> AwsResult<OrgParent> {
        self.aws.org_parent(account, child_id).await
    }

    async fn org_scps_for_target(
        &self,
        account: &str,
        target_id: &str,
    ) -> AwsResult<Vec<OrgPolicySummary>> {
        self.aws.org_scps_for_target(account, target_id).await
    }

    async fn org_policy_content(&self, account: &str, policy_id: &str) -> AwsResult<String> {
        self.aws.org_policy_content(account, policy_id).await
    }
}

impl Web for Adapters {
    async fn send(&self, request: &WebRequest) -> Result<(u16, Vec<u8>), String> {
        self.https.send(request).await
    }
}

/// `Adapters` meets the engine's bound (every port, `'static`): checked at compile time.
#[allow(dead_code)]
fn _assert_ports() {
    fn is<P: whittle_engine::Ports>() {}
    is::<Adapters>();
}

#[cfg(test)]
mod tests {
    use whittle_engine::ports::AwsErrorKind;

    use super::*;

    #[tokio::test]
    async fn an_account_not_configured_is_named_and_the_clock_reads_the_system_time() {
        let config: Config =
            serde_json::from_str(r#"{"aws": {"accounts": [{"name": "staging"}]}}"#)
                .expect("config");
        let adapters = Adapters::new(&config).await.expect("adapters");
        let error = adapters
            .caller_identity("prod")
            .await
            .expect_err("not configured");
        assert_eq!(error.kind, AwsErrorKind::Other);
        assert_eq!(
            error.message,
            "account `prod` is not configured in [[aws.accounts]]"
        );
        // 2023-11-14: any working clock is past it.
        assert!(adapters.now().0 > 1_700_000_000_000);
    }
}
