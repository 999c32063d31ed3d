//! Typed trees: a sled tree whose keys and values are Rust types.
//!
//! Values are stored as a small JSON envelope `{"v": VERSION, "data": ...}`. JSON keeps a state
//! directory inspectable and lets an older record be migrated as a value tree by
//! [`Record::upgrade`] before it is decoded into today's type. An envelope of
//! [`COMPRESS_ABOVE`] bytes or more is stored deflated behind a zero byte (JSON never starts
//! with one): mined usage compresses about tenfold, and sled keeps the values it writes in
//! memory, so this is what bounds a long mining run's memory (BENCHMARKS.md).

use std::fmt::Display;
use std::io::{Read, Write};
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::StateError;

/// A type stored in its own tree.
pub trait Record: Serialize + DeserializeOwned {
    /// Name of the sled tree holding records of this type; unique per record type.
    const TREE: &'static str;
    /// Version of this record's shape. Bump it when a field changes meaning or type, and teach
    /// [`Record::upgrade`] to turn the old shape into the new one.
    const VERSION: u16;
    /// The key type.
    type Key: RecordKey;

    /// Turns the body of a record written with an older `version` into the current shape.
    /// The default refuses, which is right until the first shape change.
    fn upgrade(version: u16, data: serde_json::Value) -> Result<serde_json::Value, String> {
        let _ = data;
        Err(format!(
            "no upgrade path from record version {version} to {}",
            Self::VERSION
        ))
    }
}

/// A key that encodes to bytes whose order is the order records should be iterated in.
pub trait RecordKey: Sized + Display {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Option<Self>;
}

