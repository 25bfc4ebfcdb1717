//! Calls per function over the last minutes, second by second: what the
//! console's Functions page charts (calls/s, errors, p50 and p99 latency)
//! and `orb top` shows.
//!
//! Pure: the caller says what second it is. Each function keeps one slot
//! per second for [`WINDOW`] seconds; a slot holds its counts and up to
//! [`SAMPLES`] latencies (the first ones of that second: enough for a p99
//! of a busy second to within a few percent), so memory is bounded by the
//! number of functions called, whatever the rate.

use std::collections::{HashMap, VecDeque};

/// Seconds kept.
pub(crate) const WINDOW: u64 = 120;

/// Latencies kept per second and function.
const SAMPLES: usize = 256;

/// Functions kept: past it, the one called longest ago is forgotten.
const FUNCTIONS: usize = 256;

#[derive(Default)]
struct Slot {
    second: u64,
    ok: u32,
    failed: u32,
    /// Latencies of answered calls, in microseconds.
    latencies: Vec<u32>,
}

/// One second of one function's calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub(crate) struct Point {
    /// The second (of the node's clock).
    pub(crate) second: u64,
    /// Calls answered.
    pub(crate) ok: u32,
    /// Calls that failed.
    pub(crate) failed: u32,
    /// Median latency of the answered calls, µs (0 when none).
    pub(crate) p50_us: u32,
    /// 99th percentile latency, µs (0 when none).
    pub(crate) p99_us: u32,
}

/// Per-function series.
#[derive(Default)]
pub(crate) struct History {
    by: HashMap<String, VecDeque<Slot>>,
}

/// The `q` quantile of sorted `xs` (nearest rank).
fn quantile(xs: &[u32], q: f64) -> u32 {
    if xs.is_empty() {
        return 0;
    }
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

impl History {
    /// Counts a call to `function` ending at `second`: answered after
    /// `latency_us`, or failed (`None`).
    pub(crate) fn record(&mut self, function: &str, second: u64, latency_us: Option<u64>) {
        if !self.by.contains_key(function) && self.by.len() >= FUNCTIONS {
            let oldest = self
                .by
                .iter()
                .min_by_key(|(_, s)| s.back().map_or(0, |s| s.second))
                .map(|(f, _)| f.clone());
            if let Some(f) = oldest {
                self.by.remove(&f);
            }
        }
        let slots = self.by.entry(function.to_owned()).or_default();
        if slots.back().is_none_or(|s| s.second < second) {
            slots.push_back(Slot {
                second,
                ..Slot::default()
            });
        }
        while slots.front().is_some_and(|s| s.second + WINDOW <= second) {
            slots.pop_front();
        }
        // A call ending in a second already passed (clocks are read
        // before locking) counts in the latest slot.
        let Some(slot) = slots.back_mut() else {
            return;
        };
        match latency_us {
            Some(us) => {
                slot.ok += 1;
                if slot.latencies.len() < SAMPLES {
                    slot.latencies.push(us.min(u64::from(u32::MAX)) as u32);
                }
            }
            None => slot.failed += 1,
        }
    }

    /// Functions with calls in the window ending at `now`.
    pub(crate) fn functions(&self, now: u64) -> Vec<String> {
        let mut names: Vec<String> = self
            .by
            .iter()
            .filter(|(_, s)| s.back().is_some_and(|s| s.second + WINDOW > now))
            .map(|(f, _)| f.clone())
            .collect();
        names.sort();
        names
    }

    /// `function`'s seconds from `now - WINDOW + 1` to `now`, one point
    /// per second (seconds without calls are zeros).
    pub(crate) fn series(&self, function: &str, now: u64) -> Vec<Point> {
        let first = (now + 1).saturating_sub(WINDOW);
        let mut points: Vec<Point> = (first..=now)
            .map(|second| Point {
                second,
                ..Point::default()
            })
            .collect();
        for slot in self.by.get(function).into_iter().flatten() {
            if slot.second < first || slot.second > now {
                continue;
            }
            let mut sorted = slot.latencies.clone();
            sorted.sort_unstable();
            points[(slot.second - first) as usize] = Point {
                second: slot.second,
                ok: slot.ok,
                failed: slot.failed,
                p50_us: quantile(&sorted, 0.5),
                p99_us: quantile(&sorted, 0.99),
            };
        }
        points
    }

    /// Totals over the last `seconds` up to `now`: (answered, failed, p50
    /// µs, p99 µs) over every latency kept in those seconds.
    pub(crate) fn summary(&self, function: &str, now: u64, seconds: u64) -> (u64, u64, u32, u32) {
        let first = (now + 1).saturating_sub(seconds);
        let (mut ok, mut failed, mut all) = (0, 0, Vec::new());
        for slot in self.by.get(function).into_iter().flatten() {
            if slot.second >= first && slot.second <= now {
                ok += u64::from(slot.ok);
                failed += u64::from(slot.failed);
                all.extend_from_slice(&slot.latencies);
            }
        }
        all.sort_unstable();
        (ok, failed, quantile(&all, 0.5), quantile(&all, 0.99))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_counted_apart_and_forgotten_past_the_window() {
        let mut h = History::default();
        for us in 1..=100 {
            h.record("echo", 10, Some(us));
        }
        h.record("echo", 10, None);
        h.record("echo", 12, Some(7));
        let s = h.series("echo", 12);
        assert_eq!(
            s.len(),
            13,
            "seconds 0 to 12: the node is younger than the window"
        );
        assert_eq!(h.series("echo", 500).len() as u64, WINDOW);
        let at = |sec: u64| s.iter().find(|p| p.second == sec).copied().unwrap();
        assert_eq!(
            at(10),
            Point {
                second: 10,
                ok: 100,
                failed: 1,
                p50_us: 50,
                p99_us: 99
            }
        );
        assert_eq!(at(11).ok, 0);
        assert_eq!((at(12).ok, at(12).p50_us), (1, 7));
        assert_eq!(h.summary("echo", 12, 60), (101, 1, 50, 99));
        assert_eq!(h.functions(12), vec!["echo".to_owned()]);
        // Two minutes on, second 10 is gone; the function with it once its
        // last second is.
        h.record("echo", 10 + WINDOW, Some(1));
        assert_eq!(h.summary("echo", 10 + WINDOW, WINDOW), (2, 0, 1, 7));
        assert!(h.functions(12 + 2 * WINDOW).is_empty());
    }

    #[test]
    fn latencies_kept_per_second_are_bounded() {
        let mut h = History::default();
        for _ in 0..10_000 {
            h.record("f", 1, Some(5));
        }
        let slot = &h.by["f"][0];
        assert_eq!((slot.ok, slot.latencies.len()), (10_000, SAMPLES));
    }

    #[test]
    fn functions_kept_are_bounded() {
        let mut h = History::default();
        for i in 0..(FUNCTIONS as u64 + 10) {
            h.record(&format!("f{i}"), i, Some(1));
        }
        assert_eq!(h.by.len(), FUNCTIONS);
        assert!(!h.by.contains_key("f0"), "the one called longest ago goes");
    }
}
