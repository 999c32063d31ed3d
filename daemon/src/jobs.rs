//! The jobs the scheduler runs. A job is an async function of the shared context that
//! returns a one-line summary; it checks `cancel` between steps so that a shutdown lets the
//! current step finish and skips the rest.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use whittle_planner::targets::{Selection, role_arn_of_caller};
use whittle_state::State;

use crate::aws::Aws;
use crate::clock;
use crate::config::Config;
use crate::records::{ProtectedRole, RoleInventory};

/// What every job may use.
#[derive(Debug)]
pub struct JobContext {
    pub config: Arc<Config>,
    pub aws: Aws,
    pub state: Arc<State>,
}

/// Runs the job called `name`. The names are those of [`crate::config::JobsConfig`].
pub async fn run(
    name: &str,
    ctx: &JobContext,
    cancel: &CancellationToken,
) -> anyhow::Result<String> {
    match name {
        "check-aws" => check_aws(ctx, cancel).await,
        "discover" => discover(ctx, cancel).await,
        "mine" => {
            let report =
                crate::mine::mine(ctx, &crate::mine::MineRequest::default(), cancel).await?;
            let s = &report.stats;
            if report.nothing_read() {
                anyhow::bail!(
                    "nothing could be read: {}",
                    report
                        .sources
                        .iter()
                        .filter_map(|s| s.error.clone())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            Ok(format!(
                "{} file(s), {} event(s), {} denial(s), {} unmapped, {} skipped malformed",
                s.files,
                s.events(),
                s.denials,
                s.unmapped,
                s.skipped_total()
            ))
        }
        crate::config::ROTATION_UPKEEP_JOB => crate::rotate::upkeep(ctx).await,
        "trial" => trial_job(ctx).await,
        other => match other.strip_prefix(crate::config::ROTATION_JOB_PREFIX) {
            Some(rotation) => rotate_job(ctx, rotation).await,
            None => anyhow::bail!("unknown job `{other}`"),
        },
    }
}

/// Tries the newest proposed plan that changes roles and has no trial yet.
async fn trial_job(ctx: &JobContext) -> anyhow::Result<String> {
    let tried: std::collections::BTreeSet<String> = ctx
        .state
        .tree::<crate::trial::TrialRecord>()?
        .iter()
        .filter_map(|item| item.ok().map(|(_, t)| t.plan_id))
        .collect();
    let mut plans: Vec<whittle_planner::plan::Plan> = ctx
        .state
        .tree::<crate::plan::StoredPlan>()?
        .iter()
        .filter_map(|item| item.ok().map(|(_, p)| p.0))
        .filter(|p| p.status == whittle_planner::plan::PlanStatus::Proposed && p.has_changes())
        .filter(|p| !tried.contains(&p.id))
        .collect();
    plans.sort_by(|a, b| b.id.cmp(&a.id));
    let Some(plan) = plans.first() else {
        return Ok("no untried plan".to_owned());
    };
    let playbook = crate::trial::playbook(&ctx.config, None)?;
    let records =
        crate::trial::run(&ctx.config, &ctx.aws, &ctx.state, &plan.id, &[], &playbook).await?;
    let summary = records
        .iter()
        .map(|r| format!("{} {}", r.role_arn, r.status.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    if records
        .iter()
        .all(|r| r.status == crate::trial::TrialStatus::Passed)
    {
        Ok(format!("plan {}: {summary}", plan.id))
    } else {
        anyhow::bail!("plan {}: {summary}", plan.id)
    }
}

/// One rotation's scheduled run: its tick is its due time, so it rotates (or finishes an
/// interrupted rotation). A parked or refused rotation fails the run, which alerts.
async fn rotate_job(ctx: &JobContext, name: &str) -> anyhow::Result<String> {
    let reports = crate::rotate::run(
        &ctx.config,
        &ctx.aws,
        &ctx.state,
        &[name.to_owned()],
        true,
        false,
    )
    .await?;
    let report = reports
        .first()
        .ok_or_else(|| anyhow::anyhow!("rotation `{name}` is not configured"))?;
    match report.outcome.as_str() {
        "rotated" => Ok(format!(
            "{} rotated to version {}",
            report.secret,
            report.version.as_deref().unwrap_or("?")
        )),
        other => anyhow::bail!(
            "{} {other}: {}",
            report.secret,
            report.reason.as_deref().unwrap_or("")
        ),
    }
}

/// Fails when any account's credentials do not work, naming each failing account.
async fn check_aws(ctx: &JobContext, cancel: &CancellationToken) -> anyhow::Result<String> {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for account in ctx.aws.account_names() {
        if cancel.is_cancelled() {
            break;
        }
        match ctx.aws.caller_identity(account).await {
            Ok(identity) => {
                info!(account, arn = %identity.arn, "Credentials work");
                ok.push(format!("{account}={}", identity.account));
            }
            Err(error) => {
                warn!(account, error = %crate::one_line(&error), "Credentials check failed");
                failed.push(format!("{account}: {}", crate::one_line(&error)));
            }
        }
    }
    if failed.is_empty() {
        Ok(format!("{} account(s) ok: {}", ok.len(), ok.join(", ")))
    } else {
        anyhow::bail!("{}", failed.join("; "))
    }
}

/// Lists each account's roles, classifies them with the target selector and stores the
/// inventory. Read-only on AWS.
async fn discover(ctx: &JobContext, cancel: &CancellationToken) -> anyhow::Result<String> {
    let selector = ctx.config.target_selector();
    let inventories = ctx.state.tree::<RoleInventory>()?;
    let mut summaries = Vec::new();
    for account in ctx.aws.account_names() {
        if cancel.is_cancelled() {
            break;
        }
        let identity = ctx.aws.caller_identity(account).await?;
        let own_role = role_arn_of_caller(&identity.arn);
        let roles = ctx.aws.list_roles(account).await?;
        let mut inventory = RoleInventory {
            account: account.to_owned(),
            account_id: identity.account.clone(),
            refreshed_at: clock::now(),
            targets: Vec::new(),
            protected: Vec::new(),
            not_selected: 0,
        };
        for role in &roles {
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
            account,
            targets = inventory.targets.len(),
            protected = inventory.protected.len(),
            not_selected = inventory.not_selected,
            "Discovered roles"
        );
        summaries.push(format!(
            "{account}: {} target(s), {} protected, {} not selected",
            inventory.targets.len(),
            inventory.protected.len(),
            inventory.not_selected
        ));
        inventories.put(&account.to_owned(), &inventory)?;
        ctx.state.flush()?;
    }
    Ok(summaries.join("; "))
}
