//! Where the chain lives: a small key-value trait with two
//! implementations, sled on disk ([`SledStore`]) and memory
//! ([`MemStore`], for chains fetched from a running node and for tests).
//!
//! The layout (the [`Chain`](crate::Chain) writes it): `blocks` keyed by
//! big-endian height, so key order is height order, one value per height
//! holding the block, its balance effects and its receipts' index entry
//! ([`StoredBlock`](crate::StoredBlock)); the last key is the head. `meta`
//! holds the genesis and the layout version. A block is one insert into
//! one tree: it is all there after a crash or not at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    /// Height → the block, its effects and its receipt index.
    Blocks,
    /// Genesis and layout.
    Meta,
}

impl Table {
    /// All tables.
    pub const ALL: [Table; 2] = [Table::Blocks, Table::Meta];

    /// The table's name (sled tree name).
    pub fn name(self) -> &'static str {
        match self {
            Table::Blocks => "blocks",
            Table::Meta => "meta",
        }
    }
}

/// The store failed or holds unreadable data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O or storage-engine error.
    #[error("ledger store {path}: {message}")]
    Io {
        /// The store's directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// One write of a commit.
pub type Write = (Table, Vec<u8>, Vec<u8>);

/// A key-value store for the chain.
pub trait LedgerStore: Send + Sync {
    /// Reads one value.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Visits a table's entries in key order until `f` returns false.
    fn scan(&self, table: Table, f: &mut dyn FnMut(&[u8], &[u8]) -> bool)
    -> Result<(), StoreError>;
    /// The last key of a table, if any.
    fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes all of `writes` atomically and durably: when this returns
    /// Ok, a crash or power loss keeps all of them, and before it, none
    /// may be visible after a restart without the others.
    fn commit(&self, writes: &[Write]) -> Result<(), StoreError>;
    /// Removes one key, durably: used only to drop a torn last block
    /// when the chain opens.
    fn remove(&self, table: Table, key: &[u8]) -> Result<(), StoreError>;
}

/// The chain on sled: one sled database in its own directory, a tree per
/// table. A commit to one table is one atomic batch (one to several is a
/// multi-tree transaction), then `flush` and an fsync of the database
/// file and directory (sled's flush alone uses `sync_file_range`, which
/// does not flush the disk cache): one fsync per commit, however many
/// blocks it holds.
#[derive(Clone)]
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    trees: [sled::Tree; 2],
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let err = |e: sled::Error| StoreError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        // A store dropped a moment ago in this process may still be held
        // by sled's flusher thread: retry the file lock briefly.
        let mut tries = 0;
        let db = loop {
            match sled::Config::new().path(dir).open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && tries < 20 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => break other.map_err(err)?,
            }
        };
        let tree = |t: Table| db.open_tree(t.name()).map_err(err);
        let trees = [tree(Table::Blocks)?, tree(Table::Meta)?];
        Ok(Self {
            path: dir.to_path_buf(),
            db,
            trees,
        })
    }

    fn tree(&self, t: Table) -> &sled::Tree {
        &self.trees[t as usize]
    }

    fn err(&self, message: impl ToString) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    fn fsync(&self) -> std::io::Result<()> {
        std::fs::File::open(self.path.join("db"))?.sync_all()?;
        std::fs::File::open(&self.path)?.sync_all()
    }
}

impl LedgerStore for SledStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.tree(table)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.err(e))
    }

    fn scan(
        &self,
        table: Table,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for kv in self.tree(table).iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, StoreError> {
        self.tree(table)
            .last()
            .map(|kv| kv.map(|(k, _)| k.to_vec()))
            .map_err(|e| self.err(e))
    }

    fn commit(&self, writes: &[Write]) -> Result<(), StoreError> {
        use sled::Transactional;
        match writes.first() {
            None => return Ok(()),
            Some((one, _, _)) if writes.iter().all(|(t, _, _)| t == one) => {
                let mut batch = sled::Batch::default();
                for (_, k, v) in writes {
                    batch.insert(k.as_slice(), v.as_slice());
                }
                self.tree(*one)
                    .apply_batch(batch)
                    .map_err(|e| self.err(e))?;
            }
            Some(_) => {
                let [b, m] = &self.trees;
                (b, m)
                    .transaction(|(b, m)| {
                        for (t, k, v) in writes {
                            let tree = match t {
                                Table::Blocks => b,
                                Table::Meta => m,
                            };
                            tree.insert(k.as_slice(), v.as_slice())?;
                        }
                        Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
                    })
                    .map_err(|e| self.err(format!("{e:?}")))?;
            }
        }
        self.db.flush().map_err(|e| self.err(e))?;
        self.fsync().map_err(|e| self.err(e))
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.tree(table).remove(key).map_err(|e| self.err(e))?;
        self.db.flush().map_err(|e| self.err(e))?;
        self.fsync().map_err(|e| self.err(e))
    }
}

type Tables = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

/// The chain in memory.
#[derive(Default)]
pub struct MemStore {
    tables: Mutex<Tables>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl LedgerStore for MemStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        Ok(t.get(&(table, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        table: Table,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        for ((_, k), v) in t
            .range((table, Vec::new())..)
            .take_while(|((tt, _), _)| *tt == table)
        {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        Ok(t.range((table, Vec::new())..)
            .take_while(|((tt, _), _)| *tt == table)
            .last()
            .map(|((_, k), _)| k.clone()))
    }

    fn commit(&self, writes: &[Write]) -> Result<(), StoreError> {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        for (table, k, v) in writes {
            t.insert((*table, k.clone()), v.clone());
        }
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.remove(&(table, key.to_vec()));
        Ok(())
    }
}
