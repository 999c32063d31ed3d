//! `whittle plan`, `whittle apply` and `whittle rollback`.
//!
//! A plan reads each target role's policies and the usage store, asks the planner for a
//! proposal, and stores the result; it changes nothing on AWS. An apply changes one role at a
//! time under a journal whose intent holds the role's snapshot, so a crash at any point is
//! undone by the reconcile pass (the role is restored to the snapshot); a rollback restores a
//! snapshot the same way, by hand.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};
use whittle_planner::plan::{
    self, Evidence, PLAN_SCHEMA, Plan, PlanStatus, RolePlan, RolePolicies, RoleStatus, Settings,
};
use whittle_planner::targets::{Selection, role_arn_of_caller};
use whittle_planner::trail::format_time;
use whittle_state::{JournalEntry, Record, State, Timestamp};

use crate::aws::Aws;
use crate::clock;
use crate::config::Config;
use crate::reconcile::Recovery;
use crate::records::{LastAccessed, StoredUsage};

/// A stored plan, keyed by its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredPlan(pub Plan);

impl Record for StoredPlan {
    const TREE: &'static str = "plans";
    const VERSION: u16 = 1;
    type Key = String;
}

/// Actions a failed trial recorded as needed by a role (keyed by role ARN): the next plan
/// keeps them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NeededActions {
    /// Action -> when it was recorded.
    pub actions: BTreeMap<String, Timestamp>,
}

impl Record for NeededActions {
    const TREE: &'static str = "needed_actions";
    const VERSION: u16 = 1;
    type Key = String;
}

/// One change to one role (an apply), with the snapshot a rollback restores; keyed by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub id: String,
    pub plan_id: String,
    pub role_arn: String,
    pub account: String,
    pub started_at: Timestamp,
    pub status: ChangeStatus,
    /// The role's policies before the change.
    pub before: RolePolicies,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeStatus {
    InProgress,
    Applied,
    RolledBack,
}

impl ChangeStatus {
    /// The name JSON uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStatus::InProgress => "in-progress",
            ChangeStatus::Applied => "applied",
            ChangeStatus::RolledBack => "rolled-back",
        }
    }
}

impl Record for ChangeRecord {
    const TREE: &'static str = "changes";
    const VERSION: u16 = 1;
    type Key = String;
}

/// The journal kinds of this module.
pub const APPLY_JOURNAL: &str = "apply";
pub const ROLLBACK_JOURNAL: &str = "rollback";

/// What an apply or rollback journal's intent holds: enough to restore the role without
/// anything else from the state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RestoreIntent {
    change_id: String,
    account: String,
    before: RolePolicies,
}

/// A target role and the account it is in.
#[derive(Debug, Clone)]
pub struct Target {
    pub account: String,
    pub arn: String,
}

/// The configured accounts' target roles, live from IAM: every role of every account when
/// `only` is empty, otherwise just those roles, each of which must be a target (the error says
/// why one is not).
pub async fn targets(config: &Config, aws: &Aws, only: &[String]) -> anyhow::Result<Vec<Target>> {
    let mut out = Vec::new();
    if only.is_empty() {
        let selector = config.target_selector();
        for account in aws.account_names() {
            let identity = aws.caller_identity(account).await?;
            let own = role_arn_of_caller(&identity.arn);
            for role in aws.list_roles(account).await? {
                if selector.classify(&role, own.as_deref()) == Selection::Target {
                    out.push(Target {
                        account: account.to_owned(),
                        arn: role.arn,
                    });
                }
            }
        }
    } else {
        for (arn, verdict) in classify(config, aws, only).await? {
            out.push(Target {
                account: verdict.map_err(|reason| anyhow::anyhow!(reason))?,
                arn,
            });
        }
    }
    out.sort_by(|a, b| a.arn.cmp(&b.arn));
    Ok(out)
}

