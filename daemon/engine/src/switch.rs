//! A split put in place and taken back: the functions of a shared role switched to roles of
//! their own (`whittle apply`, and a trial of the split), and switched back
//! (`whittle rollback`, a failed or finished trial, the start-up reconciliation).
//!
//! The order keeps every function on a working role at every moment, so a crash between any
//! two steps leaves the old arrangement or the new one: each new role is created and given
//! all its policies before any function is switched to it, and a function is switched by one
//! lambda:UpdateFunctionConfiguration call, from the shared role (never changed here) to a
//! complete role. Undoing switches each function still on its new role back to the shared
//! role first, and only then deletes the new roles — and only roles that carry the split's
//! `whittle:split` tag, so a role that existed before under the same name is never touched
//! (creating one refuses it beforehand).

use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tracing::{info, warn};
use whittle_planner::plan::RolePlan;
use whittle_planner::plan::split::SplitProposal;
use whittle_state::{JournalEntry, JournalId};

use crate::Engine;
use crate::guard::{Subject, Turn};
use crate::ports::{AwsErrorKind, Iam, NewRole, Ports, RoleDefinition};
use crate::records::{
    ChangeStatus, FunctionRevisions, JournalKind, SplitFunction, SplitIntent, SplitRecord,
};
use crate::time::new_id;

/// The tag on every role a split creates; its value is the split's id.
pub const SPLIT_TAG: &str = "whittle:split";

/// How long a new role may take to become assumable by Lambda. IAM is eventually consistent:
/// until a new role has propagated, lambda:UpdateFunctionConfiguration answers
/// `InvalidParameterValueException` ("The role defined for the function cannot be assumed by
/// Lambda."), commonly for some seconds; tools retry it (e.g. SaltStack's `WaitForRole`).
const ROLE_PROPAGATION: Duration = Duration::from_secs(120);
/// How often the switch is tried again while the role propagates.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// A split checked against the account, ready to put in place.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub intent: SplitIntent,
    /// The shared role's path, trust policy, tags and boundary, which each new role copies.
    pub shared: RoleDefinition,
}

