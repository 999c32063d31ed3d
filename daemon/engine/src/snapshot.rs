//! One read per account: every role of an account, with its tags, inline policies, attached
//! managed policies (each distinct policy once, at its default version) and boundary, from
//! iam:GetAccountAuthorizationDetails, instead of four or more IAM calls per role.
//!
//! Each request takes its turn of the account's IAM pace and is retried with back-off while
//! IAM throttles it ([`crate::guard::paced`]); accounts are read at once, at most
//! `[aws] concurrent_accounts` at a time ([`each_account`]), and an account that cannot be
//! read fails alone.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tracing::{info, warn};
use whittle_state::Timestamp;

use crate::Engine;
use crate::guard::{Quota, paced};
use crate::ports::{
    AwsErrorKind, AwsResult, ManagedPolicy, Ports, RoleDetail, RolePolicies, SnapshotScope,
};

/// IAM is global: its requests are counted per account, not per region.
const IAM_REGION: &str = "global";

/// An account's roles and managed policies as one read found them.
#[derive(Debug, Clone)]
pub struct AccountSnapshot {
    /// The account's name in the configuration.
    pub account: String,
    /// When the read began: what it returned is at least this recent.
    pub read_at: Timestamp,
    pub roles: Vec<RoleDetail>,
    /// The managed policies the roles use (attached or as boundary), by ARN, at their default
    /// versions; empty for [`SnapshotScope::Roles`].
    pub policies: BTreeMap<String, ManagedPolicy>,
    /// The IAM requests the read made, throttled ones included.
    pub requests: usize,
}

impl AccountSnapshot {
    /// One role's policies as a per-role read would return them (inline by name, managed by
    /// ARN), or the ARN of a managed policy the snapshot lacks.
    pub fn role_policies(&self, role: &RoleDetail) -> Result<RolePolicies, String> {
        let policy = |arn: &String| self.policies.get(arn).cloned().ok_or_else(|| arn.clone());
        let mut managed = role
            .attached
            .iter()
            .map(policy)
            .collect::<Result<Vec<_>, _>>()?;
        managed.sort_by(|a, b| a.arn.cmp(&b.arn));
        let mut inline = role.inline.clone();
        inline.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(RolePolicies {
            role_arn: role.summary.arn.clone(),
            role_name: whittle_planner::targets::role_name(&role.summary.arn).to_owned(),
            inline,
            managed,
            boundary: role.boundary.as_ref().map(policy).transpose()?,
        })
    }
}

/// Reads one account whole: every page of iam:GetAccountAuthorizationDetails and, for
/// [`SnapshotScope::RolesAndPolicies`], each managed policy a role uses that the pages did not
/// list (IAM lists the AWS-managed policies in use; one used only as a boundary may be
/// missing), read once however many roles use it.
pub async fn read_account<P: Ports>(
    engine: &Engine<P>,
    account: &str,
    scope: SnapshotScope,
) -> AwsResult<AccountSnapshot> {
    let ports = &*engine.ports;
    let read_at = engine.now();
    let requests = std::sync::atomic::AtomicUsize::new(0);
    let counted = || {
        requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let never = || false;
    let mut roles = Vec::new();
    let mut policies = BTreeMap::new();
    let mut marker = None;
    loop {
        let page = paced(
            ports,
            &engine.pace,
            (Quota::IamReads, account, IAM_REGION),
            &never,
            || {
                counted();
                ports.authorization_details(account, scope, marker.clone())
            },
        )
        .await?;
        roles.extend(page.roles);
        policies.extend(page.policies.into_iter().map(|p| (p.arn.clone(), p)));
        match page.marker {
            Some(next) => marker = Some(next),
            None => break,
        }
    }
    if scope == SnapshotScope::RolesAndPolicies {
        let missing: std::collections::BTreeSet<String> = roles
            .iter()
            .flat_map(|r| r.attached.iter().chain(&r.boundary))
            .filter(|arn| !policies.contains_key(*arn))
            .cloned()
            .collect();
        for arn in missing {
            let policy = paced(
                ports,
                &engine.pace,
                (Quota::IamReads, account, IAM_REGION),
                &never,
                || {
                    counted();
                    ports.managed_policy(account, &arn)
                },
            )
            .await;
            match policy {
                Ok(policy) => {
                    policies.insert(arn, policy);
                }
                // Deleted since the pages were read: the roles naming it fail alone
                // (`role_policies` names it), the account is still read.
                Err(error) if error.kind == AwsErrorKind::NotFound => {
                    warn!(account, policy = %arn, %error, "Managed policy gone while reading the account");
                }
                Err(error) => return Err(error),
            }
        }
    } else {
        policies.clear();
    }
    roles.sort_by(|a, b| a.summary.arn.cmp(&b.summary.arn));
    let requests = requests.into_inner();
    info!(
        account,
        roles = roles.len(),
        policies = policies.len(),
        requests,
        "Account read"
    );
    Ok(AccountSnapshot {
        account: account.to_owned(),
        read_at,
        roles,
        policies,
        requests,
    })
}

/// Runs `work` for every configured account, at most `[aws] concurrent_accounts` at a time,
/// and returns each account's outcome in the configuration's order. One account failing (or
/// its task panicking) does not stop the others.
pub async fn each_account<P, T, F, Fut>(
    engine: &Engine<P>,
    work: F,
) -> Vec<(String, anyhow::Result<T>)>
where
    P: Ports,
    T: Send + 'static,
    F: Fn(Engine<P>, String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let names: Vec<String> = engine.config.account_names().map(str::to_owned).collect();
    let slots = Arc::new(tokio::sync::Semaphore::new(
        engine.config.aws.concurrent_accounts.max(1),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, name) in names.iter().enumerate() {
        let slots = Arc::clone(&slots);
        let job = work(engine.clone(), name.clone());
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring fails only if it were.
            let _slot = slots.acquire_owned().await;
            (index, job.await)
        });
    }
    let mut outcomes: Vec<Option<anyhow::Result<T>>> = names.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, outcome)) = joined
            && let Some(slot) = outcomes.get_mut(index)
        {
            *slot = Some(outcome);
        }
    }
    names
        .into_iter()
        .zip(outcomes)
        .map(|(name, outcome)| {
            let outcome = outcome
                .unwrap_or_else(|| Err(anyhow::anyhow!("the read of account `{name}` stopped")));
            (name, outcome)
        })
        .collect()
}
