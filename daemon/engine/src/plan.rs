//! `whittle plan`, `whittle apply` and `whittle rollback`.
//!
//! A plan reads each target role's policies and the usage store, asks the planner for a
//! proposal, and stores the result; it changes nothing on AWS. An apply changes one role at a
//! time under a journal whose intent holds the role's snapshot, so a crash at any point is
//! undone by the reconcile pass (the role is restored to the snapshot); a rollback restores a
//! snapshot the same way, by hand.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};
use whittle_planner::plan::{
    self, AccountRead, Evidence, PLAN_SCHEMA, Plan, PlanStatus, RolePlan, RolePolicies, RoleStatus,
    Settings,
};
use whittle_planner::policy::NamedPolicy;
use whittle_planner::trail::format_time;
use whittle_state::{JournalEntry, State, Timestamp};

use crate::Engine;
use crate::guard::{Subject, Turn};
use crate::organization::{Level, OrganizationReader};
use crate::ports::{Iam, Ports, SnapshotScope};
use crate::records::{
    ChangeRecord, ChangeStatus, JournalKind, LastAccessed, NeededActions, RestoreIntent,
    SplitRecord, StoredPlan, StoredUsage, TrialStatus, open_trials,
};
use crate::time::new_id;

/// Makes a plan for the target roles and stores it.
pub async fn make_plan<P: Ports>(engine: &Engine<P>, only: &[String]) -> anyhow::Result<Plan> {
    let (config, state) = (&*engine.config, &*engine.state);
    let catalog = crate::iam_data::catalog(state.dir())?;
    // The SCPs of each account's organization chain, read once per plan, before
    // AWS is asked anything: a broken file stops the plan at once.
    let mut organization: BTreeMap<String, Vec<Level>> = config
        .planner
        .organization(&config.base_dir)
        .map_err(|e| anyhow::anyhow!("[planner.organization_policies]: {e}"))?
        .into_iter()
        .map(|(account, files)| (account, files.into_iter().map(|f| vec![f]).collect()))
        .collect();
    let (reads, accounts) = read_targets(engine, only).await?;
    // Accounts without SCP files: their chain read through Organizations, once per account
    // and plan (SCPs change rarely, but a plan must reflect the ones in force now).
    if let Some(via) = &config.planner.organization_from {
        let mut reader = OrganizationReader::new(engine, via);
        for target in &reads {
            if organization.contains_key(&target.account) {
                continue;
            }
            let account_id = target.arn.split(':').nth(4).unwrap_or_default();
            let levels = reader.scp_levels(account_id).await.with_context(|| {
                format!(
                    "reading the SCPs above account `{}` ({account_id}) through `{via}`",
                    target.account
                )
            })?;
            organization.insert(target.account.clone(), levels);
        }
    }
    let levels: BTreeMap<&str, Vec<Vec<NamedPolicy<'_>>>> = organization
        .iter()
        .map(|(account, levels)| {
            let levels = levels
                .iter()
                .map(|level| {
                    level
                        .iter()
                        .map(|(name, document)| NamedPolicy { name, document })
                        .collect()
                })
                .collect();
            (account.as_str(), levels)
        })
        .collect();
    let settings = Settings {
        lookback_days: config.mining.lookback_days,
        min_observation_days: config.planner.min_observation_days,
        scope_resources: config.planner.scope_resources,
        keep: config.planner.keep.clone(),
        keep_unobservable: config.planner.keep_unobservable,
        now_ms: engine.now().as_millis_i64(),
    };
    crate::mine::fold_pending(engine)?;
    let usage = state.tree::<StoredUsage>()?;
    let last_accessed = state.tree::<LastAccessed>()?;
    let needed = state.tree::<NeededActions>()?;
    // Roles are planned a batch at a time, each batch across every core: a batch's evidence
    // is read from the store first (a principal's mined usage can be large, so not all of
    // it at once), and one cache serves every batch, so each distinct policy document is
    // parsed and expanded once per plan (an AWS-managed policy on thousands of roles).
    const BATCH: usize = 512;
    let cache = plan::PlanCache::new(&catalog);
    let mut roles = Vec::with_capacity(reads.len());
    for batch in reads.chunks(BATCH) {
        let mut evidence = Vec::with_capacity(batch.len());
        for read in batch {
            if read.current.is_err() {
                continue;
            }
            let needed: Vec<String> = needed
                .get(&read.arn)?
                .map(|n| n.actions.into_keys().collect())
                .unwrap_or_default();
            evidence.push((usage.get(&read.arn)?, last_accessed.get(&read.arn)?, needed));
        }
        let inputs: Vec<plan::RoleInput<'_>> = batch
            .iter()
            .filter_map(|read| Some((read, read.current.as_ref().ok()?)))
            .zip(&evidence)
            .map(|((read, current), (usage, last, needed))| plan::RoleInput {
                current,
                evidence: Evidence {
                    usage: usage.as_ref().map(|u| &u.usage),
                    last_accessed: last.as_ref().map_or(&[], |l| l.services.as_slice()),
                    needed,
                    organization: levels.get(read.account.as_str()).map_or(&[], Vec::as_slice),
                },
            })
            .collect();
        let mut planned = plan::plan_roles_cached(&inputs, &settings, &cache).into_iter();
        for read in batch {
            let mut role_plan = match &read.current {
                Ok(_) => planned
                    .next()
                    .context("the planner returned fewer plans than roles")?,
                Err(error) => {
                    warn!(role = %read.arn, %error, "Cannot read the role's policies");
                    RolePlan {
                        role_arn: read.arn.clone(),
                        status: RoleStatus::Error,
                        error: Some(error.clone()),
                        read_at: None,
                        observed_days: 0,
                        current: RolePolicies {
                            role_arn: read.arn.clone(),
                            role_name: whittle_planner::targets::role_name(&read.arn).to_owned(),
                            inline: Vec::new(),
                            managed: Vec::new(),
                            boundary: None,
                        },
                        proposal: plan::Proposal::default(),
                        kept: Vec::new(),
                        removed: plan::Removed::default(),
                        risks: Vec::new(),
                        notes: Vec::new(),
                        inline_size: 0,
                        split: None,
                    }
                }
            };
            role_plan.read_at = Some(format_time(read.read_at.as_millis_i64()));
            if let Some(error) = &role_plan.error {
                warn!(role = %read.arn, %error, "Role not planned");
            }
            roles.push(role_plan);
        }
    }
    drop(reads);
    crate::split::split_shared_roles(state, &mut roles, &settings, &catalog)?;
    let plan = Plan {
        schema: PLAN_SCHEMA,
        id: new_id("plan", engine.now()),
        created_at: format_time(settings.now_ms),
        catalog: catalog.version.to_string(),
        lookback_days: settings.lookback_days,
        status: PlanStatus::Proposed,
        accounts,
        roles,
    };
    let plan = crate::records::store_plan(state, plan)?;
    info!(plan = %plan.id, roles = plan.roles.len(), "Plan stored");
    Ok(plan)
}

