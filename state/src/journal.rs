//! Crash-safe journals: the record of intent that precedes every side effect on AWS.
//!
//! A caller (a trial, a rotation) follows one rule: *journal, then act, then record*.
//! [`State::journal_begin`] stores the intent, [`State::journal_step`] marks a step done (or
//! about to be done; the caller chooses the step names), [`State::journal_finish`] closes it.
//! Every call is durable before it returns: it writes in one sled transaction and then
//! flushes the database. On start-up the daemon lists [`State::journal_unfinished`] and hands
//! each to the recovery of its `kind`.
//!
//! An index tree of open journal ids keeps that listing proportional to the number of
//! unfinished journals, not to the whole history.

use std::fmt;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::tree::{decode, encode};
use crate::{Record, RecordKey, State, StateError, Timestamp};

const OPEN_TREE: &str = "journal_open";

/// A journal's id: unique in its state directory, increasing with time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JournalId(pub u64);

impl fmt::Display for JournalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "j-{:06}", self.0)
    }
}

impl std::str::FromStr for JournalId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix("j-")
            .unwrap_or(s)
            .parse()
            .map(JournalId)
            .map_err(|_| format!("`{s}` is not a journal id (expected j-NNNNNN)"))
    }
}

impl RecordKey for JournalId {
    fn encode(&self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        u64::decode(bytes).map(JournalId)
    }
}

/// One journal: what was intended, which steps were taken, how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub id: JournalId,
    /// Which recovery handles it, e.g. `trial` or `rotation`.
    pub kind: String,
    /// What it acts on: a role ARN, a secret id.
    pub subject: String,
    /// The intent as its owner describes it (a snapshot to restore, a plan id, ...). It must
    /// never contain a secret value: journals are not encrypted.
    pub intent: serde_json::Value,
    pub created_at: Timestamp,
    pub steps: Vec<JournalStep>,
    pub finished: Option<JournalFinish>,
}

