//! `scripts/bench functions`: the runtime against its baselines, in one run.
//!
//! 1. `echo` calls/s through `Runtime::call` vs a raw wasmtime loop with the
//!    same engine, the same `InstancePre` setup and the same module (target:
//!    orb >= 0.9x raw).
//! 2. `echo` calls/s through the `Executor` with 1 and 2 threads.
//! 3. Fuel metering overhead on `fib`, and on `hash` for contrast: metered /
//!    unmetered time (target <= 1.15).
//! 4. `echo` as a `wasi:cli/run` component vs `echo` as a module: calls/s
//!    through `Runtime::call` on the same engine (target >= 0.8), and the
//!    time to compile each; next to it, the same pair through raw
//!    wasmtime (its component and module loops, nothing of Orb), so the
//!    part of the gap that is wasmtime's own shows in the same run.
//!
//! Each figure is the median of several rounds, measured interleaved so that
//! drift on a shared machine hits both sides alike. Prints ratios.

// A bench reports on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use orb_functions::{CallOptions, Executor, Function, Runtime, RuntimeConfig};
use wasmtime::{InstancePre, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

const ROUNDS: usize = 7;

fn functions_dir() -> std::path::PathBuf {
    std::env::var_os("ORB_FUNCTIONS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/functions")
        })
}

fn example(name: &str) -> Vec<u8> {
    read(functions_dir().join(format!("{name}.wasm")))
}

/// An example's component twin (scripts/guests builds it for wasm32-wasip2).
fn component(name: &str) -> Vec<u8> {
    read(
        functions_dir()
            .join("components")
            .join(format!("{name}.wasm")),
    )
}

fn read(path: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/guests", path.display()))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The raw baseline: wasmtime and WASI p1 used directly, nothing of Orb.
struct Raw {
    pre: InstancePre<WasiP1Ctx>,
}

impl Raw {
    fn new(engine: &wasmtime::Engine, wasm: &[u8]) -> Self {
        let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| s).expect("linker");
        let module = Module::from_binary(engine, wasm).expect("module");
        Self {
            pre: linker.instantiate_pre(&module).expect("pre"),
        }
    }

    fn call(&self, input: &[u8]) -> Vec<u8> {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(input.to_vec()))
            .stdout(stdout.clone())
            .build_p1();
        let mut store = Store::new(self.pre.module().engine(), wasi);
        store.set_fuel(u64::MAX / 2).expect("fuel");
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = self.pre.instantiate(&mut store).expect("instantiate");
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .expect("_start");
        start.call(&mut store, ()).expect("call");
        drop(store);
        stdout.contents().to_vec()
    }
}

