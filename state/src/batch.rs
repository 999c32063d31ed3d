//! Atomic writes across trees: a [`WriteBatch`] collects typed puts and removes, and
//! [`State::commit`] applies them in one sled transaction and flushes. Mining uses it so the
//! usage it adds and the checkpoint saying which input it came from land together: a crash
//! never counts a file twice or loses one.

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::tree::encode;
use crate::{Record, RecordKey, State, StateError};

/// Writes to apply together.
#[derive(Debug, Default)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

/// One write: a put (`value` set) or a remove, of an encoded key in a tree.
#[derive(Debug)]
struct Op {
    tree: &'static str,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    pub fn put<R: Record>(&mut self, key: &R::Key, record: &R) -> Result<(), StateError> {
        self.ops.push(Op {
            tree: R::TREE,
            key: key.encode(),
            value: Some(encode(record)?),
        });
        Ok(())
    }

    pub fn remove<R: Record>(&mut self, key: &R::Key) {
        self.ops.push(Op {
            tree: R::TREE,
            key: key.encode(),
            value: None,
        });
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl State {
    /// Applies every write of `batch` atomically, in order, then flushes.
    pub fn commit(&self, batch: WriteBatch) -> Result<(), StateError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&'static str> = batch.ops.iter().map(|op| op.tree).collect();
        names.sort_unstable();
        names.dedup();
        let trees = names
            .iter()
            .map(|name| self.raw_tree(name))
            .collect::<Result<Vec<_>, _>>()?;
        trees
            .as_slice()
            .transaction(|views| {
                for Op { tree, key, value } in &batch.ops {
                    // `names` holds every tree of the batch, sorted.
                    let Ok(i) = names.binary_search(tree) else {
                        continue;
                    };
                    match value {
                        Some(value) => {
                            views[i].insert(key.as_slice(), value.as_slice())?;
                        }
                        None => {
                            views[i].remove(key.as_slice())?;
                        }
                    }
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(source) => self.sled_error(source),
                // The closure never aborts.
                TransactionError::Abort(()) => {
                    self.sled_error(sled::Error::Unsupported("transaction aborted".into()))
                }
            })?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::test_support;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct A(u32);
    impl Record for A {
        const TREE: &'static str = "test_batch_a";
        const VERSION: u16 = 1;
        type Key = String;
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct B(String);
    impl Record for B {
        const TREE: &'static str = "test_batch_b";
        const VERSION: u16 = 1;
        type Key = u64;
    }

    #[test]
    fn a_batch_writes_several_trees_and_survives_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let state = test_support::open(dir.path());
            state
                .tree::<A>()
                .expect("tree")
                .put(&"gone".to_owned(), &A(0))
                .expect("put");
            let mut batch = WriteBatch::new();
            batch.put::<A>(&"x".to_owned(), &A(1)).expect("put");
            batch.put::<B>(&7, &B("seven".to_owned())).expect("put");
            batch.remove::<A>(&"gone".to_owned());
            assert_eq!(batch.len(), 3);
            state.commit(batch).expect("commit");
            // Dropped without a clean close: the commit was flushed.
            std::mem::forget(state);
        }
        let copy = tempfile::tempdir().expect("tempdir");
        test_support::copy_dir(dir.path(), copy.path());
        let state = test_support::open(copy.path());
        assert_eq!(
            state
                .tree::<A>()
                .expect("tree")
                .get(&"x".to_owned())
                .expect("get"),
            Some(A(1))
        );
        assert_eq!(
            state
                .tree::<A>()
                .expect("tree")
                .get(&"gone".to_owned())
                .expect("get"),
            None
        );
        assert_eq!(
            state.tree::<B>().expect("tree").get(&7).expect("get"),
            Some(B("seven".to_owned()))
        );
    }
}
