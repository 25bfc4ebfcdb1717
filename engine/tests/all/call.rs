//! The `call` operator: results at their timestamps, a bound on calls in
//! flight under a slow guest, guest errors as error records.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use orb_engine::{CallConfig, Called, EngineConfig, Flow, call, execute, iter_source};
use orb_functions::{Executor, Runtime, RuntimeConfig};
use timely::dataflow::operators::{Inspect, Probe};

use crate::shared;

/// A guest that loops `n` thousand times, where `n` is the first input byte,
/// writes the byte back, and traps when it is 0.
fn guest() -> Vec<u8> {
    wat::parse_str(
        r#"(module
        (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start") (local $i i32)
            (i32.store (i32.const 0) (i32.const 100))
            (i32.store (i32.const 4) (i32.const 1))
            (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
            (if (i32.eqz (i32.load8_u (i32.const 100))) (then unreachable))
            (local.set $i (i32.mul (i32.load8_u (i32.const 100)) (i32.const 1000)))
            (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (i32.gt_s (local.get $i) (i32.const 0))))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .expect("wat")
}

fn run(
    records: Vec<u8>,
    max_in_flight: usize,
    threads: usize,
) -> (Vec<(u64, Called<u8>)>, Arc<orb_engine::CallStats>) {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let function = runtime.load(&guest()).expect("load");
    let executor = Arc::new(Executor::new(runtime, threads, 64).expect("executor"));
    let config = CallConfig {
        max_in_flight,
        ..CallConfig::default()
    };
    let stats = config.stats.clone();
    let results = execute(&EngineConfig::default(), move |worker| {
        let flow = Flow::new(8, 4);
        let (seen, out) = shared();
        let (executor, function, config, records) = (
            executor.clone(),
            function.clone(),
            config.clone(),
            records.clone(),
        );
        worker.dataflow::<u64, _, _>(|scope| {
            let records = iter_source(scope, "records", &flow, records);
            let called = call(records, executor, function, config, |b: &u8| vec![*b]);
            // Observe each result with its timestamp.
            called
                .inspect_core(move |event| {
                    if let Ok((stamp, data)) = event {
                        let t = stamp.elements()[0];
                        seen.borrow_mut()
                            .extend(data.iter().map(|c: &Called<u8>| (t, c.clone())));
                    }
                })
                .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
        out.take()
    })
    .expect("runs");
    (results.into_iter().flatten().collect(), stats)
}

#[test]
fn every_record_gets_its_result_at_its_timestamp() {
    let records: Vec<u8> = (1..=40).collect();
    let (results, stats) = run(records.clone(), 4, 2);
    assert_eq!(results.len(), 40);
    for (time, called) in &results {
        // Four records per epoch: record r was emitted at epoch (r - 1) / 4.
        assert_eq!(*time, (called.record as u64 - 1) / 4, "{called:?}");
        assert_eq!(called.result.as_ref().expect("ok").0, vec![called.record]);
    }
    assert_eq!(stats.succeeded.load(Ordering::Relaxed), 40);
}

#[test]
fn calls_in_flight_never_exceed_the_bound() {
    // Slow calls (up to 250k iterations each) and more threads than the bound.
    let records: Vec<u8> = (0..60).map(|i| 150 + (i % 100) as u8).collect();
    let (results, stats) = run(records, 3, 6);
    assert_eq!(results.len(), 60);
    let peak = stats.peak_in_flight.load(Ordering::Acquire);
    assert!(peak <= 3, "peak in flight {peak} > 3");
    assert_eq!(
        peak, 3,
        "the bound was never reached: the test proves nothing"
    );
}

#[test]
fn a_guest_error_is_an_error_record_not_a_failed_pipeline() {
    let (results, stats) = run(vec![5, 0, 7], 2, 2);
    assert_eq!(results.len(), 3);
    let failed: Vec<_> = results.iter().filter(|(_, c)| c.result.is_err()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].1.record, 0);
    let failure = failed[0].1.result.as_ref().unwrap_err();
    assert_eq!(failure.kind, "trap");
    assert!(
        failure.message.contains("unreachable"),
        "{}",
        failure.message
    );
    assert_eq!(stats.failed.load(Ordering::Relaxed), 1);
}

#[test]
fn a_cancelled_call_pipeline_completes_without_finishing_its_work() {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let function = runtime.load(&guest()).expect("load");
    let executor = Arc::new(Executor::new(runtime, 2, 64).expect("executor"));
    let cancel = orb_engine::Cancel::new();
    let config = CallConfig {
        max_in_flight: 2,
        cancel: cancel.clone(),
        ..CallConfig::default()
    };
    let stats = config.stats.clone();
    let watcher = {
        let (stats, cancel) = (stats.clone(), cancel.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while stats.succeeded.load(Ordering::Acquire) < 5 {
                assert!(std::time::Instant::now() < deadline, "no call finished");
                std::thread::yield_now();
            }
            cancel.cancel();
        })
    };
    let token = cancel.clone();
    let results = execute(&EngineConfig::default(), move |worker| {
        let flow = Flow::new(4, 8).with_cancel(token.clone());
        let (seen, out) = shared();
        let (executor, function, config) = (executor.clone(), function.clone(), config.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            // 2,000 slow records: minutes of work if nothing stopped it.
            let records = iter_source(scope, "records", &flow, vec![250u8; 2_000]);
            call(records, executor, function, config, |b: &u8| vec![*b])
                .inspect_core(move |event| {
                    if let Ok((_, data)) = event {
                        seen.borrow_mut().extend(data.iter().cloned());
                    }
                })
                .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
        out.take()
    })
    .expect("runs");
    watcher.join().expect("watcher");
    let delivered: Vec<Called<u8>> = results.into_iter().flatten().collect();
    // Results that came back after the cancel are discarded, not delivered.
    assert!(delivered.len() < 100, "{} results", delivered.len());
    assert!(stats.succeeded.load(Ordering::Acquire) < 100);
}
