//! The jobs the scheduler runs. A job is an async function of the engine that returns a
//! one-line summary; it checks `cancel` between steps so that a shutdown lets the current
//! step finish and skips the rest.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Engine;
use crate::ports::Ports;
use crate::records::{FunctionInventory, JobName, RoleInventory, StoredPlan, TrialRecord};
use crate::rotate::ReportOutcome;

/// Runs one job.
pub async fn run<P: Ports>(
    job: &JobName,
    engine: &Engine<P>,
    cancel: &CancellationToken,
) -> anyhow::Result<String> {
    match job {
        JobName::CheckAws => check_aws(engine, cancel).await,
        JobName::Discover => discover(engine, cancel).await,
        JobName::Mine => {
            let report =
                crate::mine::mine(engine, &crate::mine::MineRequest::default(), cancel).await?;
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
        JobName::RotationUpkeep => crate::rotate::upkeep(engine).await,
        JobName::Trial => trial_job(engine).await,
        JobName::Rotate(rotation) => rotate_job(engine, rotation).await,
    }
}

/// Tries the newest proposed plan that changes roles and has no trial yet.
async fn trial_job<P: Ports>(engine: &Engine<P>) -> anyhow::Result<String> {
    let tried: std::collections::BTreeSet<String> = engine
        .state
        .tree::<TrialRecord>()?
        .iter()
        .filter_map(|item| item.ok().map(|(_, t)| t.plan_id))
        .collect();
    let newest = engine
        .state
        .tree::<StoredPlan>()?
        .iter()
        .filter_map(|item| item.ok().map(|(_, p)| p.0))
        .filter(|p| p.status == whittle_planner::plan::PlanStatus::Proposed && p.has_changes())
        .filter(|p| !tried.contains(&p.id))
        .max_by(|a, b| a.id.cmp(&b.id));
    let Some(plan) = newest else {
        return Ok("no untried plan".to_owned());
    };
    let playbook = crate::trial::playbook(&engine.config, None)?;
    let records = crate::trial::run(engine, &plan.id, &[], &playbook).await?;
    let summary = records
        .iter()
        .map(|r| format!("{} {}", r.role_arn, r.status.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    if records
        .iter()
        .all(|r| r.status == crate::records::TrialStatus::Passed)
    {
        Ok(format!("plan {}: {summary}", plan.id))
    } else {
        anyhow::bail!("plan {}: {summary}", plan.id)
    }
}

/// One rotation's scheduled run: its tick is its due time, so it rotates (or finishes an
/// interrupted rotation). A parked or refused rotation fails the run, which alerts.
async fn rotate_job<P: Ports>(engine: &Engine<P>, name: &str) -> anyhow::Result<String> {
    let reports = crate::rotate::run(engine, &[name.to_owned()], true, false).await?;
    let report = reports
        .first()
        .ok_or_else(|| anyhow::anyhow!("rotation `{name}` is not configured"))?;
    match report.outcome {
        ReportOutcome::Rotated => Ok(format!(
            "{} rotated to version {}",
            report.secret,
            report.version.as_deref().unwrap_or("?")
        )),
        other => anyhow::bail!(
            "{} {}: {}",
            report.secret,
            other.as_str(),
            report.reason.as_deref().unwrap_or("")
        ),
    }
}

/// Fails when any account's credentials do not work, naming each failing account.
async fn check_aws<P: Ports>(
    engine: &Engine<P>,
    cancel: &CancellationToken,
) -> anyhow::Result<String> {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for account in engine.config.account_names() {
        if cancel.is_cancelled() {
            break;
        }
        match crate::targets::identity(engine, account).await {
            Ok(identity) => {
                info!(account, arn = %identity.arn, "Credentials work");
                ok.push(format!("{account}={}", identity.account));
            }
            Err(error) => {
                let error = crate::one_line(&error);
                warn!(account, %error, "Credentials check failed");
                failed.push(format!("{account}: {error}"));
            }
        }
    }
    if failed.is_empty() {
        Ok(format!("{} account(s) ok: {}", ok.len(), ok.join(", ")))
    } else {
        anyhow::bail!("{}", failed.join("; "))
    }
}

/// Reads each account's roles (accounts at once, up to `[aws] concurrent_accounts`),
/// classifies them with the target selector and stores each inventory, then lists the
/// account's Lambda functions (whose sessions `whittle usage` and the planner tell apart on
/// a shared role). An account that cannot be read keeps its last inventory and fails the
/// run, named, after the others are stored; functions that cannot be listed keep their last
/// list and are only warned about, so that a role without lambda:ListFunctions still
/// discovers its targets. Read-only on AWS. `whittle discover` runs it once.
pub async fn discover<P: Ports>(
    engine: &Engine<P>,
    cancel: &CancellationToken,
) -> anyhow::Result<String> {
    if cancel.is_cancelled() {
        return Ok(String::new());
    }
    let inventories = engine.state.tree::<RoleInventory>()?;
    let function_lists = engine.state.tree::<FunctionInventory>()?;
    let mut summaries = Vec::new();
    let mut failed = Vec::new();
    let reads = crate::targets::read_all(engine, crate::ports::SnapshotScope::Roles).await;
    for (account, read) in reads {
        match read {
            Ok((inventory, _)) => {
                let functions = match engine.ports.list_functions(&account).await {
                    Ok(functions) => {
                        let listed = format!(", {} function(s)", functions.len());
                        function_lists.put(
                            &account,
                            &FunctionInventory {
                                account: account.clone(),
                                listed_at: engine.now(),
                                functions,
                            },
                        )?;
                        listed
                    }
                    Err(error) => {
                        warn!(account, %error, "Functions not listed");
                        ", functions not listed".to_owned()
                    }
                };
                summaries.push(format!(
                    "{account}: {} target(s), {} protected, {} not selected{functions}",
                    inventory.targets.len(),
                    inventory.protected.len(),
                    inventory.not_selected
                ));
                inventories.put(&account, &inventory)?;
            }
            Err(error) => {
                let error = crate::one_line(&error);
                warn!(account, %error, "Account not discovered");
                failed.push(error);
            }
        }
    }
    engine.state.flush()?;
    if !failed.is_empty() {
        anyhow::bail!(
            "{}{}",
            failed.join("; "),
            if summaries.is_empty() {
                String::new()
            } else {
                format!(" (stored: {})", summaries.join("; "))
            }
        );
    }
    Ok(summaries.join("; "))
}
