//! `PeerStore`: the peers a node has met and where to reach them, kept in
//! sled so that a restarted node rejoins without its `--bootstrap` list.
//!
//! Written by the event loop when identify tells it a peer's listen
//! addresses; read once at start to dial known peers. A write is flushed
//! lazily (sled's background flush): losing the last few updates in a crash
//! only means a few fewer peers to try.
//!
//! Bounded: at most [`MAX_PEERS`] peers are kept; a new one past that
//! replaces the one seen longest ago, so peers that come and go (or a
//! flood of made-up identities) cannot grow it without limit. What it
//! cannot decode is skipped, never a reason not to start.

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Most addresses kept per peer.
const MAX_ADDRS: usize = 8;

/// Most peers kept.
pub(crate) const MAX_PEERS: usize = 10_000;

#[derive(Serialize, Deserialize)]
struct Stored {
    addrs: Vec<String>,
    seen_unix: u64,
}

/// Known peers and their addresses, in a sled tree.
#[derive(Clone)]
pub struct PeerStore {
    tree: sled::Tree,
}

impl PeerStore {
    /// Opens the `peers` tree of `db`.
    pub fn open(db: &sled::Db) -> Result<Self> {
        Ok(Self {
            tree: db.open_tree("peers")?,
        })
    }

    /// Records that `peer` listens on `addrs` (replacing what was known).
    pub fn record(&self, peer: &PeerId, addrs: &[Multiaddr]) -> Result<()> {
        let addrs: Vec<String> = addrs
            .iter()
            .filter(|a| {
                !a.iter()
                    .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
            })
            .take(MAX_ADDRS)
            .map(|a| a.to_string())
            .collect();
        if addrs.is_empty() {
            return Ok(());
        }
        let seen_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let value = postcard::to_stdvec(&Stored { addrs, seen_unix })
            .map_err(|e| sled::Error::Unsupported(e.to_string()))?;
        let key = peer.to_bytes();
        if self.tree.len() >= MAX_PEERS && !self.tree.contains_key(&key)? {
            self.forget_oldest();
        }
        self.tree.insert(key, value)?;
        Ok(())
    }

    /// Removes the peer seen longest ago (or an entry that does not decode).
    fn forget_oldest(&self) {
        let mut oldest: Option<(sled::IVec, u64)> = None;
        for (k, v) in self.tree.iter().filter_map(|kv| kv.ok()) {
            let seen = postcard::from_bytes::<Stored>(&v).map_or(0, |s| s.seen_unix);
            if oldest.as_ref().is_none_or(|(_, t)| seen < *t) {
                oldest = Some((k, seen));
            }
        }
        if let Some((k, _)) = oldest {
            let _ = self.tree.remove(k);
        }
    }

    /// Every known peer with its addresses; undecodable entries are skipped.
    pub fn all(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.tree
            .iter()
            .filter_map(|kv| kv.ok())
            .filter_map(|(k, v)| {
                let peer = PeerId::from_bytes(&k).ok()?;
                let stored: Stored = postcard::from_bytes(&v).ok()?;
                let addrs = stored.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                Some((peer, addrs))
            })
            .collect()
    }

    /// Number of known peers.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            PeerStore::open(&db)
                .unwrap()
                .record(&peer, std::slice::from_ref(&addr))
                .unwrap();
            db.flush().unwrap();
        }
        let db = sled::open(dir.path()).unwrap();
        let all = PeerStore::open(&db).unwrap().all();
        assert_eq!(all, vec![(peer, vec![addr])]);
    }

    #[test]
    fn damaged_entries_are_skipped_and_the_rest_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = PeerStore::open(&db).unwrap();
        let good = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        store.record(&good, std::slice::from_ref(&addr)).unwrap();
        let tree = db.open_tree("peers").unwrap();
        // A key that is no peer id, a value cut short, a value of garbage,
        // an address that does not parse.
        tree.insert(b"not a peer id", b"x".to_vec()).unwrap();
        let mut cut = tree.get(good.to_bytes()).unwrap().unwrap().to_vec();
        cut.truncate(cut.len() / 2);
        tree.insert(PeerId::random().to_bytes(), cut).unwrap();
        tree.insert(PeerId::random().to_bytes(), vec![0xff; 40])
            .unwrap();
        let odd = postcard::to_stdvec(&Stored {
            addrs: vec!["not an address".into()],
            seen_unix: 1,
        })
        .unwrap();
        let odd_peer = PeerId::random();
        tree.insert(odd_peer.to_bytes(), odd).unwrap();
        let mut all = store.all();
        all.sort_by_key(|(p, _)| *p);
        let mut want = vec![(good, vec![addr]), (odd_peer, vec![])];
        want.sort_by_key(|(p, _)| *p);
        assert_eq!(all, want);
    }

    #[test]
    fn past_the_limit_a_new_peer_replaces_the_one_seen_longest_ago() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = PeerStore::open(&db).unwrap();
        let tree = db.open_tree("peers").unwrap();
        let addr = vec!["/ip4/127.0.0.1/tcp/1".to_string()];
        let oldest = PeerId::random();
        for i in 0..MAX_PEERS {
            let peer = if i == 17 { oldest } else { PeerId::random() };
            let seen_unix = if i == 17 { 5 } else { 100 + i as u64 };
            let v = postcard::to_stdvec(&Stored {
                addrs: addr.clone(),
                seen_unix,
            })
            .unwrap();
            tree.insert(peer.to_bytes(), v).unwrap();
        }
        let newcomer = PeerId::random();
        let at: Multiaddr = "/ip4/127.0.0.1/tcp/2".parse().unwrap();
        store.record(&newcomer, std::slice::from_ref(&at)).unwrap();
        assert_eq!(store.len(), MAX_PEERS);
        assert!(!tree.contains_key(oldest.to_bytes()).unwrap());
        assert!(tree.contains_key(newcomer.to_bytes()).unwrap());
        // A known peer's update replaces nobody.
        store.record(&newcomer, std::slice::from_ref(&at)).unwrap();
        assert_eq!(store.len(), MAX_PEERS);
    }
}
