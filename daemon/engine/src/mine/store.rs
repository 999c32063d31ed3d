//! How mined usage and file checkpoints are kept in the state.
//!
//! A mining run commits each chunk of input as one [`PendingUsage`] record, together with
//! the checkpoint of that input (a few [`MinedFolder`] records, or a time checkpoint), in one
//! transaction, then [`fold`]s it into the per-principal [`StoredUsage`] records a few
//! principals per transaction, and deletes it. Whittle first wrote every principal and
//! every file checkpoint of a chunk in one transaction; sled's memory grew with each such
//! commit, to 156 MB over a 10M-event run (BENCHMARKS.md).
//!
//! Exactly once, across a crash at any point: a chunk and its checkpoint land together, so
//! an input is either counted in a pending record or read again next time; the fold writes
//! each principal with the id of the last chunk merged into it (`folded_through`), so a fold
//! that dies half-way and runs again skips the principals that already hold the chunk; a
//! chunk is deleted only once all its principals are written.
//!
//! Each principal's [`UsageHead`] (what `whittle usage` summarises) is written and removed
//! with its usage, in the same batch ([`put_usage`], [`remove_usage`]): the two never
//! disagree after a crash. A state written before heads existed gets them from the first
//! fold ([`build_heads`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use whittle_planner::usage::PrincipalUsage;
use whittle_state::{State, WriteBatch};

use crate::records::{
    MinedFile, MinedFileCount, MinedFolder, PendingUsage, StoredUsage, UsageHead, UsageHeadsBuilt,
};

/// Principals written per transaction by the fold: enough to be quick, few enough that one
/// transaction stays small.
const FOLD_BATCH: usize = 64;

/// Legacy per-file checkpoints moved per transaction.
const MIGRATE_BATCH: usize = 1000;

/// Two folds at once could each merge a chunk into a principal read before the other wrote
/// it, and lose one of the merges. The state directory belongs to one process, so a lock in
/// that process is enough.
static FOLDING: Mutex<()> = Mutex::new(());

/// Stores one chunk's usage as a pending record, with `batch` (the checkpoint of the input
/// it came from) in the same transaction, then folds it from memory (reading the record
/// back would decode megabytes of JSON for nothing).
pub fn commit_chunk(
    state: &State,
    principals: BTreeMap<String, PrincipalUsage>,
    mut batch: WriteBatch,
    cutoff_ms: i64,
) -> anyhow::Result<()> {
    let _folding = lock_folding();
    // Chunks fold in the order of their ids (`folded_through` relies on it): any a crashed
    // run left go first. Normally there are none.
    fold_locked(state, cutoff_ms)?;
    if principals.is_empty() {
        state.commit(batch)?;
        return Ok(());
    }
    let id = state.next_id()?;
    let chunk = PendingUsage { principals };
    batch.put::<PendingUsage>(&id, &chunk)?;
    state.commit(batch)?;
    crate::faults::crash_point("mine:chunk");
    fold_chunk(state, id, chunk, cutoff_ms)?;
    let mut batch = WriteBatch::new();
    batch.remove::<PendingUsage>(&id);
    state.commit(batch)?;
    Ok(())
}

/// Merges every pending chunk, oldest first, into the per-principal usage, dropping what is
/// older than `cutoff_ms`. Returns how many chunks it folded. Safe to run at any time, and
/// again after a crash.
pub fn fold(state: &State, cutoff_ms: i64) -> anyhow::Result<usize> {
    let _folding = lock_folding();
    fold_locked(state, cutoff_ms)
}

fn lock_folding() -> std::sync::MutexGuard<'static, ()> {
    // A poisoned lock only means another fold panicked; the state it left is consistent.
    FOLDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fold_locked(state: &State, cutoff_ms: i64) -> anyhow::Result<usize> {
    build_heads(state)?;
    let pending = state.tree::<PendingUsage>()?;
    let chunks: Vec<u64> = pending.keys().collect::<Result<_, _>>()?;
    for &id in &chunks {
        let Some(chunk) = pending.get(&id)? else {
            continue;
        };
        fold_chunk(state, id, chunk, cutoff_ms)?;
        let mut batch = WriteBatch::new();
        batch.remove::<PendingUsage>(&id);
        state.commit(batch)?;
    }
    Ok(chunks.len())
}

