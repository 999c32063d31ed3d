//! The record, kept outside sled, that a state directory was initialised.
//!
//! sled cannot tell a database whose files were lost from one that was never written: with its
//! snapshot (`db/snap.*`) gone it recovers from whatever the log still holds, which after
//! segments were reused is nothing, and it opens empty without an error. whittle would then
//! start over and forget its unfinished journals. `whittle-state.json` next to `db/` says the
//! directory holds a database, which of sled's files existed when it was last opened, which
//! database it is (an instance id also stored in the `meta` tree) and how many times it was
//! opened (a counter also stored in the `meta` tree, so a `db/` older than the marker shows).
//!
//! The marker is rewritten atomically (a temporary file, fsync, rename, fsync of the
//! directory) at every open, after sled has flushed the matching `meta` values, so a crash
//! between the two leaves sled one open ahead of the marker, which is accepted.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::StateError;

pub(crate) const MARKER_FILE: &str = "whittle-state.json";
const MARKER_TMP: &str = "whittle-state.json.tmp";

/// What `whittle-state.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Marker {
    /// The format version of the database ([`crate::FORMAT_VERSION`] of the last writer).
    pub(crate) format_version: u32,
    /// The id of the database in `db/`, also stored in its `meta` tree.
    pub(crate) instance: String,
    /// How many times the directory was opened; the `meta` tree holds at least this.
    pub(crate) opens: u64,
    /// Whether sled had written its snapshot (`db/snap.*`) when the directory was last opened.
    /// sled writes it when it recovers and only ever replaces it, so once there it stays.
    pub(crate) snapshot: bool,
}

impl Marker {
    /// The marker of `dir`, `None` if the directory has none (new, or an older whittle's).
    pub(crate) fn read(dir: &Path) -> Result<Option<Marker>, StateError> {
        let path = dir.join(MARKER_FILE);
        let body = match fs::read(&path) {
            Ok(body) => body,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path,
                    action: "read",
                    source,
                });
            }
        };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| StateError::BadMarker {
                dir: dir.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Replaces the marker of `dir` atomically and durably.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), StateError> {
        let tmp = dir.join(MARKER_TMP);
        let path = dir.join(MARKER_FILE);
        let io_err = |path: &Path, action, source| StateError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        let mut body = serde_json::to_vec_pretty(self).map_err(|source| StateError::Encode {
            tree: MARKER_FILE,
            source,
        })?;
        body.push(b'\n');
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, "create", e))?;
        file.write_all(&body)
            .map_err(|e| io_err(&tmp, "write", e))?;
        file.sync_all().map_err(|e| io_err(&tmp, "sync", e))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, "replace", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, "sync the state directory", e))
    }

    /// sled's files that must be in `dir` for the database this marker describes; each one
    /// missing is named with what it is.
    pub(crate) fn missing_files(&self, dir: &Path) -> Vec<String> {
        let db = dir.join(DB_DIR);
        if !db.is_dir() {
            return vec!["db/ (the whole database)".to_owned()];
        }
        let mut missing = Vec::new();
        if !db.join("conf").is_file() {
            missing.push("db/conf (the database's settings)".to_owned());
        }
        if !db.join("db").is_file() {
            missing.push("db/db (the database log)".to_owned());
        }
        if self.snapshot && !has_snapshot(&db) {
            missing.push("db/snap.* (the database snapshot)".to_owned());
        }
        missing
    }
}

/// The directory, under the state directory, that sled owns.
pub(crate) const DB_DIR: &str = "db";

/// Whether sled's directory `db` holds a complete snapshot file (`snap.<lsn>`, not one
/// still being generated).
pub(crate) fn has_snapshot(db: &Path) -> bool {
    let Ok(entries) = fs::read_dir(db) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with("snap.")
            && !name.ends_with(".generating")
            && !name.ends_with(".in___motion")
            && entry.file_type().is_ok_and(|t| t.is_file())
    })
}

/// An id for a newly created database: the time and this process, which no other database
/// whittle creates shares in practice.
pub(crate) fn new_instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}-{:x}", std::process::id())
}
