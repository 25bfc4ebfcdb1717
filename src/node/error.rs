//! [`Error`]: why a node did not start or did not stop cleanly. Each
//! variant names the cause; [`Error::is_usage`] tells the caller's mistakes
//! (settings, files, addresses) from the host's (`orb node` exits 2 for
//! the first, 1 for the second).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a node did not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting of [`NodeConfig`](super::NodeConfig) is out of range.
    #[error("{0}")]
    Config(String),
    /// The data dir cannot be created.
    #[error("cannot create the data dir {}", path.display())]
    DataDir {
        /// The data dir.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The node's database cannot be opened or written (another node may
    /// hold the data dir).
    #[error("cannot open {}", path.display())]
    Database {
        /// The database's directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    /// The HTTP API cannot listen on its address.
    #[error("cannot serve the API on {addr}")]
    Api {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The network cannot start: a listen address is unusable, or a
    /// bootstrap address names no peer.
    #[error(transparent)]
    Listen(orb_net::Error),
    /// The network failed while the node started (its identity, its peer
    /// store, its listeners).
    #[error(transparent)]
    Net(#[from] orb_net::Error),
    /// The genesis file or the chain in the data dir is unusable.
    #[error("{0}")]
    Ledger(String),
    /// A dataflow (routing, consensus) cannot start.
    #[error(transparent)]
    Engine(#[from] orb_engine::Error),
    /// The WebAssembly runtime, the executor pool or the module store.
    #[error(transparent)]
    Functions(#[from] orb_functions::Error),
    /// A module was not stored: over the size limit or a quota, or the
    /// compiler was busy.
    #[error("{0}")]
    Refused(String),
    /// The node did not stop cleanly; what is left running.
    #[error("the node did not stop cleanly: {0}")]
    Shutdown(String),
}

impl Error {
    /// Whether the caller is at fault (a setting, a file, an address), not
    /// the host.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Config(_) | Error::Api { .. } | Error::Listen(_) | Error::Ledger(_)
        )
    }
}
