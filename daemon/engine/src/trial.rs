//! `whittle trial`: a plan's proposal tried on staging roles, rolled back the moment the
//! workload breaks.
//!
//! Per role: refuse unless the role's account is a configured staging account (checked with
//! sts:GetCallerIdentity) and the role still has the policies the plan was made from; journal
//! the intent with the role's snapshot; apply (as a permissions boundary carrying a dead-man
//! statement, or by replacing the policies as `whittle apply` does); exercise the workload;
//! watch the role's denials (CloudTrail LookupEvents and the trail's files) and the exercise
//! for the window, then until CloudTrail has shown the whole window (its watermark, at most
//! `max_settle`; docs/trials.md has the timing model); on any failure restore the snapshot,
//! record the denied actions as *needed* (the next plan keeps them) and alert; on success
//! remove the trial boundary (replaced policies stay) and, once every changed role of the
//! plan passed, mark the plan trialled. A trial whose role was not used, or whose evidence
//! stayed incomplete, proves nothing: it is undone and its plan is not marked trialled.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};
use whittle_planner::plan::{Plan, PlanStatus, RolePlan, RoleStatus};
use whittle_planner::policy::{Effect, OneOrMany, PolicyDocument, Statement};
use whittle_planner::trail::Event;
use whittle_playbooks::rotation::SecretValue;
use whittle_playbooks::trial::{Exercise, Mode, OnRestart, TrialPlaybook};
use whittle_state::{JournalEntry, JournalId, State, Timestamp};

use crate::Engine;
use crate::config::{Config, SourceKind};
use crate::guard::{Subject, Turn};
use crate::notify::{AlertKind, alert};
use crate::ports::Ports;
use crate::records::{
    ChangeRecord, ChangeStatus, DeniedEvent, Evidence, JournalKind, NeededActions, Signal,
    StoredPlan, TrialIntent, TrialRecord, TrialStatus, open_trials,
};
use crate::time::new_id;

/// IAM's size limit for a managed policy (the trial boundary), whitespace not counted.
const MANAGED_POLICY_LIMIT: usize = 6_144;

/// The trial playbook: `--playbook`, else `[trial] playbook`, else the built-in defaults.
pub fn playbook(config: &Config, path: Option<&std::path::Path>) -> anyhow::Result<TrialPlaybook> {
    let path = path.map(std::path::Path::to_path_buf).or_else(|| {
        config
            .trial
            .playbook
            .as_ref()
            .map(|p| config.base_dir.join(p))
    });
    match path {
        Some(path) => {
            whittle_playbooks::trial::load(&path).map_err(|e| anyhow::anyhow!("trial playbook {e}"))
        }
        None => whittle_playbooks::trial::parse("(built-in defaults)", "kind = \"trial\"\n")
            .map_err(|e| anyhow::anyhow!("{e}")),
    }
}

/// The trial boundary: the proposal's statements, and a dead-man statement that allows
/// everything once `aws:CurrentTime` passes `deadline`, so the role gets its permissions back
/// even if whittle never returns.
pub fn boundary_document(role: &RolePlan, deadline: Timestamp) -> anyhow::Result<PolicyDocument> {
    let mut statements: Vec<Statement> = Vec::new();
    for (_, document) in role.proposed_documents().map_err(|e| anyhow::anyhow!(e))? {
        statements.extend(document.statements().iter().cloned());
    }
    let mut dead_man = Statement::allow(vec!["*".to_owned()], vec!["*".to_owned()]);
    dead_man.sid = Some("WhittleTrialDeadMan".to_owned());
    let mut condition = whittle_planner::policy::ConditionBlock::new();
    condition.insert(
        "DateGreaterThan".to_owned(),
        std::collections::BTreeMap::from([(
            "aws:CurrentTime".to_owned(),
            OneOrMany::One(whittle_planner::policy::ConditionValue(
                serde_json::Value::String(crate::time::format(deadline)),
            )),
        )]),
    );
    dead_man.condition = Some(condition);
    statements.push(dead_man);
    debug_assert!(statements.iter().any(|s| s.effect == Effect::Allow));
    Ok(PolicyDocument {
        version: Some(whittle_planner::policy::document::VERSION_2012.to_owned()),
        id: None,
        statement: OneOrMany::Many(statements),
    })
}

/// The changed roles of `plan_id` a trial of it would try (all, or only `roles`), checked
/// against the per-run limit.
pub fn roles_to_try(
    config: &Config,
    plan: &Plan,
    roles: &[String],
) -> anyhow::Result<Vec<RolePlan>> {
    for arn in roles {
        if !plan.roles.iter().any(|r| &r.role_arn == arn) {
            anyhow::bail!("plan {} has no role {arn}", plan.id);
        }
    }
    let chosen: Vec<RolePlan> = plan
        .roles
        .iter()
        .filter(|r| r.status == RoleStatus::Changes || r.split.is_some())
        .filter(|r| roles.is_empty() || roles.contains(&r.role_arn))
        .cloned()
        .collect();
    if chosen.is_empty() {
        anyhow::bail!(
            "plan {} changes no role (of those selected): nothing to try",
            plan.id
        );
    }
    let changed_roles: usize = chosen.iter().map(RolePlan::roles_changed).sum();
    let limit = config.targets.max_roles_per_run as usize;
    if changed_roles > limit {
        anyhow::bail!(
            "plan {} would try {changed_roles} roles{}, more than [targets] max_roles_per_run = {limit}; try a few at a time with --role",
            plan.id,
            crate::plan::split_note(&chosen),
        );
    }
    Ok(chosen)
}

