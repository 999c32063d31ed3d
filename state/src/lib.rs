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
//! - a journal write is durable (flushed to disk) before the call returns.

mod batch;
mod error;
pub mod journal;
mod lock;
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

/// The on-disk format this build writes. Bump it only for a change that older builds cannot
/// read at all; shape changes of single records are handled by [`Record::VERSION`].
/// 2: large values are stored deflated (see `tree`). A directory of an older format is
/// read as it is and marked with this one on open.
pub const FORMAT_VERSION: u32 = 2;

const META_TREE: &str = "meta";
/// sled's page cache, in bytes.
const CACHE_BYTES: u64 = 16 << 20;
const FORMAT_KEY: &[u8] = b"format_version";

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

        let db_path = dir.join("db");
        // sled's page cache defaults to 1 GiB and fills with every page written; whittle's
        // state is small and written in batches, so a small cache keeps the daemon's (and a
        // long mining run's) memory bounded.
        let db = sled::Config::new()
            .path(&db_path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|source| StateError::Sled {
                path: db_path.clone(),
                source,
            })?;
        let state = State {
            db,
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        state.check_format()?;
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