/// One target role's policies as read for a plan, or why they could not be.
struct TargetRead {
    account: String,
    arn: String,
    current: Result<RolePolicies, String>,
    /// When they were read: the account's snapshot, or the role's own read.
    read_at: Timestamp,
}

/// The target roles' policies, sorted by ARN, and how each account was read.
///
/// Without `only`, every account is read whole, at once up to `[aws] concurrent_accounts`:
/// one iam:GetAccountAuthorizationDetails read per account, whatever its number of roles.
/// An account that cannot be read is recorded in the plan with its error and the others are
/// planned. Named roles (`only`) are read one by one instead (GetRole, then the role's
/// policies), which costs a handful of calls each rather than reading whole accounts.
async fn read_targets<P: Ports>(
    engine: &Engine<P>,
    only: &[String],
) -> anyhow::Result<(Vec<TargetRead>, Vec<AccountRead>)> {
    let mut reads = Vec::new();
    let mut accounts = Vec::new();
    if only.is_empty() {
        let all = crate::targets::read_all(engine, SnapshotScope::RolesAndPolicies).await;
        for (account, outcome) in all {
            match outcome {
                Ok((inventory, snapshot)) => {
                    let targets: BTreeSet<&String> = inventory.targets.iter().collect();
                    for role in &snapshot.roles {
                        if !targets.contains(&role.summary.arn) {
                            continue;
                        }
                        reads.push(TargetRead {
                            account: account.clone(),
                            arn: role.summary.arn.clone(),
                            current: snapshot.role_policies(role).map_err(|arn| {
                                format!("iam:GetAccountAuthorizationDetails did not return managed policy {arn}")
                            }),
                            read_at: snapshot.read_at,
                        });
                    }
                    accounts.push(AccountRead {
                        account,
                        read_at: Some(format_time(snapshot.read_at.as_millis_i64())),
                        error: None,
                    });
                }
                Err(error) => {
                    let error = crate::one_line(&error);
                    warn!(account, %error, "Account not read; its roles are not planned");
                    accounts.push(AccountRead {
                        account,
                        read_at: None,
                        error: Some(error),
                    });
                }
            }
        }
    } else {
        for target in crate::targets::named_targets(engine, only).await? {
            let read_at = engine.now();
            let current = engine
                .ports
                .role_policies(&target.account, &target.arn)
                .await
                .map_err(|e| e.to_string());
            reads.push(TargetRead {
                account: target.account,
                arn: target.arn,
                current,
                read_at,
            });
        }
    }
    reads.sort_by(|a, b| a.arn.cmp(&b.arn));
    if reads.is_empty() {
        let failed: Vec<&str> = accounts.iter().filter_map(|a| a.error.as_deref()).collect();
        if !failed.is_empty() {
            anyhow::bail!("{}", failed.join("; "));
        }
        anyhow::bail!(
            "no target roles in {}: check [targets] arn_patterns and tags",
            engine.config.account_names().collect::<Vec<_>>().join(", ")
        );
    }
    Ok((reads, accounts))
}