/// Merges chunk `id` into each of its principals, [`FOLD_BATCH`] principals per
/// transaction, skipping those that already hold it.
fn fold_chunk(state: &State, id: u64, chunk: PendingUsage, cutoff_ms: i64) -> anyhow::Result<()> {
    let stored = state.tree::<StoredUsage>()?;
    let mut principals = chunk.principals.into_iter().peekable();
    while principals.peek().is_some() {
        let mut batch = WriteBatch::new();
        for (arn, delta) in principals.by_ref().take(FOLD_BATCH) {
            let mut record = stored.get(&arn)?.unwrap_or_else(|| StoredUsage {
                usage: PrincipalUsage::new(delta.kind),
                folded_through: None,
            });
            if record.folded_through.is_some_and(|done| done >= id) {
                continue;
            }
            record.usage.merge(&delta);
            record.folded_through = Some(id);
            // A principal with nothing left in the look-back window is removed; the chunk
            // replayed after a crash holds nothing newer, so it removes it again.
            if record.usage.age_out(cutoff_ms) {
                put_usage(&mut batch, &arn, &record)?;
            } else {
                remove_usage(&mut batch, &arn);
            }
        }
        state.commit(batch)?;
        crate::faults::crash_point("mine:fold");
    }
    Ok(())
}

/// Puts a principal's usage and its head into `batch`, so they are committed together.
/// Every write of a [`StoredUsage`] goes through here.
pub fn put_usage(batch: &mut WriteBatch, arn: &str, record: &StoredUsage) -> anyhow::Result<()> {
    let arn = arn.to_owned();
    batch.put::<StoredUsage>(&arn, record)?;
    match UsageHead::of(&record.usage) {
        Some(head) => batch.put::<UsageHead>(&arn, &head)?,
        None => batch.remove::<UsageHead>(&arn),
    }
    Ok(())
}

/// Removes a principal's usage and its head in `batch`.
pub fn remove_usage(batch: &mut WriteBatch, arn: &str) {
    let arn = arn.to_owned();
    batch.remove::<StoredUsage>(&arn);
    batch.remove::<UsageHead>(&arn);
}

/// The key of the [`UsageHeadsBuilt`] marker.
const HEADS_BUILT: &str = "heads";

/// Gives every principal its [`UsageHead`] unless the marker says they all have one: a
/// state written by a whittle older than the heads holds usage without them. Decodes every
/// principal's usage once, [`FOLD_BATCH`] per transaction, and writes the marker last, so a
/// crash half-way builds them again (a head is a function of its usage: writing it twice is
/// harmless). The caller holds the fold lock, so no principal changes meanwhile. On an empty
/// store (a new state) it only writes the marker. Returns how many heads it wrote.
pub fn build_heads(state: &State) -> anyhow::Result<usize> {
    let marker = state.tree::<UsageHeadsBuilt>()?;
    let key = HEADS_BUILT.to_owned();
    if marker
        .get(&key)?
        .is_some_and(|m| m.version >= <UsageHead as whittle_state::Record>::VERSION)
    {
        return Ok(0);
    }
    let usage = state.tree::<StoredUsage>()?;
    let mut written = 0;
    let mut batch = WriteBatch::new();
    for item in usage.iter() {
        let (arn, record) = item?;
        put_usage(&mut batch, &arn, &record)?;
        written += 1;
        if batch.len() >= 2 * FOLD_BATCH {
            state.commit(std::mem::take(&mut batch))?;
        }
    }
    batch.put::<UsageHeadsBuilt>(
        &key,
        &UsageHeadsBuilt {
            version: <UsageHead as whittle_state::Record>::VERSION,
        },
    )?;
    state.commit(batch)?;
    if written > 0 {
        tracing::info!(
            principals = written,
            "Summarised the usage of each principal (a state from an older whittle)"
        );
    }
    Ok(written)
}

/// Which files of a source are mined, read folder by folder.
pub struct MinedFiles<'a> {
    state: &'a State,
    source: &'a str,
    /// The folder looked up last: listings come sorted, so consecutive files share it.
    cached: Option<(String, MinedFolder)>,
}

impl<'a> MinedFiles<'a> {
    pub fn new(state: &'a State, source: &'a str) -> MinedFiles<'a> {
        MinedFiles {
            state,
            source,
            cached: None,
        }
    }

    pub fn contains(&mut self, location: &str) -> anyhow::Result<bool> {
        let (key, name) = MinedFolder::split(self.source, location);
        if self
            .cached
            .as_ref()
            .is_none_or(|(cached, _)| *cached != key)
        {
            let folder = self
                .state
                .tree::<MinedFolder>()?
                .get(&key)?
                .unwrap_or_default();
            self.cached = Some((key, folder));
        }
        Ok(self
            .cached
            .as_ref()
            .is_some_and(|(_, folder)| folder.files.contains_key(name)))
    }
}

