//! The one error type of `orb-engine`.

/// What can go wrong running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// timely could not start (bad cluster configuration, peers unreachable ...).
    #[error("cannot start the dataflow: {0}")]
    Start(String),
    /// A worker panicked; timely is fail-stop, so the pipeline is lost.
    #[error("a worker failed: {0}")]
    Worker(String),
    /// A persistent stream's storage failed.
    #[error("persistent stream `{name}`: {source}")]
    Storage {
        /// The stream's name.
        name: String,
        /// The sled error.
        source: sled::Error,
    },
    /// A persisted record could not be decoded.
    #[error("persistent stream `{name}`: record {index} is corrupt: {reason}")]
    Corrupt {
        /// The stream's name.
        name: String,
        /// The record's index.
        index: u64,
        /// Why it did not decode.
        reason: String,
    },
    /// A dataflow thread could not be started.
    #[error("cannot start a dataflow thread: {0}")]
    Thread(String),
    /// The dataflow has stopped (its node is shutting down).
    #[error("the dataflow has stopped")]
    Stopped,
    /// A function call setup failed.
    #[error(transparent)]
    Function(#[from] orb_functions::Error),
}

/// The result type of `orb-engine`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
