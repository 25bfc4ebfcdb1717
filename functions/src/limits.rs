//! Per-call limits: every call is bounded in fuel, time, memory, tables,
//! instances and output, each with a default that a caller may override.
//! [`CallLimiter`] enforces the memory, table and instance bounds inside a
//! call's store, for modules and components alike.

use std::time::Duration;

use wasmtime::ResourceLimiter;

use crate::Error;

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
    /// Most instances a call may create. A component counts as one: the
    /// core instances it is made of (a Rust `wasm32-wasip2` component has a
    /// few) count together, up to [`CORE_INSTANCES_PER_COMPONENT`].
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

/// Core instances one component may be made of. The engine's pooling
/// allocator refuses a component with more when it is compiled.
pub const CORE_INSTANCES_PER_COMPONENT: usize = 16;

/// Enforces memory, table and instance limits and remembers which one a guest hit.
pub(crate) struct CallLimiter {
    memory_bytes: usize,
    table_elements: usize,
    tables: usize,
    instances: usize,
    pub(crate) hit: Option<Error>,
}

impl CallLimiter {
    /// The limiter of a call to a core module.
    pub(crate) fn module(limits: &Limits) -> Self {
        Self::new(limits, limits.instances)
    }

    /// The limiter of a call to a component: each instance the limits allow
    /// may be a component's worth of core instances.
    pub(crate) fn component(limits: &Limits) -> Self {
        Self::new(
            limits,
            limits
                .instances
                .saturating_mul(CORE_INSTANCES_PER_COMPONENT),
        )
    }

    fn new(limits: &Limits, instances: usize) -> Self {
        Self {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            tables: limits.tables,
            instances,
            hit: None,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit.get_or_insert(Error::MemoryLimit {
                limit: self.memory_bytes,
                fuel: 0,
            });
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit.get_or_insert(Error::ResourceLimit {
                resource: "table elements",
                limit: self.table_elements,
                fuel: 0,
            });
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    /// One linear memory per call, module or component: the memory limit
    /// is then the call's whole memory.
    fn memories(&self) -> usize {
        1
    }
}
