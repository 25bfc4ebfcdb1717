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
