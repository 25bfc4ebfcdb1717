//! `Runtime`: the one wasmtime engine of a process and how a call runs on it.
//!
//! The engine uses the pooling allocator, fuel metering, epoch interruption
//! and every determinism switch wasmtime has. A function, module or
//! component, is compiled once and pre-instantiated (imports resolved
//! once: an `InstancePre` for a module, a `CommandPre` for a component);
//! each call gets a fresh `Store` with its own limits, WASI context and
//! pipes, so calls share nothing. Both kinds run under the same store
//! setup (fuel, epoch deadline, limiter) and their failures are classified
//! alike, so a limit gives the same error whichever kind hit it. `call`
//! blocks the current thread: run it on an [`crate::Executor`] thread,
//! never inside a tokio task (WASI's sync paths block).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::{Engine, InstancePre, Linker, Module, Precompiled, Store, Trap, UpdateDeadline};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi_http::p2::bindings::sync::ProxyPre;

use crate::abi::{self, FunctionKind, ModuleInfo, WASI_P1};
use crate::component::{self, ComponentState, Prepared, WasiP2};
use crate::cores::{LongCalls, LongSlot};
use crate::determinism::{Seed, Wasi};
use crate::engine::{self, EpochTicker, epoch_ticks};
use crate::http::{self, Handled};
use crate::limits::CallLimiter;
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
    pre: Pre,
}

/// What a call instantiates: a module's imports or a component's, resolved.
#[derive(Clone)]
enum Pre {
    Module(InstancePre<ModuleState>),
    Component(CommandPre<ComponentState>),
    /// A `wasi:http/proxy` component: its input and output are encoded
    /// [`crate::HttpRequest`] and [`crate::HttpResponse`].
    Http(ProxyPre<ComponentState>),
}

impl Function {
    /// The function's content address.
    pub fn id(&self) -> FunctionId {
        self.id
    }

    /// Whether it is a module or a component.
    pub fn kind(&self) -> FunctionKind {
        match self.pre {
            Pre::Module(_) => FunctionKind::Module,
            Pre::Component(_) | Pre::Http(_) => FunctionKind::Component,
        }
    }

    /// Whether it is a `wasi:http/proxy` component (its input is an
    /// encoded [`crate::HttpRequest`], its output an encoded
    /// [`crate::HttpResponse`]).
    pub fn serves_http(&self) -> bool {
        matches!(self.pre, Pre::Http(_))
    }
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("id", &self.id)
            .field("kind", &self.kind())
            .finish()
    }
}

/// Compiled code of either kind, as the module store keeps it.
pub(crate) enum Compiled {
    Module(Module),
    Component(Component),
}

impl Compiled {
    pub(crate) fn kind(&self) -> FunctionKind {
        match self {
            Compiled::Module(_) => FunctionKind::Module,
            Compiled::Component(_) => FunctionKind::Component,
        }
    }

    /// wasmtime's serialized compilation (what [`Runtime::deserialize`] reads).
    pub(crate) fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Compiled::Module(m) => m.serialize(),
            Compiled::Component(c) => c.serialize(),
        }
    }
}

/// The per-call host state of a store: the WASI state of the function's
/// kind (`WasiP1Ctx` for a module, [`WasiP2`] for a component), the
/// limiter, and the long-call slot.
pub(crate) struct State<W> {
    pub(crate) wasi: W,
    limiter: CallLimiter,
    /// Held once the call has run long ([`crate::cores`]).
    long: Option<LongSlot>,
}

/// The store type of a module call.
type ModuleState = State<WasiP1Ctx>;

/// How a call's run ended, before it is classified.
struct Ran {
    result: wasmtime::Result<()>,
    fuel: u64,
    duration: Duration,
    hit: Option<Error>,
}