impl RecordKey for String {
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl RecordKey for u64 {
    fn encode(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u16,
    data: &'a T,
}

/// `data` stays unparsed until the version is known: a current record is decoded straight
/// into its type, and only an older one goes through a `serde_json::Value` for
/// [`Record::upgrade`] (a value tree takes several times the memory of its JSON).
#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    v: u16,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

/// A tree of `R` records.
#[derive(Debug, Clone)]
pub struct Tree<R> {
    tree: sled::Tree,
    _record: PhantomData<fn() -> R>,
}

impl<R: Record> Tree<R> {
    pub(crate) fn new(tree: sled::Tree) -> Tree<R> {
        Tree {
            tree,
            _record: PhantomData,
        }
    }

    pub(crate) fn raw(&self) -> &sled::Tree {
        &self.tree
    }

    /// Reads the record at `key`.
    pub fn get(&self, key: &R::Key) -> Result<Option<R>, StateError> {
        let raw = self.tree.get(key.encode()).map_err(|e| self.sled_err(e))?;
        raw.map(|bytes| decode::<R>(&key.to_string(), &bytes))
            .transpose()
    }

    /// Writes the record at `key`. Not flushed: call [`crate::State::flush`] when the write
    /// must survive a crash.
    pub fn put(&self, key: &R::Key, record: &R) -> Result<(), StateError> {
        let bytes = encode(record)?;
        self.tree
            .insert(key.encode(), bytes)
            .map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// Removes the record at `key`.
    pub fn remove(&self, key: &R::Key) -> Result<(), StateError> {
        self.tree
            .remove(key.encode())
            .map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// How many records the tree holds (counts keys, decodes nothing).
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// All records, in key order (`.rev()` for the newest first under time-ordered keys).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Result<(R::Key, R), StateError>> + '_ {
        self.tree.iter().map(|item| self.decode_item(item))
    }

    /// All keys, in order, without decoding the records: for trees whose records are large
    /// and are read one at a time.
    pub fn keys(&self) -> impl Iterator<Item = Result<R::Key, StateError>> + '_ {
        self.tree.iter().keys().map(|item| {
            let bytes = item.map_err(|e| self.sled_err(e))?;
            R::Key::decode(&bytes).ok_or_else(|| StateError::Corrupt {
                tree: R::TREE.to_owned(),
                key: String::from_utf8_lossy(&bytes).into_owned(),
                reason: "the key does not decode".to_owned(),
            })
        })
    }

    /// Records whose encoded key starts with the encoding of `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<(R::Key, R), StateError>> + '_ {
        self.tree
            .scan_prefix(prefix)
            .map(|item| self.decode_item(item))
    }

    fn decode_item(
        &self,
        item: sled::Result<(sled::IVec, sled::IVec)>,
    ) -> Result<(R::Key, R), StateError> {
        let (key_bytes, value) = item.map_err(|e| self.sled_err(e))?;
        let key = R::Key::decode(&key_bytes).ok_or_else(|| StateError::Corrupt {
            tree: R::TREE.to_owned(),
            key: String::from_utf8_lossy(&key_bytes).into_owned(),
            reason: "the key does not decode".to_owned(),
        })?;
        let record = decode::<R>(&key.to_string(), &value)?;
        Ok((key, record))
    }

    fn sled_err(&self, source: sled::Error) -> StateError {
        StateError::Sled {
            path: R::TREE.into(),
            source,
        }
    }
}

/// Envelopes this long or longer are stored deflated.
const COMPRESS_ABOVE: usize = 1024;
/// The first byte of a deflated value.
const DEFLATED: u8 = 0;

pub(crate) fn encode<R: Record>(record: &R) -> Result<Vec<u8>, StateError> {
    let json = serde_json::to_vec(&EnvelopeOut {
        v: R::VERSION,
        data: record,
    })
    .map_err(|source| StateError::Encode {
        tree: R::TREE,
        source,
    })?;
    if json.len() < COMPRESS_ABOVE {
        return Ok(json);
    }
    let mut encoder = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(json.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.get_mut().push(DEFLATED);
    // Writing to a Vec cannot fail.
    let deflated = encoder.write_all(&json).and_then(|()| encoder.finish());
    Ok(deflated.unwrap_or(json))
}

pub(crate) fn decode<R: Record>(key: &str, bytes: &[u8]) -> Result<R, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        tree: R::TREE.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let inflated;
    let json = match bytes.split_first() {
        Some((&DEFLATED, deflated)) => {
            let mut out = Vec::with_capacity(deflated.len() * 8);
            flate2::read::DeflateDecoder::new(deflated)
                .read_to_end(&mut out)
                .map_err(|e| corrupt(format!("the compressed value does not inflate: {e}")))?;
            inflated = out;
            inflated.as_slice()
        }
        _ => bytes,
    };
    let envelope: EnvelopeIn = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    match envelope.v {
        v if v == R::VERSION => {
            serde_json::from_str(envelope.data.get()).map_err(|e| corrupt(e.to_string()))
        }
        v if v > R::VERSION => Err(StateError::NewerRecord {
            tree: R::TREE.to_owned(),
            key: key.to_owned(),
            found: v,
            supported: R::VERSION,
        }),
        v => {
            let old =
                serde_json::from_str(envelope.data.get()).map_err(|e| corrupt(e.to_string()))?;
            let data = R::upgrade(v, old).map_err(corrupt)?;
            serde_json::from_value(data).map_err(|e| corrupt(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
        count: u32,
    }

    impl Record for Note {
        const TREE: &'static str = "test_notes";
        const VERSION: u16 = 2;
        type Key = String;

        // Version 1 called the field `body` and had no count.
        fn upgrade(version: u16, mut data: serde_json::Value) -> Result<serde_json::Value, String> {
            match version {
                1 => {
                    let body = data
                        .get("body")
                        .cloned()
                        .ok_or("version 1 note without body")?;
                    data = serde_json::json!({ "text": body, "count": 0 });
                    Ok(data)
                }
                other => Err(format!("unknown note version {other}")),
            }
        }
    }

    #[test]
    fn round_trips_and_iterates_in_key_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = test_support::open(tmp.path());
        let notes = state.tree::<Note>().expect("tree");
        for (k, n) in [("b", 2), ("a", 1), ("c", 3)] {
            notes
                .put(
                    &k.to_owned(),
                    &Note {
                        text: k.to_owned(),
                        count: n,
                    },
                )
                .expect("put");
        }
        let keys: Vec<String> = notes.iter().map(|r| r.expect("item").0).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(
            notes.get(&"b".to_owned()).expect("get"),
            Some(Note {
                text: "b".into(),
                count: 2
            })
        );
        notes.remove(&"b".to_owned()).expect("remove");
        assert_eq!(notes.get(&"b".to_owned()).expect("get"), None);
    }

    #[test]
    fn survives_a_crash_after_flush() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let state = test_support::open(tmp.path());
            let notes = state.tree::<Note>().expect("tree");
            notes
                .put(
                    &"kept".to_owned(),
                    &Note {
                        text: "x".into(),
                        count: 7,
                    },
                )
                .expect("put");
            state.flush().expect("flush");
            // Simulated crash: no orderly close, no destructor, no further flush.
            std::mem::forget(notes);
            std::mem::forget(state);
        }
        // The forgotten handle keeps this process's locks, so the "restarted" whittle opens a
        // copy of the files exactly as the crash left them on disk.
        let copy = tempfile::tempdir().expect("tempdir");
        test_support::copy_dir(tmp.path(), copy.path());
        let state = test_support::open(copy.path());
        let notes = state.tree::<Note>().expect("tree");
        assert_eq!(
            notes.get(&"kept".to_owned()).expect("get"),
            Some(Note {
                text: "x".into(),
                count: 7
            })
        );
    }

    #[test]
    fn upgrades_an_older_record() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = test_support::open(tmp.path());
        let notes = state.tree::<Note>().expect("tree");
        notes
            .raw()
            .insert(b"old", br#"{"v":1,"data":{"body":"hello"}}"#.to_vec())
            .expect("insert");
        assert_eq!(
            notes.get(&"old".to_owned()).expect("get"),
            Some(Note {
                text: "hello".into(),
                count: 0
            })
        );
    }

    #[test]
    fn large_records_are_stored_deflated_and_plain_ones_still_read() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = test_support::open(tmp.path());
        let notes = state.tree::<Note>().expect("tree");
        let big = Note {
            text: "arn:aws:iam::123456789012:role/app ".repeat(200),
            count: 1,
        };
        notes.put(&"big".to_owned(), &big).expect("put");
        let raw = notes.raw().get(b"big").expect("get").expect("stored");
        assert_eq!(raw.first(), Some(&DEFLATED));
        assert!(raw.len() < 1000, "{} bytes", raw.len());
        assert_eq!(notes.get(&"big".to_owned()).expect("get"), Some(big));
        // Written plain by an earlier whittle, above the threshold.
        let plain = format!(
            r#"{{"v":2,"data":{{"text":"{}","count":3}}}}"#,
            "x".repeat(2000)
        );
        notes
            .raw()
            .insert(b"plain", plain.as_bytes())
            .expect("insert");
        assert_eq!(
            notes
                .get(&"plain".to_owned())
                .expect("get")
                .map(|n| n.count),
            Some(3)
        );
    }

    #[test]
    fn corrupted_record_names_tree_and_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = test_support::open(tmp.path());
        let notes = state.tree::<Note>().expect("tree");
        notes
            .raw()
            .insert(b"broken", b"\x00\x01not json".to_vec())
            .expect("insert");
        let err = notes.get(&"broken".to_owned()).expect_err("must fail");
        let message = err.to_string();
        assert!(
            message.contains("tree `test_notes`") && message.contains("key `broken`"),
            "{message}"
        );
        // Iteration reports the same error instead of skipping silently.
        assert!(notes.iter().any(|item| item.is_err()));
    }

    #[test]
    fn newer_record_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = test_support::open(tmp.path());
        let notes = state.tree::<Note>().expect("tree");
        notes
            .raw()
            .insert(b"future", br#"{"v":9,"data":{}}"#.to_vec())
            .expect("insert");
        let err = notes.get(&"future".to_owned()).expect_err("must fail");
        assert!(
            matches!(
                err,
                StateError::NewerRecord {
                    found: 9,
                    supported: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
