//! Windowed aggregation over a timestamped event stream.
//!
//! Events `(time_ms, sensor, value)` come from a seeded generator in event
//! time order, a batch per epoch. A tumbling window assigns each event to
//! exactly one window `[k·size, (k+1)·size)`; a sliding window of `size`
//! every `slide` to the `size / slide` windows that cover it. Both are
//! differential `reduce`s keyed by `(sensor, window start)`, so a window's
//! aggregate is updated as its events arrive, epoch by epoch.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use orb_engine::{Flow, execute, iter_source, records};

use crate::{Error, Options, apply_change};

/// Tumbling window size.
pub const TUMBLE_MS: u64 = 1_000;
/// Sliding window size.
pub const SLIDE_SIZE_MS: u64 = 2_000;
/// Sliding window period.
pub const SLIDE_EVERY_MS: u64 = 500;
/// Events generated.
pub const EVENTS: u64 = 4_000;

/// `(sensor, window start)` → `(count, sum)`.
pub type Windows = BTreeMap<(String, u64), (i64, i64)>;

/// The final aggregate of every window.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Tumbling windows.
    pub tumbling: Windows,
    /// Sliding windows.
    pub sliding: Windows,
}

/// The `i`-th event: every 2.5 ms, one of four sensors, a value in 0..100.
pub fn event(i: u64) -> (u64, String, i64) {
    let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    (
        i * 5 / 2,
        format!("sensor-{}", mixed % 4),
        (mixed % 100) as i64,
    )
}

fn windows_of(time: u64) -> impl Iterator<Item = u64> {
    let last = time - time % SLIDE_EVERY_MS;
    (0..SLIDE_SIZE_MS / SLIDE_EVERY_MS)
        .map(move |k| k * SLIDE_EVERY_MS)
        .filter(move |back| *back <= last)
        .map(move |back| last - back)
}

/// Runs the pipeline; worker `w` generates the events `i ≡ w (mod peers)`.
pub fn run(options: &Options) -> Result<Report, Error> {
    let engine = options.engine.clone();
    let per_worker = execute(&options.engine, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let flow = Flow::new(engine.max_lag, 200);
        let report = Rc::new(RefCell::new(Report::default()));
        let (r1, r2) = (report.clone(), report.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            let mine = (index as u64..EVENTS).step_by(peers).map(event);
            let events = records(iter_source(scope, "events", &flow, mine));
            let aggregate = |input: &[(&i64, isize)], output: &mut Vec<((i64, i64), isize)>| {
                let count: isize = input.iter().map(|(_, n)| *n).sum();
                let sum: i64 = input.iter().map(|(v, n)| **v * *n as i64).sum();
                output.push(((count as i64, sum), 1));
            };
            events
                .clone()
                .map(|(t, sensor, value)| ((sensor, t - t % TUMBLE_MS), value))
                .reduce(move |_k, input, output| aggregate(input, output))
                .inspect(move |((key, agg), _, diff)| {
                    apply_change(&mut r1.borrow_mut().tumbling, key, agg, *diff)
                })
                .probe_with(&flow.probe);
            events
                .flat_map(|(t, sensor, value)| {
                    windows_of(t).map(move |start| ((sensor.clone(), start), value))
                })
                .reduce(move |_k, input, output| aggregate(input, output))
                .inspect(move |((key, agg), _, diff)| {
                    apply_change(&mut r2.borrow_mut().sliding, key, agg, *diff)
                })
                .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
        report.take()
    })?;
    let mut all = Report::default();
    for r in per_worker {
        all.tumbling.extend(r.tumbling);
        all.sliding.extend(r.sliding);
    }
    Ok(all)
}