/// A raw component's store: WASI 0.2 and its resource table, nothing else.
struct RawP2 {
    ctx: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for RawP2 {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// The raw component baseline: a `wasi:cli/run` component through
/// wasmtime and wasmtime-wasi's p2 bindings directly, as [`Raw`] runs a
/// module.
struct RawComponent {
    pre: CommandPre<RawP2>,
}

impl RawComponent {
    fn new(engine: &wasmtime::Engine, wasm: &[u8]) -> Self {
        let mut linker = wasmtime::component::Linker::<RawP2>::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("linker");
        let component =
            wasmtime::component::Component::from_binary(engine, wasm).expect("component");
        Self {
            pre: CommandPre::new(linker.instantiate_pre(&component).expect("pre"))
                .expect("command"),
        }
    }

    fn call(&self, input: &[u8]) -> Vec<u8> {
        let stdout = MemoryOutputPipe::new(1 << 20);
        let ctx = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(input.to_vec()))
            .stdout(stdout.clone())
            .build();
        let data = RawP2 {
            ctx,
            table: wasmtime::component::ResourceTable::new(),
        };
        let mut store = Store::new(self.pre.engine(), data);
        store.set_fuel(u64::MAX / 2).expect("fuel");
        store.set_epoch_deadline(u64::MAX / 2);
        let command = self.pre.instantiate(&mut store).expect("instantiate");
        command
            .wasi_cli_run()
            .call_run(&mut store)
            .expect("call")
            .expect("exit 0");
        drop(store);
        stdout.contents().to_vec()
    }
}

fn rate(calls: usize, f: impl Fn()) -> f64 {
    let started = Instant::now();
    for _ in 0..calls {
        f();
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

fn executor_rate(executor: &Executor, f: &Function, input: &[u8], calls: usize) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut submitted = 0;
    while submitted < calls {
        let d = done.clone();
        match executor.submit(
            f.clone(),
            input.to_vec(),
            CallOptions::default(),
            move |r| {
                r.expect("call");
                d.fetch_add(1, Ordering::Release);
            },
        ) {
            Ok(()) => submitted += 1,
            // The queue is full: that is the backpressure we want; wait a moment.
            Err(_) => std::thread::sleep(Duration::from_micros(50)),
        }
    }
    while done.load(Ordering::Acquire) < calls {
        std::thread::sleep(Duration::from_micros(50));
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let echo = example("echo");
    let fib = example("fib");
    let hash = example("hash");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    println!("orb-functions bench ({ROUNDS} rounds each, medians)");

    // 1. orb vs raw wasmtime, same engine and module.
    let f = runtime.load(&echo).expect("echo");
    let raw = Raw::new(runtime.engine(), &echo);
    let opts = CallOptions::default();
    assert_eq!(
        raw.call(b"orb"),
        runtime.call(&f, b"orb", &opts).expect("call").output
    );
    let calls = 2_000;
    let (mut orb_rates, mut raw_rates) = (Vec::new(), Vec::new());
    rate(200, || drop(runtime.call(&f, b"orb", &opts)));
    rate(200, || drop(raw.call(b"orb")));
    for _ in 0..ROUNDS {
        orb_rates.push(rate(calls, || {
            drop(runtime.call(&f, b"orb", &opts).expect("call"))
        }));
        raw_rates.push(rate(calls, || drop(raw.call(b"orb"))));
    }
    let (orb, raw) = (median(orb_rates), median(raw_rates));
    println!(
        "echo, 1 thread:   orb {orb:>9.0} calls/s   raw wasmtime {raw:>9.0} calls/s   ratio {:.3} (target >= 0.9)",
        orb / raw
    );

    // 2. the executor with 1 and 2 threads: a short call (echo, dominated by
    // instantiation) and a CPU-bound one (fib(20)).
    let fib_f = runtime.load(&fib).expect("fib");
    for (name, function, input, calls) in [
        ("echo", &f, &b"orb"[..], 4_000),
        ("fib(20)", &fib_f, &b"20"[..], 1_000),
    ] {
        let mut by_threads = Vec::new();
        for threads in [1, 2] {
            let executor = Executor::new(runtime.clone(), threads, 256).expect("executor");
            executor_rate(&executor, function, input, calls / 8);
            let r = median(
                (0..ROUNDS)
                    .map(|_| executor_rate(&executor, function, input, calls))
                    .collect(),
            );
            by_threads.push(r);
        }
        println!(
            "{name:<8} executor: 1 thread {:>9.0} calls/s   2 threads {:>9.0} calls/s   ratio {:.2} (cores: {})",
            by_threads[0],
            by_threads[1],
            by_threads[1] / by_threads[0],
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }

    // 3. fuel metering overhead on a CPU-bound guest.
    let unmetered_rt = Runtime::new(RuntimeConfig {
        metering: false,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    // fib is the worst case (a call per few operators: wasmtime saves and
    // reloads the fuel counter around every call); hashing a large input is a
    // loop-heavy guest for contrast.
    let big = vec![7u8; 4 << 20];
    for (name, wasm, input) in [
        ("fib(30)", &fib, &b"30"[..]),
        ("hash(4 MiB)", &hash, &big[..]),
    ] {
        let metered = runtime.load(wasm).expect("load");
        let unmetered = unmetered_rt.load(wasm).expect("load");
        let fuel = runtime.call(&metered, input, &opts).expect("call").fuel;
        let time = |rt: &Runtime, f: &Function| {
            let started = Instant::now();
            rt.call(f, input, &opts).expect("call");
            started.elapsed().as_secs_f64()
        };
        let (mut m, mut u) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            m.push(time(&runtime, &metered));
            u.push(time(&unmetered_rt, &unmetered));
        }
        let (m, u) = (median(m), median(u));
        println!(
            "{name:<12}      metered {:>7.2} ms   unmetered {:>7.2} ms   ratio {:.3} (target <= 1.15; {fuel} fuel)",
            m * 1e3,
            u * 1e3,
            m / u
        );
    }

    // 4. echo as a component vs echo as a module, same engine, interleaved.
    let echo_component = component("echo");
    let compile_ms = |wasm: &[u8]| {
        median(
            (0..ROUNDS)
                .map(|_| {
                    let started = Instant::now();
                    drop(runtime.load(wasm).expect("load"));
                    started.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        )
    };
    let (compile_c, compile_m) = (compile_ms(&echo_component), compile_ms(&echo));
    let c = runtime.load(&echo_component).expect("echo component");
    let (out_c, out_m) = (
        runtime.call(&c, b"orb", &opts).expect("call"),
        runtime.call(&f, b"orb", &opts).expect("call"),
    );
    assert_eq!(out_c.output, out_m.output);
    let raw_c = RawComponent::new(runtime.engine(), &echo_component);
    let raw_m = Raw::new(runtime.engine(), &echo);
    assert_eq!(raw_c.call(b"orb"), out_m.output);
    let calls = 2_000;
    let mut rates: [Vec<f64>; 4] = Default::default();
    rate(200, || drop(runtime.call(&c, b"orb", &opts)));
    rate(200, || drop(raw_c.call(b"orb")));
    for _ in 0..ROUNDS {
        rates[0].push(rate(calls, || {
            drop(runtime.call(&c, b"orb", &opts).expect("call"))
        }));
        rates[1].push(rate(calls, || {
            drop(runtime.call(&f, b"orb", &opts).expect("call"))
        }));
        rates[2].push(rate(calls, || drop(raw_c.call(b"orb"))));
        rates[3].push(rate(calls, || drop(raw_m.call(b"orb"))));
    }
    let [cr, mr, rc, rm] = rates.map(median);
    println!(
        "echo component:  {cr:>9.0} calls/s   module {mr:>9.0} calls/s   ratio {:.3} (target >= 0.8); fuel {} vs {}; compile {compile_c:.1} ms vs {compile_m:.1} ms",
        cr / mr,
        out_c.fuel,
        out_m.fuel
    );
    println!(
        "  raw wasmtime:  {rc:>9.0} calls/s   module {rm:>9.0} calls/s   ratio {:.3}; orb / raw: component {:.3}, module {:.3}",
        rc / rm,
        cr / rc,
        mr / rm
    );
}
