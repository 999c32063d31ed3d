//! whittle's state: a typed embedded store on sled, with crash-safe journals.
//!
//! This is the only crate that knows sled. Everything above it sees typed trees
//! ([`Tree`] over a [`Record`]) and the [`journal`] primitive. The rules it keeps:
//!
//! - one process per state directory: [`State::open`] takes an exclusive lock on
//!   `whittle.lock` and records the owner's pid there, so a second opener is told who holds it;
//! - every file is private to its owner: the directory is 0700 and files are created 0600;
//! - records are versioned: the database stores a format version (a newer one is refused with
//!   a clear message) and each record carries its own version, which [`Record::upgrade`]
//!   migrates, so a newer whittle reads an older state directory;
//! - a journal write is durable (flushed to disk) before the call returns;
//! - a directory that held a database never silently starts over: `whittle-state.json` (see
//!   `marker`) records that it was initialised, and a database whose files are missing, that
//!   opens empty, is older than that record or comes from elsewhere is refused with
//!   [`StateError::Missing`] or [`StateError::Mismatch`] (backup and restore: `docs/state.md`).

mod batch;
mod error;
pub mod journal;
mod lock;
mod marker;
mod tree;

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use batch::WriteBatch;
pub use error::StateError;
pub use journal::{JournalEntry, JournalFinish, JournalId, JournalStep};
pub use lock::LockOwner;
pub use tree::{Record, RecordKey, Tree};

use lock::DirLock;
use marker::Marker;

/// The on-disk format this build writes. Bump it only for a change that older builds cannot
/// read at all; shape changes of single records are handled by [`Record::VERSION`].
/// 2: large values are stored deflated (see `tree`). A directory of an older format is
/// read as it is and marked with this one on open.
pub const FORMAT_VERSION: u32 = 2;

const META_TREE: &str = "meta";
/// sled's page cache, in bytes.
const CACHE_BYTES: u64 = 16 << 20;
const FORMAT_KEY: &[u8] = b"format_version";
/// Retries of sled's busy lock on `db/db`: 100 x 10 ms.
const SLED_LOCK_RETRIES: u32 = 100;
const SLED_LOCK_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
/// The id of this database, also in the marker: a `db/` from elsewhere is refused.
const INSTANCE_KEY: &[u8] = b"instance";
/// How many times the directory was opened, also in the marker: an older `db/` is refused.
const OPENS_KEY: &[u8] = b"opens";

/// Milliseconds since the Unix epoch: whittle's one time type. This crate only stores the
/// instants it is given; [`Clock`] says where they come from.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the epoch as the signed integer CloudTrail times use.
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// A signed millisecond time; times before the epoch become the epoch.
    pub fn from_millis_i64(ms: i64) -> Timestamp {
        Timestamp(u64::try_from(ms).unwrap_or(0))
    }

    /// This instant plus `duration`, saturating.
    pub fn plus(self, duration: std::time::Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

/// Where whittle reads the time and waits: the system clock in the binary, a clock a test
/// moves by hand in the engine's and the rotation machine's tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    fn sleep(&self, duration: std::time::Duration) -> impl std::future::Future<Output = ()> + Send;
}

/// An open, locked state directory.
#[derive(Debug)]
pub struct State {
    db: sled::Db,
    dir: PathBuf,
    // Held for the lifetime of the store; the OS releases it when the process dies, even on
    // SIGKILL, so a crash never leaves a stale lock behind.
    _lock: DirLock,
}

