//! The start-up reconcile pass: every unfinished journal is finished (or undone) by the
//! recovery of its kind before anything is scheduled.
//!
//! A journal whose kind this build does not know stops the start-up: it was written by a
//! whittle that knew how to finish it, and guessing could leave a role without its
//! permissions or a secret half-rotated.

use tracing::{info, warn};
use whittle_state::JournalEntry;

use crate::Engine;
use crate::ports::Ports;
use crate::records::{JobHistory, JournalKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSummary {
    pub recovered: usize,
    pub interrupted_runs: usize,
}

/// Reconciles every unfinished journal, oldest first, and marks job runs a previous process
/// left running as interrupted.
pub async fn reconcile<P: Ports>(engine: &Engine<P>) -> anyhow::Result<ReconcileSummary> {
    let state = &*engine.state;
    let interrupted_runs = JobHistory::new(state).mark_interrupted(engine.now())?;
    if interrupted_runs > 0 {
        warn!(
            runs = interrupted_runs,
            "Marked job runs of a previous process as interrupted"
        );
    }
    let unfinished = state.journal_unfinished()?;
    // Refuse before acting on any: an unknown kind means another build's work is pending.
    if let Some(entry) = unfinished
        .iter()
        .find(|e| JournalKind::of(&e.kind).is_none())
    {
        anyhow::bail!(
            "unfinished journal {} of kind `{}` for {} has no recovery in this whittle build; run the whittle version that wrote it to finish it",
            entry.id,
            entry.kind,
            entry.subject
        );
    }
    let mut recovered = 0;
    for entry in &unfinished {
        let outcome = recover(engine, entry).await.map_err(|e| {
            anyhow::anyhow!(
                "recovering journal {} ({} {}): {}",
                entry.id,
                entry.kind,
                entry.subject,
                crate::one_line(&e)
            )
        })?;
        info!(journal = %entry.id, kind = %entry.kind, subject = %entry.subject, %outcome, "Reconciled unfinished journal");
        recovered += 1;
    }
    Ok(ReconcileSummary {
        recovered,
        interrupted_runs,
    })
}

/// Finishes one unfinished journal with the recovery of its kind. It leaves the journal
/// finished when it returns Ok; otherwise it is tried again at the next start.
async fn recover<P: Ports>(engine: &Engine<P>, entry: &JournalEntry) -> anyhow::Result<String> {
    match JournalKind::of(&entry.kind) {
        Some(JournalKind::Apply | JournalKind::Rollback) => {
            crate::plan::recover(engine, entry).await
        }
        Some(JournalKind::Trial) => crate::trial::recover(engine, entry).await,
        Some(JournalKind::Rotation) => crate::rotate::recover(engine, entry).await,
        Some(JournalKind::Split | JournalKind::SplitRollback) => {
            crate::switch::recover(engine, entry).await
        }
        None => anyhow::bail!("journal kind `{}` is unknown to this build", entry.kind),
    }
}