pub fn load_plan(state: &State, id: &str) -> anyhow::Result<Plan> {
    match state.tree::<StoredPlan>()?.get(&id.to_owned())? {
        Some(plan) => Ok(plan.0),
        None => {
            let known: Vec<String> = state
                .tree::<StoredPlan>()?
                .iter()
                .filter_map(|item| item.ok().map(|(key, _)| key))
                .collect();
            anyhow::bail!(
                "no plan `{id}` in {}{}",
                state.dir().display(),
                if known.is_empty() {
                    " (run `whittle plan` first)".to_owned()
                } else {
                    format!("; plans: {}", known.join(", "))
                }
            )
        }
    }
}

/// What an apply did to one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyOutcome {
    Applied,
    Skipped,
    Failed,
}

impl ApplyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Applied => "applied",
            ApplyOutcome::Skipped => "skipped",
            ApplyOutcome::Failed => "failed",
        }
    }
}

/// What an apply did to one role, and why.
#[derive(Debug, Clone, Serialize)]
pub struct RoleOutcome {
    pub role_arn: String,
    pub outcome: ApplyOutcome,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
}

/// What a refusal over a role limit adds when a split is among the roles counted.
pub(crate) fn split_note(roles: &[RolePlan]) -> &'static str {
    if roles.iter().any(|r| r.split.is_some()) {
        " (a split counts each function it gives a role of its own)"
    } else {
        ""
    }
}

