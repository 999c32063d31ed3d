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

/// A request quota AWS counts per account (and region), which whittle keeps to on its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quota {
    /// CloudTrail LookupEvents: 2 requests per second per account and region (AWS documents
    /// it in LookupEvents' reference), for the whole account.
    LookupEvents,
    /// IAM's reads of whole accounts (GetAccountAuthorizationDetails pages and the managed
    /// policies they lack). IAM throttles per account without publishing a rate for these
    /// calls; a few requests a second is far below where it throttles, and an account needs
    /// only a handful of these calls (1,000 entities a page).
    IamReads,
}

impl Quota {
    /// The time between two requests of one account and region.
    pub fn interval(self) -> std::time::Duration {
        match self {
            Quota::LookupEvents => LOOKUP_INTERVAL,
            Quota::IamReads => IAM_READ_INTERVAL,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Quota::LookupEvents => "cloudtrail:LookupEvents",
            Quota::IamReads => "iam:GetAccountAuthorizationDetails",
        }
    }
}

/// The time between two LookupEvents requests of one account and region.
pub const LOOKUP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// The time between two whole-account IAM reads of one account (5 a second).
pub const IAM_READ_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// The pauses after a throttled call before it is tried again; after the last one the
/// throttle is the call's error (31 s of waiting in all).
pub const THROTTLE_BACKOFF: [std::time::Duration; 5] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
    std::time::Duration::from_secs(8),
    std::time::Duration::from_secs(16),
];

/// The request pace of one process per quota, account and region. Every caller of a quota
/// (mining and every trial's denial watch for LookupEvents; discovery and planning, across
/// accounts read at once, for IAM) shares these slots, so together they stay within the
/// quota instead of each using all of it.
#[derive(Debug, Default)]
pub struct Pace {
    /// The next free slot per `(quota, account, region)`.
    next: Mutex<HashMap<(Quota, String, String), whittle_state::Timestamp>>,
}

impl Pace {
    /// Reserves the next slot of `quota` in `(account, region)` at or after `now` and returns
    /// how long to wait for it.
    pub fn reserve(
        &self,
        quota: Quota,
        account: &str,
        region: &str,
        now: whittle_state::Timestamp,
    ) -> std::time::Duration {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = next
            .entry((quota, account.to_owned(), region.to_owned()))
            .or_insert(now);
        let at = (*slot).max(now);
        *slot = at.plus(quota.interval());
        std::time::Duration::from_millis(at.0.saturating_sub(now.0))
    }
}

/// Makes one call of `quota` in `(account, region)` in its turn of the pace, and again after
/// each pause of [`THROTTLE_BACKOFF`] while AWS throttles it (each retry takes a new turn).
/// A throttle after the last pause, or once `cancelled` says so, is returned as a
/// [`Throttled`](crate::ports::AwsErrorKind::Throttled) error that says how many times the
/// call was throttled; any other error at once.
pub async fn paced<C, T, F, Fut>(
    clock: &C,
    pace: &Pace,
    (quota, account, region): (Quota, &str, &str),
    cancelled: &(dyn Fn() -> bool + Sync),
    mut call: F,
) -> crate::ports::AwsResult<T>
where
    C: whittle_state::Clock,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::ports::AwsResult<T>>,
{
    let mut attempt = 0;
    loop {
        let wait = pace.reserve(quota, account, region, clock.now());
        if !wait.is_zero() {
            clock.sleep(wait).await;
        }
        match call().await {
            Err(error) if error.kind == crate::ports::AwsErrorKind::Throttled => {
                let pause = THROTTLE_BACKOFF.get(attempt).filter(|_| !cancelled());
                let Some(pause) = pause else {
                    return Err(crate::ports::AwsError::new(
                        crate::ports::AwsErrorKind::Throttled,
                        format!("throttled {} times ({})", attempt + 1, error.message),
                    ));
                };
                tracing::warn!(account, region, call = quota.name(), pause = ?pause, "AWS throttled the call; backing off");
                clock.sleep(*pause).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
