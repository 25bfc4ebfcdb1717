//! The control API's token: a random secret the node keeps in
//! `DATA_DIR/api.token` (readable by its owner only). When the API is bound
//! to an address beyond loopback, its mutating endpoints (`POST
//! /api/deploy`) answer 401 unless the request carries it
//! (`Authorization: Bearer TOKEN`); on loopback only local users can reach
//! the API, and no token is asked.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The file a node keeps its generated API token in.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("api.token")
}

/// Reads the node's token, creating it (32 random bytes, hex) on first use.
pub(crate) fn load_or_create(data_dir: &Path) -> std::io::Result<String> {
    let file = path(data_dir);
    match std::fs::read_to_string(&file) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let tmp = data_dir.join("api.token.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &file)?;
    Ok(token)
}

/// The shortest token an operator may choose (`--api-token`).
pub(crate) const MIN_LEN: usize = 16;

/// Refuses a chosen API token ([`NodeConfig::api_token`](super::NodeConfig::api_token)) that is too short to guess hard or that cannot
/// travel in an `Authorization` header (visible ASCII only).
pub fn check(token: &str) -> Result<(), String> {
    if token.len() < MIN_LEN {
        return Err(format!(
            "the API token must be at least {MIN_LEN} characters, not {}",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "the API token may hold visible ASCII characters only (no spaces or control characters)"
                .into(),
        );
    }
    Ok(())
}

/// Whether `header` (an `Authorization` value) carries `token`; compared
/// in constant time.
pub(crate) fn admits(token: &str, header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    blake3::hash(given.trim().as_bytes()) == blake3::hash(token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_kept_private_and_admits_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let token = load_or_create(dir.path()).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(load_or_create(dir.path()).unwrap(), token);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(admits(&token, Some(&format!("Bearer {token}"))));
        assert!(!admits(&token, Some(&format!("Bearer {token}x"))));
        assert!(!admits(&token, Some(&token)));
        assert!(!admits(&token, None));
    }

    #[test]
    fn a_chosen_token_is_long_enough_and_fits_a_header() {
        assert!(check("0123456789abcdef").is_ok());
        assert!(check("short").unwrap_err().contains("at least 16"));
        assert!(
            check("0123456789 abcdef")
                .unwrap_err()
                .contains("visible ASCII")
        );
        assert!(check("0123456789abcdéf").is_err());
    }
}
