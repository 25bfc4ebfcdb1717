//! Opening a node's chain for an offline command: the sled directory
//! `DATA_DIR/ledger`, which may be missing, held by a running node, or
//! corrupt. Every such failure is exit 2 with what to do about it.
//!
//! sled panics on some garbage files instead of returning an error, so
//! every command that reads the store runs under [`guarded`]: a panic
//! becomes a "corrupt store" error, and nothing is printed about it but
//! that. Nothing here ever creates a ledger: a data dir without one is an
//! error, not an empty chain.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use orb_ledger::{Chain, ChainError, SledStore, StoreError};

use crate::exit::CliError;

/// Where a node keeps its chain inside its data dir.
pub(crate) fn ledger_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ledger")
}

/// Opens the store in `DATA_DIR/ledger`, refusing to create one.
pub(crate) fn open_store(data_dir: &Path) -> Result<SledStore, CliError> {
    let dir = ledger_dir(data_dir);
    // sled keeps its log in `db`; without it, opening would start a new store.
    if !dir.join("db").is_file() {
        return Err(CliError::usage(anyhow::anyhow!(
            "no ledger in {} (a node keeps its chain there once it has joined one; \
             is --data-dir / ORB_DATA_DIR the node's data dir?)",
            dir.display()
        )));
    }
    SledStore::open(&dir).map_err(|e| store_error(&dir, e))
}

/// Opens the chain in `DATA_DIR/ledger` (its stored genesis, balances
/// folded from the stored effects).
pub(crate) fn open_chain(data_dir: &Path) -> Result<Chain, CliError> {
    let store = open_store(data_dir)?;
    let chain = Chain::open(store, None).map_err(|e| chain_error(&ledger_dir(data_dir), e))?;
    if let Some(h) = chain.dropped_torn() {
        eprintln!(
            "note: the ledger's last block ({h}) was torn by a write that never finished; \
             it was dropped (never acknowledged) and the node fetches it again"
        );
    }
    Ok(chain)
}

/// The store failed: held by a running node, or unreadable.
pub(crate) fn store_error(dir: &Path, e: StoreError) -> CliError {
    let StoreError::Io { message, .. } = &e;
    if message.contains("could not acquire lock") {
        return CliError::usage(anyhow::anyhow!(
            "the ledger in {} is open by a running node; stop it, or point --data-dir \
             at a copy of its data dir",
            dir.display()
        ));
    }
    CliError::usage(anyhow::Error::new(e).context(format!(
        "the ledger in {} is unreadable or corrupt",
        dir.display()
    )))
}

/// A chain that cannot be read: every cause is the store's, so exit 2.
pub(crate) fn chain_error(dir: &Path, e: ChainError) -> CliError {
    match e {
        ChainError::Store(e) => store_error(dir, e),
        ChainError::NoGenesis => CliError::usage(anyhow::anyhow!(
            "the ledger in {} has no genesis",
            dir.display()
        )),
        other => CliError::usage(
            anyhow::Error::new(other).context(format!("the ledger in {}", dir.display())),
        ),
    }
}

/// Runs `f`, turning a panic inside it (sled on a garbage file) into exit
/// 2 naming the store, with the default panic message suppressed.
pub(crate) fn guarded<T>(
    data_dir: &Path,
    f: impl FnOnce() -> Result<T, CliError>,
) -> Result<T, CliError> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    result.unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(CliError::usage(anyhow::anyhow!(
            "the ledger in {} is corrupt: the storage engine failed reading it ({why}); \
             move it away and let the node sync again, or restore it from a copy",
            ledger_dir(data_dir).display()
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_reading_the_store_is_exit_2_and_the_hook_comes_back() {
        let err = guarded::<()>(Path::new("/data"), || panic!("sled: bad segment")).unwrap_err();
        assert_eq!(err.code, crate::exit::USAGE);
        let message = err.error.to_string();
        assert!(
            message.contains("/data/ledger is corrupt") && message.contains("sled: bad segment"),
            "{message}"
        );
        assert_eq!(guarded(Path::new("/data"), || Ok(7)).unwrap(), 7);
        // The default hook is back: a later panic is reported as usual.
        assert!(std::panic::catch_unwind(|| panic!("a bug")).is_err());
    }
}
