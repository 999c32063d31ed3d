//! One actor at a time per subject inside this process.
//!
//! The daemon runs its jobs, the reconcile pass and the commands handed to it concurrently,
//! and several of them can reach the same rotation or role: a rotation's own run retrying a
//! step while the `rotation-upkeep` job resumes every unfinished journal, say. Journals make
//! each step crash-safe, not concurrent-safe: two actors on one journal would both act. So
//! every actor on a rotation or a role takes that subject's turn first. The state lock keeps
//! other processes out; this keeps the tasks of this one apart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

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

fn turn_of(subject: Subject<'_>) -> Arc<AsyncMutex<()>> {
    static TURNS: OnceLock<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>> = OnceLock::new();
    let key = match subject {
        Subject::Mining => "mining".to_owned(),
        Subject::Rotation(name) => format!("rotation\0{name}"),
        Subject::Role(arn) => format!("role\0{arn}"),
    };
    // A panic while the table was locked cannot leave it inconsistent (one insert).
    let mut turns = TURNS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Arc::clone(turns.entry(key).or_default())
}

/// Waits for the subject's turn.
pub async fn wait_turn(subject: Subject<'_>) -> Turn {
    turn_of(subject).lock_owned().await
}

/// The subject's turn if nobody holds it now.
pub fn try_turn(subject: Subject<'_>) -> Option<Turn> {
    turn_of(subject).try_lock_owned().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subject_has_one_turn_at_a_time_and_subjects_are_apart() {
        let first = wait_turn(Subject::Rotation("api-key")).await;
        assert!(try_turn(Subject::Rotation("api-key")).is_none());
        // Another rotation, and a role of the same name, are other subjects.
        assert!(try_turn(Subject::Rotation("db-password")).is_some());
        assert!(try_turn(Subject::Role("api-key")).is_some());
        drop(first);
        assert!(try_turn(Subject::Rotation("api-key")).is_some());
    }
}