struct Inner {
    engine: Engine,
    linker: Linker<ModuleState>,
    provided: HashSet<(String, String)>,
    components: wasmtime::component::Linker<ComponentState>,
    config: RuntimeConfig,
    long_calls: Arc<LongCalls>,
    /// The response bodies of the http calls running now.
    bodies: Arc<http::Bodies>,
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
    /// Builds the engine (pooling allocator, fuel, epochs, determinism), the
    /// WASI preview-1 linker of modules and the WASI 0.2 linker of
    /// components, and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let engine = Engine::new(&engine::config(&config)).map_err(runtime_err("engine"))?;
        let mut linker: Linker<ModuleState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut ModuleState| &mut s.wasi)
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
        let components = component::linker(&engine).map_err(runtime_err("WASI 0.2 linker"))?;
        let bodies = Arc::new(http::Bodies::default());
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick, bodies.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                provided,
                components,
                long_calls: LongCalls::new(config.long_call_slots),
                config,
                bodies,
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

    /// Validates and compiles a function's bytes, a module or a component
    /// as their header says.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Compiled> {
        if !bytes.starts_with(b"\0asm") {
            return Err(Error::InvalidModule(
                "not a WebAssembly binary (it does not start with `\\0asm`)".into(),
            ));
        }
        // wasmtime's messages span lines; a CLI error is one line.
        let invalid = |prefix: &str, e: wasmtime::Error| {
            Error::InvalidModule(format!(
                "{prefix}{}",
                format!("{e:#}")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
        };
        match FunctionKind::of(bytes) {
            FunctionKind::Module => Module::from_binary(&self.inner.engine, bytes)
                .map(Compiled::Module)
                .map_err(|e| invalid("", e)),
            FunctionKind::Component => Component::from_binary(&self.inner.engine, bytes)
                .map(Compiled::Component)
                .map_err(|e| invalid("this component does not compile: ", e)),
        }
    }

    /// Reads back what [`Compiled::serialize`] wrote, as the kind it was.
    ///
    /// # Safety
    ///
    /// As `Module::deserialize`: `artifact` must be wasmtime's own output
    /// (the module store checks a seal over the function id, its kind and
    /// every byte before calling this; wasmtime still checks the header's
    /// version and engine settings).
    #[allow(unsafe_code)]
    pub(crate) unsafe fn deserialize(
        &self,
        kind: FunctionKind,
        artifact: &[u8],
    ) -> wasmtime::Result<Compiled> {
        let engine = &self.inner.engine;
        let found = Engine::detect_precompiled(artifact);
        match (kind, found) {
            // SAFETY: the caller's contract, passed on.
            (FunctionKind::Module, Some(Precompiled::Module)) => unsafe {
                Module::deserialize(engine, artifact).map(Compiled::Module)
            },
            // SAFETY: the caller's contract, passed on.
            (FunctionKind::Component, Some(Precompiled::Component)) => unsafe {
                Component::deserialize(engine, artifact).map(Compiled::Component)
            },
            (kind, found) => Err(wasmtime::format_err!(
                "the artifact of a {kind} holds {}",
                match found {
                    Some(Precompiled::Module) => "a module",
                    Some(Precompiled::Component) => "a component",
                    None => "no compiled code",
                }
            )),
        }
    }

    /// Checks compiled code against the ABI and pre-instantiates it.
    pub(crate) fn prepare(&self, id: FunctionId, compiled: &Compiled) -> Result<Function> {
        let program = id.to_hex()[..16].into();
        let pre = match compiled {
            Compiled::Module(module) => {
                let info = abi::inspect(id, 0, module, &self.inner.provided);
                if let Some(why) = info.unsupported {
                    return Err(Error::UnsupportedAbi(why));
                }
                let pre = self
                    .inner
                    .linker
                    .instantiate_pre(module)
                    .map_err(|e| Error::UnsupportedAbi(format!("{e:#}")))?;
                Pre::Module(pre)
            }
            Compiled::Component(c) => {
                let info = component::inspect(id, 0, c, &self.inner.engine);
                if let Some(why) = info.unsupported {
                    return Err(Error::UnsupportedAbi(why));
                }
                let proxy = info.world.as_deref() == Some(component::PROXY);
                match component::prepare(&self.inner.components, c, proxy)
                    .map_err(Error::UnsupportedAbi)?
                {
                    Prepared::Command(pre) => Pre::Component(pre),
                    Prepared::Proxy(pre) => Pre::Http(pre),
                }
            }
        };
        Ok(Function { id, program, pre })
    }

    /// Compiles `bytes` and prepares them as a function (no disk cache; see
    /// [`crate::ModuleStore::load`] for the cached path).
    pub fn load(&self, bytes: &[u8]) -> Result<Function> {
        let compiled = self.compile(bytes)?;
        self.prepare(FunctionId::of(bytes), &compiled)
    }

    /// Describes a module's or a component's imports and exports and
    /// whether Orb can run it.
    pub fn inspect(&self, bytes: &[u8]) -> Result<ModuleInfo> {
        let id = FunctionId::of(bytes);
        Ok(match self.compile(bytes)? {
            Compiled::Module(module) => {
                abi::inspect(id, bytes.len(), &module, &self.inner.provided)
            }
            Compiled::Component(c) => {
                let mut info = component::inspect(id, bytes.len(), &c, &self.inner.engine);
                // What the component's type allows, the linker still checks.
                if info.unsupported.is_none() {
                    let proxy = info.world.as_deref() == Some(component::PROXY);
                    info.unsupported = component::prepare(&self.inner.components, &c, proxy).err();
                }
                info
            }
        })
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
        if !function.serves_http() {
            http::refuse_request(input)?;
        }
        let stdout = CappedPipe::new(limits.output_bytes, Overflow::Trap);
        let stderr = CappedPipe::new(limits.log_bytes, Overflow::Truncate);
        let wasi = Wasi {
            program: &function.program,
            input,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            seed: &opts.seed,
            wall_clock: opts.wall_clock,
        };
        let ran = match &function.pre {
            Pre::Module(pre) => {
                let store = self.store(wasi.p1(), CallLimiter::module(limits), limits)?;
                self.run(store, limits, |store| {
                    let instance = pre.instantiate(&mut *store)?;
                    let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
                    start.call(&mut *store, ())
                })
            }
            Pre::Component(pre) => {
                let wasi = WasiP2::new(wasi.p2());
                let store = self.store(wasi, CallLimiter::component(limits), limits)?;
                self.run(store, limits, |store| {
                    let command = pre.instantiate(&mut *store)?;
                    match command.wasi_cli_run().call_run(&mut *store)? {
                        Ok(()) => Ok(()),
                        // `run` returned its error without calling `exit`:
                        // what a command's exit status 1 means.
                        Err(()) => Err(wasmtime::Error::new(I32Exit(1))),
                    }
                })
            }
            Pre::Http(pre) => return self.serve(pre, input, wasi, &stderr, limits),
        };
        let log = stderr.take();
        let outcome = |log| Outcome {
            output: stdout.take(),
            fuel: ran.fuel,
            duration: ran.duration,
            log,
        };
        match ran.result {
            Ok(()) => Ok(outcome(log)),
            Err(e) => match classify(e, ran.hit, &stdout, limits, &log) {
                None => Ok(outcome(log)),
                // The call failed, but the fuel it burned is still reported.
                Some(err) => Err(err.with_fuel(ran.fuel)),
            },
        }
    }

    /// Runs a `wasi:http/proxy` call: `input` is an encoded request, the
    /// output the encoded response.
    fn serve(
        &self,
        pre: &ProxyPre<ComponentState>,
        input: &[u8],
        wasi: Wasi<'_>,
        stderr: &CappedPipe,
        limits: &Limits,
    ) -> Result<Outcome> {
        let request = http::request(input)?;
        // The guest reads its body from the request, not stdin.
        let wasi = WasiP2::new(Wasi { input: &[], ..wasi }.p2());
        let store = self.store(wasi, CallLimiter::component(limits), limits)?;
        let running = self.inner.bodies.slot();
        let slot = &running.slot;
        let ran = self.run(store, limits, |store| {
            http::handle(store, pre, request, slot, limits.output_bytes)
        });
        // The store is gone: the body's writer is closed.
        let handled = slot.take();
        let log = stderr.take();
        let fuel = ran.fuel;
        if let Err(e) = ran.result {
            let nothing = CappedPipe::new(limits.output_bytes, Overflow::Trap);
            if let Some(err) = classify(e, ran.hit, &nothing, limits, &log) {
                return Err(err.with_fuel(fuel));
            }
        }
        match handled {
            Handled::Response(response) => Ok(Outcome {
                output: response.encode(),
                fuel,
                duration: ran.duration,
                log,
            }),
            Handled::TooLarge => Err(Error::OutputTooLarge {
                limit: limits.output_bytes,
                fuel,
            }),
            Handled::Failed(message) => Err(Error::Trap {
                message,
                log: String::from_utf8_lossy(&log).into_owned(),
                fuel,
            }),
        }
    }

    /// A call's store: its limiter, its fuel and its epoch deadline, the
    /// same for a module and a component.
    fn store<W: 'static>(
        &self,
        wasi: W,
        limiter: CallLimiter,
        limits: &Limits,
    ) -> Result<Store<State<W>>> {
        let mut store = Store::new(
            &self.inner.engine,
            State {
                wasi,
                limiter,
                long: None,
            },
        );
        store.limiter(|s| &mut s.limiter);
        if self.inner.config.metering {
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
        Ok(store)
    }

    /// Runs `body` (instantiation and the guest's entry point) in `store`
    /// and takes what the call left: its fuel and the limit it hit.
    fn run<W: 'static>(
        &self,
        mut store: Store<State<W>>,
        limits: &Limits,
        body: impl FnOnce(&mut Store<State<W>>) -> wasmtime::Result<()>,
    ) -> Ran {
        let started = Instant::now();
        let result = body(&mut store);
        let duration = started.elapsed();
        drop(store.data_mut().long.take());
        let fuel = if self.inner.config.metering {
            limits.fuel - store.get_fuel().unwrap_or(0)
        } else {
            0
        };
        Ran {
            result,
            fuel,
            duration,
            hit: store.data_mut().limiter.hit.take(),
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

/// The `(module, name)` pairs the linker defines, to name a missing import.
fn provided_imports(engine: &Engine, linker: &Linker<ModuleState>) -> HashSet<(String, String)> {
    let wasi = wasmtime_wasi::WasiCtxBuilder::new().build_p1();
    let mut store = Store::new(
        engine,
        State {
            wasi,
            limiter: CallLimiter::module(&Limits::default()),
            long: None,
        },
    );
    linker
        .iter(&mut store)
        .map(|(module, name, _)| (module.to_owned(), name.to_owned()))
        .collect()
}