/// Tries `plan` on its changed roles (or only `roles`).
pub async fn run<P: Ports>(
    engine: &Engine<P>,
    plan_id: &str,
    roles: &[String],
    playbook: &TrialPlaybook,
) -> anyhow::Result<Vec<TrialRecord>> {
    let plan = crate::plan::load_plan(&engine.state, plan_id)?;
    let chosen = roles_to_try(&engine.config, &plan, roles)?;
    let arns: Vec<String> = chosen.iter().map(|r| r.role_arn.clone()).collect();
    let verdicts = crate::targets::classify(engine, &arns).await?;
    let mut records = Vec::new();
    for (role, (_, verdict)) in chosen.iter().zip(verdicts) {
        let account = match verdict {
            Ok(account) => account,
            Err(reason) => {
                records.push(refused(
                    engine,
                    &plan,
                    role,
                    "",
                    playbook.mode,
                    false,
                    reason,
                )?);
                continue;
            }
        };
        // The split first: it is made from the role's policies as the plan saw them, which a
        // passed `replace` trial of the role's tightening would have changed.
        if let Some(split) = &role.split {
            records.push(trial_split(engine, &plan, role, split, &account, playbook).await?);
        }
        if role.status == RoleStatus::Changes {
            records.push(trial_role(engine, &plan, role, &account, playbook).await?);
        }
    }
    mark_trialled_when_all_passed(engine, plan_id)?;
    Ok(records)
}

fn refused<P: Ports>(
    engine: &Engine<P>,
    plan: &Plan,
    role: &RolePlan,
    account: &str,
    mode: Mode,
    split: bool,
    reason: String,
) -> anyhow::Result<TrialRecord> {
    warn!(role = %role.role_arn, %reason, "Trial refused before any change");
    let record = TrialRecord {
        id: new_id("trial", engine.now()),
        plan_id: plan.id.clone(),
        role_arn: role.role_arn.clone(),
        account: account.to_owned(),
        mode,
        started_at: engine.now(),
        ended_at: Some(engine.now()),
        status: TrialStatus::Refused,
        reason: Some(reason),
        denied: Vec::new(),
        signal: None,
        settle_until: None,
        evidence: None,
        split,
    };
    engine
        .state
        .tree::<TrialRecord>()?
        .put(&record.id, &record)?;
    engine.state.flush()?;
    Ok(record)
}

/// Why a trial of `role` in `account` may not begin, if it may not: a trial already running
/// on the role, an account that is not a staging account, or credentials in another account.
async fn staging_refusal<P: Ports>(
    engine: &Engine<P>,
    role: &RolePlan,
    account: &str,
) -> anyhow::Result<Option<String>> {
    let (config, state) = (&*engine.config, &*engine.state);
    if let Some((_, running)) = open_trials(state)?.find(|(_, i)| i.role_arn == role.role_arn) {
        return Ok(Some(format!(
            "trial {} is already running on the role",
            running.trial_id
        )));
    }
    // Staging only: the account is listed, and the credentials really are in it.
    if !config.trial.staging_accounts.iter().any(|a| a == account) {
        return Ok(Some(format!(
            "account `{account}` is not in [trial] staging_accounts ({}): trials change roles only in staging",
            config.trial.staging_accounts.join(", ")
        )));
    }
    let identity = crate::targets::identity(engine, account).await?;
    let role_account = role.role_arn.split(':').nth(4).unwrap_or_default();
    if identity.account != role_account {
        return Ok(Some(format!(
            "the credentials for `{account}` are in account {} but the role is in {role_account}",
            identity.account
        )));
    }
    Ok(None)
}

/// A trial's intent, journalled before its change: the playbook's settings and the role's
/// snapshot.
fn trial_intent(
    state: &State,
    plan: &Plan,
    role: &RolePlan,
    account: &str,
    playbook: &TrialPlaybook,
    trial_id: &str,
    before: whittle_planner::plan::RolePolicies,
) -> anyhow::Result<TrialIntent> {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4);
    Ok(TrialIntent {
        trial_id: trial_id.to_owned(),
        plan_id: plan.id.clone(),
        account: account.to_owned(),
        role_arn: role.role_arn.clone(),
        mode: playbook.mode,
        on_restart: playbook.on_restart,
        policy_name: format!("whittle-{trial_id}"),
        before,
        window_ms: millis(playbook.window),
        detection_interval_ms: millis(playbook.detection_interval),
        max_denials: playbook.max_denials,
        error_metric: playbook.error_metric.clone(),
        known_events: state
            .tree::<TrialRecord>()?
            .iter()
            .filter_map(|item| item.ok().map(|(_, t)| t))
            .filter(|t| t.role_arn == role.role_arn)
            .flat_map(|t| t.denied.into_iter().map(|d| d.event_id))
            .collect(),
        max_settle_ms: millis(playbook.max_settle),
        pass_without_complete_evidence: playbook.pass_without_complete_evidence,
        min_role_calls: playbook.min_role_calls,
        split: None,
    })
}

/// Stores the record of a trial that begins now, and journals its intent.
fn begin<P: Ports>(
    engine: &Engine<P>,
    intent: &TrialIntent,
) -> anyhow::Result<(JournalId, TrialRecord)> {
    let state = &*engine.state;
    let record = TrialRecord {
        id: intent.trial_id.clone(),
        plan_id: intent.plan_id.clone(),
        role_arn: intent.role_arn.clone(),
        account: intent.account.clone(),
        mode: intent.mode,
        started_at: engine.now(),
        ended_at: None,
        status: TrialStatus::Running,
        reason: None,
        denied: Vec::new(),
        signal: None,
        settle_until: None,
        evidence: None,
        split: intent.split.is_some(),
    };
    state.tree::<TrialRecord>()?.put(&record.id, &record)?;
    let journal = state.journal_begin(
        JournalKind::Trial.as_str(),
        &intent.role_arn,
        serde_json::to_value(intent)?,
        engine.now(),
    )?;
    engine.ports.after_step("trial:begin");
    info!(role = %intent.role_arn, trial = %intent.trial_id, mode = ?intent.mode, split = intent.split.is_some(), "Trial starts");
    Ok((journal, record))
}