/// Whether each of `arns` is a target now: the account it is in, or why not. One GetRole per
/// role (its tags included) rather than listing every role of every account.
pub async fn classify(
    config: &Config,
    aws: &Aws,
    arns: &[String],
) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
    let selector = config.target_selector();
    let mut accounts = Vec::new();
    for account in aws.account_names() {
        let identity = aws.caller_identity(account).await?;
        let own = role_arn_of_caller(&identity.arn);
        accounts.push((account.to_owned(), identity.account, own));
    }
    let mut out = Vec::new();
    for arn in arns {
        let id = arn.split(':').nth(4).unwrap_or_default();
        let verdict = match accounts.iter().find(|(_, account_id, _)| account_id == id) {
            None => Err(format!(
                "role {arn} is in none of the configured accounts ({})",
                aws.account_names().collect::<Vec<_>>().join(", ")
            )),
            Some((name, _, own)) => match aws.role_summary(name, arn).await {
                Ok(role) => match selector.classify(&role, own.as_deref()) {
                    Selection::Target => Ok(name.clone()),
                    Selection::Protected(reason) => Err(format!(
                        "role {arn} is protected ({reason}); whittle never changes it"
                    )),
                    Selection::NotSelected => Err(format!(
                        "role {arn} is not a target: it does not match [targets] arn_patterns and tags"
                    )),
                },
                Err(e) => Err(crate::one_line(&e)),
            },
        };
        out.push((arn.clone(), verdict));
    }
    Ok(out)
}

/// A new id: UTC time to the second and a random suffix, sortable and unique.
pub(crate) fn new_id(prefix: &str) -> String {
    let now = format_time(i64::try_from(clock::now().0).unwrap_or_default());
    let compact: String = now.chars().filter(char::is_ascii_digit).take(14).collect();
    format!(
        "{prefix}-{}-{}",
        compact,
        &format!("{:08x}", rand::random::<u32>())[..4]
    )
}

