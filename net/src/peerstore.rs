//! `PeerStore`: the peers a node has met and where to reach them, kept in
//! sled so that a restarted node rejoins without its `--bootstrap` list.
//!
//! Written by the event loop when identify tells it a peer's listen
//! addresses; read once at start to dial known peers. A write is flushed
//! lazily (sled's background flush): losing the last few updates in a crash
//! only means a few fewer peers to try.

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Most addresses kept per peer.
const MAX_ADDRS: usize = 8;

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
        self.tree.insert(peer.to_bytes(), value)?;
        Ok(())
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
}