async fn trial_role<P: Ports>(
    engine: &Engine<P>,
    plan: &Plan,
    role: &RolePlan,
    account: &str,
    playbook: &TrialPlaybook,
) -> anyhow::Result<TrialRecord> {
    let (state, ports) = (&*engine.state, &*engine.ports);
    let refuse =
        |reason: String| refused(engine, plan, role, account, playbook.mode, false, reason);
    // The role's turn until the trial's change is in place: an apply or rollback of the same
    // role waits, and then finds the trial running.
    let turn = engine.turns.wait(Subject::Role(&role.role_arn)).await;
    if let Some(reason) = staging_refusal(engine, role, account).await? {
        return refuse(reason);
    }
    let now = ports.role_policies(account, &role.role_arn).await?;
    if !now.same_as(&role.current) {
        return refuse(format!(
            "the role's policies changed since plan {} was made; run `whittle plan` again",
            plan.id
        ));
    }
    if playbook.mode == Mode::Boundary && now.boundary.is_some() {
        return refuse(
            "the role already has a permissions boundary, which a trial boundary would replace (and so widen); use a playbook with mode = \"replace\"".to_owned(),
        );
    }
    let started_at = engine.now();
    let trial_id = new_id("trial", started_at);
    let deadline = started_at.plus(playbook.dead_man);
    let boundary = match playbook.mode {
        Mode::Boundary => {
            let document = boundary_document(role, deadline)?;
            let size = document.to_compact().len();
            if size > MANAGED_POLICY_LIMIT {
                return refuse(format!(
                    "the trial boundary needs {size} characters, more than a managed policy's {MANAGED_POLICY_LIMIT}; use mode = \"replace\""
                ));
            }
            Some(document)
        }
        Mode::Replace => None,
    };
    let intent = trial_intent(state, plan, role, account, playbook, &trial_id, now)?;
    let (journal, record) = begin(engine, &intent)?;

    // Apply.
    let applied = async {
        match &boundary {
            Some(document) => {
                let arn = ports
                    .create_policy(
                        account,
                        &intent.policy_name,
                        &document.to_compact(),
                        // No spaces: moto (the tests' emulator) miscomputes the SigV4
                        // signature of a query body holding `%20` (SignatureDoesNotMatch).
                        &format!("whittle-trial:{trial_id}:plan:{}", plan.id),
                    )
                    .await?;
                state.journal_step(
                    journal,
                    "policy-created",
                    json!({ "arn": arn }),
                    engine.now(),
                )?;
                engine.ports.after_step("trial:policy-created");
                ports
                    .put_role_permissions_boundary(account, &role.role_arn, &arn)
                    .await?;
                state.journal_step(journal, "applied", json!({ "boundary": arn }), engine.now())?;
            }
            None => {
                let change =
                    crate::plan::apply_role(engine, &plan.id, role, account, &turn).await?;
                state.journal_step(
                    journal,
                    "applied",
                    json!({ "change": change }),
                    engine.now(),
                )?;
            }
        }
        engine.ports.after_step("trial:applied");
        anyhow::Ok(())
    }
    .await;
    watch_and_conclude(engine, journal, &intent, record, playbook, applied, turn).await
}

/// Tries the split of a shared role: each function switched to a role of its own (created
/// for the trial), exercised and watched under those roles, then switched back and the roles
/// deleted whatever the verdict (`whittle apply` puts a passed split in place for good).
/// Denials of a function's role are recorded as needed by the shared role, so the next plan
/// keeps them for every function and the shared role.
async fn trial_split<P: Ports>(
    engine: &Engine<P>,
    plan: &Plan,
    role: &RolePlan,
    split: &whittle_planner::plan::split::SplitProposal,
    account: &str,
    playbook: &TrialPlaybook,
) -> anyhow::Result<TrialRecord> {
    let state = &*engine.state;
    let refuse = |reason: String| refused(engine, plan, role, account, playbook.mode, true, reason);
    let turn = engine.turns.wait(Subject::Role(&role.role_arn)).await;
    if let Some(reason) = staging_refusal(engine, role, account).await? {
        return refuse(reason);
    }
    let prepared = match crate::switch::prepare(engine, &plan.id, role, split, account).await {
        Ok(prepared) => prepared,
        Err(error) => return refuse(crate::one_line(&error)),
    };
    let trial_id = new_id("trial", engine.now());
    let mut intent = trial_intent(
        state,
        plan,
        role,
        account,
        playbook,
        &trial_id,
        role.current.clone(),
    )?;
    intent.split = Some(prepared.intent.clone());
    let (journal, record) = begin(engine, &intent)?;
    let applied = async {
        crate::switch::put_in_place(engine, journal, &prepared, split).await?;
        state.journal_step(
            journal,
            "applied",
            json!({ "split": prepared.intent.id }),
            engine.now(),
        )?;
        engine.ports.after_step("trial:applied");
        anyhow::Ok(())
    }
    .await;
    watch_and_conclude(engine, journal, &intent, record, playbook, applied, turn).await
}

/// A trial from its apply on: undone if the apply failed; else exercised and watched until
/// the verdict (or a `whittle rollback` of the trial), which is journalled and concluded.
async fn watch_and_conclude<P: Ports>(
    engine: &Engine<P>,
    journal: JournalId,
    intent: &TrialIntent,
    record: TrialRecord,
    playbook: &TrialPlaybook,
    applied: anyhow::Result<()>,
    turn: Turn,
) -> anyhow::Result<TrialRecord> {
    let state = &*engine.state;
    if let Err(error) = applied {
        let reason = format!("the apply failed: {}", crate::one_line(&error));
        undo(engine, intent, &turn).await?;
        return finish(
            engine,
            journal,
            record,
            Outcome::failed(Failure {
                reason,
                denied: Vec::new(),
                signal: Some(Signal::ApplyFailed),
            }),
        )
        .await;
    }
    let applied_at = engine.now();
    drop(turn);

    // Exercise and watch, until the verdict or a `whittle rollback` of the trial.
    let open = || !ended(state, journal);
    let verdict = watch(engine, intent, applied_at, Some(&playbook.exercise), open).await;
    let turn = engine.turns.wait(Subject::Role(&intent.role_arn)).await;
    if !open() {
        // Rolled back by hand meanwhile: that rollback restored the role and ended the trial.
        info!(role = %intent.role_arn, trial = %record.id, "Trial ended by a rollback by hand");
        return stored_record(state, &record.id);
    }
    state.journal_step(
        journal,
        "verdict",
        serde_json::to_value(&verdict)?,
        engine.now(),
    )?;
    engine.ports.after_step("trial:verdict");
    conclude(engine, journal, intent, verdict, &turn).await
}

