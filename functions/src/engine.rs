//! The engine: how the process's one wasmtime `Engine` is configured
//! (pooling allocator sized for modules and components, fuel, epoch
//! interruption, the determinism switches) and the epoch ticker that
//! enforces timeouts (and hands long http calls' response bodies to drain
//! tasks). [`crate::Runtime::new`] builds both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::http::Bodies;
use crate::limits::CORE_INSTANCES_PER_COMPONENT;
use crate::{Error, Result, RuntimeConfig};

/// Increments the engine's epoch every tick until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Ticks `engine`'s epoch every `tick`, and then lets `bodies` hand
    /// the response bodies of calls running that long to drain tasks.
    pub(crate) fn start(engine: Engine, tick: Duration, bodies: Arc<Bodies>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("orb-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                    bodies.rescue();
                }
            })
            .map_err(|e| Error::Runtime(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Epoch ticks covering `timeout` (at least one).
pub(crate) fn epoch_ticks(timeout: Duration, tick: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    (timeout.as_nanos().div_ceil(tick) as u64).max(1)
}

/// Tables one component may hold, all its core instances together (a
/// Rust `wasm32-wasip2` component has two: its own and its import shim's).
const TABLES_PER_COMPONENT: u32 = 4;

pub(crate) fn config(config: &RuntimeConfig) -> Config {
    // A call holds one memory, module or component; a component call also
    // holds several core instances and tables: the pool has room for
    // `pool_instances` calls of either kind. Core instance slots cost only
    // their count (their metadata is allocated on use); a table slot is
    // reserved address space (`table_elements` pointers), resident only
    // once used.
    let calls = config.pool_instances;
    let core_instances = u32::try_from(CORE_INSTANCES_PER_COMPONENT).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(calls.saturating_mul(core_instances))
        .total_component_instances(calls)
        .max_core_instances_per_component(core_instances)
        .max_memories_per_component(1)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .total_memories(calls)
        .total_tables(calls.saturating_mul(TABLES_PER_COMPONENT))
        .max_memory_size(config.max_memory_bytes)
        .table_elements(config.default_limits.table_elements.max(20_000))
        // Reset a slot by rewriting only its dirty pages (PAGEMAP_SCAN, Linux
        // >= 6.7) instead of madvise: each madvise is a TLB shootdown that
        // stalls every other core, which serialized concurrent short calls.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(config.keep_resident_bytes)
        .table_keep_resident(config.keep_resident_bytes);
    let mut c = Config::new();
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .consume_fuel(config.metering)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        // Threads stay off: the `threads` feature of wasmtime is not compiled in.
        .parallel_compilation(true);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_ticks_round_up() {
        let tick = Duration::from_millis(5);
        assert_eq!(epoch_ticks(Duration::from_millis(0), tick), 1);
        assert_eq!(epoch_ticks(Duration::from_millis(5), tick), 1);
        assert_eq!(epoch_ticks(Duration::from_millis(6), tick), 2);
    }
}
