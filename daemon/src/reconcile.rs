//! The start-up reconcile pass: every unfinished journal is handed to the recovery registered
//! for its kind before anything is scheduled.
//!
//! Apply and rollback register their recovery here (`Registry::standard`); trials and
//! rotations add theirs as they land. A
//! journal whose kind nobody handles stops the start-up: it was written by a whittle that knew
//! how to finish it, and guessing could leave a role without its permissions or a secret
//! half-rotated.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use tracing::{info, warn};
use whittle_state::{JournalEntry, State};

use crate::clock;
use crate::records::JobHistory;

/// Finishes (or undoes) one unfinished journal of its kind. It must leave the journal finished
/// when it returns Ok; it is called again on the next start-up otherwise.
pub trait Recovery: Send + Sync {
    fn recover<'a>(
        &'a self,
        state: &'a State,
        entry: &'a JournalEntry,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send + 'a>>;
}

#[derive(Default)]
pub struct Registry {
    handlers: BTreeMap<&'static str, Box<dyn Recovery>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// The registry of this build: one recovery per journal kind whittle writes.
    pub fn standard(config: &crate::config::Config) -> Registry {
        let mut registry = Registry::default();
        let config = std::sync::Arc::new(config.clone());
        for kind in [crate::plan::APPLY_JOURNAL, crate::plan::ROLLBACK_JOURNAL] {
            registry.register(
                kind,
                Box::new(crate::plan::RestoreRecovery {
                    config: std::sync::Arc::clone(&config),
                }),
            );
        }
        registry.register(
            crate::trial::TRIAL_JOURNAL,
            Box::new(crate::trial::TrialRecovery {
                config: std::sync::Arc::clone(&config),
            }),
        );
        registry.register(
            whittle_playbooks::rotation::machine::ROTATION_JOURNAL,
            Box::new(crate::rotate::RotationRecovery { config }),
        );
        registry
    }

    pub fn register(&mut self, kind: &'static str, recovery: Box<dyn Recovery>) {
        self.handlers.insert(kind, recovery);
    }

    /// Reconciles every unfinished journal, oldest first, and marks job runs a previous
    /// process left running as interrupted.
    pub async fn reconcile(&self, state: &State) -> anyhow::Result<ReconcileSummary> {
        let interrupted_runs = JobHistory::new(state).mark_interrupted(clock::now())?;
        if interrupted_runs > 0 {
            warn!(
                runs = interrupted_runs,
                "Marked job runs of a previous process as interrupted"
            );
        }
        let unfinished = state.journal_unfinished()?;
        let mut recovered = 0;
        for entry in &unfinished {
            let Some(recovery) = self.handlers.get(entry.kind.as_str()) else {
                anyhow::bail!(
                    "unfinished journal {} of kind `{}` for {} has no recovery in this whittle build; run the whittle version that wrote it to finish it",
                    entry.id,
                    entry.kind,
                    entry.subject
                );
            };
            let outcome = recovery.recover(state, entry).await.map_err(|e| {
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSummary {
    pub recovered: usize,
    pub interrupted_runs: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use whittle_state::{LockOwner, Timestamp};

    struct FinishIt;

    impl Recovery for FinishIt {
        fn recover<'a>(
            &'a self,
            state: &'a State,
            entry: &'a JournalEntry,
        ) -> Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send + 'a>> {
            Box::pin(async move {
                state.journal_finish(entry.id, "rolled-back", json!(null), Timestamp(99))?;
                Ok("rolled back".to_owned())
            })
        }
    }

    fn open(dir: &std::path::Path) -> State {
        State::open(
            dir,
            &LockOwner {
                pid: 1,
                status_address: None,
                token: None,
            },
        )
        .expect("open")
    }

    #[tokio::test]
    async fn hands_each_unfinished_journal_to_its_kind() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = open(tmp.path());
        let id = state
            .journal_begin(
                "test-kind",
                "arn:aws:iam::1:role/a",
                json!({}),
                Timestamp(1),
            )
            .expect("begin");
        let mut registry = Registry::default();
        registry.register("test-kind", Box::new(FinishIt));
        let summary = registry.reconcile(&state).await.expect("reconcile");
        assert_eq!(summary.recovered, 1);
        assert!(state.journal_unfinished().expect("list").is_empty());
        assert_eq!(
            state
                .journal_get(id)
                .expect("get")
                .and_then(|e| e.finished)
                .map(|f| f.outcome),
            Some("rolled-back".into())
        );
    }

    #[tokio::test]
    async fn unknown_kind_stops_the_start_up() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = open(tmp.path());
        state
            .journal_begin("from-the-future", "secret/x", json!({}), Timestamp(1))
            .expect("begin");
        let err = Registry::default()
            .reconcile(&state)
            .await
            .expect_err("must refuse");
        assert!(err.to_string().contains("kind `from-the-future`"), "{err}");
        assert_eq!(
            state.journal_unfinished().expect("list").len(),
            1,
            "left for the right build"
        );
    }
}
