//! A store that fails on purpose: the chain's behaviour under storage
//! faults is tested against it (redb's fault-injecting backend is the
//! model).
//!
//! [`FaultyStore`] keeps two copies of its tables: what a reader sees
//! (the page cache) and what would survive a crash (the disk). A commit
//! normally lands in both. A planned [`Fault`] on the n-th commit (the
//! genesis write is commit 0) makes it:
//! - [`Fault::Error`]: fail before anything lands (an I/O error);
//! - [`Fault::ErrorAfterWrite`]: land durably, then report an error (an
//!   fsync that failed after the data reached the disk, or a lost reply);
//! - [`Fault::LostSync`]: land where readers see it and report success,
//!   but not on the disk until a later commit succeeds (an fsync that
//!   lied); [`FaultyStore::crash`] then loses it.
//! - [`Fault::Torn`]: the process dies in the middle of the write: the
//!   disk keeps the commit's writes before its last in full and the last
//!   cut to half its bytes (a store whose batches are not atomic, or a
//!   sector written halfway); the commit reports an error and only
//!   [`FaultyStore::crash`] should follow.
//!
//! [`FaultyStore::crash`] gives the store a restarted process would find:
//! the disk copy only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::store::{LedgerStore, StoreError, Table, Write};

/// What a planned commit does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fails; nothing lands.
    Error,
    /// Lands durably, then fails.
    ErrorAfterWrite,
    /// Succeeds, but is not durable until a later commit succeeds.
    LostSync,
    /// Dies halfway: a prefix lands on the disk, its last write torn.
    Torn,
}

impl Fault {
    /// Every kind.
    pub const ALL: [Fault; 4] = [
        Fault::Error,
        Fault::ErrorAfterWrite,
        Fault::LostSync,
        Fault::Torn,
    ];
}

type Tables = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

#[derive(Default)]
struct Inner {
    seen: Tables,
    disk: Tables,
    /// Writes that landed but are not durable yet (after a lost sync).
    unsynced: Vec<Write>,
    commits: u64,
    plan: BTreeMap<u64, Fault>,
}

/// The in-memory store with planned faults.
#[derive(Default)]
pub struct FaultyStore {
    inner: Mutex<Inner>,
}

fn apply(tables: &mut Tables, writes: &[Write]) {
    for (t, k, v) in writes {
        tables.insert((*t, k.clone()), v.clone());
    }
}

impl FaultyStore {
    /// An empty store with no faults planned.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes commit number `n` (0: the first) fail as `fault` says.
    pub fn plan(&self, n: u64, fault: Fault) {
        self.lock().plan.insert(n, fault);
    }

    /// Commits tried so far.
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    /// What a process restarted after a crash now would find: what was
    /// durable, no faults planned.
    pub fn crash(&self) -> FaultyStore {
        let disk = self.lock().disk.clone();
        FaultyStore {
            inner: Mutex::new(Inner {
                seen: disk.clone(),
                disk,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn injected(what: &str) -> StoreError {
    StoreError::Io {
        path: PathBuf::from("<faulty store>"),
        message: format!("injected fault: {what}"),
    }
}

impl LedgerStore for FaultyStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().seen.get(&(table, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        table: Table,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let inner = self.lock();
        for ((_, k), v) in inner
            .seen
            .range((table, Vec::new())..)
            .take_while(|((t, _), _)| *t == table)
        {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .seen
            .range((table, Vec::new())..)
            .take_while(|((t, _), _)| *t == table)
            .last()
            .map(|((_, k), _)| k.clone()))
    }

    fn commit(&self, writes: &[Write]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let n = inner.commits;
        inner.commits += 1;
        match inner.plan.get(&n).copied() {
            Some(Fault::Error) => Err(injected("I/O error, nothing written")),
            Some(Fault::ErrorAfterWrite) => {
                let synced = std::mem::take(&mut inner.unsynced);
                apply(&mut inner.disk, &synced);
                apply(&mut inner.disk, writes);
                apply(&mut inner.seen, writes);
                Err(injected("written, then the fsync failed"))
            }
            Some(Fault::LostSync) => {
                apply(&mut inner.seen, writes);
                inner.unsynced.extend_from_slice(writes);
                Ok(())
            }
            Some(Fault::Torn) => {
                let synced = std::mem::take(&mut inner.unsynced);
                apply(&mut inner.disk, &synced);
                if let Some(((t, k, v), before)) = writes.split_last() {
                    apply(&mut inner.disk, before);
                    let torn = (*t, k.clone(), v[..v.len() / 2].to_vec());
                    apply(&mut inner.disk, &[torn]);
                }
                Err(injected("the process died halfway through the write"))
            }
            None => {
                // A good fsync makes everything before it durable too.
                let synced = std::mem::take(&mut inner.unsynced);
                apply(&mut inner.disk, &synced);
                apply(&mut inner.disk, writes);
                apply(&mut inner.seen, writes);
                Ok(())
            }
        }
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.seen.remove(&(table, key.to_vec()));
        inner.disk.remove(&(table, key.to_vec()));
        Ok(())
    }
}
