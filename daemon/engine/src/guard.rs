//! One actor at a time per subject inside this process.
//!
//! The daemon runs its jobs, the reconcile pass and the commands handed to it concurrently,
//! and several of them can reach the same rotation or role: a rotation's own run retrying a
//! step while the `rotation-upkeep` job resumes every unfinished journal, say. Journals make
//! each step crash-safe, not concurrent-safe: two actors on one journal would both act. So
//! every actor on a rotation or a role takes that subject's turn first. The state lock keeps
//! other processes out; this keeps the tasks of this one apart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// What a turn is taken on. The set of subjects is bounded by the configuration (rotations)
/// and the account's roles, so the table of turns is never pruned.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// Mining: its checkpoints are per file, so two runs would both read a new file.
    Mining,
    Rotation(&'a str),
    Role(&'a str),
}

/// Held while acting on a subject; dropping it lets the next actor in.
pub type Turn = OwnedMutexGuard<()>;

/// The turns of one process (one engine): a table of one lock per subject.
#[derive(Debug, Default)]
pub struct Turns {
    table: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

impl Turns {
    fn turn_of(&self, subject: Subject<'_>) -> Arc<AsyncMutex<()>> {
        let key = match subject {
            Subject::Mining => "mining".to_owned(),
            Subject::Rotation(name) => format!("rotation\0{name}"),
            Subject::Role(arn) => format!("role\0{arn}"),
        };
        // A panic while the table was locked cannot leave it inconsistent (one insert).
        let mut turns = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(turns.entry(key).or_default())
    }

    /// Waits for the subject's turn.
    pub async fn wait(&self, subject: Subject<'_>) -> Turn {
        self.turn_of(subject).lock_owned().await
    }

    /// The subject's turn if nobody holds it now.
    pub fn try_take(&self, subject: Subject<'_>) -> Option<Turn> {
        self.turn_of(subject).try_lock_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subject_has_one_turn_at_a_time_and_subjects_are_apart() {
        let turns = Turns::default();
        let first = turns.wait(Subject::Rotation("api-key")).await;
        assert!(turns.try_take(Subject::Rotation("api-key")).is_none());
        // Another rotation, and a role of the same name, are other subjects.
        assert!(turns.try_take(Subject::Rotation("db-password")).is_some());
        assert!(turns.try_take(Subject::Role("api-key")).is_some());
        drop(first);
        assert!(turns.try_take(Subject::Rotation("api-key")).is_some());
    }
}

/// LookupEvents' pace: AWS allows 2 requests per second per account and region, for the
/// whole account. Mining and every trial's denial watch of one process share these slots,
/// so together they stay within the quota instead of each using all of it.
#[derive(Debug, Default)]
pub struct LookupPace {
    /// The next free slot per `(account, region)`.
    next: Mutex<HashMap<(String, String), whittle_state::Timestamp>>,
}

/// The time between two LookupEvents requests of one account and region.
pub const LOOKUP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

impl LookupPace {
    /// Reserves the next slot of `(account, region)` at or after `now` and returns how long
    /// to wait for it.
    pub fn reserve(
        &self,
        account: &str,
        region: &str,
        now: whittle_state::Timestamp,
    ) -> std::time::Duration {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = next
            .entry((account.to_owned(), region.to_owned()))
            .or_insert(now);
        let at = (*slot).max(now);
        *slot = at.plus(LOOKUP_INTERVAL);
        std::time::Duration::from_millis(at.0.saturating_sub(now.0))
    }
}