/// Applies a plan's changes, role by role. Refuses an untrialled plan without `force`, a
/// plan with more changed roles than `[planner] max_roles_per_apply`, a role that is no
/// longer a target, and a role whose policies changed since the plan (stale).
pub async fn apply<P: Ports>(
    engine: &Engine<P>,
    plan_id: &str,
    only: &[String],
    force: bool,
) -> anyhow::Result<Vec<RoleOutcome>> {
    let state = &*engine.state;
    let mut plan = load_plan(state, plan_id)?;
    if plan.status == PlanStatus::Proposed && !force {
        anyhow::bail!(
            "plan {plan_id} has not passed a trial in staging; run `whittle trial {plan_id}` first, or pass --force to apply it untried"
        );
    }
    for arn in only {
        if !plan.roles.iter().any(|r| &r.role_arn == arn) {
            anyhow::bail!("plan {plan_id} has no role {arn}");
        }
    }
    let chosen: Vec<RolePlan> = plan
        .roles
        .iter()
        .filter(|r| only.is_empty() || only.contains(&r.role_arn))
        .cloned()
        .collect();
    let changing: Vec<String> = chosen
        .iter()
        .filter(|r| r.status == RoleStatus::Changes || r.split.is_some())
        .map(|r| r.role_arn.clone())
        .collect();
    let changed_roles: usize = chosen.iter().map(RolePlan::roles_changed).sum();
    let limit = engine.config.planner.max_roles_per_apply as usize;
    if changed_roles > limit {
        let splits = split_note(&chosen);
        anyhow::bail!(
            "plan {plan_id} changes {changed_roles} roles{splits}, more than [planner] max_roles_per_apply = {limit}; apply it a few roles at a time with --role"
        );
    }
    let verdicts = crate::targets::classify(engine, &changing).await?;
    let trials: Vec<_> = state
        .tree::<crate::records::TrialRecord>()?
        .iter()
        .filter_map(|item| item.ok().map(|(_, t)| t))
        .filter(|t| t.plan_id == plan.id)
        .collect();
    let splits: Vec<SplitRecord> = state
        .tree::<SplitRecord>()?
        .iter()
        .filter_map(|item| item.ok().map(|(_, s)| s))
        .filter(|s| s.intent.plan_id == plan.id && s.status == ChangeStatus::Applied)
        .collect();
    let mut outcomes = Vec::new();
    for role in &chosen {
        let skip = |outcome: ApplyOutcome, detail: String| RoleOutcome {
            role_arn: role.role_arn.clone(),
            outcome,
            detail,
            change_id: None,
        };
        // The split first: it is made from the role's policies as the plan saw them.
        if let Some(split) = &role.split {
            let done = splits
                .iter()
                .find(|s| s.intent.shared_role_arn == role.role_arn);
            outcomes.push(match done {
                Some(done) => skip(
                    ApplyOutcome::Skipped,
                    format!("split already applied ({})", done.intent.id),
                ),
                None => apply_split(engine, &plan, role, split, &verdicts).await,
            });
        }
        if role.status != RoleStatus::Changes {
            if role.split.is_some() {
                continue;
            }
            outcomes.push(skip(
                ApplyOutcome::Skipped,
                format!("nothing to apply ({})", role.status.as_str()),
            ));
            continue;
        }
        // A passed trial in `replace` mode already put the proposal in place.
        let trialled_in_place = trials.iter().find(|t| {
            t.role_arn == role.role_arn
                && t.status == TrialStatus::Passed
                && t.mode == whittle_playbooks::trial::Mode::Replace
        });
        if let Some(trial) = trialled_in_place {
            outcomes.push(skip(
                ApplyOutcome::Skipped,
                format!(
                    "already in place: trial {} replaced the role's policies and passed",
                    trial.id
                ),
            ));
            continue;
        }
        let account = match verdicts.iter().find(|(arn, _)| *arn == role.role_arn) {
            Some((_, Ok(account))) => account.clone(),
            Some((_, Err(reason))) => {
                outcomes.push(skip(ApplyOutcome::Failed, format!("refused: {reason}")));
                continue;
            }
            None => continue,
        };
        // The role's turn: a trial or a rollback of this role waits until the change is done.
        let turn = engine.turns.wait(Subject::Role(&role.role_arn)).await;
        let applied = async {
            refuse_during_trial(state, &role.role_arn)?;
            apply_role(engine, &plan.id, role, &account, &turn).await
        }
        .await;
        drop(turn);
        match applied {
            Ok(change_id) => outcomes.push(RoleOutcome {
                role_arn: role.role_arn.clone(),
                outcome: ApplyOutcome::Applied,
                detail: format!(
                    "{} inline put, {} inline deleted, {} detached",
                    role.proposal.put_inline.len(),
                    role.proposal.delete_inline.len(),
                    role.proposal.detach.len()
                ),
                change_id: Some(change_id),
            }),
            Err(error) => {
                let error = crate::one_line(&error);
                warn!(role = %role.role_arn, %error, "Apply failed");
                outcomes.push(skip(ApplyOutcome::Failed, error));
            }
        }
    }
    if outcomes.iter().any(|o| o.outcome == ApplyOutcome::Applied) {
        plan.status = PlanStatus::Applied;
        crate::records::store_plan(state, plan)?;
    }
    Ok(outcomes)
}

