//! `whittle trial`: a plan's proposal tried on staging roles, rolled back the moment the
//! workload breaks.
//!
//! Per role: refuse unless the role's account is a configured staging account (checked with
//! sts:GetCallerIdentity) and the role still has the policies the plan was made from; journal
//! the intent with the role's snapshot; apply (as a permissions boundary carrying a dead-man
//! statement, or by replacing the policies as `whittle apply` does); exercise the workload;
//! watch the role's denials (CloudTrail LookupEvents) and the exercise for the window; on any
//! failure restore the snapshot, record the denied actions as *needed* (the next plan keeps
//! them) and alert; on success remove the trial boundary (replaced policies stay) and, once
//! every changed role of the plan passed, mark the plan trialled.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};
use whittle_planner::plan::{Plan, PlanStatus, RolePlan, RolePolicies, RoleStatus};
use whittle_planner::policy::{Effect, OneOrMany, PolicyDocument, Statement};
use whittle_playbooks::trial::{Mode, OnRestart, TrialPlaybook};
use whittle_state::{JournalEntry, Record, State, Timestamp};

use crate::aws::Aws;
use crate::clock;
use crate::config::Config;
use crate::guard;
use crate::plan::{NeededActions, StoredPlan};
use crate::reconcile::Recovery;

pub const TRIAL_JOURNAL: &str = "trial";
/// IAM's size limit for a managed policy (the trial boundary), whitespace not counted.
const MANAGED_POLICY_LIMIT: usize = 6_144;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrialStatus {
    Running,
    Passed,
    RolledBack,
    Refused,
}

impl TrialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Running => "running",
            TrialStatus::Passed => "passed",
            TrialStatus::RolledBack => "rolled-back",
            TrialStatus::Refused => "refused",
        }
    }
}

/// One denial seen during a trial: the evidence of a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedEvent {
    pub action: String,
    pub event_id: String,
    pub time: String,
}

/// A trial of one role, keyed by its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub id: String,
    pub plan_id: String,
    pub role_arn: String,
    pub account: String,
    pub mode: Mode,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub status: TrialStatus,
    pub reason: Option<String>,
    #[serde(default)]
    pub denied: Vec<DeniedEvent>,
}

impl Record for TrialRecord {
    const TREE: &'static str = "trials";
    const VERSION: u16 = 1;
    type Key = String;
}

/// What a trial journal's intent holds: enough to undo the trial with nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Intent {
    trial_id: String,
    plan_id: String,
    account: String,
    role_arn: String,
    mode: Mode,
    on_restart: OnRestart,
    /// The trial boundary policy's name (boundary mode).
    policy_name: String,
    before: RolePolicies,
    window_ms: u64,
    detection_interval_ms: u64,
    max_denials: u64,
    #[serde(default)]
    error_metric: Option<whittle_playbooks::trial::ErrorMetric>,
    /// Denial events earlier trials of the role already accounted for. CloudTrail times are
    /// to the second, so the watch starts at the second of the apply and may see them.
    #[serde(default)]
    known_events: Vec<String>,
}

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
                serde_json::Value::String(clock::format(deadline)),
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

/// Tries `plan` on its changed roles (or only `roles`).
pub async fn run(
    config: &Config,
    aws: &Aws,
    state: &State,
    plan_id: &str,
    roles: &[String],
    playbook: &TrialPlaybook,
) -> anyhow::Result<Vec<TrialRecord>> {
    let plan = crate::plan::load_plan(state, plan_id)?;
    for arn in roles {
        if !plan.roles.iter().any(|r| &r.role_arn == arn) {
            anyhow::bail!("plan {plan_id} has no role {arn}");
        }
    }
    let chosen: Vec<&RolePlan> = plan
        .roles
        .iter()
        .filter(|r| r.status == RoleStatus::Changes)
        .filter(|r| roles.is_empty() || roles.contains(&r.role_arn))
        .collect();
    if chosen.is_empty() {
        anyhow::bail!("plan {plan_id} changes no role (of those selected): nothing to try");
    }
    let limit = config.targets.max_roles_per_run as usize;
    if chosen.len() > limit {
        anyhow::bail!(
            "plan {plan_id} would try {} roles, more than [targets] max_roles_per_run = {limit}; try a few at a time with --role",
            chosen.len()
        );
    }
    let arns: Vec<String> = chosen.iter().map(|r| r.role_arn.clone()).collect();
    let verdicts = crate::plan::classify(config, aws, &arns).await?;
    let mut records = Vec::new();
    for (role, (_, verdict)) in chosen.into_iter().zip(verdicts) {
        let record = match verdict {
            Ok(account) => trial_role(config, aws, state, &plan, role, &account, playbook).await?,
            Err(reason) => refused(state, &plan, role, "", playbook.mode, reason)?,
        };
        records.push(record);
    }
    mark_trialled_when_all_passed(state, plan_id)?;
    Ok(records)
}