/// Checks, before any change, that the split of `role` can be put in place as planned: the
/// shared role's policies are still those the plan was made from, every function still runs
/// under it at the revision the plan saw (another deploy since makes the plan stale), and no
/// role of a new role's name exists.
pub async fn prepare<P: Ports>(
    engine: &Engine<P>,
    plan_id: &str,
    role: &RolePlan,
    split: &SplitProposal,
    account: &str,
) -> anyhow::Result<Prepared> {
    let ports = &*engine.ports;
    let shared_arn = &role.role_arn;
    let again = "run `whittle discover` and `whittle plan` again";
    let now = ports.role_policies(account, shared_arn).await?;
    if !now.same_as(&role.current) {
        anyhow::bail!(
            "refused: the role's policies changed since plan {plan_id} was made; {again}"
        );
    }
    let shared = ports.role_definition(account, shared_arn).await?;
    let account_id = shared_arn.split(':').nth(4).unwrap_or_default();
    let mut functions = Vec::new();
    for f in &split.functions {
        let config = match ports.function_configuration(account, &f.function).await {
            Ok(config) => config,
            Err(e) if e.kind == AwsErrorKind::NotFound => anyhow::bail!(
                "refused: function {} no longer exists (renamed or deleted since plan {plan_id}); {again}",
                f.function
            ),
            Err(e) => return Err(e.into()),
        };
        if &config.role != shared_arn {
            anyhow::bail!(
                "refused: function {} now runs under {}, not {shared_arn} (changed since plan {plan_id}); {again}",
                f.function,
                config.role
            );
        }
        let own = |planned: &str, now: &str| -> anyhow::Result<bool> {
            Ok(engine
                .state
                .tree::<FunctionRevisions>()?
                .get(&f.function_arn)?
                .is_some_and(|made| made.leads(planned, now)))
        };
        let moved_on = match (&f.revision, &config.revision) {
            (Some(planned), Some(now)) => planned != now && !own(planned, now)?,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if moved_on {
            anyhow::bail!(
                "refused: function {} changed since plan {plan_id} (revision {} is now {}: another deploy); {again}",
                f.function,
                f.revision.as_deref().unwrap_or("?"),
                config.revision.as_deref().unwrap_or("none")
            );
        }
        let role_arn = format!(
            "arn:aws:iam::{account_id}:role{}{}",
            shared.path, f.role_name
        );
        match ports.role_definition(account, &role_arn).await {
            Ok(_) => anyhow::bail!(
                "refused: a role named {} exists already; whittle creates the function's role and never takes one over",
                f.role_name
            ),
            Err(e) if e.kind == AwsErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        functions.push(SplitFunction {
            function: f.function.clone(),
            function_arn: f.function_arn.clone(),
            role_name: f.role_name.clone(),
            role_arn,
            // The revision seen now (the plan's, when it had one): the switch refuses a
            // deploy that lands between this check and the switch.
            revision: config.revision,
        });
    }
    Ok(Prepared {
        intent: SplitIntent {
            id: new_id("split", engine.now()),
            plan_id: plan_id.to_owned(),
            account: account.to_owned(),
            shared_role_arn: shared_arn.clone(),
            functions,
        },
        shared,
    })
}

/// Creates each function's role with all its policies, then switches each function to it,
/// recording every step in `journal` (whose intent is `prepared.intent`). On an error the
/// caller undoes the split.
pub async fn put_in_place<P: Ports>(
    engine: &Engine<P>,
    journal: JournalId,
    prepared: &Prepared,
    split: &SplitProposal,
) -> anyhow::Result<()> {
    let (ports, state) = (&*engine.ports, &*engine.state);
    let intent = &prepared.intent;
    let account = &intent.account;
    let mut tags = prepared.shared.tags.clone();
    tags.insert(SPLIT_TAG.to_owned(), intent.id.clone());
    for (f, proposed) in intent.functions.iter().zip(&split.functions) {
        let description = format!(
            "whittle: the role of function {} alone, split from {} (plan {})",
            f.function, intent.shared_role_arn, intent.plan_id
        );
        ports
            .create_role(
                account,
                &NewRole {
                    name: &f.role_name,
                    path: &prepared.shared.path,
                    trust_policy: &prepared.shared.trust_policy,
                    tags: &tags,
                    boundary: proposed.boundary.as_deref(),
                    description: &description,
                },
            )
            .await
            .with_context(|| format!("creating the role of function {}", f.function))?;
        state.journal_step(
            journal,
            &format!("role-created {}", f.role_name),
            json!(null),
            engine.now(),
        )?;
        engine.ports.after_step("split:role-created");
        for inline in &proposed.inline {
            ports
                .put_role_policy(
                    account,
                    &f.role_arn,
                    &inline.name,
                    &inline.document.to_compact(),
                )
                .await?;
        }
        for arn in &proposed.managed {
            ports.attach_role_policy(account, &f.role_arn, arn).await?;
        }
        state.journal_step(
            journal,
            &format!("role-filled {}", f.role_name),
            json!(null),
            engine.now(),
        )?;
        engine.ports.after_step("split:role-filled");
    }
    for f in &intent.functions {
        let revision = switch_role(engine, account, f, &f.role_arn, f.revision.as_deref()).await?;
        state.journal_step(
            journal,
            &format!("switched {}", f.function),
            json!({ "revision": revision }),
            engine.now(),
        )?;
        engine.ports.after_step("split:switched");
    }
    Ok(())
}

/// Sets a function's role, trying again while IAM makes a new role assumable (or the
/// function's previous update is still in progress), for at most [`ROLE_PROPAGATION`]. With
/// `from`, only if the function is still at that revision; the revision it leaves and the
/// one it gets are recorded as whittle's own.
async fn switch_role<P: Ports>(
    engine: &Engine<P>,
    account: &str,
    f: &SplitFunction,
    role_arn: &str,
    from: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let ports = &*engine.ports;
    let function = f.function.as_str();
    let give_up = engine.now().plus(ROLE_PROPAGATION);
    let before = match from {
        Some(from) => Some(from.to_owned()),
        None => {
            ports
                .function_configuration(account, function)
                .await?
                .revision
        }
    };
    loop {
        match ports
            .set_function_role(account, function, role_arn, from)
            .await
        {
            Ok(revision) => {
                if let (Some(from), Some(to)) = (&before, &revision) {
                    let tree = engine.state.tree::<FunctionRevisions>()?;
                    let mut made = tree.get(&f.function_arn)?.unwrap_or_default();
                    made.made.push((from.clone(), to.clone()));
                    let excess = made.made.len().saturating_sub(FunctionRevisions::KEEP);
                    made.made.drain(..excess);
                    tree.put(&f.function_arn, &made)?;
                }
                return Ok(revision);
            }
            Err(e) if e.kind == AwsErrorKind::NotReady && engine.now() < give_up => {
                info!(function, role = role_arn, error = %e, "Not ready yet; trying again");
                ports.sleep(RETRY_EVERY).await;
            }
            Err(e) if e.kind == AwsErrorKind::Stale => anyhow::bail!(
                "refused: function {function} changed while the split was being put in place (another deploy): {e}"
            ),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes the split back: every function still on its new role goes back to the shared role,
/// then every new role that carries the split's tag is emptied and deleted. Idempotent: a
/// function already back (or deleted), a role never created or already deleted, is skipped.
pub async fn undo<P: Ports>(engine: &Engine<P>, intent: &SplitIntent) -> anyhow::Result<()> {
    let ports = &*engine.ports;
    let account = &intent.account;
    let mut stuck = Vec::new();
    for f in &intent.functions {
        let config = match ports.function_configuration(account, &f.function).await {
            Ok(config) => config,
            // Deleted meanwhile: nothing runs under the new role.
            Err(e) if e.kind == AwsErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if config.role == f.role_arn {
            switch_role(engine, account, f, &intent.shared_role_arn, None).await?;
        }
    }
    for f in &intent.functions {
        let definition = match ports.role_definition(account, &f.role_arn).await {
            Ok(definition) => definition,
            Err(e) if e.kind == AwsErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if definition.tags.get(SPLIT_TAG) != Some(&intent.id) {
            warn!(role = %f.role_arn, split = %intent.id, "Not the split's role (no whittle:split tag of it); left alone");
            continue;
        }
        empty_and_delete(ports, account, &f.role_arn).await?;
    }
    for f in &intent.functions {
        match ports.function_configuration(account, &f.function).await {
            Ok(config) if config.role == f.role_arn => stuck.push(f.function.clone()),
            Ok(_) => {}
            Err(e) if e.kind == AwsErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !stuck.is_empty() {
        anyhow::bail!(
            "function(s) {} still run under their split role after the rollback; check them by hand",
            stuck.join(", ")
        );
    }
    Ok(())
}

/// Deletes a role: IAM refuses to delete one that still has policies, so its inline policies
/// go and its managed policies are detached first.
async fn empty_and_delete<P: Iam>(ports: &P, account: &str, role_arn: &str) -> anyhow::Result<()> {
    let policies = ports.role_policies(account, role_arn).await?;
    for inline in &policies.inline {
        ports
            .delete_role_policy(account, role_arn, &inline.name)
            .await?;
    }
    for managed in &policies.managed {
        ports
            .detach_role_policy(account, role_arn, &managed.arn)
            .await?;
    }
    ports.delete_role(account, role_arn).await?;
    Ok(())
}

/// Applies the split of `role` under a journal: checked, put in place, recorded. On a failure
/// part-way it is undone before the error is returned. The caller holds the role's turn.
pub async fn apply<P: Ports>(
    engine: &Engine<P>,
    plan_id: &str,
    role: &RolePlan,
    split: &SplitProposal,
    account: &str,
    _turn: &Turn,
) -> anyhow::Result<SplitRecord> {
    let state = &*engine.state;
    let prepared = prepare(engine, plan_id, role, split, account).await?;
    let mut record = SplitRecord {
        intent: prepared.intent.clone(),
        started_at: engine.now(),
        status: ChangeStatus::InProgress,
        reason: None,
    };
    let splits = state.tree::<SplitRecord>()?;
    splits.put(&record.intent.id, &record)?;
    let journal = state.journal_begin(
        JournalKind::Split.as_str(),
        &role.role_arn,
        serde_json::to_value(&prepared.intent)?,
        engine.now(),
    )?;
    engine.ports.after_step("split:begin");
    let result = put_in_place(engine, journal, &prepared, split).await;
    if let Err(error) = result {
        let reason = crate::one_line(&error);
        warn!(role = %role.role_arn, error = %reason, "Split failed part-way; switching the functions back");
        undo(engine, &prepared.intent).await?;
        state.journal_finish(
            journal,
            "rolled-back",
            json!({ "error": reason }),
            engine.now(),
        )?;
        record.status = ChangeStatus::RolledBack;
        record.reason = Some(reason);
        splits.put(&record.intent.id, &record)?;
        state.flush()?;
        return Err(error);
    }
    state.journal_finish(journal, "applied", json!(null), engine.now())?;
    record.status = ChangeStatus::Applied;
    splits.put(&record.intent.id, &record)?;
    state.flush()?;
    info!(role = %role.role_arn, split = %record.intent.id, functions = record.intent.functions.len(), "Split applied: each function runs under its own role");
    Ok(record)
}

/// The latest applied split of a shared role, if any.
pub fn latest_applied(
    state: &whittle_state::State,
    shared_role_arn: &str,
) -> anyhow::Result<Option<SplitRecord>> {
    Ok(state
        .tree::<SplitRecord>()?
        .iter()
        .filter_map(|item| item.ok().map(|(_, s)| s))
        .filter(|s| s.intent.shared_role_arn == shared_role_arn)
        .filter(|s| s.status == ChangeStatus::Applied)
        .max_by_key(|s| s.started_at))
}

/// Undoes an applied split (`whittle rollback split-…`) under a journal.
pub async fn rollback<P: Ports>(engine: &Engine<P>, id: &str) -> anyhow::Result<SplitRecord> {
    let state = &*engine.state;
    let splits = state.tree::<SplitRecord>()?;
    let mut record = splits
        .get(&id.to_owned())?
        .ok_or_else(|| anyhow::anyhow!("no split `{id}` in {}", state.dir().display()))?;
    if record.status == ChangeStatus::RolledBack {
        anyhow::bail!("split {id} was rolled back already");
    }
    let _turn = engine
        .turns
        .wait(Subject::Role(&record.intent.shared_role_arn))
        .await;
    let journal = state.journal_begin(
        JournalKind::SplitRollback.as_str(),
        &record.intent.shared_role_arn,
        serde_json::to_value(&record.intent)?,
        engine.now(),
    )?;
    engine.ports.after_step("split-rollback:begin");
    undo(engine, &record.intent).await?;
    state.journal_finish(journal, "rolled-back", json!(null), engine.now())?;
    record.status = ChangeStatus::RolledBack;
    splits.put(&record.intent.id, &record)?;
    state.flush()?;
    info!(split = %id, "Split rolled back: every function runs under the shared role again");
    Ok(record)
}

/// The reconcile pass's recovery for split and split-rollback journals: an interrupted
/// split, or rollback of one, ends with every function on the shared role and the new roles
/// deleted.
pub async fn recover<P: Ports>(engine: &Engine<P>, entry: &JournalEntry) -> anyhow::Result<String> {
    let state = &*engine.state;
    let intent: SplitIntent = serde_json::from_value(entry.intent.clone())?;
    undo(engine, &intent).await?;
    state.journal_finish(
        entry.id,
        "rolled-back",
        json!({ "by": "reconcile" }),
        engine.now(),
    )?;
    let splits = state.tree::<SplitRecord>()?;
    if let Some(mut record) = splits.get(&intent.id)? {
        record.status = ChangeStatus::RolledBack;
        record.reason = Some(format!(
            "interrupted {}; rolled back on restart",
            entry.kind
        ));
        splits.put(&intent.id, &record)?;
    }
    state.flush()?;
    Ok(format!(
        "the functions of {} back on it, the split's roles deleted (interrupted {})",
        intent.shared_role_arn, entry.kind
    ))
}
