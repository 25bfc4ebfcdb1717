//! Per-call limits: every call is bounded in fuel, time, memory, tables,
//! instances and output, each with a default that a caller may override.

use std::time::Duration;

/// The bounds one call runs under. Each exhaustion has its own [`crate::Error`].
///
/// Fuel is deterministic (the same call uses the same fuel everywhere); the
/// timeout is wall-clock and exists only as a guard against a stuck node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel units the guest may consume (about one per WebAssembly operator).
    pub fuel: u64,
    /// Wall-clock bound, enforced by epoch interruption.
    pub timeout: Duration,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
    /// Largest number of elements in any table.
    pub table_elements: usize,
    /// Most tables a call may create.
    pub tables: usize,
    /// Most instances a call may create.
    pub instances: usize,
    /// Largest output (stdout), in bytes. Writing more fails the call.
    pub output_bytes: usize,
    /// Largest captured log (stderr), in bytes. More is dropped silently.
    pub log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 2_000_000_000,
            timeout: Duration::from_secs(10),
            memory_bytes: 64 << 20,
            table_elements: 100_000,
            tables: 4,
            instances: 1,
            output_bytes: 1 << 20,
            log_bytes: 64 << 10,
        }
    }
}