fn refused(
    state: &State,
    plan: &Plan,
    role: &RolePlan,
    account: &str,
    mode: Mode,
    reason: String,
) -> anyhow::Result<TrialRecord> {
    warn!(role = %role.role_arn, %reason, "Trial refused before any change");
    let record = TrialRecord {
        id: crate::plan::new_id("trial"),
        plan_id: plan.id.clone(),
        role_arn: role.role_arn.clone(),
        account: account.to_owned(),
        mode,
        started_at: clock::now(),
        ended_at: Some(clock::now()),
        status: TrialStatus::Refused,
        reason: Some(reason),
        denied: Vec::new(),
    };
    state.tree::<TrialRecord>()?.put(&record.id, &record)?;
    state.flush()?;
    Ok(record)
}

async fn trial_role(
    config: &Config,
    aws: &Aws,
    state: &State,
    plan: &Plan,
    role: &RolePlan,
    account: &str,
    playbook: &TrialPlaybook,
) -> anyhow::Result<TrialRecord> {
    let refuse = |reason: String| refused(state, plan, role, account, playbook.mode, reason);
    // The role's turn until the trial's change is in place: an apply or rollback of the same
    // role waits, and then finds the trial running.
    let turn = guard::wait_turn(guard::Subject::Role(&role.role_arn)).await;
    if let Some(running) = running_on(state, &role.role_arn)? {
        return refuse(format!("trial {running} is already running on the role"));
    }
    // Staging only: the account is listed, and the credentials really are in it.
    if !config.trial.staging_accounts.iter().any(|a| a == account) {
        return refuse(format!(
            "account `{account}` is not in [trial] staging_accounts ({}): trials change roles only in staging",
            config.trial.staging_accounts.join(", ")
        ));
    }
    let identity = aws.caller_identity(account).await?;
    let role_account = role.role_arn.split(':').nth(4).unwrap_or_default();
    if identity.account != role_account {
        return refuse(format!(
            "the credentials for `{account}` are in account {} but the role is in {role_account}",
            identity.account
        ));
    }
    let now = aws.role_policies(account, &role.role_arn).await?;
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
    let trial_id = crate::plan::new_id("trial");
    let started_at = clock::now();
    let deadline = Timestamp(
        started_at.0 + u64::try_from(playbook.dead_man.as_millis()).unwrap_or(u64::MAX / 4),
    );
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
    let intent = Intent {
        trial_id: trial_id.clone(),
        plan_id: plan.id.clone(),
        account: account.to_owned(),
        role_arn: role.role_arn.clone(),
        mode: playbook.mode,
        on_restart: playbook.on_restart,
        policy_name: format!("whittle-{trial_id}"),
        before: now,
        window_ms: u64::try_from(playbook.window.as_millis()).unwrap_or(u64::MAX / 4),
        detection_interval_ms: u64::try_from(playbook.detection_interval.as_millis())
            .unwrap_or(1000),
        max_denials: playbook.max_denials,
        error_metric: playbook.error_metric.clone(),
        known_events: state
            .tree::<TrialRecord>()?
            .iter()
            .filter_map(|item| item.ok().map(|(_, t)| t))
            .filter(|t| t.role_arn == role.role_arn)
            .flat_map(|t| t.denied.into_iter().map(|d| d.event_id))
            .collect(),
    };
    let record = TrialRecord {
        id: trial_id.clone(),
        plan_id: plan.id.clone(),
        role_arn: role.role_arn.clone(),
        account: account.to_owned(),
        mode: playbook.mode,
        started_at,
        ended_at: None,
        status: TrialStatus::Running,
        reason: None,
        denied: Vec::new(),
    };
    let trials = state.tree::<TrialRecord>()?;
    trials.put(&record.id, &record)?;
    let journal = state.journal_begin(
        TRIAL_JOURNAL,
        &role.role_arn,
        serde_json::to_value(&intent)?,
        clock::now(),
    )?;
    crate::faults::crash_point("trial:begin");
    info!(role = %role.role_arn, trial = %trial_id, mode = ?playbook.mode, "Trial starts");

    // Apply.
    let applied = async {
        match &boundary {
            Some(document) => {
                let arn = aws
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
                    clock::now(),
                )?;
                crate::faults::crash_point("trial:policy-created");
                aws.put_role_permissions_boundary(account, &role.role_arn, &arn)
                    .await?;
                state.journal_step(journal, "applied", json!({ "boundary": arn }), clock::now())?;
            }
            None => {
                let change =
                    crate::plan::apply_role(aws, state, &plan.id, role, account, &turn).await?;
                state.journal_step(
                    journal,
                    "applied",
                    json!({ "change": change }),
                    clock::now(),
                )?;
            }
        }
        crate::faults::crash_point("trial:applied");
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = applied {
        let reason = format!("the apply failed: {}", crate::one_line(&error));
        undo(aws, state, &intent, &turn).await?;
        return finish(
            config,
            state,
            journal,
            record,
            TrialStatus::RolledBack,
            Some(reason),
            Vec::new(),
        )
        .await;
    }
    let applied_at = clock::now();
    drop(turn);

    // Exercise and watch, until the verdict or a `whittle rollback` of the trial.
    let open = || !ended(state, journal);
    let verdict = watch(
        config,
        aws,
        &intent,
        applied_at,
        Some(&playbook.exercise),
        open,
    )
    .await;
    let turn = guard::wait_turn(guard::Subject::Role(&role.role_arn)).await;
    if !open() {
        // Rolled back by hand meanwhile: that rollback restored the role and ended the trial.
        info!(role = %role.role_arn, trial = %record.id, "Trial ended by a rollback by hand");
        return stored_record(state, &record.id);
    }
    state.journal_step(
        journal,
        "verdict",
        serde_json::to_value(&verdict)?,
        clock::now(),
    )?;
    crate::faults::crash_point("trial:verdict");
    conclude(config, aws, state, journal, &intent, verdict, &turn).await
}

