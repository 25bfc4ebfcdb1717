//! Closing sources drains the dataflow: nothing lost, nothing duplicated;
//! a fast producer meets backpressure; a cancelled pipeline completes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use orb_engine::{Cancel, EngineConfig, Flow, InspectRecords, TrySendError, channel, execute};
use timely::dataflow::operators::{Exchange, Probe};

use crate::shared;

#[test]
fn closing_the_source_delivers_every_record_exactly_once() {
    let (handle, inlet) = channel::<u64>(64);
    let producer = std::thread::spawn(move || {
        for i in 0..50_000u64 {
            handle.send(i).expect("pipeline open");
        }
        // Dropping the last handle closes the source.
    });
    let config = EngineConfig {
        workers: 2,
        ..EngineConfig::default()
    };
    let per_worker = execute(&config, move |worker| {
        let flow = Flow::new(4, 256);
        let (seen, out) = shared();
        let inlet = inlet.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            inlet
                .into_stream(scope, "numbers", &flow)
                .exchange(|x| *x)
                .inspect_records(move |x| seen.borrow_mut().push(*x))
                .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
        out.take()
    })
    .expect("runs");
    producer.join().expect("producer");
    let mut all: Vec<u64> = per_worker.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (0..50_000).collect::<Vec<_>>());
}

#[test]
fn a_fast_producer_meets_backpressure_and_memory_stays_bounded() {
    const CAPACITY: usize = 32;
    const BATCH: usize = 16;
    const MAX_LAG: u64 = 2;
    let (handle, inlet) = channel::<u64>(CAPACITY);
    let processed = Arc::new(AtomicU64::new(0));
    let p = processed.clone();
    let producer = std::thread::spawn(move || {
        let (mut busy, mut peak_backlog) = (0u64, 0u64);
        let mut i = 0u64;
        while i < 3_000 {
            match handle.try_send(i) {
                Ok(()) => i += 1,
                Err(TrySendError::Busy(_)) => {
                    busy += 1;
                    std::thread::yield_now();
                }
                Err(TrySendError::Closed(_)) => panic!("closed early"),
            }
            peak_backlog = peak_backlog.max(i - p.load(Ordering::Acquire));
        }
        (busy, peak_backlog)
    });
    let counter = processed.clone();
    execute(&EngineConfig::default(), move |worker| {
        let flow = Flow::new(MAX_LAG, BATCH);
        let inlet = inlet.clone();
        let counter = counter.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            inlet
                .into_stream(scope, "fast", &flow)
                .inspect_records(move |_| {
                    // A slow operator: 20 µs per record.
                    std::thread::sleep(Duration::from_micros(20));
                    counter.fetch_add(1, Ordering::Release);
                })
                .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
    })
    .expect("runs");
    let (busy, peak_backlog) = producer.join().expect("producer");
    assert_eq!(processed.load(Ordering::Acquire), 3_000);
    assert!(busy > 0, "the producer never saw Busy");
    // In the channel, plus at most max_lag + 1 epochs of one batch in the dataflow.
    let bound = CAPACITY as u64 + (MAX_LAG + 1) * BATCH as u64;
    assert!(peak_backlog <= bound, "backlog {peak_backlog} > {bound}");
}

#[test]
fn a_cancelled_pipeline_completes() {
    let (handle, inlet) = channel::<u64>(16);
    let cancel = Cancel::new();
    let c = cancel.clone();
    let producer = std::thread::spawn(move || {
        let mut i = 0u64;
        // Runs until the pipeline is gone.
        while handle.send(i).is_ok() {
            i += 1;
            if i == 1_000 {
                c.cancel();
                handle.try_send(i).ok();
            }
        }
        i
    });
    let token = cancel.clone();
    execute(&EngineConfig::default(), move |worker| {
        let flow = Flow::new(4, 64).with_cancel(token.clone());
        let inlet = inlet.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            inlet
                .into_stream(scope, "endless", &flow)
                .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
    })
    .expect("runs");
    // The dataflow is gone, so the channel closes and the producer stops.
    assert!(producer.join().expect("producer") >= 1_000);
}

#[test]
fn tokio_tasks_feed_a_source_and_wait_when_it_is_full() {
    let (handle, inlet) = channel::<u64>(8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio");
    // Four tasks, 2,500 items each, through an 8-slot channel: they must wait.
    let tasks: Vec<_> = (0..4u64)
        .map(|t| {
            let h = handle.clone();
            rt.spawn(async move {
                for i in 0..2_500u64 {
                    h.send_async(t * 10_000 + i).await.expect("open");
                }
            })
        })
        .collect();
    drop(handle);
    let per_worker = execute(
        &EngineConfig {
            workers: 2,
            ..EngineConfig::default()
        },
        move |worker| {
            let flow = Flow::new(2, 16);
            let (seen, out) = shared();
            let inlet = inlet.clone();
            worker.dataflow::<u64, _, _>(|scope| {
                inlet
                    .into_stream(scope, "tokio", &flow)
                    .inspect_records(move |x| seen.borrow_mut().push(*x))
                    .probe_with(&flow.probe);
            });
            orb_engine::run_to_completion(worker);
            out.take()
        },
    )
    .expect("runs");
    rt.block_on(async {
        for t in tasks {
            t.await.expect("task");
        }
    });
    let mut all: Vec<u64> = per_worker.into_iter().flatten().collect();
    all.sort_unstable();
    let expected: Vec<u64> = (0..4u64)
        .flat_map(|t| (0..2_500).map(move |i| t * 10_000 + i))
        .collect();
    assert_eq!(all, expected);
}