/// Adds to `batch` the checkpoints of `files` (source, location, size): one write per
/// folder they are in, and the new total of mined files.
pub fn checkpoint_files<'f>(
    state: &State,
    files: impl IntoIterator<Item = (&'f str, &'f str, u64)>,
    batch: &mut WriteBatch,
) -> anyhow::Result<()> {
    let mut folders: BTreeMap<String, Vec<(&str, u64)>> = BTreeMap::new();
    for (source, location, size) in files {
        let (key, name) = MinedFolder::split(source, location);
        folders.entry(key).or_default().push((name, size));
    }
    let tree = state.tree::<MinedFolder>()?;
    let mut total = mined_file_count(state)?;
    for (key, names) in folders {
        let mut folder = tree.get(&key)?.unwrap_or_default();
        for (name, size) in names {
            if folder.files.insert(name.to_owned(), size).is_none() {
                total += 1;
            }
        }
        batch.put::<MinedFolder>(&key, &folder)?;
    }
    batch.put::<MinedFileCount>(&COUNT_KEY.to_owned(), &MinedFileCount { files: total })?;
    Ok(())
}

const COUNT_KEY: &str = "files";

/// How many files every source has mined.
pub fn mined_file_count(state: &State) -> anyhow::Result<u64> {
    if let Some(count) = state.tree::<MinedFileCount>()?.get(&COUNT_KEY.to_owned())? {
        return Ok(count.files);
    }
    // Folders written before the count was kept: counted once, then kept.
    let mut count = 0;
    for item in state.tree::<MinedFolder>()?.iter() {
        count += item?.1.files.len() as u64;
    }
    Ok(count)
}

/// Moves per-file checkpoints of an older state directory into folder records. Each batch
/// writes the folders and deletes the files it moved in one transaction, so a crash leaves
/// every file checkpointed in one layout or the other.
pub fn migrate_file_checkpoints(state: &State) -> anyhow::Result<()> {
    let legacy = state.tree::<MinedFile>()?;
    loop {
        let moved: Vec<(String, MinedFile)> = legacy
            .iter()
            .take(MIGRATE_BATCH)
            .collect::<Result<_, _>>()?;
        if moved.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        for (key, _) in &moved {
            batch.remove::<MinedFile>(key);
        }
        checkpoint_files(
            state,
            moved.iter().map(|(key, file)| {
                let (source, location) = key.split_once('\u{0}').unwrap_or(("", key));
                (source, location, file.size)
            }),
            &mut batch,
        )?;
        state.commit(batch)?;
    }
}

#[cfg(test)]
mod tests {
    use whittle_planner::trail::PrincipalKind;
    use whittle_planner::usage::Counted;

    use super::*;

    fn open(dir: &std::path::Path) -> State {
        let owner = whittle_state::LockOwner::this_process();
        State::open(dir, &owner).expect("state opens")
    }

    /// One principal's usage of `action`, `count` times on `day` (days since the epoch).
    fn usage(action: &str, count: u64, day: u32) -> PrincipalUsage {
        let mut usage = PrincipalUsage::new(PrincipalKind::Role);
        let ms = i64::from(day) * 86_400_000;
        let mut counted = Counted::default();
        counted.add(ms, ms, count);
        usage.actions.entry(action.to_owned()).or_default().counts = counted;
        usage
    }

    fn chunk(principals: &[(&str, &str, u64)]) -> BTreeMap<String, PrincipalUsage> {
        principals
            .iter()
            .map(|(arn, action, count)| ((*arn).to_owned(), usage(action, *count, 20_000)))
            .collect()
    }

    /// A chunk committed by a run that stopped before folding it.
    fn pend(state: &State, principals: BTreeMap<String, PrincipalUsage>) {
        let id = state.next_id().expect("id");
        state
            .tree::<PendingUsage>()
            .expect("tree")
            .put(&id, &PendingUsage { principals })
            .expect("put");
    }

    fn count(state: &State, arn: &str, action: &str) -> u64 {
        state
            .tree::<StoredUsage>()
            .expect("tree")
            .get(&arn.to_owned())
            .expect("get")
            .and_then(|s| s.usage.actions.get(action).and_then(|a| a.counts.since(0)))
            .map_or(0, |(total, _, _)| total)
    }