/// Applies the split of one role (each function moved to a role of its own) in its turn.
async fn apply_split<P: Ports>(
    engine: &Engine<P>,
    plan: &Plan,
    role: &RolePlan,
    split: &whittle_planner::plan::split::SplitProposal,
    verdicts: &[(String, Result<String, String>)],
) -> RoleOutcome {
    let outcome = |outcome: ApplyOutcome, detail: String, change_id: Option<String>| RoleOutcome {
        role_arn: role.role_arn.clone(),
        outcome,
        detail,
        change_id,
    };
    let account = match verdicts.iter().find(|(arn, _)| *arn == role.role_arn) {
        Some((_, Ok(account))) => account.clone(),
        Some((_, Err(reason))) => {
            return outcome(ApplyOutcome::Failed, format!("refused: {reason}"), None);
        }
        None => return outcome(ApplyOutcome::Skipped, "not selected".to_owned(), None),
    };
    let turn = engine.turns.wait(Subject::Role(&role.role_arn)).await;
    let applied = async {
        refuse_during_trial(&engine.state, &role.role_arn)?;
        crate::switch::apply(engine, &plan.id, role, split, &account, &turn).await
    }
    .await;
    match applied {
        Ok(record) => outcome(
            ApplyOutcome::Applied,
            format!(
                "split: {} function(s) moved to roles of their own ({})",
                record.intent.functions.len(),
                record
                    .intent
                    .functions
                    .iter()
                    .map(|f| format!("{} -> {}", f.function, f.role_name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(record.intent.id),
        ),
        Err(error) => {
            let error = crate::one_line(&error);
            warn!(role = %role.role_arn, %error, "Split failed");
            outcome(ApplyOutcome::Failed, error, None)
        }
    }
}

/// Applies one role's proposal under a journal; on a failure part-way the role is restored
/// to its snapshot before the error is returned. The caller holds the role's turn.
pub async fn apply_role<P: Ports>(
    engine: &Engine<P>,
    plan_id: &str,
    role: &RolePlan,
    account: &str,
    _turn: &Turn,
) -> anyhow::Result<String> {
    let (ports, state) = (&*engine.ports, &*engine.state);
    let now = ports.role_policies(account, &role.role_arn).await?;
    if !now.same_as(&role.current) {
        anyhow::bail!(
            "refused: the role's policies changed since plan {plan_id} was made; run `whittle plan` again"
        );
    }
    let change = ChangeRecord {
        id: new_id("change", engine.now()),
        plan_id: plan_id.to_owned(),
        role_arn: role.role_arn.clone(),
        account: account.to_owned(),
        started_at: engine.now(),
        status: ChangeStatus::InProgress,
        before: now,
    };
    let changes = state.tree::<ChangeRecord>()?;
    changes.put(&change.id, &change)?;
    let intent = RestoreIntent {
        change_id: change.id.clone(),
        account: account.to_owned(),
        before: change.before.clone(),
    };
    let journal = state.journal_begin(
        JournalKind::Apply.as_str(),
        &role.role_arn,
        serde_json::to_value(&intent)?,
        engine.now(),
    )?;
    engine.ports.after_step("apply:begin");
    let result = async {
        // New permissions first, then take the old away, so that the role never has less
        // than the proposal grants.
        for put in &role.proposal.put_inline {
            ports
                .put_role_policy(
                    account,
                    &role.role_arn,
                    &put.name,
                    &put.document.to_compact(),
                )
                .await?;
            state.journal_step(
                journal,
                &format!("put-inline {}", put.name),
                json!(null),
                engine.now(),
            )?;
            engine.ports.after_step("apply:put-inline");
        }
        for arn in &role.proposal.detach {
            ports
                .detach_role_policy(account, &role.role_arn, arn)
                .await?;
            state.journal_step(journal, &format!("detach {arn}"), json!(null), engine.now())?;
            engine.ports.after_step("apply:detach");
        }
        for name in &role.proposal.delete_inline {
            ports
                .delete_role_policy(account, &role.role_arn, name)
                .await?;
            state.journal_step(
                journal,
                &format!("delete-inline {name}"),
                json!(null),
                engine.now(),
            )?;
            engine.ports.after_step("apply:delete-inline");
        }
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            state.journal_finish(journal, "applied", json!(null), engine.now())?;
            changes.put(
                &change.id,
                &ChangeRecord {
                    status: ChangeStatus::Applied,
                    ..change.clone()
                },
            )?;
            state.flush()?;
            info!(role = %role.role_arn, change = %change.id, "Plan applied to role");
            Ok(change.id)
        }
        Err(error) => {
            let reason = crate::one_line(&error);
            warn!(role = %role.role_arn, error = %reason, "Apply failed part-way; restoring the snapshot");
            restore(ports, &intent).await?;
            state.journal_finish(
                journal,
                "rolled-back",
                json!({ "error": reason }),
                engine.now(),
            )?;
            let id = change.id.clone();
            changes.put(
                &id,
                &ChangeRecord {
                    status: ChangeStatus::RolledBack,
                    ..change
                },
            )?;
            state.flush()?;
            Err(error)
        }
    }
}

/// Puts the role back exactly as the snapshot has it. Idempotent: the snapshot's policies
/// are restored first (permissions come back before anything is taken away), then whatever
/// the snapshot does not have is removed.
pub(crate) async fn restore<P: Iam>(ports: &P, intent: &RestoreIntent) -> anyhow::Result<()> {
    let before = &intent.before;
    let account = &intent.account;
    let role = &before.role_arn;
    for inline in &before.inline {
        ports
            .put_role_policy(account, role, &inline.name, &inline.document)
            .await?;
    }
    for managed in &before.managed {
        ports
            .attach_role_policy(account, role, &managed.arn)
            .await?;
    }
    let now = ports.role_policies(account, role).await?;
    for inline in &now.inline {
        if !before.inline.iter().any(|b| b.name == inline.name) {
            ports
                .delete_role_policy(account, role, &inline.name)
                .await?;
        }
    }
    for managed in &now.managed {
        if !before.managed.iter().any(|b| b.arn == managed.arn) {
            ports
                .detach_role_policy(account, role, &managed.arn)
                .await?;
        }
    }
    let after = ports.role_policies(account, role).await?;
    if !after.same_as(before) {
        anyhow::bail!("role {role} still differs from its snapshot after the restore");
    }
    Ok(())
}

fn refuse_during_trial(state: &State, role_arn: &str) -> anyhow::Result<()> {
    match open_trials(state)?.find(|(_, intent)| intent.role_arn == role_arn) {
        Some((_, trial)) => anyhow::bail!(
            "refused: trial {} is running on {role_arn}; wait for its verdict, or end it with `whittle rollback {}`",
            trial.trial_id,
            trial.trial_id
        ),
        None => Ok(()),
    }
}

/// Restores the snapshot of a change (by id, or the latest applied change of a role).
pub async fn rollback<P: Ports>(
    engine: &Engine<P>,
    change_id: Option<&str>,
    role: Option<&str>,
) -> anyhow::Result<ChangeRecord> {
    let state = &*engine.state;
    let changes = state.tree::<ChangeRecord>()?;
    let change = match (change_id, role) {
        (Some(id), _) => changes
            .get(&id.to_owned())?
            .ok_or_else(|| anyhow::anyhow!("no change `{id}` in {}", state.dir().display()))?,
        (None, Some(role)) => changes
            .iter()
            .filter_map(|item| item.ok().map(|(_, c)| c))
            .filter(|c| c.role_arn == role && c.status != ChangeStatus::RolledBack)
            .max_by_key(|c| c.started_at)
            .ok_or_else(|| anyhow::anyhow!("no change to roll back for role {role}"))?,
        (None, None) => anyhow::bail!("name a change id or --role ARN"),
    };
    let turn = engine.turns.wait(Subject::Role(&change.role_arn)).await;
    // Restoring a change's snapshot under a running trial would be undone by the trial's own
    // rollback (which restores what the role was when the trial began).
    refuse_during_trial(state, &change.role_arn)?;
    restore_change(engine, change, &turn).await
}

/// Restores the snapshot of `change` under a rollback journal. The caller holds the role's
/// turn (a trial in `replace` mode undoes its apply with this).
pub async fn restore_change<P: Ports>(
    engine: &Engine<P>,
    change: ChangeRecord,
    _turn: &Turn,
) -> anyhow::Result<ChangeRecord> {
    let state = &*engine.state;
    let intent = RestoreIntent {
        change_id: change.id.clone(),
        account: change.account.clone(),
        before: change.before.clone(),
    };
    let journal = state.journal_begin(
        JournalKind::Rollback.as_str(),
        &change.role_arn,
        serde_json::to_value(&intent)?,
        engine.now(),
    )?;
    engine.ports.after_step("rollback:begin");
    restore(&*engine.ports, &intent).await?;
    state.journal_finish(journal, "restored", json!(null), engine.now())?;
    let done = ChangeRecord {
        status: ChangeStatus::RolledBack,
        ..change
    };
    state.tree::<ChangeRecord>()?.put(&done.id, &done)?;
    state.flush()?;
    info!(role = %done.role_arn, change = %done.id, "Role restored to its snapshot");
    Ok(done)
}

/// The reconcile pass's recovery for apply and rollback journals: an interrupted apply or
/// rollback ends with the role at its snapshot.
pub async fn recover<P: Ports>(engine: &Engine<P>, entry: &JournalEntry) -> anyhow::Result<String> {
    let state = &*engine.state;
    let intent: RestoreIntent = serde_json::from_value(entry.intent.clone())?;
    restore(&*engine.ports, &intent).await?;
    state.journal_finish(
        entry.id,
        "rolled-back",
        json!({ "by": "reconcile" }),
        engine.now(),
    )?;
    let changes = state.tree::<ChangeRecord>()?;
    if let Some(change) = changes.get(&intent.change_id)? {
        changes.put(
            &change.id,
            &ChangeRecord {
                status: ChangeStatus::RolledBack,
                ..change.clone()
            },
        )?;
    }
    state.flush()?;
    Ok(format!(
        "role {} restored to its snapshot (interrupted {})",
        intent.before.role_arn, entry.kind
    ))
}
