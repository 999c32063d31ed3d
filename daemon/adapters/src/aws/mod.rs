//! The AWS adapters: the only code that knows the AWS SDK.
//!
//! [`Aws::new`] is the one place SDK configuration is built: region, endpoint override,
//! credentials chain or profile, per-account assume-role, retry and timeout settings. Nothing
//! here talks to the network until a call is made, so building it is cheap and offline.
//!
//! Invariants: SDK types stay in this module and its children; every failure leaves as an
//! [`AwsError`](whittle_engine::ports::AwsError) whose kind comes from the SDK's typed error
//! metadata ([`errors::kind`]) and whose message is one line naming the call and what to
//! check. Checking that the credentials are the configured account's is the engine's job
//! (`whittle_engine::targets::identity`); [`Aws::caller_identity`] only asks.

pub(crate) mod errors;
pub(crate) mod iam;
pub(crate) mod mining;
pub(crate) mod organizations;

use std::collections::BTreeMap;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::config::SharedCredentialsProvider;
use whittle_engine::config::{AccountConfig, AwsConfig, Config};
use whittle_engine::ports::{AwsResult, Identity};

pub use errors::{describe, done_if_gone};
use errors::{failed, other};

/// SDK configurations, one per configured account.
#[derive(Debug, Clone)]
pub struct Aws {
    accounts: BTreeMap<String, SdkConfig>,
    endpoint: Option<String>,
}

impl Aws {
    pub async fn new(config: &Config) -> anyhow::Result<Aws> {
        let base = loader(&config.aws, config.aws.profile.as_deref())
            .load()
            .await;
        let mut accounts = BTreeMap::new();
        for account in &config.aws.accounts {
            let sdk = account_config(&config.aws, &base, account).await?;
            accounts.insert(account.name.clone(), sdk);
        }
        Ok(Aws {
            accounts,
            endpoint: config.aws.endpoint_url.as_ref().map(|u| u.0.clone()),
        })
    }

    /// The SDK configuration of an account.
    pub fn sdk(&self, account: &str) -> AwsResult<&SdkConfig> {
        self.accounts.get(account).ok_or_else(|| {
            other(format!(
                "account `{account}` is not configured in [[aws.accounts]]"
            ))
        })
    }

    /// The endpoint override, for error messages.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// sts:GetCallerIdentity for one account.
    pub async fn caller_identity(&self, account: &str) -> AwsResult<Identity> {
        let sts = aws_sdk_sts::Client::new(self.sdk(account)?);
        let out = sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| failed(&e, "sts:GetCallerIdentity", self.endpoint()))?;
        Ok(Identity {
            account: out.account().unwrap_or_default().to_owned(),
            arn: out.arn().unwrap_or_default().to_owned(),
            user_id: out.user_id().unwrap_or_default().to_owned(),
        })
    }
}

fn loader(aws: &AwsConfig, profile: Option<&str>) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // The SDK crates are built without `default-https-client`: this is their HTTP
        // client, hyper over rustls with the ring provider (as crate::https uses).
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .region(Region::new(aws.region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(aws.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(aws.connect_timeout.0)
                .operation_timeout(aws.operation_timeout.0)
                .build(),
        );
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url.0.clone());
    }
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    loader
}

async fn account_config(
    aws: &AwsConfig,
    base: &SdkConfig,
    account: &AccountConfig,
) -> anyhow::Result<SdkConfig> {
    let source = match &account.profile {
        Some(profile) => loader(aws, Some(profile)).load().await,
        None => base.clone(),
    };
    let Some(role_arn) = &account.role_arn else {
        return Ok(source);
    };
    let mut provider =
        aws_config::sts::AssumeRoleProvider::builder(role_arn).session_name(&account.session_name);
    if let Some(external_id) = &account.external_id {
        provider = provider.external_id(external_id);
    }
    let provider = provider.configure(&source).build().await;
    Ok(source
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build())
}