/// Makes a plan for the target roles and stores it.
pub async fn make_plan(
    config: &Config,
    aws: &Aws,
    state: &State,
    only: &[String],
) -> anyhow::Result<Plan> {
    let catalog = crate::mine::catalog(state.dir())?;
    let targets = targets(config, aws, only).await?;
    if targets.is_empty() {
        anyhow::bail!(
            "no target roles in {}: check [targets] arn_patterns and tags",
            aws.account_names().collect::<Vec<_>>().join(", ")
        );
    }
    let settings = Settings {
        lookback_days: config.mining.lookback_days,
        min_observation_days: config.planner.min_observation_days,
        scope_resources: config.planner.scope_resources,
        keep: config.planner.keep.clone(),
        keep_unobservable: config.planner.keep_unobservable,
        now_ms: i64::try_from(clock::now().0).unwrap_or_default(),
    };
    crate::mine::fold_pending(state, config.mining.lookback_days)?;
    let usage = state.tree::<StoredUsage>()?;
    let last_accessed = state.tree::<LastAccessed>()?;
    let needed = state.tree::<NeededActions>()?;
    let mut roles = Vec::new();
    for target in &targets {
        let role_plan = match aws.role_policies(&target.account, &target.arn).await {
            Ok(current) => {
                let usage = usage.get(&target.arn)?;
                let last = last_accessed.get(&target.arn)?;
                let needed: Vec<String> = needed
                    .get(&target.arn)?
                    .map(|n| n.actions.into_keys().collect())
                    .unwrap_or_default();
                plan::propose(
                    &current,
                    &Evidence {
                        usage: usage.as_ref().map(|u| &u.usage),
                        last_accessed: last.as_ref().map_or(&[], |l| l.services.as_slice()),
                        needed: &needed,
                    },
                    &settings,
                    &catalog,
                )
            }
            Err(error) => {
                warn!(role = %target.arn, error = %crate::one_line(&error), "Cannot read the role's policies");
                RolePlan {
                    role_arn: target.arn.clone(),
                    status: RoleStatus::Error,
                    error: Some(crate::one_line(&error)),
                    observed_days: 0,
                    current: RolePolicies {
                        role_arn: target.arn.clone(),
                        role_name: crate::aws::iam::role_name(&target.arn).to_owned(),
                        inline: Vec::new(),
                        managed: Vec::new(),
                        boundary: None,
                    },
                    proposal: plan::Proposal::default(),
                    kept: Vec::new(),
                    removed: Vec::new(),
                    risks: Vec::new(),
                    notes: Vec::new(),
                    inline_size: 0,
                }
            }
        };
        if let Some(error) = &role_plan.error {
            warn!(role = %target.arn, %error, "Role not planned");
        }
        roles.push(role_plan);
    }
    let plan = Plan {
        schema: PLAN_SCHEMA,
        id: new_id("plan"),
        created_at: format_time(settings.now_ms),
        catalog: catalog.version.to_string(),
        lookback_days: settings.lookback_days,
        status: PlanStatus::Proposed,
        roles,
    };
    state
        .tree::<StoredPlan>()?
        .put(&plan.id, &StoredPlan(plan.clone()))?;
    state.flush()?;
    info!(plan = %plan.id, roles = plan.roles.len(), "Plan stored");
    Ok(plan)
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
#[derive(Debug, Clone, Serialize)]
pub struct RoleOutcome {
    pub role_arn: String,
    /// `applied`, `skipped` or `failed`.
    pub outcome: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
}

/// Applies a plan's changes, role by role. Refuses an untrialled plan without `force`, a
/// plan with more changed roles than `[planner] max_roles_per_apply`, a role that is no
/// longer a target, and a role whose policies changed since the plan (stale).
pub async fn apply(
    config: &Config,
    aws: &Aws,
    state: &State,
    plan_id: &str,
    only: &[String],
    force: bool,
) -> anyhow::Result<Vec<RoleOutcome>> {
    let mut plan = load_plan(state, plan_id)?;
    if plan.status == PlanStatus::Proposed && !force {
        anyhow::bail!(
            "plan {plan_id} has not passed a trial in staging; run `whittle trial {plan_id}` first, or pass --force to apply it untried"
        );
    }
    let chosen: Vec<RolePlan> = plan
        .roles
        .iter()
        .filter(|r| only.is_empty() || only.contains(&r.role_arn))
        .cloned()
        .collect();
    for arn in only {
        if !plan.roles.iter().any(|r| &r.role_arn == arn) {
            anyhow::bail!("plan {plan_id} has no role {arn}");
        }
    }
    let changing = chosen
        .iter()
        .filter(|r| r.status == RoleStatus::Changes)
        .count();
    let limit = config.planner.max_roles_per_apply as usize;
    if changing > limit {
        anyhow::bail!(
            "plan {plan_id} changes {changing} roles, more than [planner] max_roles_per_apply = {limit}; apply it a few roles at a time with --role"
        );
    }
    let changing: Vec<String> = chosen
        .iter()
        .filter(|r| r.status == RoleStatus::Changes)
        .map(|r| r.role_arn.clone())
        .collect();
    let verdicts = classify(config, aws, &changing).await?;
    let mut outcomes = Vec::new();
    for role in &chosen {
        let skip = |detail: String| RoleOutcome {
            role_arn: role.role_arn.clone(),
            outcome: "skipped".to_owned(),
            detail,
            change_id: None,
        };
        if role.status != RoleStatus::Changes {
            outcomes.push(skip(format!("nothing to apply ({})", role.status.as_str())));
            continue;
        }
        // A passed trial in `replace` mode already put the proposal in place.
        let trialled_in_place = state
            .tree::<crate::trial::TrialRecord>()?
            .iter()
            .filter_map(|item| item.ok().map(|(_, t)| t))
            .find(|t| {
                t.plan_id == plan.id
                    && t.role_arn == role.role_arn
                    && t.status == crate::trial::TrialStatus::Passed
                    && t.mode == whittle_playbooks::trial::Mode::Replace
            });
        if let Some(trial) = trialled_in_place {
            outcomes.push(skip(format!(
                "already in place: trial {} replaced the role's policies and passed",
                trial.id
            )));
            continue;
        }
        let account = match verdicts.iter().find(|(arn, _)| *arn == role.role_arn) {
            Some((_, Ok(account))) => account.clone(),
            Some((_, Err(reason))) => {
                outcomes.push(RoleOutcome {
                    outcome: "failed".to_owned(),
                    ..skip(format!("refused: {reason}"))
                });
                continue;
            }
            None => continue,
        };
        // The role's turn: a trial or a rollback of this role waits until the change is done.
        let turn = crate::guard::wait_turn(crate::guard::Subject::Role(&role.role_arn)).await;
        let applied = async {
            refuse_during_trial(state, &role.role_arn)?;
            apply_role(aws, state, &plan.id, role, &account, &turn).await
        }
        .await;
        drop(turn);
        match applied {
            Ok(change_id) => outcomes.push(RoleOutcome {
                role_arn: role.role_arn.clone(),
                outcome: "applied".to_owned(),
                detail: format!(
                    "{} inline put, {} inline deleted, {} detached",
                    role.proposal.put_inline.len(),
                    role.proposal.delete_inline.len(),
                    role.proposal.detach.len()
                ),
                change_id: Some(change_id),
            }),
            Err(error) => {
                warn!(role = %role.role_arn, error = %crate::one_line(&error), "Apply failed");
                outcomes.push(RoleOutcome {
                    outcome: "failed".to_owned(),
                    ..skip(crate::one_line(&error))
                });
            }
        }
    }
    if outcomes.iter().any(|o| o.outcome == "applied") {
        plan.status = PlanStatus::Applied;
        let id = plan.id.clone();
        state.tree::<StoredPlan>()?.put(&id, &StoredPlan(plan))?;
        state.flush()?;
    }
    Ok(outcomes)
}

/// Applies one role's proposal under a journal; on a failure part-way the role is restored
/// to its snapshot before the error is returned. The caller holds the role's turn.
pub(crate) async fn apply_role(
    aws: &Aws,
    state: &State,
    plan_id: &str,
    role: &RolePlan,
    account: &str,
    _turn: &crate::guard::Turn,
) -> anyhow::Result<String> {
    let now = aws.role_policies(account, &role.role_arn).await?;
    if !now.same_as(&role.current) {
        anyhow::bail!(
            "refused: the role's policies changed since plan {plan_id} was made; run `whittle plan` again"
        );
    }
    let change = ChangeRecord {
        id: new_id("change"),
        plan_id: plan_id.to_owned(),
        role_arn: role.role_arn.clone(),
        account: account.to_owned(),
        started_at: clock::now(),
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
        APPLY_JOURNAL,
        &role.role_arn,
        serde_json::to_value(&intent)?,
        clock::now(),
    )?;
    crate::faults::crash_point("apply:begin");
    let result = async {
        // New permissions first, then take the old away, so that the role never has less
        // than the proposal grants.
        for put in &role.proposal.put_inline {
            aws.put_role_policy(
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
                clock::now(),
            )?;
            crate::faults::crash_point("apply:put-inline");
        }
        for arn in &role.proposal.detach {
            aws.detach_role_policy(account, &role.role_arn, arn).await?;
            state.journal_step(journal, &format!("detach {arn}"), json!(null), clock::now())?;
            crate::faults::crash_point("apply:detach");
        }
        for name in &role.proposal.delete_inline {
            aws.delete_role_policy(account, &role.role_arn, name)
                .await?;
            state.journal_step(
                journal,
                &format!("delete-inline {name}"),
                json!(null),
                clock::now(),
            )?;
            crate::faults::crash_point("apply:delete-inline");
        }
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            state.journal_finish(journal, "applied", json!(null), clock::now())?;
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
            warn!(role = %role.role_arn, error = %crate::one_line(&error), "Apply failed part-way; restoring the snapshot");
            restore(aws, &intent).await?;
            state.journal_finish(
                journal,
                "rolled-back",
                json!({"error": crate::one_line(&error)}),
                clock::now(),
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
async fn restore(aws: &Aws, intent: &RestoreIntent) -> anyhow::Result<()> {
    let before = &intent.before;
    let account = &intent.account;
    let role = &before.role_arn;
    for inline in &before.inline {
        aws.put_role_policy(account, role, &inline.name, &inline.document)
            .await?;
    }
    for managed in &before.managed {
        aws.attach_role_policy(account, role, &managed.arn).await?;
    }
    let now = aws.role_policies(account, role).await?;
    for inline in &now.inline {
        if !before.inline.iter().any(|b| b.name == inline.name) {
            aws.delete_role_policy(account, role, &inline.name).await?;
        }
    }
    for managed in &now.managed {
        if !before.managed.iter().any(|b| b.arn == managed.arn) {
            aws.detach_role_policy(account, role, &managed.arn).await?;
        }
    }
    let after = aws.role_policies(account, role).await?;
    if !after.same_as(before) {
        anyhow::bail!("role {role} still differs from its snapshot after the restore");
    }
    Ok(())
}

fn refuse_during_trial(state: &State, role_arn: &str) -> anyhow::Result<()> {
    match crate::trial::running_on(state, role_arn)? {
        Some(trial) => anyhow::bail!(
            "refused: trial {trial} is running on {role_arn}; wait for its verdict, or end it with `whittle rollback {trial}`"
        ),
        None => Ok(()),
    }
}

/// Restores the snapshot of a change (by id, or the latest applied change of a role).
pub async fn rollback(
    aws: &Aws,
    state: &State,
    change_id: Option<&str>,
    role: Option<&str>,
) -> anyhow::Result<ChangeRecord> {
    let changes = state.tree::<ChangeRecord>()?;
    let change = match (change_id, role) {
        (Some(id), _) => changes
            .get(&id.to_owned())?
            .ok_or_else(|| anyhow::anyhow!("no change `{id}` in {}", state.dir().display()))?,
        (None, Some(role)) => {
            let mut all: Vec<ChangeRecord> = changes
                .iter()
                .filter_map(|item| item.ok().map(|(_, c)| c))
                .filter(|c| c.role_arn == role && c.status != ChangeStatus::RolledBack)
                .collect();
            all.sort_by_key(|c| c.started_at);
            all.pop()
                .ok_or_else(|| anyhow::anyhow!("no change to roll back for role {role}"))?
        }
        (None, None) => anyhow::bail!("name a change id or --role ARN"),
    };
    let turn = crate::guard::wait_turn(crate::guard::Subject::Role(&change.role_arn)).await;
    // Restoring a change's snapshot under a running trial would be undone by the trial's own
    // rollback (which restores what the role was when the trial began).
    refuse_during_trial(state, &change.role_arn)?;
    restore_change(aws, state, change, &turn).await
}

/// Restores the snapshot of `change` under a rollback journal. The caller holds the role's
/// turn (a trial in `replace` mode undoes its apply with this).
pub(crate) async fn restore_change(
    aws: &Aws,
    state: &State,
    change: ChangeRecord,
    _turn: &crate::guard::Turn,
) -> anyhow::Result<ChangeRecord> {
    let changes = state.tree::<ChangeRecord>()?;
    let intent = RestoreIntent {
        change_id: change.id.clone(),
        account: change.account.clone(),
        before: change.before.clone(),
    };
    let journal = state.journal_begin(
        ROLLBACK_JOURNAL,
        &change.role_arn,
        serde_json::to_value(&intent)?,
        clock::now(),
    )?;
    crate::faults::crash_point("rollback:begin");
    restore(aws, &intent).await?;
    state.journal_finish(journal, "restored", json!(null), clock::now())?;
    let done = ChangeRecord {
        status: ChangeStatus::RolledBack,
        ..change
    };
    changes.put(&done.id, &done)?;
    state.flush()?;
    info!(role = %done.role_arn, change = %done.id, "Role restored to its snapshot");
    Ok(done)
}

/// The reconcile pass's recovery for apply and rollback journals: an interrupted apply or
/// rollback ends with the role at its snapshot.
#[derive(Debug)]
pub struct RestoreRecovery {
    pub config: Arc<Config>,
}

impl Recovery for RestoreRecovery {
    fn recover<'a>(
        &'a self,
        state: &'a State,
        entry: &'a JournalEntry,
    ) -> Pin<Box<dyn std::future::Future<Output = anyhow::Result<String>> + Send + 'a>> {
        Box::pin(async move {
            let intent: RestoreIntent = serde_json::from_value(entry.intent.clone())?;
            let aws = Aws::new(&self.config).await?;
            restore(&aws, &intent).await?;
            state.journal_finish(
                entry.id,
                "rolled-back",
                json!({"by": "reconcile"}),
                clock::now(),
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
        })
    }
}