    #[test]
    fn a_fold_replayed_after_a_partial_write_counts_every_chunk_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = open(dir.path());
        pend(
            &state,
            chunk(&[("a", "s3:GetObject", 2), ("b", "sqs:SendMessage", 1)]),
        );
        pend(&state, chunk(&[("a", "s3:GetObject", 3)]));
        // A fold that died after writing `a` but before writing `b` or deleting the chunks:
        // `a` holds both chunks, `b` none.
        let ids: Vec<u64> = state
            .tree::<PendingUsage>()
            .expect("tree")
            .keys()
            .collect::<Result<_, _>>()
            .expect("keys");
        state
            .tree::<StoredUsage>()
            .expect("tree")
            .put(
                &"a".to_owned(),
                &StoredUsage {
                    usage: usage("s3:GetObject", 5, 20_000),
                    folded_through: ids.last().copied(),
                },
            )
            .expect("put");
        assert_eq!(fold(&state, 0).expect("fold"), 2);
        assert_eq!(count(&state, "a", "s3:GetObject"), 5);
        assert_eq!(count(&state, "b", "sqs:SendMessage"), 1);
        assert!(state.tree::<PendingUsage>().expect("tree").is_empty());
        // Nothing pending: a second fold changes nothing.
        assert_eq!(fold(&state, 0).expect("fold"), 0);
        assert_eq!(count(&state, "a", "s3:GetObject"), 5);
        // Later chunks add to what is folded.
        commit_chunk(
            &state,
            chunk(&[("a", "s3:GetObject", 1)]),
            WriteBatch::new(),
            0,
        )
        .expect("commit");
        assert_eq!(count(&state, "a", "s3:GetObject"), 6);
    }

    #[test]
    fn usage_stored_by_an_earlier_whittle_reads_as_not_yet_folded() {
        use whittle_state::Record;
        let v1 = serde_json::to_value(usage("s3:GetObject", 4, 20_000)).expect("json");
        let upgraded = StoredUsage::upgrade(1, v1).expect("upgrade");
        let record: StoredUsage = serde_json::from_value(upgraded).expect("decode");
        assert_eq!(record.folded_through, None);
        assert_eq!(record.usage, usage("s3:GetObject", 4, 20_000));
    }

    #[test]
    fn a_fold_drops_principals_older_than_the_cutoff() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = open(dir.path());
        commit_chunk(
            &state,
            chunk(&[("old", "s3:GetObject", 1)]),
            WriteBatch::new(),
            20_001 * 86_400_000,
        )
        .expect("commit");
        assert!(state.tree::<StoredUsage>().expect("tree").is_empty());
    }

    #[test]
    fn file_checkpoints_are_kept_per_folder_and_migrated_from_per_file_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = open(dir.path());
        let legacy = state.tree::<MinedFile>().expect("tree");
        for location in ["AWSLogs/1/CloudTrail/r/2026/11/01/a.json.gz", "loose.json"] {
            legacy
                .put(
                    &format!("src\u{0}{location}"),
                    &MinedFile {
                        size: 7,
                        mined_at: whittle_state::Timestamp(1),
                    },
                )
                .expect("put");
        }
        migrate_file_checkpoints(&state).expect("migrate");
        assert!(legacy.is_empty());
        let mut batch = WriteBatch::new();
        // `a` again (mined twice by mistake) is not counted twice.
        checkpoint_files(
            &state,
            [
                ("src", "AWSLogs/1/CloudTrail/r/2026/11/01/b.json.gz", 9),
                ("src", "AWSLogs/1/CloudTrail/r/2026/11/01/a.json.gz", 7),
            ],
            &mut batch,
        )
        .expect("checkpoint");
        state.commit(batch).expect("commit");
        let mut mined = MinedFiles::new(&state, "src");
        for (location, expected) in [
            ("AWSLogs/1/CloudTrail/r/2026/11/01/a.json.gz", true),
            ("AWSLogs/1/CloudTrail/r/2026/11/01/b.json.gz", true),
            ("AWSLogs/1/CloudTrail/r/2026/11/01/c.json.gz", false),
            ("AWSLogs/1/CloudTrail/r/2026/11/02/a.json.gz", false),
            ("loose.json", true),
        ] {
            assert_eq!(
                mined.contains(location).expect("lookup"),
                expected,
                "{location}"
            );
        }
        assert!(
            !MinedFiles::new(&state, "other")
                .contains("loose.json")
                .expect("lookup")
        );
        assert_eq!(mined_file_count(&state).expect("count"), 3);
        // Kept as one record, not counted by reading every folder.
        assert_eq!(
            state
                .tree::<MinedFileCount>()
                .expect("tree")
                .get(&COUNT_KEY.to_owned())
                .expect("get"),
            Some(MinedFileCount { files: 3 })
        );
    }
}