impl JournalEntry {
    /// The name of the last step recorded, if any.
    pub fn last_step(&self) -> Option<&str> {
        self.steps.last().map(|s| s.name.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalStep {
    pub name: String,
    pub at: Timestamp,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalFinish {
    pub at: Timestamp,
    /// A short word for how it ended: `completed`, `rolled-back`, `parked`, ...
    pub outcome: String,
    pub detail: serde_json::Value,
}

impl Record for JournalEntry {
    const TREE: &'static str = "journal";
    const VERSION: u16 = 1;
    type Key = JournalId;
}

impl State {
    /// Records the intent of a new journal and returns its id, durably.
    pub fn journal_begin(
        &self,
        kind: &str,
        subject: &str,
        intent: serde_json::Value,
        at: Timestamp,
    ) -> Result<JournalId, StateError> {
        let id = JournalId(
            self.db
                .generate_id()
                .map_err(|source| self.sled_error(source))?,
        );
        let entry = JournalEntry {
            id,
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            intent,
            created_at: at,
            steps: Vec::new(),
            finished: None,
        };
        self.journal_write(&entry)?;
        Ok(id)
    }

    /// Appends a step to an unfinished journal, durably.
    pub fn journal_step(
        &self,
        id: JournalId,
        name: &str,
        detail: serde_json::Value,
        at: Timestamp,
    ) -> Result<(), StateError> {
        let mut entry = self.journal_open_entry(id, name)?;
        entry.steps.push(JournalStep {
            name: name.to_owned(),
            at,
            detail,
        });
        self.journal_write(&entry)
    }

    /// Closes a journal with its outcome, durably. It no longer appears among the unfinished.
    pub fn journal_finish(
        &self,
        id: JournalId,
        outcome: &str,
        detail: serde_json::Value,
        at: Timestamp,
    ) -> Result<(), StateError> {
        let mut entry = self.journal_open_entry(id, outcome)?;
        entry.finished = Some(JournalFinish {
            at,
            outcome: outcome.to_owned(),
            detail,
        });
        self.journal_write(&entry)
    }

    /// One journal, finished or not.
    pub fn journal_get(&self, id: JournalId) -> Result<Option<JournalEntry>, StateError> {
        self.tree::<JournalEntry>()?.get(&id)
    }

    /// Every unfinished journal, oldest first.
    pub fn journal_unfinished(&self) -> Result<Vec<JournalEntry>, StateError> {
        let open = self
            .db
            .open_tree(OPEN_TREE)
            .map_err(|source| self.sled_error(source))?;
        let journal = self.tree::<JournalEntry>()?;
        let mut entries = Vec::new();
        for item in open.iter() {
            let (key, _) = item.map_err(|source| self.sled_error(source))?;
            let id = JournalId::decode(&key).ok_or_else(|| StateError::Corrupt {
                tree: OPEN_TREE.to_owned(),
                key: format!("{key:?}"),
                reason: "the key is not a journal id".to_owned(),
            })?;
            let entry = journal.get(&id)?.ok_or_else(|| StateError::Corrupt {
                tree: OPEN_TREE.to_owned(),
                key: id.to_string(),
                reason: "listed as open but the journal record is missing".to_owned(),
            })?;
            entries.push(entry);
        }
        Ok(entries)
    }

    fn journal_open_entry(&self, id: JournalId, step: &str) -> Result<JournalEntry, StateError> {
        let entry = self
            .journal_get(id)?
            .ok_or(StateError::UnknownJournal { id })?;
        if entry.finished.is_some() {
            return Err(StateError::JournalFinished {
                id,
                step: step.to_owned(),
            });
        }
        Ok(entry)
    }

    /// Writes the entry and its open-index membership in one transaction, then flushes.
    fn journal_write(&self, entry: &JournalEntry) -> Result<(), StateError> {
        let journal = self.tree::<JournalEntry>()?;
        let open = self
            .db
            .open_tree(OPEN_TREE)
            .map_err(|source| self.sled_error(source))?;
        let key = entry.id.encode();
        let value = encode(entry)?;
        let finished = entry.finished.is_some();
        (journal.raw(), &open)
            .transaction(|(journal, open)| {
                journal.insert(key.as_slice(), value.as_slice())?;
                if finished {
                    open.remove(key.as_slice())?;
                } else {
                    open.insert(key.as_slice(), &[] as &[u8])?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(source) => self.sled_error(source),
                // The closure never aborts.
                TransactionError::Abort(()) => {
                    self.sled_error(sled::Error::Unsupported("transaction aborted".into()))
                }
            })?;
        self.flush()?;
        // Read back what was written: a journal that cannot be decoded must fail here, at the
        // step that wrote it, not at the next start-up.
        let stored = journal
            .raw()
            .get(&key)
            .map_err(|source| self.sled_error(source))?;
        match stored {
            Some(bytes) => decode::<JournalEntry>(&entry.id.to_string(), &bytes).map(|_| ()),
            None => Err(StateError::UnknownJournal { id: entry.id }),
        }
    }

    pub(crate) fn sled_error(&self, source: sled::Error) -> StateError {
        StateError::Sled {
            path: self.dir.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support;
    use serde_json::json;

    #[test]
    fn begin_step_finish_and_list_unfinished() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = test_support::open(tmp.path());
        let a = state
            .journal_begin(
                "trial",
                "arn:aws:iam::1:role/a",
                json!({"plan": "p1"}),
                Timestamp(10),
            )
            .expect("begin a");
        let b = state
            .journal_begin("rotation", "db/password", json!({}), Timestamp(11))
            .expect("begin b");
        assert!(b > a, "ids increase");
        state
            .journal_step(a, "applied", json!({"boundary": "x"}), Timestamp(12))
            .expect("step");

        let open = state.journal_unfinished().expect("unfinished");
        assert_eq!(open.iter().map(|e| e.id).collect::<Vec<_>>(), [a, b]);
        assert_eq!(open[0].last_step(), Some("applied"));
        assert_eq!(open[0].intent, json!({"plan": "p1"}));

        state
            .journal_finish(a, "completed", json!(null), Timestamp(13))
            .expect("finish");
        let open = state.journal_unfinished().expect("unfinished");
        assert_eq!(open.iter().map(|e| e.id).collect::<Vec<_>>(), [b]);
        let done = state.journal_get(a).expect("get").expect("exists");
        assert_eq!(
            done.finished.as_ref().map(|f| f.outcome.as_str()),
            Some("completed")
        );
    }

    #[test]
    fn finished_journal_takes_no_more_steps() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = test_support::open(tmp.path());
        let id = state
            .journal_begin("trial", "r", json!({}), Timestamp(1))
            .expect("begin");
        state
            .journal_finish(id, "completed", json!(null), Timestamp(2))
            .expect("finish");
        let err = state
            .journal_step(id, "late", json!(null), Timestamp(3))
            .expect_err("must fail");
        assert!(matches!(err, StateError::JournalFinished { .. }), "{err:?}");
        let err = state
            .journal_step(JournalId(999_999), "x", json!(null), Timestamp(3))
            .expect_err("must fail");
        assert!(matches!(err, StateError::UnknownJournal { .. }), "{err:?}");
    }

    #[test]
    fn unfinished_journal_survives_a_crash() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = test_support::open(tmp.path());
        let id = state
            .journal_begin(
                "rotation",
                "api/key",
                json!({"step": "pending"}),
                Timestamp(5),
            )
            .expect("begin");
        state
            .journal_step(
                id,
                "created-pending",
                json!({"version": "v2"}),
                Timestamp(6),
            )
            .expect("step");
        // A crash image: the files exactly as they are on disk now, with the process that
        // wrote them never closing the database. The journal calls flushed before returning,
        // so nothing else is needed for the entry to be there.
        let image = tempfile::tempdir().expect("tempdir");
        test_support::copy_dir(tmp.path(), image.path());
        std::mem::forget(state);

        let reopened = test_support::open(image.path());
        let open = reopened.journal_unfinished().expect("unfinished");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, id);
        assert_eq!(open[0].last_step(), Some("created-pending"));
        // Ids keep increasing after a restart.
        let next = reopened
            .journal_begin("rotation", "other", json!({}), Timestamp(7))
            .expect("begin");
        assert!(next > id);
    }

    #[test]
    fn corrupted_journal_names_its_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = test_support::open(tmp.path());
        let id = state
            .journal_begin("trial", "r", json!({}), Timestamp(1))
            .expect("begin");
        state
            .tree::<JournalEntry>()
            .expect("tree")
            .raw()
            .insert(id.encode(), b"{garbage".to_vec())
            .expect("insert");
        let err = state.journal_unfinished().expect_err("must fail");
        assert!(err.to_string().contains(&format!("key `{id}`")), "{err}");
    }

    #[test]
    fn journal_id_parses_its_display() {
        let id = JournalId(42);
        assert_eq!(id.to_string(), "j-000042");
        assert_eq!("j-000042".parse::<JournalId>(), Ok(id));
        assert!("nope".parse::<JournalId>().is_err());
    }
}
