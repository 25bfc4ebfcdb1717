//! `Runtime`: the one wasmtime engine of a process and how a call runs on it.
//!
//! The engine uses the pooling allocator, fuel metering, epoch interruption
//! and every determinism switch wasmtime has. A module is compiled once and
//! pre-instantiated (`InstancePre`, imports resolved once); each call gets a
//! fresh `Store` with its own limits, WASI context and pipes, so calls share
//! nothing. `call` blocks the current thread: run it on an [`crate::Executor`]
//! thread, never inside a tokio task (WASI preview 1's sync path blocks).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::abi::{self, ModuleInfo, WASI_P1};
use crate::cores::{LongCalls, LongSlot};
use crate::determinism::{self, Seed};
use crate::pipe::{CappedPipe, Overflow};
use crate::{Error, FunctionId, Limits, Result, RuntimeConfig};

/// WASI errno `NOTSUP`: what `poll_oneoff` answers (a guest may not sleep).
const ERRNO_NOTSUP: i32 = 58;

/// How one call is run: its limits, its seed and its clock.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// The call's limits.
    pub limits: Limits,
    /// Seeds the guest's random numbers.
    pub seed: Seed,
    /// What the guest's wall clock reads (time since the Unix epoch).
    pub wall_clock: Duration,
}

impl CallOptions {
    /// Options with these limits, a zero seed and the wall clock at the Unix epoch.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }
}

/// The result of a successful call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What the guest wrote to stdout.
    pub output: Vec<u8>,
    /// Fuel the call consumed (0 when metering is off).
    pub fuel: u64,
    /// Wall-clock time of instantiation plus execution.
    pub duration: Duration,
    /// What the guest wrote to stderr (capped).
    pub log: Vec<u8>,
}

/// A compiled, pre-instantiated function, ready to call. Cheap to clone.
#[derive(Clone)]
pub struct Function {
    id: FunctionId,
    /// The guest's `argv[0]`: a short form of its id.
    program: Arc<str>,
    pre: InstancePre<State>,
}

impl Function {
    /// The function's content address.
    pub fn id(&self) -> FunctionId {
        self.id
    }
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function").field("id", &self.id).finish()
    }
}

/// The per-call host state of a store.
pub(crate) struct State {
    wasi: WasiP1Ctx,
    limiter: CallLimiter,
    /// Held once the call has run long ([`crate::cores`]).
    long: Option<LongSlot>,
}

/// Enforces memory, table and instance limits and remembers which one a guest hit.
struct CallLimiter {
    memory_bytes: usize,
    table_elements: usize,
    tables: usize,
    instances: usize,
    hit: Option<Error>,
}