/// Ends a trial on its verdict. A pass removes the trial boundary (policies a `replace` trial
/// put in place stay until `whittle apply`, which finds nothing left to do). A failure
/// restores the snapshot and records the denied actions as needed by the role. A trial that
/// proved nothing (the role was not used, or CloudTrail had not shown the whole window by
/// `max_settle`) is undone in either mode: its change was never shown to be safe.
async fn conclude<P: Ports>(
    engine: &Engine<P>,
    journal: JournalId,
    intent: &TrialIntent,
    verdict: Verdict,
    turn: &Turn,
) -> anyhow::Result<TrialRecord> {
    let record = stored_record(&engine.state, &intent.trial_id)?;
    let outcome = match verdict {
        Ok(evidence) => {
            let outcome = judge(intent, evidence);
            // A split is always taken back: its trial is evidence, `whittle apply` the change.
            if outcome.status != TrialStatus::Passed
                || intent.mode == Mode::Boundary
                || intent.split.is_some()
            {
                undo(engine, intent, turn).await?;
            }
            outcome
        }
        Err(failure) => {
            undo(engine, intent, turn).await?;
            record_needed(engine, &intent.role_arn, &failure.denied)?;
            Outcome::failed(failure)
        }
    };
    finish(engine, journal, record, outcome).await
}

/// How a trial that saw no failure signal ends, by what its watch saw.
fn judge(intent: &TrialIntent, evidence: Evidence) -> Outcome {
    let used = match intent.min_role_calls {
        Some(needed) => evidence.role_calls >= needed,
        None => evidence.role_calls > 0 || evidence.exercised,
    };
    let (status, reason) = if !used {
        (
            TrialStatus::Inconclusive,
            Some(format!(
                "inconclusive: the role was not used enough to prove anything ({} call(s) of the role seen{}, {})",
                evidence.role_calls,
                if evidence.exercised {
                    ", exercise ran"
                } else {
                    ", no exercise"
                },
                match intent.min_role_calls {
                    Some(n) => format!("the playbook needs {n}"),
                    None => "at least one call or an exercise needed".to_owned(),
                }
            )),
        )
    } else if evidence.complete {
        (TrialStatus::Passed, None)
    } else if intent.pass_without_complete_evidence {
        (
            TrialStatus::Passed,
            Some("passed without complete evidence, as the playbook allows".to_owned()),
        )
    } else {
        (
            TrialStatus::PassedWithoutCompleteEvidence,
            Some(format!(
                "passed without complete evidence: CloudTrail showed no event at or after the window's end within max_settle ({}); the plan is not marked trialled",
                humantime::format_duration(Duration::from_millis(intent.max_settle_ms))
            )),
        )
    };
    Outcome {
        status,
        reason,
        denied: Vec::new(),
        signal: None,
        evidence: Some(evidence),
    }
}

/// How a trial ended, as its record keeps it.
#[derive(Debug)]
struct Outcome {
    status: TrialStatus,
    reason: Option<String>,
    denied: Vec<DeniedEvent>,
    signal: Option<Signal>,
    evidence: Option<Evidence>,
}

impl Outcome {
    fn failed(failure: Failure) -> Outcome {
        Outcome {
            status: TrialStatus::RolledBack,
            reason: Some(failure.reason),
            denied: failure.denied,
            signal: failure.signal,
            evidence: None,
        }
    }
}

async fn finish<P: Ports>(
    engine: &Engine<P>,
    journal: JournalId,
    mut record: TrialRecord,
    outcome: Outcome,
) -> anyhow::Result<TrialRecord> {
    let state = &*engine.state;
    let status = outcome.status;
    record.status = status;
    record.reason.clone_from(&outcome.reason);
    record.denied = outcome.denied;
    record.signal = outcome.signal;
    record.evidence = outcome.evidence;
    record.settle_until = None;
    record.ended_at = Some(engine.now());
    state.tree::<TrialRecord>()?.put(&record.id, &record)?;
    state.journal_finish(
        journal,
        status.as_str(),
        json!({ "reason": outcome.reason }),
        engine.now(),
    )?;
    state.flush()?;
    let reason = outcome.reason.as_deref().unwrap_or("");
    match status {
        TrialStatus::RolledBack => {
            alert(
                engine,
                AlertKind::TrialRolledBack,
                &record.role_arn,
                &format!(
                    "trial {} of plan {} rolled back: {reason}",
                    record.id, record.plan_id
                ),
            )
            .await;
        }
        TrialStatus::Inconclusive | TrialStatus::PassedWithoutCompleteEvidence => {
            warn!(role = %record.role_arn, trial = %record.id, status = status.as_str(), %reason, "Trial proved nothing; undone");
        }
        _ => {
            info!(role = %record.role_arn, trial = %record.id, status = status.as_str(), "Trial finished")
        }
    }
    Ok(record)
}

/// Why a trial failed, with the denied events it saw and the signal that fired.
#[derive(Debug, Serialize, Deserialize)]
struct Failure {
    reason: String,
    #[serde(default)]
    denied: Vec<DeniedEvent>,
    /// None in journals of earlier builds.
    #[serde(default)]
    signal: Option<Signal>,
}

/// How a trial's watch ended. Journalled as its `verdict` step (`{"Ok":{...evidence}}` or
/// `{"Err":{...}}`), so a restart finishes the trial as it ended, denials included.
type Verdict = Result<Evidence, Failure>;

/// A journalled verdict. Journals of earlier builds wrote `{"Ok":null}` for a pass (then read
/// as a used role with complete evidence: those builds passed only so) or
/// `{"passed": bool, "reason": ...}`.
fn read_verdict(detail: &serde_json::Value) -> Verdict {
    if let Ok(verdict) = serde_json::from_value::<Verdict>(detail.clone()) {
        return verdict;
    }
    let legacy_pass = Evidence {
        complete: true,
        role_calls: 0,
        exercised: true,
    };
    if let Ok(verdict) = serde_json::from_value::<Result<(), Failure>>(detail.clone()) {
        return verdict.map(|()| legacy_pass);
    }
    if detail["passed"] == true {
        return Ok(legacy_pass);
    }
    Err(Failure {
        reason: detail["reason"]
            .as_str()
            .unwrap_or("the trial failed")
            .to_owned(),
        denied: Vec::new(),
        signal: None,
    })
}

