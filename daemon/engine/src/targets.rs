//! Target discovery, in one place: which roles of the configured accounts whittle may
//! change. The `discover` job, `plan`, `apply`, trials and the last-accessed refresh all ask
//! here; the selector itself (patterns, tags, protected roles) is the planner's.

use anyhow::Context as _;
use tracing::info;
use whittle_planner::targets::{Selection, role_arn_of_caller};

use crate::Engine;
use crate::config::Config;
use crate::ports::{Iam, Identity, Ports, SnapshotScope};
use crate::records::{ProtectedRole, RoleInventory};
use crate::snapshot::AccountSnapshot;

/// A target role and the configured account it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub account: String,
    pub arn: String,
}

/// sts:GetCallerIdentity for one account, checked against the configured account id.
pub async fn identity<P: Ports>(engine: &Engine<P>, account: &str) -> anyhow::Result<Identity> {
    check_identity(&*engine.ports, &engine.config, account).await
}

/// [`identity`] before there is an engine (the daemon checks every account's credentials
/// before it opens the state).
pub async fn check_identity<I: Iam>(
    iam: &I,
    config: &Config,
    account: &str,
) -> anyhow::Result<Identity> {
    let identity = iam.caller_identity(account).await?;
    let expected = config.account(account).and_then(|a| a.id.as_ref());
    if let Some(expected) = expected
        && expected.0 != identity.account
    {
        anyhow::bail!(
            "the credentials are for account {} ({}), but [[aws.accounts]] `{account}` says id {expected}; fix the id or the credentials",
            identity.account,
            identity.arn
        );
    }
    Ok(identity)
}

/// Reads `account` whole ([`crate::snapshot::read_account`]) with its identity checked, and
/// classifies every role (target, protected with why, or not selected). Read-only on AWS.
pub async fn read_account<P: Ports>(
    engine: &Engine<P>,
    account: &str,
    scope: SnapshotScope,
) -> anyhow::Result<(RoleInventory, AccountSnapshot)> {
    let identity = identity(engine, account).await?;
    let snapshot = crate::snapshot::read_account(engine, account, scope).await?;
    let inventory = inventory_of(engine, &identity, &snapshot);
    Ok((inventory, snapshot))
}

fn inventory_of<P: Ports>(
    engine: &Engine<P>,
    identity: &Identity,
    snapshot: &AccountSnapshot,
) -> RoleInventory {
    let selector = engine.config.target_selector();
    let own_role = role_arn_of_caller(&identity.arn);
    let mut inventory = RoleInventory {
        account: snapshot.account.clone(),
        account_id: identity.account.clone(),
        refreshed_at: snapshot.read_at,
        targets: Vec::new(),
        protected: Vec::new(),
        not_selected: 0,
    };
    for role in &snapshot.roles {
        let role = &role.summary;
        match selector.classify(role, own_role.as_deref()) {
            Selection::Target => inventory.targets.push(role.arn.clone()),
            Selection::Protected(reason) => inventory.protected.push(ProtectedRole {
                arn: role.arn.clone(),
                reason,
            }),
            Selection::NotSelected => inventory.not_selected += 1,
        }
    }
    inventory.targets.sort();
    inventory.protected.sort_by(|a, b| a.arn.cmp(&b.arn));
    info!(
        account = %snapshot.account,
        targets = inventory.targets.len(),
        protected = inventory.protected.len(),
        not_selected = inventory.not_selected,
        "Discovered roles"
    );
    inventory
}

/// Lists every role of `account` and classifies it. Read-only on AWS.
pub async fn discover_account<P: Ports>(
    engine: &Engine<P>,
    account: &str,
) -> anyhow::Result<RoleInventory> {
    Ok(read_account(engine, account, SnapshotScope::Roles).await?.0)
}

/// Every configured account read whole and classified, at most `[aws] concurrent_accounts`
/// at a time, in the configuration's order; an account that cannot be read (credentials,
/// identity, IAM refusing or throttling past the back-off) is an `Err` of its own and the
/// others are read all the same.
pub async fn read_all<P: Ports>(
    engine: &Engine<P>,
    scope: SnapshotScope,
) -> Vec<(String, anyhow::Result<(RoleInventory, AccountSnapshot)>)> {
    crate::snapshot::each_account(engine, move |engine, account| async move {
        read_account(&engine, &account, scope)
            .await
            .with_context(|| format!("account `{account}`"))
    })
    .await
}

/// The targets of one account: the last `discover` inventory, or listed now when there is
/// none yet.
pub async fn account_targets<P: Ports>(
    engine: &Engine<P>,
    account: &str,
) -> anyhow::Result<Vec<String>> {
    if let Some(inventory) = engine
        .state
        .tree::<RoleInventory>()?
        .get(&account.to_owned())?
    {
        return Ok(inventory.targets);
    }
    Ok(discover_account(engine, account).await?.targets)
}

/// Whether each of `arns` is a target now: the account it is in, or why not. One GetRole per
/// role (its tags included) rather than listing every role of every account.
pub async fn classify<P: Ports>(
    engine: &Engine<P>,
    arns: &[String],
) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
    let selector = engine.config.target_selector();
    let mut accounts = Vec::new();
    for account in engine.config.account_names() {
        let identity = identity(engine, account).await?;
        let own = role_arn_of_caller(&identity.arn);
        accounts.push((account.to_owned(), identity.account, own));
    }
    let mut out = Vec::new();
    for arn in arns {
        let id = arn.split(':').nth(4).unwrap_or_default();
        let verdict = match accounts.iter().find(|(_, account_id, _)| account_id == id) {
            None => Err(format!(
                "role {arn} is in none of the configured accounts ({})",
                engine.config.account_names().collect::<Vec<_>>().join(", ")
            )),
            Some((name, _, own)) => match engine.ports.role_summary(name, arn).await {
                Ok(role) => match selector.classify(&role, own.as_deref()) {
                    Selection::Target => Ok(name.clone()),
                    Selection::Protected(reason) => Err(format!(
                        "role {arn} is protected ({reason}); whittle never changes it"
                    )),
                    Selection::NotSelected => Err(format!(
                        "role {arn} is not a target: it does not match [targets] arn_patterns and tags"
                    )),
                },
                Err(e) => Err(e.to_string()),
            },
        };
        out.push((arn.clone(), verdict));
    }
    Ok(out)
}

/// The targets among `only`, each checked with its own read (one GetRole per role); each
/// must be a target, else the error says why not.
pub async fn named_targets<P: Ports>(
    engine: &Engine<P>,
    only: &[String],
) -> anyhow::Result<Vec<Target>> {
    let mut out = Vec::new();
    for (arn, verdict) in classify(engine, only).await? {
        out.push(Target {
            account: verdict.map_err(|reason| anyhow::anyhow!(reason))?,
            arn,
        });
    }
    out.sort_by(|a, b| a.arn.cmp(&b.arn));
    Ok(out)
}