/// Ends a trial on its verdict: a pass removes the trial boundary (policies a `replace`
/// trial put in place stay until `whittle apply`, which finds nothing left to do); a failure
/// restores the snapshot and records the denied actions as needed by the role.
async fn conclude(
    config: &Config,
    aws: &Aws,
    state: &State,
    journal: whittle_state::JournalId,
    intent: &Intent,
    verdict: Verdict,
    turn: &guard::Turn,
) -> anyhow::Result<TrialRecord> {
    let record = stored_record(state, &intent.trial_id)?;
    match verdict {
        Ok(()) => {
            if intent.mode == Mode::Boundary {
                undo(aws, state, intent, turn).await?;
            }
            finish(
                config,
                state,
                journal,
                record,
                TrialStatus::Passed,
                None,
                Vec::new(),
            )
            .await
        }
        Err(failure) => {
            undo(aws, state, intent, turn).await?;
            record_needed(state, &intent.role_arn, &failure.denied)?;
            finish(
                config,
                state,
                journal,
                record,
                TrialStatus::RolledBack,
                Some(failure.reason),
                failure.denied,
            )
            .await
        }
    }
}

async fn finish(
    config: &Config,
    state: &State,
    journal: whittle_state::JournalId,
    mut record: TrialRecord,
    status: TrialStatus,
    reason: Option<String>,
    denied: Vec<DeniedEvent>,
) -> anyhow::Result<TrialRecord> {
    record.status = status;
    record.reason.clone_from(&reason);
    record.denied = denied;
    record.ended_at = Some(clock::now());
    state.tree::<TrialRecord>()?.put(&record.id, &record)?;
    state.journal_finish(
        journal,
        status.as_str(),
        json!({ "reason": reason }),
        clock::now(),
    )?;
    state.flush()?;
    match status {
        TrialStatus::RolledBack => {
            crate::notify::alert(
                config,
                "trial-rolled-back",
                &record.role_arn,
                &format!(
                    "trial {} of plan {} rolled back: {}",
                    record.id,
                    record.plan_id,
                    reason.as_deref().unwrap_or("")
                ),
            )
            .await;
        }
        _ => {
            info!(role = %record.role_arn, trial = %record.id, status = status.as_str(), "Trial finished")
        }
    }
    Ok(record)
}

