//! The errors of `orb-net`.

use libp2p::PeerId;

/// What can go wrong on the network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event loop has stopped (the node is shutting down).
    #[error("the network task has stopped")]
    Stopped,
    /// A multiaddr or listen address was refused.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Dialing a peer failed.
    #[error("cannot reach {addr}: {reason}")]
    Dial {
        /// The address or peer dialed.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A request to a peer failed (connection lost, timeout, refused stream).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer asked.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// As many requests as the window allows are in flight to that peer:
    /// it counts as busy.
    #[error("{peer} has {window} requests in flight already")]
    WindowFull {
        /// The peer asked.
        peer: PeerId,
        /// The window.
        window: usize,
    },
    /// A DHT query failed.
    #[error("DHT: {0}")]
    Dht(String),
    /// A DHT lookup asked nobody: the node is connected to peers but has
    /// none in its routing table yet (they are added as they identify),
    /// so a record it did not find is not known missing.
    #[error("DHT: connected, but no peer in the routing table yet")]
    NotJoined,
    /// A name record did not verify.
    #[error("name record for `{name}` is invalid: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The identity key file is unreadable or corrupt.
    #[error("identity key {path}: {reason}")]
    Identity {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The peer store failed.
    #[error("peer store: {0}")]
    Store(#[from] sled::Error),
    /// Building the swarm failed.
    #[error("cannot start the network: {0}")]
    Start(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
