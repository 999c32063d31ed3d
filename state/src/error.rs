use std::path::PathBuf;

use crate::LockOwner;

/// Everything that can go wrong with the state directory. Each variant names the directory,
/// tree or key involved, because the person reading it has to find and fix that thing.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} {}: {source}{}", path.display(), io_hint(source))]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("state path {} is not a directory; point --state at a directory", path.display())]
    NotADirectory { path: PathBuf },

    #[error("{}", locked_message(dir, owner.as_ref()))]
    Locked {
        dir: PathBuf,
        owner: Option<LockOwner>,
    },

    #[error(
        "state directory {} was written by a newer whittle (format {found}; this build reads up to {supported}); upgrade whittle or use another --state",
        dir.display()
    )]
    NewerFormat {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{}", missing_message(dir, missing))]
    Missing {
        dir: PathBuf,
        /// What is gone, each with what it is, e.g. `db/snap.* (the database snapshot)`.
        missing: Vec<String>,
    },

    #[error(
        "state directory {}: {problem}; whittle will not start on it, because unfinished journals and the records written since would be lost. Stop every whittle using it and restore the whole directory (db/ together with whittle-state.json) from one backup (see docs/state.md); if you put this db/ there on purpose and accept losing what came after it, remove whittle-state.json and run again",
        dir.display()
    )]
    Mismatch { dir: PathBuf, problem: String },

    #[error(
        "cannot read whittle-state.json in state directory {}: {reason}; restore the whole directory from a backup (see docs/state.md)",
        dir.display()
    )]
    BadMarker { dir: PathBuf, reason: String },

    #[error("state database at {}: {source}", path.display())]
    Sled {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    #[error("corrupted record in tree `{tree}` at key `{key}`: {reason}")]
    Corrupt {
        tree: String,
        key: String,
        reason: String,
    },

    #[error(
        "record in tree `{tree}` at key `{key}` has version {found}, newer than this build's {supported}; upgrade whittle"
    )]
    NewerRecord {
        tree: String,
        key: String,
        found: u16,
        supported: u16,
    },

    #[error("cannot encode a record for tree `{tree}`: {source}")]
    Encode {
        tree: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("journal {id} does not exist")]
    UnknownJournal { id: crate::JournalId },

    #[error("journal {id} is already finished; it cannot take step `{step}`")]
    JournalFinished { id: crate::JournalId, step: String },
}

fn locked_message(dir: &std::path::Path, owner: Option<&LockOwner>) -> String {
    match owner {
        Some(owner) => format!(
            "whittle is already running (pid {}) on state directory {}; stop it first or use another --state",
            owner.pid,
            dir.display()
        ),
        None => format!(
            "state directory {} is locked by another process; stop it first or use another --state",
            dir.display()
        ),
    }
}

fn missing_message(dir: &std::path::Path, missing: &[String]) -> String {
    let what = match missing {
        [] => "nothing".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    format!(
        "state directory {} was initialised before but is missing {what}; whittle will not start on it, because it would start over with an empty state and forget its unfinished journals, job history, usage and targets. Stop every whittle using it and restore the whole directory from a backup (see docs/state.md); to start over on purpose, move the directory aside",
        dir.display()
    )
}

/// What the reader can do about an IO error on the state directory, for the kinds that have
/// one clear remedy.
fn io_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "; run whittle as the user that owns the state directory, or pass --state DIR"
        }
        std::io::ErrorKind::StorageFull => "; free space on that filesystem, then run it again",
        std::io::ErrorKind::ReadOnlyFilesystem => {
            "; the filesystem is read-only: pass --state DIR on a writable one"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_say_what_to_do_when_there_is_one_remedy() {
        let error = |kind| StateError::Io {
            path: PathBuf::from("/var/lib/whittle/whittle.lock"),
            action: "open the lock file",
            source: std::io::Error::from(kind),
        };
        let denied = error(std::io::ErrorKind::PermissionDenied).to_string();
        assert!(
            denied.starts_with("cannot open the lock file /var/lib/whittle/whittle.lock: ")
                && denied.ends_with(
                    "run whittle as the user that owns the state directory, or pass --state DIR"
                ),
            "{denied}"
        );
        let full = error(std::io::ErrorKind::StorageFull).to_string();
        assert!(
            full.ends_with("free space on that filesystem, then run it again"),
            "{full}"
        );
        let other = error(std::io::ErrorKind::Interrupted).to_string();
        assert!(
            !other.contains("; "),
            "no advice where none applies: {other}"
        );
    }
}