/// Why a trial failed, with the denied events it saw.
#[derive(Debug, Serialize, Deserialize)]
struct Failure {
    reason: String,
    #[serde(default)]
    denied: Vec<DeniedEvent>,
}

/// How a trial ended. Journalled as its `verdict` step (`{"Ok":null}` or `{"Err":{...}}`),
/// so a restart finishes the trial as it ended, denials included.
type Verdict = Result<(), Failure>;

/// A journalled verdict. Journals of earlier builds wrote `{"passed": bool, "reason": ...}`.
fn read_verdict(detail: &serde_json::Value) -> Verdict {
    if let Ok(verdict) = serde_json::from_value::<Verdict>(detail.clone()) {
        return verdict;
    }
    if detail["passed"] == true {
        return Ok(());
    }
    Err(Failure {
        reason: detail["reason"]
            .as_str()
            .unwrap_or("the trial failed")
            .to_owned(),
        denied: Vec::new(),
    })
}

/// Runs the exercise (if any) and watches the role's denials until the window ends; the
/// first failure signal ends the watch.
async fn watch(
    config: &Config,
    aws: &Aws,
    intent: &Intent,
    applied_at: Timestamp,
    exercise: Option<&whittle_playbooks::trial::Exercise>,
    still_open: impl Fn() -> bool,
) -> Result<(), Failure> {
    let window_end = applied_at.0 + intent.window_ms;
    let interval = Duration::from_millis(intent.detection_interval_ms);
    // Why the latest reading of a signal failed, if it did.
    let mut unread: Option<String>;
    let mut denials = Denials::default();
    let mut exercising = exercise.map(|e| {
        let e = e.clone();
        let aws = aws.clone();
        let account = intent.account.clone();
        tokio::spawn(async move { run_exercise(&aws, &account, &e).await })
    });
    loop {
        let next = tokio::time::sleep(interval);
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
            });
        }
        if let Some(result) = finished {
            exercising = None;
            let failed = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(crate::one_line(&e)),
                Err(e) => Some(format!("the exercise task failed: {e}")),
            };
            if let Some(reason) = failed {
                // The exercise failed: look at the denials first, they say why.
                let denied = denials
                    .poll(aws, config, intent, applied_at)
                    .await
                    .unwrap_or_default();
                return Err(Failure {
                    reason: format!("the exercise failed: {reason}"),
                    denied,
                });
            }
        }
        match denials.poll(aws, config, intent, applied_at).await {
            Ok(denied) if denied.len() as u64 > intent.max_denials => {
                let actions: std::collections::BTreeSet<&str> =
                    denied.iter().map(|d| d.action.as_str()).collect();
                return Err(Failure {
                    reason: format!(
                        "{} denial(s) of the role after the apply: {}",
                        denied.len(),
                        actions.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                    denied,
                });
            }
            Ok(_) => unread = None,
            Err(e) => {
                warn!(error = %crate::one_line(&e), "Cannot look for denials now; trying again");
                unread = Some(format!("the role's denials: {}", crate::one_line(&e)));
            }
        }
        if let Some(metric) = &intent.error_metric {
            match error_rise(aws, intent, metric, applied_at).await {
                Ok(Some(reason)) => {
                    return Err(Failure {
                        reason,
                        denied: denials
                            .poll(aws, config, intent, applied_at)
                            .await
                            .unwrap_or_default(),
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %crate::one_line(&e), "Cannot read the error metric now; trying again");
                    unread = Some(format!("the error metric: {}", crate::one_line(&e)));
                }
            }
        }
        if clock::now().0 >= window_end && exercising.is_none() {
            // A signal that could not be read proves nothing: pass only on a good reading.
            if let Some(what) = unread {
                return Err(Failure {
                    reason: format!("could not read {what} at the end of the window"),
                    denied: Vec::new(),
                });
            }
            return Ok(());
        }
    }
}

/// The function's errors since the apply against the same length of time before it.
async fn error_rise(
    aws: &Aws,
    intent: &Intent,
    metric: &whittle_playbooks::trial::ErrorMetric,
    applied_at: Timestamp,
) -> anyhow::Result<Option<String>> {
    let applied = i64::try_from(applied_at.0).unwrap_or(0);
    let now = clock::now_ms().max(applied + 1);
    let during = aws
        .lambda_errors(&intent.account, &metric.function, applied, now + 60_000)
        .await?;
    let baseline = aws
        .lambda_errors(
            &intent.account,
            &metric.function,
            applied - (now - applied) - 60_000,
            applied,
        )
        .await?;
    Ok((during > baseline + metric.max_increase).then(|| {
        format!(
            "{} errors of function {} since the apply, against {} before it (at most {} more allowed)",
            during, metric.function, baseline, metric.max_increase
        )
    }))
}

