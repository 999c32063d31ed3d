//! The per-directory exclusive lock.
//!
//! An OS file lock (flock) on `whittle.lock`, which the kernel drops when the process dies in
//! any way, so there is never a stale lock to clean by hand. The file's content says who holds
//! it: a JSON [`LockOwner`], written after the lock is taken.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::StateError;

const LOCK_FILE: &str = "whittle.lock";
/// How long a busy lock is retried before its owner is reported. A `peek` holds it for
/// microseconds of work, but on a loaded host the peeking process can be descheduled while it
/// holds it: five retries 20 ms apart (100 ms) were once not enough beside a test suite.
const MOMENTARY_HOLD_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
const MOMENTARY_HOLD_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Who holds a state directory: written into the lock file for whoever finds it busy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    /// The holder's process id.
    pub pid: u32,
    /// Where the holder serves its status endpoint, if it does (a daemon), so that
    /// `whittle status` can ask it instead of opening the busy state.
    pub status_address: Option<String>,
    /// The secret a command shows the status endpoint to have work run (`x-whittle-token`).
    /// The lock file is 0600, so only who may open the state directory can read it: the
    /// endpoint listens on loopback, where any local user could otherwise reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl LockOwner {
    /// This process, serving no endpoint: a command that runs to completion.
    pub fn this_process() -> LockOwner {
        LockOwner {
            pid: std::process::id(),
            status_address: None,
            token: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct DirLock {
    file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path, owner: &LockOwner) -> Result<DirLock, StateError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |action, source| StateError::Io {
            path: path.clone(),
            action,
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err("open the lock file", e))?;
        // `peek` (how `whittle status` finds a running daemon) holds a shared lock for an
        // instant. A holder seen once may be only that: try again for a moment before
        // concluding the directory is owned, or a starting daemon could read the previous
        // owner's stale record and refuse for nothing.
        let deadline = std::time::Instant::now() + MOMENTARY_HOLD_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(MOMENTARY_HOLD_PAUSE);
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(StateError::Locked {
                        dir: dir.to_path_buf(),
                        owner: read_owner(&mut file),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io_err("lock", e)),
            }
        }
        let body = serde_json::to_vec(owner).map_err(|source| StateError::Encode {
            tree: LOCK_FILE,
            source,
        })?;
        file.set_len(0)
            .map_err(|e| io_err("truncate the lock file", e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io_err("rewind the lock file", e))?;
        file.write_all(&body)
            .map_err(|e| io_err("write the lock file", e))?;
        file.sync_all()
            .map_err(|e| io_err("sync the lock file", e))?;
        Ok(DirLock { file })
    }

    /// Reads the owner of a directory without taking the lock; `None` if it is free or says
    /// nothing readable.
    pub(crate) fn peek(dir: &Path) -> Option<LockOwner> {
        let mut file = File::open(dir.join(LOCK_FILE)).ok()?;
        match file.try_lock_shared() {
            // Nobody holds it: whatever the file says is history.
            Ok(()) => None,
            Err(_) => read_owner(&mut file),
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Best effort: closing the file releases the lock anyway.
        let _ = self.file.unlock();
    }
}

fn read_owner(file: &mut File) -> Option<LockOwner> {
    let mut body = String::new();
    file.read_to_string(&mut body).ok()?;
    serde_json::from_str(&body).ok()
}

impl crate::State {
    /// Who holds `dir`, if a live process does. Lets `whittle status` reach a running daemon.
    pub fn lock_owner(dir: &Path) -> Option<LockOwner> {
        DirLock::peek(dir)
    }
}
