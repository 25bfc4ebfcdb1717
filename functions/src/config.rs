//! `RuntimeConfig`: how one process's runtime is sized. CLI flags map onto it.

use std::time::Duration;

use crate::Limits;

/// Configuration of a [`crate::Runtime`] and its [`crate::Executor`].
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Limits a call gets when it does not set its own.
    pub default_limits: Limits,
    /// The largest memory any call may ask for (sizes the pooling allocator).
    pub max_memory_bytes: usize,
    /// The most fuel any call may ask for.
    pub max_fuel: u64,
    /// The longest timeout any call may ask for.
    pub max_timeout: Duration,
    /// Instance slots in the pooling allocator: the most calls live at once.
    pub pool_instances: u32,
    /// Bytes of each memory and table slot kept resident between calls and
    /// reset in place (see `PoolingAllocationConfig::linear_memory_keep_resident`).
    pub keep_resident_bytes: usize,
    /// Period of the epoch ticker that enforces timeouts.
    pub epoch_tick: Duration,
    /// Whether guests are metered with fuel. Only benchmarks turn this off.
    pub metering: bool,
    /// OS threads of the executor pool.
    pub executor_threads: usize,
    /// Calls that may wait for an executor thread before submissions get `Busy`.
    pub executor_queue: usize,
    /// Calls that may run long at once; a call that has run for
    /// `long_call_after` waits, paused, for one of these slots. Below the
    /// cores, a core stays free for short calls however many long ones run.
    pub long_call_slots: usize,
    /// How long a call runs before it needs a long-call slot.
    pub long_call_after: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            default_limits: Limits::default(),
            max_memory_bytes: 1 << 30,
            max_fuel: u64::MAX,
            max_timeout: Duration::from_secs(600),
            pool_instances: 128,
            keep_resident_bytes: 2 << 20,
            epoch_tick: Duration::from_millis(5),
            metering: true,
            executor_threads: threads,
            executor_queue: 256,
            long_call_slots: threads,
            long_call_after: Duration::from_millis(10),
        }
    }
}