async fn run_exercise(
    aws: &Aws,
    account: &str,
    exercise: &whittle_playbooks::trial::Exercise,
) -> anyhow::Result<()> {
    let work = async {
        if let Some(argv) = &exercise.command {
            let (program, args) = argv
                .split_first()
                .ok_or_else(|| anyhow::anyhow!("empty exercise command"))?;
            let output = tokio::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| anyhow::anyhow!("cannot start `{program}`: {e}"))?;
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let last = stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                anyhow::bail!("`{program}` exited with {}: {}", output.status, last.trim());
            }
        }
        if let Some(invoke) = &exercise.invoke {
            for payload in &invoke.payloads {
                aws.invoke_function(account, &invoke.function, payload)
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

/// A CloudTrail record as a denial of the trial's role at or after `since` (to the second),
/// not already accounted for by an earlier trial.
fn denial_in(record: &serde_json::Value, intent: &Intent, since: Timestamp) -> Option<DeniedEvent> {
    let issuer = record["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"].as_str();
    let code = record["errorCode"].as_str().unwrap_or_default();
    let id = record["eventID"].as_str().unwrap_or_default();
    let time = record["eventTime"].as_str().unwrap_or_default();
    let at = whittle_planner::trail::parse_time(time).unwrap_or(i64::MAX);
    if issuer != Some(intent.role_arn.as_str())
        || !whittle_planner::mapping::is_denial(code)
        || intent.known_events.iter().any(|known| known == id)
        || at < i64::try_from(since.0 / 1000 * 1000).unwrap_or(0)
    {
        return None;
    }
    let action = record["errorMessage"]
        .as_str()
        .and_then(whittle_planner::mapping::denied_action_of_message)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "{}:{}",
                record["eventSource"]
                    .as_str()
                    .unwrap_or_default()
                    .split('.')
                    .next()
                    .unwrap_or_default(),
                record["eventName"].as_str().unwrap_or_default()
            )
        });
    Some(DeniedEvent {
        action,
        event_id: id.to_owned(),
        time: time.to_owned(),
    })
}

/// The role's denials seen so far: LookupEvents (management events) asked afresh each time,
/// and the trail's log files in S3 (which also carry data events, such as a denied
/// s3:GetObject) read once each, from the `[[mining.sources]]` of kind `s3` of the account.
#[derive(Debug, Default)]
struct Denials {
    read_files: std::collections::HashSet<String>,
    from_files: Vec<DeniedEvent>,
}

impl Denials {
    async fn poll(
        &mut self,
        aws: &Aws,
        config: &Config,
        intent: &Intent,
        since: Timestamp,
    ) -> anyhow::Result<Vec<DeniedEvent>> {
        let mut all = denials_since(aws, config, intent, since).await?;
        self.read_trail_files(aws, config, intent, since).await?;
        for denied in &self.from_files {
            if !all.iter().any(|d| d.event_id == denied.event_id) {
                all.push(denied.clone());
            }
        }
        Ok(all)
    }