impl CallLimiter {
    fn new(limits: &Limits) -> Self {
        Self {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            tables: limits.tables,
            instances: limits.instances,
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

    fn memories(&self) -> usize {
        1
    }
}

/// Increments the engine's epoch every tick until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("orb-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
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

struct Inner {
    engine: Engine,
    linker: Linker<State>,
    provided: HashSet<(String, String)>,
    config: RuntimeConfig,
    long_calls: Arc<LongCalls>,
    _ticker: EpochTicker,
}

/// The process's WebAssembly runtime. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

fn runtime_err(context: &str) -> impl FnOnce(wasmtime::Error) -> Error + '_ {
    move |e| Error::Runtime(format!("{context}: {e:#}"))
}

impl Runtime {
    /// Builds the engine (pooling allocator, fuel, epochs, determinism) and
    /// the WASI preview-1 linker, and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let engine = Engine::new(&engine_config(&config)).map_err(runtime_err("engine"))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut State| &mut s.wasi)
            .map_err(runtime_err("WASI linker"))?;
        // A sleeping guest would hold an executor thread outside of epoch
        // interruption, and sleep time is not deterministic: refuse it.
        linker.allow_shadowing(true);
        linker
            .func_wrap(WASI_P1, "poll_oneoff", |_: i32, _: i32, _: i32, _: i32| {
                ERRNO_NOTSUP
            })
            .map_err(runtime_err("WASI linker"))?;
        let provided = provided_imports(&engine, &linker);
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)?;
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                provided,
                long_calls: LongCalls::new(config.long_call_slots),
                config,
                _ticker: ticker,
            }),
        })
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The wasmtime engine (shared by everything in this process).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Validates and compiles module bytes.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Module> {
        if !bytes.starts_with(b"\0asm") {
            return Err(Error::InvalidModule(
                "not a WebAssembly binary (it does not start with `\\0asm`)".into(),
            ));
        }
        Module::from_binary(&self.inner.engine, bytes).map_err(|e| {
            // wasmtime's messages span lines; a CLI error is one line.
            Error::InvalidModule(
                format!("{e:#}")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
    }

    /// Checks a compiled module against the ABI and pre-instantiates it.
    pub(crate) fn prepare(&self, id: FunctionId, module: &Module) -> Result<Function> {
        let info = abi::inspect(id, 0, module, &self.inner.provided);
        if let Some(why) = info.unsupported {
            return Err(Error::UnsupportedAbi(why));
        }
        let pre = self
            .inner
            .linker
            .instantiate_pre(module)
            .map_err(|e| Error::UnsupportedAbi(format!("{e:#}")))?;
        let program = id.to_hex()[..16].into();
        Ok(Function { id, program, pre })
    }

    /// Compiles `bytes` and prepares them as a function (no disk cache; see
    /// [`crate::ModuleStore::load`] for the cached path).
    pub fn load(&self, bytes: &[u8]) -> Result<Function> {
        let module = self.compile(bytes)?;
        self.prepare(FunctionId::of(bytes), &module)
    }

    /// Describes a module's imports and exports and whether Orb can run it.
    pub fn inspect(&self, bytes: &[u8]) -> Result<ModuleInfo> {
        let module = self.compile(bytes)?;
        Ok(abi::inspect(
            FunctionId::of(bytes),
            bytes.len(),
            &module,
            &self.inner.provided,
        ))
    }

    /// Checks that `limits` fit inside what this runtime allows.
    pub fn check_limits(&self, limits: &Limits) -> Result<()> {
        let c = &self.inner.config;
        let checks = [
            (
                "memory limit (bytes)",
                limits.memory_bytes as u64,
                c.max_memory_bytes as u64,
            ),
            ("fuel limit", limits.fuel, c.max_fuel),
            (
                "timeout (ms)",
                limits.timeout.as_millis() as u64,
                c.max_timeout.as_millis() as u64,
            ),
        ];
        for (what, requested, max) in checks {
            if requested > max {
                return Err(Error::LimitTooHigh {
                    what,
                    requested,
                    max,
                });
            }
        }
        Ok(())
    }

    /// Calls holding a long-call slot right now.
    pub fn long_calls(&self) -> usize {
        self.inner.long_calls.taken()
    }

    /// Runs `function` on `input` to completion on the current thread.
    pub fn call(&self, function: &Function, input: &[u8], opts: &CallOptions) -> Result<Outcome> {
        let limits = &opts.limits;
        self.check_limits(limits)?;
        let stdout = CappedPipe::new(limits.output_bytes, Overflow::Trap);
        let stderr = CappedPipe::new(limits.log_bytes, Overflow::Truncate);
        let wasi = determinism::wasi_ctx(
            &function.program,
            input,
            stdout.clone(),
            stderr.clone(),
            &opts.seed,
            opts.wall_clock,
        );
        let mut store = Store::new(
            &self.inner.engine,
            State {
                wasi,
                limiter: CallLimiter::new(limits),
                long: None,
            },
        );
        store.limiter(|s| &mut s.limiter);
        let metering = self.inner.config.metering;
        if metering {
            store.set_fuel(limits.fuel).map_err(runtime_err("fuel"))?;
        }
        // Every tick: the timeout counts ticks run (not ticks waited for a
        // long-call slot); after `long_call_after` the call needs a slot.
        let tick = self.inner.config.epoch_tick;
        let budget = epoch_ticks(limits.timeout, tick);
        let long_after = epoch_ticks(self.inner.config.long_call_after, tick);
        let long_calls = self.inner.long_calls.clone();
        let mut ran = 0u64;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            ran += 1;
            if ran >= budget {
                return Err(Trap::Interrupt.into());
            }
            if ran >= long_after && ctx.data().long.is_none() {
                let slot = long_calls.take();
                ctx.data_mut().long = Some(slot);
            }
            Ok(UpdateDeadline::Continue(1))
        });

        let started = Instant::now();
        let result = function.pre.instantiate(&mut store).and_then(|instance| {
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())
        });
        let duration = started.elapsed();
        drop(store.data_mut().long.take());
        let fuel = if metering {
            limits.fuel - store.get_fuel().unwrap_or(0)
        } else {
            0
        };
        let log = stderr.take();
        let outcome = |log| Outcome {
            output: stdout.take(),
            fuel,
            duration,
            log,
        };
        match result {
            Ok(()) => Ok(outcome(log)),
            Err(e) => {
                let hit = store.data_mut().limiter.hit.take();
                match classify(e, hit, &stdout, limits, &log) {
                    None => Ok(outcome(log)),
                    // The call failed, but the fuel it burned is still reported.
                    Some(err) => Err(err.with_fuel(fuel)),
                }
            }
        }
    }
}

/// Turns a failed call into its error; `None` when the guest exited with code 0.
fn classify(
    e: wasmtime::Error,
    hit: Option<Error>,
    stdout: &CappedPipe,
    limits: &Limits,
    log: &[u8],
) -> Option<Error> {
    let log = String::from_utf8_lossy(log).into_owned();
    if stdout.overflowed() {
        return Some(Error::OutputTooLarge {
            limit: limits.output_bytes,
            fuel: 0,
        });
    }
    if let Some(hit) = hit {
        return Some(hit);
    }
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return (exit.0 != 0).then_some(Error::Exit {
            code: exit.0,
            log,
            fuel: 0,
        });
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Some(Error::OutOfFuel { limit: limits.fuel }),
        Some(Trap::Interrupt) => Some(Error::Timeout {
            limit: limits.timeout,
            fuel: 0,
        }),
        Some(trap) => Some(Error::Trap {
            message: trap.to_string(),
            log,
            fuel: 0,
        }),
        None => Some(Error::Trap {
            message: format!("{e:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            log,
            fuel: 0,
        }),
    }
}

/// Epoch ticks covering `timeout` (at least one).
fn epoch_ticks(timeout: Duration, tick: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    (timeout.as_nanos().div_ceil(tick) as u64).max(1)
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(config.pool_instances)
        .total_memories(config.pool_instances)
        .total_tables(config.pool_instances)
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

/// The `(module, name)` pairs the linker defines, to name a missing import.
fn provided_imports(engine: &Engine, linker: &Linker<State>) -> HashSet<(String, String)> {
    let wasi = wasmtime_wasi::WasiCtxBuilder::new().build_p1();
    let mut store = Store::new(
        engine,
        State {
            wasi,
            limiter: CallLimiter::new(&Limits::default()),
            long: None,
        },
    );
    linker
        .iter(&mut store)
        .map(|(module, name, _)| (module.to_owned(), name.to_owned()))
        .collect()
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
