//! `scripts/bench engine`: orb-engine against hand-written baselines, in one run.
//!
//! 1. A map/filter/count pipeline through the orb-engine API (paced
//!    `iter_source`) vs the same logic hand-written in timely (`InputHandle`,
//!    probe loop), same counting operator (target: orb >= 0.9x).
//! 2. `call` throughput (echo) vs orb-functions called in a plain loop on one
//!    thread (target: call >= 0.8x), with a one-thread executor so both use
//!    one core for guests.
//! 3. Peak memory under backpressure: a fast source into `call` with the lag
//!    gate on (max_lag 4) vs effectively off.

// A bench reports on stdout.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use orb_engine::{CallConfig, EngineConfig, Flow, call, execute, iter_source};
use orb_functions::{CallOptions, Executor, Runtime, RuntimeConfig};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::operators::{Input, Operator, Probe};
use timely::dataflow::{InputHandle, ProbeHandle, Stream};

const RECORDS: u64 = 5_000_000;
const BATCH: usize = 4096;
const ROUNDS: usize = 5;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Counts records per key; emits the counts when the input is complete.
/// (A reduction that held its first capability to the end would stall the
/// probe that paces the source.)
fn count_by_key<'s>(stream: Stream<'s, u64, Vec<u64>>) -> Stream<'s, u64, Vec<(u64, u64)>> {
    let mut counts: HashMap<u64, u64> = HashMap::new();
    let mut cap = None;
    stream.unary_frontier::<CapacityContainerBuilder<Vec<(u64, u64)>>, _, _, _>(
        Pipeline,
        "Count",
        move |_, _| {
            move |(input, frontier), output| {
                input.for_each(|c, data| {
                    if cap.is_none() {
                        cap = c.retain_least(0);
                    }
                    for x in data.drain(..) {
                        *counts.entry(x % 1000).or_default() += 1;
                    }
                });
                // Hold the output back only as far as the input frontier, so
                // the probe downstream (which paces the source) advances.
                if let (Some(c), Some(t)) = (cap.as_mut(), frontier.frontier().first())
                    && c.time() < t
                {
                    c.downgrade(t);
                }
                if frontier.is_empty()
                    && let Some(c) = cap.take()
                {
                    output.session(&c).give_iterator(counts.drain());
                }
            }
        },
    )
}

fn orb_pipeline() -> f64 {
    let started = Instant::now();
    execute(&EngineConfig::default(), |worker| {
        let flow = Flow::new(4, BATCH);
        worker.dataflow::<u64, _, _>(|scope| {
            let s = iter_source(scope, "numbers", &flow, 0..RECORDS)
                .map(|x| x * 3)
                .filter(|x| x % 2 == 0);
            count_by_key(s).probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
    })
    .expect("orb");
    RECORDS as f64 / started.elapsed().as_secs_f64()
}

fn timely_pipeline() -> f64 {
    let started = Instant::now();
    timely::execute(timely::Config::thread(), |worker| {
        let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<u64>>>::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let s = scope
                .input_from(&mut input)
                .map(|x| x * 3)
                .filter(|x| x % 2 == 0);
            count_by_key(s).probe_with(&probe);
        });
        let mut sent = 0u64;
        while sent < RECORDS {
            let end = (sent + BATCH as u64).min(RECORDS);
            for x in sent..end {
                input.send(x);
            }
            sent = end;
            let next = input.time() + 1;
            input.advance_to(next);
            // The same pacing: at most 4 epochs in flight.
            while next >= 4 && probe.less_than(&(next - 4)) {
                worker.step();
            }
        }
        drop(input);
        while worker.step() {}
    })
    .expect("timely")
    .join();
    RECORDS as f64 / started.elapsed().as_secs_f64()
}

fn functions_dir() -> std::path::PathBuf {
    std::env::var_os("ORB_FUNCTIONS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/functions")
        })
}

fn call_rates(calls: u64) -> (f64, f64) {
    let wasm =
        std::fs::read(functions_dir().join("echo.wasm")).expect("echo.wasm: run scripts/guests");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let function = runtime.load(&wasm).expect("load");

    let started = Instant::now();
    for i in 0..calls {
        runtime
            .call(&function, &i.to_le_bytes(), &CallOptions::default())
            .expect("call");
    }
    let plain = calls as f64 / started.elapsed().as_secs_f64();

    let executor = Arc::new(Executor::new(runtime, 1, 256).expect("executor"));
    let started = Instant::now();
    execute(&EngineConfig::default(), move |worker| {
        let flow = Flow::new(8, 256);
        let (executor, function) = (executor.clone(), function.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            let config = CallConfig {
                max_in_flight: 64,
                ..CallConfig::default()
            };
            call(
                iter_source(scope, "n", &flow, 0..calls),
                executor,
                function,
                config,
                |i: &u64| i.to_le_bytes().to_vec(),
            )
            .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
    })
    .expect("call pipeline");
    (calls as f64 / started.elapsed().as_secs_f64(), plain)
}

/// The process's peak resident memory so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A fast source of 4 KiB records into `call` (echo on one executor thread,
/// 4 calls in flight): without the lag gate, records pile up in front of
/// the call operator; with it, the source waits.
fn backpressure_run(max_lag: u64) {
    let wasm =
        std::fs::read(functions_dir().join("echo.wasm")).expect("echo.wasm: run scripts/guests");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let function = runtime.load(&wasm).expect("load");
    let executor = Arc::new(Executor::new(runtime, 1, 256).expect("executor"));
    execute(&EngineConfig::default(), move |worker| {
        let flow = Flow::new(max_lag, 1024);
        let (executor, function) = (executor.clone(), function.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            let records = iter_source(
                scope,
                "fast",
                &flow,
                (0..50_000u64).map(|i| vec![i as u8; 4096]),
            );
            let config = CallConfig {
                max_in_flight: 4,
                ..CallConfig::default()
            };
            call(records, executor, function, config, |r: &Vec<u8>| r.clone())
                .map(|c| c.result.map_or(0, |(out, _)| out.len()))
                .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
    })
    .expect("backpressure");
}

fn main() {
    println!("orb-engine bench ({ROUNDS} rounds each, medians)");
    orb_pipeline();
    timely_pipeline();
    let (mut orb, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        orb.push(orb_pipeline());
        raw.push(timely_pipeline());
    }
    let (orb, raw) = (median(orb), median(raw));
    println!(
        "map/filter/count, {RECORDS} records: orb-engine {:>6.1} M rec/s   hand-written timely {:>6.1} M rec/s   ratio {:.3} (target >= 0.9)",
        orb / 1e6,
        raw / 1e6,
        orb / raw
    );

    call_rates(2_000);
    let (mut op, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (o, p) = call_rates(20_000);
        op.push(o);
        plain.push(p);
    }
    let (op, plain) = (median(op), median(plain));
    println!(
        "echo calls:        call operator {op:>9.0} calls/s   plain loop {plain:>9.0} calls/s   ratio {:.3} (target >= 0.8)",
        op / plain
    );

    let before = peak_rss_mib();
    backpressure_run(4);
    let gated = peak_rss_mib();
    backpressure_run(u64::MAX / 4);
    let ungated = peak_rss_mib();
    println!(
        "backpressure, 50k x 4 KiB records into call: peak RSS {before:.0} MiB before, {gated:.0} MiB with max_lag 4, {ungated:.0} MiB with the gate off (200 MiB of records)"
    );
}