    /// New log files of the days since `since`, in the account trail layout
    /// `[prefix/]AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/` and the organization trail
    /// layout `[prefix/]AWSLogs/o-ORGID/ACCOUNT/CloudTrail/…`.
    async fn read_trail_files(
        &mut self,
        aws: &Aws,
        config: &Config,
        intent: &Intent,
        since: Timestamp,
    ) -> anyhow::Result<()> {
        let account_id = intent.role_arn.split(':').nth(4).unwrap_or_default();
        let first_day = whittle_planner::trail::day_of(i64::try_from(since.0).unwrap_or(0));
        let today = whittle_planner::trail::day_of(clock::now_ms());
        for source in config.mining.sources.iter().filter(|s| {
            s.kind == crate::config::SourceKind::S3 && s.account.as_deref() == Some(&intent.account)
        }) {
            let Some(bucket) = &source.bucket else {
                continue;
            };
            let base = match source.prefix.as_deref() {
                Some(p) if !p.is_empty() => format!("{}/AWSLogs/", p.trim_end_matches('/')),
                _ => "AWSLogs/".to_owned(),
            };
            // An organization trail writes each account's files one level lower, under the
            // organization's id. Listed on every poll: it is one request, and a trail can be
            // turned into an organization trail at any time.
            let mut roots = vec![format!("{base}{account_id}/")];
            for folder in aws.list_folders(&intent.account, bucket, &base).await? {
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
                for key in aws.list_objects(&intent.account, bucket, &prefix).await? {
                    if self.read_files.contains(&key) {
                        continue;
                    }
                    let bytes = aws.get_object(&intent.account, bucket, &key).await?;
                    let text = if key.ends_with(".gz") {
                        use std::io::Read as _;
                        let mut out = Vec::new();
                        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out)?;
                        out
                    } else {
                        bytes
                    };
                    if let Ok(log) = serde_json::from_slice::<serde_json::Value>(&text) {
                        for record in log["Records"].as_array().into_iter().flatten() {
                            if let Some(denied) = denial_in(record, intent, since) {
                                self.from_files.push(denied);
                            }
                        }
                    }
                    self.read_files.insert(key);
                }
            }
        }
        Ok(())
    }
}

