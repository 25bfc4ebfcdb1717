//! `orb ledger`, end to end: chains built by an in-process committee
//! (`orb_ledger::sim`) straight into a data dir's `ledger/`, then read,
//! audited, tampered with and proven by the real binary.

mod audit;
mod proof;
mod read;
mod store;

use std::path::{Path, PathBuf};
use std::process::Output;

use orb_ledger::sim::{Committee, single};
use orb_ledger::{Chain, Genesis, Keypair, PublicKey, height_key};

use crate::run_orb;

pub(super) const MEMBERS: usize = 6;
pub(super) const FAUCET: u64 = 1_000_000_000;

/// A node's data dir holding a chain of `blocks` × `per_block` receipts.
pub(super) struct Node {
    pub(super) dir: tempfile::TempDir,
    pub(super) committee: Committee,
    pub(super) invoker: Keypair,
    per_block: u64,
}

impl Node {
    pub(super) fn new(blocks: u64, per_block: u64) -> Self {
        let invoker = Keypair::generate();
        let payer = invoker.public();
        let committee = Committee::new(|_| Genesis::local("test", vec![(payer, FAUCET)]), MEMBERS);
        let dir = tempfile::tempdir().expect("tempdir");
        orb_net::identity::load_or_create(&dir.path().join("identity.key")).expect("identity");
        let node = Self {
            dir,
            committee,
            invoker,
            per_block,
        };
        node.grow(blocks);
        node
    }

    pub(super) fn ledger(&self) -> PathBuf {
        self.dir.path().join("ledger")
    }

    pub(super) fn chain(&self) -> Chain {
        Chain::open_dir(&self.ledger(), Some(self.committee.genesis.clone())).expect("chain")
    }

    /// Appends `blocks` finalized blocks; settlement `i` of a block is one
    /// receipt, run by member `i % MEMBERS` for `100 + i` fuel, paid by the
    /// invoker.
    pub(super) fn grow(&self, blocks: u64) {
        let mut chain = self.chain();
        for _ in 0..blocks {
            let h = chain.height() + 1;
            let settlements = (0..self.per_block)
                .map(|i| {
                    let executor = &self.committee.keys[i as usize % MEMBERS];
                    let invocation = u128::from(h) << 32 | u128::from(i);
                    single(executor, &self.invoker, invocation, 100 + i)
                })
                .collect();
            let block = self.committee.block(h, chain.head(), settlements);
            chain.append(block).expect("append");
        }
    }

    pub(super) fn orb(&self, args: &[&str]) -> Output {
        run_orb(self.dir.path(), args, None)
    }

    pub(super) fn node_key(&self) -> PublicKey {
        let key = orb_net::identity::load_or_create(&self.dir.path().join("identity.key"))
            .expect("identity");
        PublicKey(orb_net::identity::ed25519_public(&key.public().to_peer_id()).expect("ed25519"))
    }
}

/// sled itself, waiting for the lock of a store dropped a moment ago.
pub(super) fn open_raw(dir: &Path) -> sled::Db {
    for _ in 0..40 {
        if let Ok(db) = sled::open(dir) {
            return db;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    sled::open(dir).expect("sled")
}

/// Rewrites (or with `None`, removes) the entry of height `h` in `table`.
pub(super) fn rewrite(dir: &Path, table: &str, h: u64, f: impl FnOnce(Vec<u8>) -> Option<Vec<u8>>) {
    let db = open_raw(dir);
    let tree = db.open_tree(table).expect("tree");
    let old = tree
        .get(height_key(h))
        .expect("get")
        .expect("entry")
        .to_vec();
    match f(old) {
        Some(new) => tree.insert(height_key(h), new).expect("insert"),
        None => tree.remove(height_key(h)).expect("remove"),
    };
    db.flush().expect("flush");
}

pub(super) fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}