impl State {
    /// Opens (creating if needed) the state directory `dir` for exclusive use by this
    /// process. `owner` is written into the lock file so that another whittle that finds the
    /// directory busy can say who holds it and where its status endpoint listens.
    pub fn open(dir: &Path, owner: &LockOwner) -> Result<State, StateError> {
        // Files sled creates later (segments, snapshots) must be private too, and sled offers
        // no mode option, so the process umask is tightened before anything is created.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StateError::Io {
                    path: dir.to_path_buf(),
                    action: "create the state directory",
                    source,
                })?;
        }
        if !dir.is_dir() {
            return Err(StateError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        let lock = DirLock::acquire(dir, owner)?;
        restrict_permissions(dir)?;

        let db_path = dir.join(marker::DB_DIR);
        // Before sled sees the directory, which would create whatever is missing and open an
        // empty database without complaint.
        let marker = Marker::read(dir)?;
        if let Some(marker) = &marker {
            if marker.format_version > FORMAT_VERSION {
                return Err(StateError::NewerFormat {
                    dir: dir.to_path_buf(),
                    found: marker.format_version,
                    supported: FORMAT_VERSION,
                });
            }
            let missing = marker.missing_files(dir);
            if !missing.is_empty() {
                return Err(StateError::Missing {
                    dir: dir.to_path_buf(),
                    missing,
                });
            }
        }
        // A directory an older whittle initialised has no marker, but its database files.
        let db_existed = db_path.join("conf").exists() || db_path.join("db").exists();
        let db = open_sled(&db_path)?;
        let state = State {
            db,
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        state.check_records(marker.as_ref(), db_existed)?;
        state.check_format()?;
        state.record_open(marker.as_ref())?;
        // sled created its files just now; make sure even ones it opened from an older
        // directory (created before this rule) are private.
        restrict_permissions(dir)?;
        Ok(state)
    }

    /// The directory this state lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The typed tree that holds records of type `R`.
    pub fn tree<R: Record>(&self) -> Result<Tree<R>, StateError> {
        let tree = self
            .db
            .open_tree(R::TREE)
            .map_err(|source| StateError::Sled {
                path: self.dir.clone(),
                source,
            })?;
        Ok(Tree::new(tree))
    }

    /// The sled tree named `name`, for the crate's own multi-tree transactions.
    pub(crate) fn raw_tree(&self, name: &str) -> Result<sled::Tree, StateError> {
        self.db
            .open_tree(name)
            .map_err(|source| self.sled_error(source))
    }

    /// A number never handed out before by this state directory, larger than every earlier
    /// one, even across a crash: sled persists its counter ahead of use and skips past the
    /// persisted value on recovery (`sled::Db::generate_id`).
    pub fn next_id(&self) -> Result<u64, StateError> {
        self.db
            .generate_id()
            .map_err(|source| self.sled_error(source))
    }

    /// Forces every write so far to disk.
    pub fn flush(&self) -> Result<(), StateError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|source| StateError::Sled {
                path: self.dir.clone(),
                source,
            })
    }

    /// Refuses a database that opens without whittle's records where there were some: the
    /// directory has a marker, or its database files were there before this open. Every
    /// database whittle has written holds a format version in its `meta` tree.
    fn check_records(&self, marker: Option<&Marker>, db_existed: bool) -> Result<(), StateError> {
        if marker.is_none() && !db_existed {
            return Ok(());
        }
        // Looked up by name: opening the tree would write to a database that may be damaged.
        let names = self.db.tree_names();
        let has_format = if names
            .iter()
            .any(|name| name.as_ref() == META_TREE.as_bytes())
        {
            self.raw_tree(META_TREE)?
                .contains_key(FORMAT_KEY)
                .map_err(|source| self.sled_error(source))?
        } else {
            false
        };
        if has_format {
            return Ok(());
        }
        let mut missing = Vec::new();
        if !marker::has_snapshot(&self.dir.join(marker::DB_DIR)) {
            missing.push("db/snap.* (the database snapshot)".to_owned());
        }
        missing.push("its records (the database in db/ opens empty)".to_owned());
        Err(StateError::Missing {
            dir: self.dir.clone(),
            missing,
        })
    }

    /// Checks that the database is the one the marker describes and not older than it, counts
    /// this open in both, and (re)writes the marker: sled first and flushed, so that a crash in
    /// between leaves the database ahead of the marker, never behind it.
    fn record_open(&self, marker: Option<&Marker>) -> Result<(), StateError> {
        let meta = self.raw_tree(META_TREE)?;
        let sled_err = |source| self.sled_error(source);
        let stored_instance = meta
            .get(INSTANCE_KEY)
            .map_err(sled_err)?
            .map(|raw| String::from_utf8_lossy(&raw).into_owned());
        let stored_opens = match meta.get(OPENS_KEY).map_err(sled_err)? {
            None => 0,
            Some(raw) => <[u8; 8]>::try_from(raw.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StateError::Corrupt {
                    tree: META_TREE.to_owned(),
                    key: "opens".to_owned(),
                    reason: format!("expected 8 bytes, found {}", raw.len()),
                })?,
        };
        if let Some(marker) = marker {
            let problem = match &stored_instance {
                None => Some(
                    "the database in db/ predates whittle-state.json (it carries no instance id)"
                        .to_owned(),
                ),
                Some(found) if *found != marker.instance => Some(format!(
                    "the database in db/ belongs to another state directory (instance {found}; whittle-state.json says {})",
                    marker.instance
                )),
                Some(_) if stored_opens < marker.opens => Some(format!(
                    "the database in db/ is older than whittle-state.json (it was opened {stored_opens} times; whittle-state.json records {})",
                    marker.opens
                )),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                return Err(StateError::Mismatch {
                    dir: self.dir.clone(),
                    problem,
                });
            }
        }
        let instance = match stored_instance {
            Some(instance) => instance,
            None => {
                let instance = marker::new_instance_id();
                meta.insert(INSTANCE_KEY, instance.as_bytes())
                    .map_err(sled_err)?;
                instance
            }
        };
        let opens = stored_opens.saturating_add(1);
        meta.insert(OPENS_KEY, &opens.to_be_bytes())
            .map_err(sled_err)?;
        self.flush()?;
        Marker {
            format_version: FORMAT_VERSION,
            instance,
            opens,
            snapshot: marker::has_snapshot(&self.dir.join(marker::DB_DIR)),
        }
        .write(&self.dir)
    }

    fn check_format(&self) -> Result<(), StateError> {
        let meta = self
            .db
            .open_tree(META_TREE)
            .map_err(|source| StateError::Sled {
                path: self.dir.clone(),
                source,
            })?;
        let sled_err = |source| StateError::Sled {
            path: self.dir.clone(),
            source,
        };
        match meta.get(FORMAT_KEY).map_err(sled_err)? {
            None => {
                meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
                    .map_err(sled_err)?;
                self.flush()
            }
            Some(raw) => {
                let found = <[u8; 4]>::try_from(raw.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StateError::Corrupt {
                        tree: META_TREE.to_owned(),
                        key: "format_version".to_owned(),
                        reason: format!("expected 4 bytes, found {}", raw.len()),
                    })?;
                if found > FORMAT_VERSION {
                    Err(StateError::NewerFormat {
                        dir: self.dir.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    })
                } else if found < FORMAT_VERSION {
                    // From now on this build writes records the older one cannot read: the
                    // mark makes that build refuse the directory instead of misreading it.
                    meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
                        .map_err(sled_err)?;
                    self.flush()
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Opens sled's database at `db_path`. sled takes its own lock on `db/db`, which the previous
/// [`State`] of this process can hold for a moment after it was dropped, while a background
/// write of sled's finishes; no other process can hold it, since whittle takes `whittle.lock`
/// first, so a busy sled lock is waited out for a while.
fn open_sled(db_path: &Path) -> Result<sled::Db, StateError> {
    let mut attempts = 0;
    loop {
        // sled's page cache defaults to 1 GiB and fills with every page written; whittle's
        // state is small and written in batches, so a small cache keeps the daemon's (and a
        // long mining run's) memory bounded.
        match sled::Config::new()
            .path(db_path)
            .cache_capacity(CACHE_BYTES)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if attempts < SLED_LOCK_RETRIES
                    && e.to_string().contains("could not acquire lock") =>
            {
                attempts += 1;
                std::thread::sleep(SLED_LOCK_PAUSE);
            }
            Err(source) => {
                return Err(StateError::Sled {
                    path: db_path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// Makes the state directory 0700 and every file in it 0600.
fn restrict_permissions(dir: &Path) -> Result<(), StateError> {
    let io_err = |path: &Path, source| StateError::Io {
        path: path.to_path_buf(),
        action: "restrict permissions of",
        source,
    };
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| io_err(dir, e))?;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).map_err(|e| io_err(&current, e))? {
            let entry = entry.map_err(|e| io_err(&current, e))?;
            let path = entry.path();
            let file_type = entry.file_type().map_err(|e| io_err(&path, e))?;
            if file_type.is_dir() {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
                    .map_err(|e| io_err(&path, e))?;
                pending.push(path);
            } else if file_type.is_file() {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                    .map_err(|e| io_err(&path, e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn owner() -> LockOwner {
        LockOwner::this_process()
    }

    pub fn open(dir: &Path) -> State {
        State::open(dir, &owner()).expect("test state opens")
    }

    /// Copies a state directory file by file: the image a crash leaves on disk.
    pub fn copy_dir(from: &Path, to: &Path) {
        for entry in fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                fs::create_dir_all(&target).expect("mkdir");
                copy_dir(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn creates_private_directory_and_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("state");
        let state = test_support::open(&dir);
        state.flush().expect("flush");
        assert_eq!(fs::metadata(&dir).expect("dir").mode() & 0o777, 0o700);
        let mut files = 0;
        let mut pending = vec![dir.clone()];
        while let Some(current) = pending.pop() {
            for entry in fs::read_dir(&current).expect("read_dir") {
                let entry = entry.expect("entry");
                let meta = entry.metadata().expect("metadata");
                if meta.is_dir() {
                    pending.push(entry.path());
                } else {
                    files += 1;
                    assert_eq!(
                        meta.mode() & 0o077,
                        0,
                        "{} is readable by others",
                        entry.path().display()
                    );
                }
            }
        }
        assert!(
            files >= 2,
            "expected the lock file and sled's files, found {files}"
        );
    }

    #[test]
    fn refuses_a_newer_format() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let state = test_support::open(tmp.path());
            let meta = state.db.open_tree(META_TREE).expect("meta");
            meta.insert(FORMAT_KEY, &(FORMAT_VERSION + 1).to_be_bytes())
                .expect("insert");
            state.flush().expect("flush");
        }
        let err = State::open(tmp.path(), &test_support::owner())
            .expect_err("newer format must be refused");
        let message = err.to_string();
        assert!(
            matches!(err, StateError::NewerFormat { found, .. } if found == FORMAT_VERSION + 1)
        );
        assert!(message.contains("newer whittle"), "{message}");
    }

    #[test]
    fn an_older_format_opens_and_is_marked_current() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let state = test_support::open(tmp.path());
            let meta = state.db.open_tree(META_TREE).expect("meta");
            meta.insert(FORMAT_KEY, &1u32.to_be_bytes())
                .expect("insert");
            state.flush().expect("flush");
        }
        let state = test_support::open(tmp.path());
        let meta = state.db.open_tree(META_TREE).expect("meta");
        let stored = meta.get(FORMAT_KEY).expect("get").expect("format stored");
        assert_eq!(stored.as_ref(), FORMAT_VERSION.to_be_bytes());
    }

    #[test]
    fn second_open_of_the_same_directory_names_the_owner() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let owner = LockOwner {
            pid: 4242,
            status_address: Some("127.0.0.1:9187".to_owned()),
            token: None,
        };
        let _first = State::open(tmp.path(), &owner).expect("first open");
        let err =
            State::open(tmp.path(), &test_support::owner()).expect_err("second open must fail");
        match &err {
            StateError::Locked {
                owner: Some(found), ..
            } => assert_eq!(found, &owner),
            other => panic!("expected Locked with owner, got {other:?}"),
        }
        assert!(
            err.to_string().contains("already running (pid 4242)"),
            "{err}"
        );
    }

    #[test]
    fn a_momentary_peek_does_not_make_open_fail() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // A previous owner's record stays in the file after it exits.
        drop(
            State::open(
                tmp.path(),
                &LockOwner {
                    pid: 1,
                    status_address: Some("127.0.0.1:1".to_owned()),
                    token: None,
                },
            )
            .expect("first open"),
        );
        // Someone peeks (a shared lock for an instant) exactly while a new owner opens.
        let peeker = fs::File::open(tmp.path().join("whittle.lock")).expect("lock file");
        peeker.try_lock_shared().expect("shared lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            drop(peeker);
        });
        let opened = State::open(tmp.path(), &test_support::owner());
        release.join().expect("peeker thread");
        opened.expect("the open waits out the peek instead of reporting the stale owner");
    }

    #[test]
    fn ids_keep_growing_across_a_crash() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut last = 0;
        {
            let state = test_support::open(tmp.path());
            for _ in 0..5 {
                let id = state.next_id().expect("id");
                assert!(id >= last);
                last = id;
            }
            state.flush().expect("flush");
            // The crash image is taken while the state is still open.
            let copy = tempfile::tempdir().expect("tempdir");
            test_support::copy_dir(tmp.path(), copy.path());
            std::mem::forget(state);
            let _ = std::fs::remove_file(copy.path().join("whittle.lock"));
            let reopened = test_support::open(copy.path());
            let next = reopened.next_id().expect("id");
            assert!(next > last, "{next} after {last}");
        }
    }

    #[test]
    fn lock_is_released_when_the_state_is_dropped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        drop(test_support::open(tmp.path()));
        drop(test_support::open(tmp.path()));
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_a_clear_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("not-a-dir");
        fs::write(&path, b"x").expect("write");
        let err = State::open(&path, &test_support::owner()).expect_err("must fail");
        assert!(matches!(err, StateError::NotADirectory { .. }), "{err:?}");
    }
}

#[cfg(test)]
mod missing_files_tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::MetadataExt;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Usage {
        actions: String,
    }

    impl Record for Usage {
        const TREE: &'static str = "test_usage";
        const VERSION: u16 = 1;
        type Key = String;
    }

    /// A state directory as a whittle leaves it after some use: an unfinished journal, enough
    /// other writes that sled (usually) reuses its log segments, opened again since (sled writes its
    /// snapshot `db/snap.*` when it recovers).
    fn used_directory(dir: &Path) {
        {
            let state = test_support::open(dir);
            let id = state
                .journal_begin(
                    "trial",
                    "arn:aws:iam::1:role/a",
                    json!({"plan": "p"}),
                    Timestamp(1),
                )
                .expect("begin");
            state
                .journal_step(id, "detached", json!(null), Timestamp(2))
                .expect("step");
            let usage = state.tree::<Usage>().expect("usage tree");
            for n in 0..3000u32 {
                let key = format!("arn:aws:iam::1:role/r{}", n % 40);
                usage
                    .put(
                        &key,
                        &Usage {
                            actions: format!("{n:0>400}"),
                        },
                    )
                    .expect("put");
            }
            state.flush().expect("flush");
        }
        for _ in 0..2 {
            let state = test_support::open(dir);
            assert_eq!(state.journal_unfinished().expect("unfinished").len(), 1);
        }
    }

    /// Waits until no sled instance holds the database. A dropped one can still be writing in
    /// the background (its snapshot too, see `open_sled`), and lets go of its lock on `db/db`
    /// (flock, which `File::lock` takes too) when it is done. Once, on a loaded machine, the
    /// database opened whole after the test had deleted its snapshots.
    fn sled_let_go(dir: &Path) {
        let file = fs::File::open(dir.join("db").join("db")).expect("sled's database file");
        file.lock().expect("sled's lock");
    }

    fn snapshots(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir.join("db"))
            .expect("read db")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
            })
            .collect()
    }

    /// Puts a database that opens empty in place of `dir`'s, with all its files: log, settings
    /// and snapshot (opened twice, as sled writes its snapshot when it reopens). Deleting a used
    /// database's snapshot gives an empty database only most of the time: sled then recovers
    /// from what its log still holds, which is nothing once the segments that held the first
    /// records were reused, but whether they were yet depends on its background writes' timing
    /// (CI once saw "opened with 1 unfinished journals").
    fn empty_database_in_place(dir: &Path) {
        sled_let_go(dir);
        let db = dir.join(marker::DB_DIR);
        fs::remove_dir_all(&db).expect("remove db");
        for _ in 0..2 {
            let empty = sled::Config::new().path(&db).open().expect("an empty database");
            empty.flush().expect("flush");
        }
        sled_let_go(dir);
        assert!(db.join("db").exists() && db.join("conf").exists() && !snapshots(dir).is_empty());
    }

    fn delete_snapshots(dir: &Path) {
        sled_let_go(dir);
        let snaps = snapshots(dir);
        assert!(!snaps.is_empty(), "sled wrote no snapshot");
        for snap in snaps {
            fs::remove_file(snap).expect("remove snapshot");
        }
    }

    fn refusal(dir: &Path) -> StateError {
        match State::open(dir, &test_support::owner()) {
            Ok(state) => panic!(
                "opened with {} unfinished journals instead of refusing",
                state.journal_unfinished().expect("unfinished").len()
            ),
            Err(err) => err,
        }
    }

    // Before the marker, this opened an empty state: "0 unfinished journals", exit 0.
    #[test]
    fn a_deleted_snapshot_is_refused_not_reset() {
        let tmp = tempfile::tempdir().expect("tempdir");
        used_directory(tmp.path());
        delete_snapshots(tmp.path());
        let err = refusal(tmp.path());
        match &err {
            StateError::Missing { missing, .. } => {
                assert_eq!(missing, &["db/snap.* (the database snapshot)"]);
            }
            other => panic!("expected Missing, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "state directory {} was initialised before but is missing db/snap.* (the database snapshot);",
                tmp.path().display()
            )),
            "{message}"
        );
        assert!(message.contains("restore the whole directory from a backup (see docs/state.md)"));
        // Refusing touched nothing: it refuses again, and sled made no new snapshot.
        assert!(matches!(refusal(tmp.path()), StateError::Missing { .. }));
        assert!(snapshots(tmp.path()).is_empty());
    }

    #[test]
    fn a_restored_backup_opens_with_its_journal() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let backup = tempfile::tempdir().expect("backup");
        used_directory(tmp.path());
        test_support::copy_dir(tmp.path(), backup.path());
        delete_snapshots(tmp.path());
        refusal(tmp.path());
        fs::remove_dir_all(tmp.path().join("db")).expect("remove db");
        test_support::copy_dir(backup.path(), tmp.path());
        let state = test_support::open(tmp.path());
        assert_eq!(state.journal_unfinished().expect("unfinished").len(), 1);
    }

    #[test]
    fn each_missing_database_file_is_named() {
        for (file, named) in [
            ("db/db", "db/db (the database log)"),
            ("db/conf", "db/conf (the database's settings)"),
            ("db", "db/ (the whole database)"),
        ] {
            let tmp = tempfile::tempdir().expect("tempdir");
            drop(test_support::open(tmp.path()));
            let path = tmp.path().join(file);
            if path.is_dir() {
                fs::remove_dir_all(&path).expect("remove");
            } else {
                fs::remove_file(&path).expect("remove");
            }
            match refusal(tmp.path()) {
                StateError::Missing { missing, .. } => assert_eq!(missing, [named], "{file}"),
                other => panic!("{file}: expected Missing, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_database_that_opens_empty_is_refused_even_with_its_files_there() {
        let tmp = tempfile::tempdir().expect("tempdir");
        used_directory(tmp.path());
        empty_database_in_place(tmp.path());
        match refusal(tmp.path()) {
            StateError::Missing { missing, .. } => {
                assert_eq!(missing, ["its records (the database in db/ opens empty)"]);
            }
            other => panic!("expected Missing, got {other:?}"),
        }
    }

    #[test]
    fn an_older_whittles_directory_gets_a_marker_and_is_guarded_from_then_on() {
        let tmp = tempfile::tempdir().expect("tempdir");
        used_directory(tmp.path());
        fs::remove_file(tmp.path().join(marker::MARKER_FILE)).expect("remove marker");
        let state = test_support::open(tmp.path());
        assert_eq!(state.journal_unfinished().expect("unfinished").len(), 1);
        drop(state);
        let marker = Marker::read(tmp.path())
            .expect("read")
            .expect("marker rewritten");
        assert!(marker.snapshot);
        assert_eq!(marker.format_version, FORMAT_VERSION);
    }

    #[test]
    fn an_older_whittles_directory_that_lost_its_snapshot_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        used_directory(tmp.path());
        fs::remove_file(tmp.path().join(marker::MARKER_FILE)).expect("remove marker");
        empty_database_in_place(tmp.path());
        delete_snapshots(tmp.path());
        assert!(matches!(refusal(tmp.path()), StateError::Missing { .. }));
    }

    #[test]
    fn a_new_directory_is_marked_privately() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("state");
        drop(test_support::open(&dir));
        let path = dir.join(marker::MARKER_FILE);
        assert_eq!(fs::metadata(&path).expect("marker").mode() & 0o777, 0o600);
        let marker = Marker::read(&dir).expect("read").expect("marker");
        assert_eq!(marker.opens, 1);
        assert!(!dir.join("whittle-state.json.tmp").exists());
        drop(test_support::open(&dir));
        assert_eq!(Marker::read(&dir).expect("read").expect("marker").opens, 2);
    }

    #[test]
    fn a_database_older_than_its_marker_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let old = tempfile::tempdir().expect("old");
        // Opened twice, so that sled has written its snapshot.
        drop(test_support::open(tmp.path()));
        drop(test_support::open(tmp.path()));
        test_support::copy_dir(tmp.path(), old.path());
        drop(test_support::open(tmp.path()));
        fs::remove_dir_all(tmp.path().join("db")).expect("remove db");
        fs::create_dir(tmp.path().join("db")).expect("mkdir");
        test_support::copy_dir(&old.path().join("db"), &tmp.path().join("db"));
        let err = refusal(tmp.path());
        assert!(matches!(err, StateError::Mismatch { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("is older than whittle-state.json (it was opened 2 times; whittle-state.json records 3)"),
            "{err}"
        );
        // Accepting the older database on purpose: without the marker it opens.
        fs::remove_file(tmp.path().join(marker::MARKER_FILE)).expect("remove marker");
        drop(test_support::open(tmp.path()));
    }

    #[test]
    fn a_database_from_another_directory_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let other = tempfile::tempdir().expect("other");
        drop(test_support::open(tmp.path()));
        drop(test_support::open(other.path()));
        fs::copy(
            other.path().join(marker::MARKER_FILE),
            tmp.path().join(marker::MARKER_FILE),
        )
        .expect("copy marker");
        let err = refusal(tmp.path());
        assert!(
            err.to_string()
                .contains("belongs to another state directory"),
            "{err}"
        );
    }

    #[test]
    fn a_crash_between_database_and_marker_is_accepted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        drop(test_support::open(tmp.path()));
        let stale = Marker::read(tmp.path()).expect("read").expect("marker");
        drop(test_support::open(tmp.path()));
        // The database counted the second open; the marker write did not happen.
        stale.write(tmp.path()).expect("write");
        drop(test_support::open(tmp.path()));
    }

    #[test]
    fn a_marker_of_a_newer_format_is_refused_before_the_database_is_touched() {
        let tmp = tempfile::tempdir().expect("tempdir");
        drop(test_support::open(tmp.path()));
        let mut marker = Marker::read(tmp.path()).expect("read").expect("marker");
        marker.format_version = FORMAT_VERSION + 1;
        marker.write(tmp.path()).expect("write");
        let err = refusal(tmp.path());
        assert!(matches!(err, StateError::NewerFormat { .. }), "{err:?}");
    }

    #[test]
    fn an_unreadable_marker_is_a_clear_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        drop(test_support::open(tmp.path()));
        fs::write(tmp.path().join(marker::MARKER_FILE), b"{").expect("write");
        let err = refusal(tmp.path());
        assert!(matches!(err, StateError::BadMarker { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(&format!(
                "cannot read whittle-state.json in state directory {}: ",
                tmp.path().display()
            )),
            "{err}"
        );
    }
}
