//! The one error type of `orb-functions`: each variant names a cause and
//! carries what a caller needs to act on it.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong loading or calling a function.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The guest used all its fuel.
    #[error("out of fuel: the call used its limit of {limit} fuel units")]
    OutOfFuel {
        /// The fuel limit of the call.
        limit: u64,
    },
    /// The guest ran past its wall-clock limit.
    #[error("timeout: the call ran longer than {}ms", limit.as_millis())]
    Timeout {
        /// The wall-clock limit of the call.
        limit: Duration,
        /// Fuel the call used before it failed.
        fuel: u64,
    },
    /// The guest tried to grow its memory past the limit.
    #[error("memory limit: the guest tried to grow its memory past {limit} bytes")]
    MemoryLimit {
        /// The memory limit in bytes.
        limit: usize,
        /// Fuel the call used before it failed.
        fuel: u64,
    },
    /// The guest exceeded a table, table-size or instance limit.
    #[error("resource limit: the guest exceeded its limit of {limit} {resource}")]
    ResourceLimit {
        /// Which resource ("tables", "table elements", "instances").
        resource: &'static str,
        /// Its limit.
        limit: usize,
        /// Fuel the call used before it failed.
        fuel: u64,
    },
    /// The guest wrote more output than allowed.
    #[error("output too large: the guest wrote more than {limit} bytes")]
    OutputTooLarge {
        /// The output limit in bytes.
        limit: usize,
        /// Fuel the call used before it failed.
        fuel: u64,
    },
    /// The bytes are not a valid WebAssembly module.
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// The module is valid WebAssembly but not a WASI preview-1 command.
    #[error("unsupported ABI: {0}")]
    UnsupportedAbi(String),
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, a panic ...).
    #[error("guest trapped: {message}{}", log_tail(log))]
    Trap {
        /// The trap, as wasmtime describes it.
        message: String,
        /// The guest's captured stderr.
        log: String,
        /// Fuel the call used before it failed.
        fuel: u64,
    },
    /// The guest called `proc_exit` with a non-zero code.
    #[error("guest exited with code {code}{}", log_tail(log))]
    Exit {
        /// The exit code.
        code: i32,
        /// The guest's captured stderr.
        log: String,
        /// Fuel the call used before it failed.
        fuel: u64,
    },
    /// The executor's queue is full; try later or elsewhere.
    #[error("busy: the executor queue is full ({capacity} calls waiting)")]
    Busy {
        /// The queue capacity.
        capacity: usize,
    },
    /// A limit asked for more than this runtime was configured to allow.
    #[error("{what} of {requested} exceeds this runtime's maximum of {max}")]
    LimitTooHigh {
        /// The limit's name.
        what: &'static str,
        /// What the call asked for.
        requested: u64,
        /// What the runtime allows.
        max: u64,
    },
    /// A function id was not 64 hex digits.
    #[error("invalid function id `{0}`: expected 64 hex digits (a blake3 hash)")]
    InvalidFunctionId(String),
    /// Stored module bytes do not hash to their id.
    #[error("module hash mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// The id the module was stored under.
        expected: String,
        /// The hash of the bytes found.
        actual: String,
    },
    /// The module store has no module with this id.
    #[error("no module {0} in the store")]
    NotStored(String),
    /// The module store's disk failed.
    #[error("module store at {}: {source}", path.display())]
    Store {
        /// The file or directory involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An http function's input is not an HTTP request it can take.
    #[error("invalid HTTP request: {0}")]
    InvalidRequest(String),
    /// The runtime itself failed (engine setup, executor shut down ...).
    #[error("runtime: {0}")]
    Runtime(String),
}

impl Error {
    /// A short, stable name for the kind of error (used in JSON output).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::OutOfFuel { .. } => "out_of_fuel",
            Error::Timeout { .. } => "timeout",
            Error::MemoryLimit { .. } => "memory_limit",
            Error::ResourceLimit { .. } => "resource_limit",
            Error::OutputTooLarge { .. } => "output_too_large",
            Error::InvalidModule(_) => "invalid_module",
            Error::UnsupportedAbi(_) => "unsupported_abi",
            Error::Trap { .. } => "trap",
            Error::Exit { .. } => "exit",
            Error::Busy { .. } => "busy",
            Error::LimitTooHigh { .. } => "limit_too_high",
            Error::InvalidFunctionId(_) => "invalid_function_id",
            Error::HashMismatch { .. } => "hash_mismatch",
            Error::NotStored(_) => "not_stored",
            Error::Store { .. } => "store",
            Error::InvalidRequest(_) => "invalid_request",
            Error::Runtime(_) => "runtime",
        }
    }

    /// Fuel the call used, for a guest that failed while running.
    pub fn fuel(&self) -> Option<u64> {
        match self {
            Error::OutOfFuel { limit } => Some(*limit),
            Error::Timeout { fuel, .. }
            | Error::MemoryLimit { fuel, .. }
            | Error::ResourceLimit { fuel, .. }
            | Error::OutputTooLarge { fuel, .. }
            | Error::Trap { fuel, .. }
            | Error::Exit { fuel, .. } => Some(*fuel),
            _ => None,
        }
    }

    /// Records the fuel a failed call used.
    pub(crate) fn with_fuel(mut self, used: u64) -> Self {
        match &mut self {
            Error::Timeout { fuel, .. }
            | Error::MemoryLimit { fuel, .. }
            | Error::ResourceLimit { fuel, .. }
            | Error::OutputTooLarge { fuel, .. }
            | Error::Trap { fuel, .. }
            | Error::Exit { fuel, .. } => *fuel = used,
            _ => {}
        }
        self
    }

    /// True when the guest itself failed (as opposed to the caller or the host).
    pub fn is_guest_failure(&self) -> bool {
        matches!(
            self,
            Error::OutOfFuel { .. }
                | Error::Timeout { .. }
                | Error::MemoryLimit { .. }
                | Error::ResourceLimit { .. }
                | Error::OutputTooLarge { .. }
                | Error::Trap { .. }
                | Error::Exit { .. }
        )
    }

    /// True when the module was refused before running (bad bytes or ABI).
    pub fn is_module_rejected(&self) -> bool {
        matches!(self, Error::InvalidModule(_) | Error::UnsupportedAbi(_))
    }
}

/// The last lines of a guest log, to append to an error message.
fn log_tail(log: &str) -> String {
    let log = log.trim_end();
    if log.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = log.lines().collect();
    let tail = &lines[lines.len().saturating_sub(5)..];
    format!("\nguest stderr:\n  {}", tail.join("\n  "))
}

/// The result type of `orb-functions`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
