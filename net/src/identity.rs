//! The node's persistent Ed25519 identity: created once in the data dir,
//! read on every start, so the peer id never changes across restarts.

use std::io::Write;
use std::path::Path;

use libp2p::identity::Keypair;

use crate::{Error, Result};

/// Reads the key at `path`, or creates it (mode 0600, written to a temporary
/// file, fsync'd and renamed, so a crash never leaves half a key).
pub fn load_or_create(path: &Path) -> Result<Keypair> {
    let err = |reason: String| Error::Identity {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            err(format!(
                "not an Ed25519 key ({e}); move it away to start a new identity"
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| err(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            let tmp = path.with_extension("tmp");
            let mut file = open_private(&tmp).map_err(|e| err(e.to_string()))?;
            file.write_all(&bytes).map_err(|e| err(e.to_string()))?;
            file.sync_all().map_err(|e| err(e.to_string()))?;
            std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// The 32-byte Ed25519 secret of a node key (what the ledger signs with).
pub fn ed25519_secret(key: &Keypair) -> Option<[u8; 32]> {
    let ed = key.clone().try_into_ed25519().ok()?;
    ed.secret().as_ref().try_into().ok()
}

/// The 32-byte Ed25519 public key inside a peer id (peer ids of Ed25519
/// keys embed the key itself).
pub fn ed25519_public(peer: &libp2p::PeerId) -> Option<[u8; 32]> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

/// The peer id of a 32-byte Ed25519 public key.
pub fn peer_of(public: [u8; 32]) -> Option<libp2p::PeerId> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(&public).ok()?;
    Some(libp2p::identity::PublicKey::from(key).to_peer_id())
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_and_ledger_keys_convert_both_ways() {
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let public = ed25519_public(&peer).expect("an ed25519 peer id");
        assert_eq!(peer_of(public), Some(peer));
        assert!(ed25519_secret(&key).is_some());
    }

    #[test]
    fn the_key_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
    }

    #[test]
    fn a_corrupt_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        std::fs::write(&path, b"garbage").unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("not an Ed25519 key"), "{err}");
    }
}