/// Marks a trial as settling: its window has ended, and the watch waits for CloudTrail.
fn mark_settling<P: Ports>(
    engine: &Engine<P>,
    intent: &TrialIntent,
    until: Timestamp,
) -> anyhow::Result<()> {
    let mut record = stored_record(&engine.state, &intent.trial_id)?;
    record.status = TrialStatus::Settling;
    record.settle_until = Some(until);
    engine
        .state
        .tree::<TrialRecord>()?
        .put(&record.id, &record)?;
    engine.ports.after_step("trial:settling");
    info!(role = %intent.role_arn, trial = %intent.trial_id, until = %whittle_planner::trail::format_time(until.as_millis_i64()), "Window ended; settling until CloudTrail shows all of it");
    Ok(())
}

/// Runs the exercise (if any) and watches the role in CloudTrail until the window has ended
/// and CloudTrail has shown all of it (or `max_settle` has passed); the first failure signal
/// ends the watch.
///
/// The timing model: CloudTrail makes an event visible minutes after the call (LookupEvents
/// and the trail's files both lag, and AWS guarantees no bound), so "no denial yet" at the
/// window's end proves nothing. The watch's watermark is the latest event time each watched
/// source has shown, of any principal of the account and region; once every source shows an
/// event at or after the window's end, every call made during the window is taken as
/// visible. Denials that surface while settling fail the trial as during the window.
async fn watch<P: Ports>(
    engine: &Engine<P>,
    intent: &TrialIntent,
    applied_at: Timestamp,
    exercise: Option<&Exercise>,
    still_open: impl Fn() -> bool,
) -> Verdict {
    let ports = &*engine.ports;
    let window_end = applied_at.0 + intent.window_ms;
    // What CloudTrail must show before a pass: the window, and an exercise that outlasted it
    // (its calls are the trial's evidence too).
    let mut watermark = window_end;
    let interval = Duration::from_millis(intent.detection_interval_ms);
    // Why the latest reading of a signal failed, if it did.
    let mut unread: Option<String>;
    let mut settling = false;
    let mut exercised = false;
    let mut trail = match TrailWatch::new(engine, intent, applied_at) {
        Ok(trail) => trail,
        Err(e) => {
            return Err(Failure {
                reason: format!("cannot watch the role: {}", crate::one_line(&e)),
                denied: Vec::new(),
                signal: Some(Signal::Unreadable {
                    what: "the IAM action catalog".to_owned(),
                }),
            });
        }
    };
    // A playbook without [exercise] relies on live traffic: nothing runs, nothing is exercised.
    let exercise = exercise.filter(|e| e.command.is_some() || e.invoke.is_some());
    let mut exercising = exercise.map(|e| {
        let (e, engine, account) = (e.clone(), engine.clone(), intent.account.clone());
        tokio::spawn(async move { run_exercise(&*engine.ports, &account, &e).await })
    });
    loop {
        let next = ports.sleep(interval);
        tokio::pin!(next);
        let finished = match exercising.as_mut() {
            Some(task) => tokio::select! {
                result = task => Some(result),
                () = &mut next => None,
            },
            None => {
                next.await;
                None
            }
        };
        if !still_open() {
            if let Some(task) = exercising.take() {
                task.abort();
            }
            return Err(Failure {
                reason: "rolled back by hand".to_owned(),
                denied: Vec::new(),
                signal: Some(Signal::ByHand),
            });
        }
        if let Some(result) = finished {
            exercising = None;
            let failed = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(crate::one_line(&e)),
                Err(e) => Some(format!("the exercise task failed: {e}")),
            };
            match failed {
                None => {
                    exercised = true;
                    watermark = watermark.max(engine.now().0);
                }
                Some(detail) => {
                    // The exercise failed: look at the denials first, they say why; if they
                    // cannot be read, say so (a trial with no denials listed is then no
                    // proof that none happened).
                    let unread = trail
                        .poll(engine)
                        .await
                        .err()
                        .map_or_else(String::new, |e| {
                            format!(
                                "; the role's denials could not be read: {}",
                                crate::one_line(&e)
                            )
                        });
                    return Err(Failure {
                        reason: format!("the exercise failed: {detail}{unread}"),
                        denied: trail.denied.clone(),
                        signal: Some(Signal::Exercise { detail }),
                    });
                }
            }
        }
        match trail.poll(engine).await {
            Ok(()) if trail.denied_events() as u64 > intent.max_denials => {
                let actions: std::collections::BTreeSet<&str> = trail
                    .denied
                    .iter()
                    .map(|d| d.action.as_str())
                    .filter(|a| !a.is_empty())
                    .collect();
                return Err(Failure {
                    reason: format!(
                        "{} denial(s) of the role after the apply: {}",
                        trail.denied_events(),
                        actions.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                    denied: trail.denied.clone(),
                    signal: Some(Signal::Denial {
                        count: trail.denied_events(),
                    }),
                });
            }
            Ok(()) => unread = None,
            Err(e) => {
                warn!(error = %crate::one_line(&e), "Cannot look for denials now; trying again");
                unread = Some(format!("the role's denials: {}", crate::one_line(&e)));
            }
        }
        if let Some(metric) = &intent.error_metric {
            match error_rise(engine, intent, metric, applied_at).await {
                Ok(Some(signal)) => {
                    let _ = trail.poll(engine).await;
                    return Err(Failure {
                        reason: signal.to_string(),
                        denied: trail.denied.clone(),
                        signal: Some(signal),
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "Cannot read the error metric now; trying again");
                    unread = Some(format!("the error metric: {e}"));
                }
            }
        }
        let now = engine.now();
        if now.0 < window_end || exercising.is_some() {
            continue;
        }
        let complete = trail.shows(watermark);
        let settle_end = Timestamp(watermark.saturating_add(intent.max_settle_ms));
        if (complete && unread.is_none()) || now >= settle_end {
            // A signal that could not be read proves nothing: pass only on a good reading.
            if let Some(what) = unread {
                return Err(Failure {
                    reason: format!("could not read {what} at the end of the trial"),
                    denied: Vec::new(),
                    signal: Some(Signal::Unreadable { what }),
                });
            }
            return Ok(Evidence {
                complete,
                role_calls: trail.role_calls(),
                exercised,
            });
        }
        if !settling {
            settling = true;
            if let Err(e) = mark_settling(engine, intent, settle_end) {
                warn!(error = %crate::one_line(&e), "Cannot record the trial as settling");
            }
        }
    }
}

/// The function's errors since the apply against the same length of time before it.
async fn error_rise<P: Ports>(
    engine: &Engine<P>,
    intent: &TrialIntent,
    metric: &whittle_playbooks::trial::ErrorMetric,
    applied_at: Timestamp,
) -> Result<Option<Signal>, crate::ports::AwsError> {
    let applied = applied_at.as_millis_i64();
    let now = engine.now().as_millis_i64().max(applied + 1);
    let ports = &*engine.ports;
    let during = ports
        .lambda_errors(&intent.account, &metric.function, applied, now + 60_000)
        .await?;
    let baseline = ports
        .lambda_errors(
            &intent.account,
            &metric.function,
            applied - (now - applied) - 60_000,
            applied,
        )
        .await?;
    Ok(
        (during > baseline + metric.max_increase).then(|| Signal::ErrorMetric {
            function: metric.function.clone(),
            // A sum of no data points can come back as -0.
            before: baseline + 0.0,
            after: during,
            max_increase: metric.max_increase,
        }),
    )
}

/// The exercise: a command (its standard input empty; a failure names its exit status and
/// the last lines of its stderr), then Lambda invocations, within the exercise's timeout.
async fn run_exercise<P: Ports>(
    ports: &P,
    account: &str,
    exercise: &Exercise,
) -> anyhow::Result<()> {
    let work = async {
        if let Some(argv) = &exercise.command {
            if argv.is_empty() {
                anyhow::bail!("empty exercise command");
            }
            // The timeout below bounds the whole exercise; the command gets all of it.
            ports
                .run(argv, &SecretValue::new(String::new()), exercise.timeout)
                .await?;
        }
        if let Some(invoke) = &exercise.invoke {
            for payload in &invoke.payloads {
                ports
                    .invoke_function(account, &invoke.function, payload)
                    .await?;
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(exercise.timeout, work)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the exercise did not finish within {}",
                humantime::format_duration(exercise.timeout)
            )
        })?
}

/// What the watch has seen of CloudTrail since the apply: LookupEvents (management events)
/// asked afresh on each poll, and the trail's log files in S3 (which also carry data events,
/// such as a denied s3:GetObject) read once each, from the `[[mining.sources]]` of kind `s3`
/// of the account.
struct TrailWatch {
    catalog: std::borrow::Cow<'static, whittle_planner::catalog::Catalog>,
    /// The configured account's name, the trial's role, and the roles whose calls are the
    /// trial's evidence: the role itself, or the roles of a split's functions.
    account: String,
    intent_role: String,
    watched: HashSet<String>,
    known_events: HashSet<String>,
    /// CloudTrail times are to the second: events from the second of the apply on.
    since_ms: i64,
    read_files: HashSet<String>,
    /// One entry per denied action of each denial event.
    denied: Vec<DeniedEvent>,
    /// The role's events since the apply's second (denials included), id -> time in ms: a
    /// denial in that second fails the trial even if it may have come just before the apply.
    role_events: HashMap<String, i64>,
    /// The latest event time LookupEvents has shown (any principal), in ms.
    lookup_latest: Option<i64>,
    /// The latest event time the trail files have shown; None while none was read. Only
    /// watched when the account has an S3 source.
    files_latest: Option<i64>,
    /// The account's S3 trail sources, `(bucket, prefix)`: the trail files to watch.
    sources: Vec<(String, String)>,
    /// Where objects are downloaded to; created on the first download.
    downloads: Option<std::path::PathBuf>,
}

impl TrailWatch {
    fn new<P: Ports>(
        engine: &Engine<P>,
        intent: &TrialIntent,
        since: Timestamp,
    ) -> anyhow::Result<TrailWatch> {
        Ok(TrailWatch {
            catalog: crate::iam_data::catalog(engine.state.dir())?,
            account: intent.account.clone(),
            intent_role: intent.role_arn.clone(),
            watched: match &intent.split {
                Some(split) => split.functions.iter().map(|f| f.role_arn.clone()).collect(),
                None => HashSet::from([intent.role_arn.clone()]),
            },
            known_events: intent.known_events.iter().cloned().collect(),
            since_ms: i64::try_from(since.0 / 1000 * 1000).unwrap_or(0),
            read_files: HashSet::new(),
            denied: Vec::new(),
            role_events: HashMap::new(),
            lookup_latest: None,
            files_latest: None,
            sources: engine
                .config
                .mining
                .sources
                .iter()
                .filter(|s| {
                    s.kind == SourceKind::S3 && s.account.as_deref() == Some(&intent.account)
                })
                .filter_map(|s| Some((s.bucket.clone()?, s.prefix.clone().unwrap_or_default())))
                .collect(),
            downloads: None,
        })
    }

    /// Denial events seen (an event denied several actions counts once).
    fn denied_events(&self) -> usize {
        self.denied
            .iter()
            .map(|d| d.event_id.as_str())
            .collect::<HashSet<_>>()
            .len()
    }

    /// The role's calls from the second after the apply's on, the evidence that it was used
    /// under the trial's policy: CloudTrail's times are to the second, and a call in the
    /// apply's second may have come before it.
    fn role_calls(&self) -> u64 {
        let used_from = self.since_ms + 1000;
        self.role_events
            .values()
            .filter(|&&t| t >= used_from)
            .count() as u64
    }

    /// Whether every watched source has shown an event at or after `time_ms` (its watermark).
    fn shows(&self, time_ms: u64) -> bool {
        let time_ms = i64::try_from(time_ms).unwrap_or(i64::MAX);
        self.lookup_latest.is_some_and(|t| t >= time_ms)
            && (self.sources.is_empty() || self.files_latest.is_some_and(|t| t >= time_ms))
    }

    /// Takes in one event of a source; returns its time.
    fn see(&mut self, event: &Event<'_>) -> i64 {
        let id = event.event_id.as_deref().unwrap_or_default();
        if !event
            .principal
            .as_deref()
            .is_some_and(|p| self.watched.contains(p))
            || event.time_ms < self.since_ms
            || self.known_events.contains(id)
        {
            return event.time_ms;
        }
        let new = self
            .role_events
            .insert(id.to_owned(), event.time_ms)
            .is_none();
        if new
            && event
                .error_code
                .as_deref()
                .is_some_and(whittle_planner::mapping::is_denial)
        {
            let denied = whittle_planner::mapping::denied_actions(
                &self.catalog,
                &event.source,
                &event.name,
                event.error_message.as_deref(),
            );
            let time = whittle_planner::trail::format_time(event.time_ms);
            let note = denied.note;
            if denied.actions.is_empty() {
                self.denied.push(DeniedEvent {
                    action: String::new(),
                    event_id: id.to_owned(),
                    time,
                    note,
                });
            } else {
                for action in denied.actions {
                    self.denied.push(DeniedEvent {
                        action,
                        event_id: id.to_owned(),
                        time: time.clone(),
                        note: note.clone(),
                    });
                }
            }
        }
        event.time_ms
    }

    async fn poll<P: Ports>(&mut self, engine: &Engine<P>) -> anyhow::Result<()> {
        self.poll_lookup(engine).await?;
        self.poll_files(engine).await
    }

    /// LookupEvents from the second of the apply to now, every page.
    async fn poll_lookup<P: Ports>(&mut self, engine: &Engine<P>) -> anyhow::Result<()> {
        let end = engine.now().as_millis_i64() + 1000;
        let mut token = None;
        loop {
            let page = crate::trail::lookup_page(
                engine,
                &self.account,
                &engine.config.aws.region,
                self.since_ms,
                end,
                token.take(),
            )
            .await?;
            for text in &page.events {
                let mut latest = None;
                crate::trail::with_lookup_event(text, |event| latest = Some(self.see(event)));
                if let Some(t) = latest {
                    self.lookup_latest = Some(self.lookup_latest.map_or(t, |l| l.max(t)));
                }
            }
            match page.next_token {
                Some(next) => token = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// New log files of the days since the apply, in the account trail layout
    /// `[prefix/]AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/` and the organization trail
    /// layout `[prefix/]AWSLogs/o-ORGID/ACCOUNT/CloudTrail/…`.
    async fn poll_files<P: Ports>(&mut self, engine: &Engine<P>) -> anyhow::Result<()> {
        let (config, ports) = (&*engine.config, &*engine.ports);
        let account_id = self
            .intent_role
            .split(':')
            .nth(4)
            .unwrap_or_default()
            .to_owned();
        let first_day = whittle_planner::trail::day_of(self.since_ms);
        let today = whittle_planner::trail::day_of(engine.now().as_millis_i64());
        for (bucket, prefix) in self.sources.clone() {
            let base = match prefix.as_str() {
                "" => "AWSLogs/".to_owned(),
                p => format!("{}/AWSLogs/", p.trim_end_matches('/')),
            };
            // An organization trail writes each account's files one level lower, under the
            // organization's id. Listed on every poll: it is one request, and a trail can be
            // turned into an organization trail at any time.
            let mut roots = vec![format!("{base}{account_id}/")];
            for folder in ports.list_folders(&self.account, &bucket, &base).await? {
                if folder[base.len()..].starts_with("o-") {
                    roots.push(format!("{folder}{account_id}/"));
                }
            }
            let days = (first_day..=today).map(|day| {
                let date = whittle_planner::trail::format_time(i64::from(day) * 86_400_000);
                format!(
                    "CloudTrail/{}/{}/{}/{}/",
                    config.aws.region,
                    &date[0..4],
                    &date[5..7],
                    &date[8..10]
                )
            });
            let prefixes: Vec<String> = days
                .flat_map(|day| roots.iter().map(move |root| format!("{root}{day}")))
                .collect();
            for prefix in prefixes {
                for key in ports.list_objects(&self.account, &bucket, &prefix).await? {
                    if self.read_files.contains(&key) {
                        continue;
                    }
                    let dir = match &self.downloads {
                        Some(dir) => dir.clone(),
                        None => self
                            .downloads
                            .insert(crate::trail::downloads_dir(engine.state.dir())?)
                            .clone(),
                    };
                    let file =
                        crate::trail::download(ports, &self.account, &bucket, &key, &dir).await?;
                    let mut latest = None;
                    crate::trail::for_each_event(std::fs::File::open(&file)?, |event| {
                        let t = self.see(event);
                        latest = Some(latest.map_or(t, |l: i64| l.max(t)));
                    })?;
                    if let Some(t) = latest {
                        self.files_latest = Some(self.files_latest.map_or(t, |l| l.max(t)));
                    }
                    self.read_files.insert(key);
                }
            }
        }
        Ok(())
    }
}

/// Whether a trial's journal has ended (a `whittle rollback` of it finishes it).
fn ended(state: &State, journal: JournalId) -> bool {
    match state.journal_get(journal) {
        Ok(Some(entry)) => entry.finished.is_some(),
        Ok(None) => true,
        // Unreadable now: keep watching; the next look may succeed, and the verdict step
        // would report a real fault.
        Err(_) => false,
    }
}

fn stored_record(state: &State, trial_id: &str) -> anyhow::Result<TrialRecord> {
    state
        .tree::<TrialRecord>()?
        .get(&trial_id.to_owned())?
        .ok_or_else(|| anyhow::anyhow!("trial {trial_id} has no record"))
}

/// The next plan keeps what the trial found the role needs.
fn record_needed<P: Ports>(
    engine: &Engine<P>,
    role_arn: &str,
    denied: &[DeniedEvent],
) -> anyhow::Result<()> {
    if denied.is_empty() {
        return Ok(());
    }
    let tree = engine.state.tree::<NeededActions>()?;
    let key = role_arn.to_owned();
    let mut needed = tree.get(&key)?.unwrap_or_default();
    for d in denied {
        needed.actions.insert(d.action.clone(), engine.now());
    }
    tree.put(&key, &needed)?;
    Ok(())
}

/// Puts the role back as the intent's snapshot has it: the trial boundary removed and its
/// policy deleted, or the replaced policies restored. Idempotent.
async fn undo<P: Ports>(
    engine: &Engine<P>,
    intent: &TrialIntent,
    turn: &Turn,
) -> anyhow::Result<()> {
    let ports = &*engine.ports;
    if let Some(split) = &intent.split {
        return crate::switch::undo(engine, split).await;
    }
    match intent.mode {
        Mode::Boundary => {
            let now = ports
                .role_policies(&intent.account, &intent.role_arn)
                .await?;
            let ours = format!(":policy/{}", intent.policy_name);
            if now
                .boundary
                .as_ref()
                .is_some_and(|b| b.arn.ends_with(&ours))
            {
                ports
                    .delete_role_permissions_boundary(&intent.account, &intent.role_arn)
                    .await?;
            }
            let identity = crate::targets::identity(engine, &intent.account).await?;
            ports
                .delete_policy(
                    &intent.account,
                    &format!(
                        "arn:aws:iam::{}:policy/{}",
                        identity.account, intent.policy_name
                    ),
                )
                .await?;
        }
        Mode::Replace => {
            // The apply's own journal and change record hold the snapshot.
            let change = engine
                .state
                .tree::<ChangeRecord>()?
                .iter()
                .filter_map(|item| item.ok().map(|(_, c)| c))
                .filter(|c| c.plan_id == intent.plan_id && c.role_arn == intent.role_arn)
                .filter(|c| c.status != ChangeStatus::RolledBack)
                .max_by_key(|c| c.started_at);
            if let Some(change) = change {
                crate::plan::restore_change(engine, change, turn).await?;
            }
        }
    }
    let after = ports
        .role_policies(&intent.account, &intent.role_arn)
        .await?;
    if !after.same_as(&intent.before) {
        anyhow::bail!(
            "role {} still differs from its snapshot after the rollback; check it by hand",
            intent.role_arn
        );
    }
    Ok(())
}

fn mark_trialled_when_all_passed<P: Ports>(
    engine: &Engine<P>,
    plan_id: &str,
) -> anyhow::Result<()> {
    let state = &*engine.state;
    let plans = state.tree::<StoredPlan>()?;
    let Some(StoredPlan(mut plan)) = plans.get(&plan_id.to_owned())? else {
        return Ok(());
    };
    let trials: Vec<TrialRecord> = state
        .tree::<TrialRecord>()?
        .iter()
        .filter_map(|item| item.ok().map(|(_, t)| t))
        .filter(|t| t.plan_id == plan_id)
        .collect();
    // The latest trial of each change (a role's tightening, a role's split) passed.
    let passed = |role: &str, split: bool| {
        trials
            .iter()
            .filter(|t| t.role_arn == role && t.split == split)
            .max_by_key(|t| t.started_at)
            .is_some_and(|t| t.status == TrialStatus::Passed)
    };
    let all_passed = plan.roles.iter().all(|r| {
        (r.status != RoleStatus::Changes || passed(&r.role_arn, false))
            && (r.split.is_none() || passed(&r.role_arn, true))
    });
    if all_passed && plan.status == PlanStatus::Proposed {
        plan.status = PlanStatus::Trialled;
        crate::records::store_plan(state, plan)?;
        info!(
            plan = plan_id,
            "Every changed role passed its trial: the plan is trialled"
        );
    }
    Ok(())
}

/// Rolls back a running trial by hand (`whittle rollback TRIAL_ID`, or `--role` for the
/// role's running trial). None when no such trial is running.
pub async fn rollback<P: Ports>(
    engine: &Engine<P>,
    trial_id: Option<&str>,
    role: Option<&str>,
) -> anyhow::Result<Option<TrialRecord>> {
    let state = &*engine.state;
    let Some((entry, intent)) = open_trials(state)?.find(|(_, i)| {
        trial_id.is_some_and(|id| id == i.trial_id) || role.is_some_and(|r| r == i.role_arn)
    }) else {
        return Ok(None);
    };
    // Wait while the trial itself is applying or concluding; it may have ended meanwhile.
    let turn = engine.turns.wait(Subject::Role(&intent.role_arn)).await;
    if ended(state, entry.id) {
        return Ok(None);
    }
    undo(engine, &intent, &turn).await?;
    let record = stored_record(state, &intent.trial_id)?;
    Ok(Some(
        finish(
            engine,
            entry.id,
            record,
            Outcome::failed(Failure {
                reason: "rolled back by hand".to_owned(),
                denied: Vec::new(),
                signal: Some(Signal::ByHand),
            }),
        )
        .await?,
    ))
}

/// The reconcile pass's recovery for trial journals: a trial with a verdict is finished as
/// that verdict says; one without is rolled back (the default), or its watch resumed for what
/// is left of the window, as the trial's playbook said.
pub async fn recover<P: Ports>(engine: &Engine<P>, entry: &JournalEntry) -> anyhow::Result<String> {
    let state = &*engine.state;
    let intent: TrialIntent = serde_json::from_value(entry.intent.clone())?;
    let applied = entry
        .steps
        .iter()
        .find(|s| s.name == "applied")
        .map(|s| s.at);
    let decided: Option<Verdict> = entry
        .steps
        .iter()
        .find(|s| s.name == "verdict")
        .map(|s| read_verdict(&s.detail));
    let (verdict, how) = match (intent.on_restart, applied, decided) {
        (_, _, Some(verdict)) => (verdict, "had ended"),
        (OnRestart::Resume, Some(applied_at), None) => (
            watch(engine, &intent, applied_at, None, || {
                !ended(state, entry.id)
            })
            .await,
            "resumed",
        ),
        _ => (
            Err(Failure {
                reason: "whittle stopped during the trial; rolled back on restart".to_owned(),
                denied: Vec::new(),
                signal: Some(Signal::Interrupted),
            }),
            "was interrupted",
        ),
    };
    let turn = engine.turns.wait(Subject::Role(&intent.role_arn)).await;
    let record = conclude(engine, entry.id, &intent, verdict, &turn).await?;
    if record.status == TrialStatus::Passed {
        mark_trialled_when_all_passed(engine, &intent.plan_id)?;
    }
    Ok(format!(
        "trial {} {how} and ended {}",
        intent.trial_id,
        record.status.as_str()
    ))
}