/// Denials of the trial's role since `since` (LookupEvents, management events).
async fn denials_since(
    aws: &Aws,
    config: &Config,
    intent: &Intent,
    since: Timestamp,
) -> anyhow::Result<Vec<DeniedEvent>> {
    // CloudTrail times are to the second: start at the second of the apply.
    let start = i64::try_from(since.0 / 1000 * 1000).unwrap_or(0);
    let end = clock::now_ms() + 1000;
    let mut token = None;
    let mut out = Vec::new();
    loop {
        let page = aws
            .lookup_events(
                &intent.account,
                &config.aws.region,
                start,
                end,
                token.take(),
            )
            .await
            .map_err(|e| match e {
                crate::aws::mining::LookupError::Throttled(t) => {
                    anyhow::anyhow!("cloudtrail:LookupEvents throttled: {t}")
                }
                crate::aws::mining::LookupError::Other(e) => e,
            })?;
        for event in &page.events {
            if let Ok(record) = serde_json::from_str::<serde_json::Value>(event)
                && let Some(denied) = denial_in(&record, intent, since)
            {
                out.push(denied);
            }
        }
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    Ok(out)
}

/// The running trials: their unfinished journals, with the intents read.
fn open_trials(state: &State) -> anyhow::Result<impl Iterator<Item = (JournalEntry, Intent)>> {
    Ok(state
        .journal_unfinished()?
        .into_iter()
        .filter(|e| e.kind == TRIAL_JOURNAL)
        .filter_map(|e| {
            let intent = serde_json::from_value::<Intent>(e.intent.clone()).ok()?;
            Some((e, intent))
        }))
}

/// The id of the trial running on `role_arn`, if any.
pub fn running_on(state: &State, role_arn: &str) -> anyhow::Result<Option<String>> {
    Ok(open_trials(state)?
        .find(|(_, intent)| intent.role_arn == role_arn)
        .map(|(_, intent)| intent.trial_id))
}

/// Whether a trial's journal has ended (a `whittle rollback` of it finishes it).
fn ended(state: &State, journal: whittle_state::JournalId) -> bool {
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
fn record_needed(state: &State, role_arn: &str, denied: &[DeniedEvent]) -> anyhow::Result<()> {
    if denied.is_empty() {
        return Ok(());
    }
    let tree = state.tree::<NeededActions>()?;
    let key = role_arn.to_owned();
    let mut needed = tree.get(&key)?.unwrap_or_default();
    for d in denied {
        needed.actions.insert(d.action.clone(), clock::now());
    }
    tree.put(&key, &needed)?;
    Ok(())
}

/// Puts the role back as the intent's snapshot has it: the trial boundary removed and its
/// policy deleted, or the replaced policies restored. Idempotent.
async fn undo(aws: &Aws, state: &State, intent: &Intent, turn: &guard::Turn) -> anyhow::Result<()> {
    match intent.mode {
        Mode::Boundary => {
            let now = aws.role_policies(&intent.account, &intent.role_arn).await?;
            let ours = format!(":policy/{}", intent.policy_name);
            if now
                .boundary
                .as_ref()
                .is_some_and(|b| b.arn.ends_with(&ours))
            {
                aws.delete_role_permissions_boundary(&intent.account, &intent.role_arn)
                    .await?;
            }
            let identity = aws.caller_identity(&intent.account).await?;
            aws.delete_policy(
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
            let changes = state.tree::<crate::plan::ChangeRecord>()?;
            let change = changes
                .iter()
                .filter_map(|item| item.ok().map(|(_, c)| c))
                .filter(|c| c.plan_id == intent.plan_id && c.role_arn == intent.role_arn)
                .filter(|c| c.status != crate::plan::ChangeStatus::RolledBack)
                .max_by_key(|c| c.started_at);
            if let Some(change) = change {
                crate::plan::restore_change(aws, state, change, turn).await?;
            }
        }
    }
    let after = aws.role_policies(&intent.account, &intent.role_arn).await?;
    if !after.same_as(&intent.before) {
        anyhow::bail!(
            "role {} still differs from its snapshot after the rollback; check it by hand",
            intent.role_arn
        );
    }
    Ok(())
}

fn mark_trialled_when_all_passed(state: &State, plan_id: &str) -> anyhow::Result<()> {
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
    let all_passed = plan
        .roles
        .iter()
        .filter(|r| r.status == RoleStatus::Changes)
        .all(|r| {
            trials
                .iter()
                .filter(|t| t.role_arn == r.role_arn)
                .max_by_key(|t| t.started_at)
                .is_some_and(|t| t.status == TrialStatus::Passed)
        });
    if all_passed && plan.status == PlanStatus::Proposed {
        plan.status = PlanStatus::Trialled;
        plans.put(&plan.id.clone(), &StoredPlan(plan))?;
        state.flush()?;
        info!(
            plan = plan_id,
            "Every changed role passed its trial: the plan is trialled"
        );
    }
    Ok(())
}

/// Rolls back a running trial by hand (`whittle rollback TRIAL_ID`, or `--role` for the
/// role's running trial).
pub async fn rollback(
    config: &Config,
    aws: &Aws,
    state: &State,
    trial_id: Option<&str>,
    role: Option<&str>,
) -> anyhow::Result<Option<TrialRecord>> {
    let Some((entry, intent)) = open_trials(state)?.find(|(_, i)| {
        trial_id.is_some_and(|id| id == i.trial_id) || role.is_some_and(|r| r == i.role_arn)
    }) else {
        return Ok(None);
    };
    // Wait while the trial itself is applying or concluding; it may have ended meanwhile.
    let turn = guard::wait_turn(guard::Subject::Role(&intent.role_arn)).await;
    if ended(state, entry.id) {
        return Ok(None);
    }
    undo(aws, state, &intent, &turn).await?;
    let record = stored_record(state, &intent.trial_id)?;
    Ok(Some(
        finish(
            config,
            state,
            entry.id,
            record,
            TrialStatus::RolledBack,
            Some("rolled back by hand".to_owned()),
            Vec::new(),
        )
        .await?,
    ))
}

/// The reconcile pass's recovery for trial journals: a trial with a verdict is finished as
/// that verdict says; one without is rolled back (the default), or its watch resumed for what
/// is left of the window, as the trial's playbook said.
#[derive(Debug)]
pub struct TrialRecovery {
    pub config: Arc<Config>,
}

impl Recovery for TrialRecovery {
    fn recover<'a>(
        &'a self,
        state: &'a State,
        entry: &'a JournalEntry,
    ) -> Pin<Box<dyn std::future::Future<Output = anyhow::Result<String>> + Send + 'a>> {
        Box::pin(async move {
            let intent: Intent = serde_json::from_value(entry.intent.clone())?;
            let aws = Aws::new(&self.config).await?;
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
                    watch(&self.config, &aws, &intent, applied_at, None, || {
                        !ended(state, entry.id)
                    })
                    .await,
                    "resumed",
                ),
                _ => (
                    Err(Failure {
                        reason: "whittle stopped during the trial; rolled back on restart"
                            .to_owned(),
                        denied: Vec::new(),
                    }),
                    "was interrupted",
                ),
            };
            let passed = verdict.is_ok();
            let turn = guard::wait_turn(guard::Subject::Role(&intent.role_arn)).await;
            conclude(&self.config, &aws, state, entry.id, &intent, verdict, &turn).await?;
            if passed {
                mark_trialled_when_all_passed(state, &intent.plan_id)?;
            }
            Ok(format!(
                "trial {} {how} and {}",
                intent.trial_id,
                if passed { "passed" } else { "rolled back" }
            ))
        })
    }
}
