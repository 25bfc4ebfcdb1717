//! `scripts/bench noisy`: the latency of a short call on a node that is
//! also running adversarial guests, against the same node idle, in one run.
//!
//! One release `orb node` hosts `echo` and three adversarial guests:
//! `spin` (loops until its fuel runs out), `balloon` (grows its memory
//! until the memory limit stops it) and `flood` (writes until the output
//! limit stops it). First `echo` is called one call after another over a
//! keep-alive connection on the idle node (p50, p90, p99). Then 150 client
//! threads call the adversarial guests in a loop, 50 per guest, and the
//! same `echo` calls are measured meanwhile. Every adversarial call must
//! end with its guest error (422 and its kind) or a "busy" answer (503:
//! that guest's share of the queue is full), never hang.
//!
//! Target: echo's p99 under that load ≤ 5 × its idle p99. The node gives
//! each function at most its share of executor threads (the cores) in a
//! pool four times that size, and functions take turns for free threads,
//! so `echo` never waits behind the adversarial calls' queue; it competes
//! with them only for the cores.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;
use support::{deploy, echo_latencies, report_latencies, start};

const CALLS: usize = 2000;
/// Calls measured on the node without shares: each may wait seconds.
const SHARED_CALLS: usize = 50;
const ADVERSARIES: [&str; 3] = ["spin", "balloon", "flood"];

/// The adversarial guests of this run: `NOISY_GUESTS=spin,flood` picks
/// some (to see which one costs echo what), all three by default.
fn adversaries() -> Vec<String> {
    std::env::var("NOISY_GUESTS").map_or_else(
        |_| ADVERSARIES.iter().map(|s| s.to_string()).collect(),
        |v| v.split(',').map(str::to_owned).collect(),
    )
}
const PER_ADVERSARY: usize = 50;
const TARGET: f64 = 5.0;

fn http() -> ureq::Agent {
    support::any_status_agent()
}

/// Echo's latencies (`calls` in a row) on the node at `api` while 150
/// threads call the adversarial guests; and their calls by outcome.
fn under_load(api: &str, calls: usize) -> (Vec<f64>, BTreeMap<String, u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut load = Vec::new();
    for name in adversaries() {
        for _ in 0..PER_ADVERSARY {
            let name = name.clone();
            let (stop, outcomes) = (stop.clone(), outcomes.clone());
            let url = format!("{api}/fn/{name}");
            load.push(std::thread::spawn(move || {
                let agent = http();
                while !stop.load(Ordering::Relaxed) {
                    let outcome = match agent.post(&url).send(&b""[..]) {
                        Ok(mut r) => {
                            let status = r.status().as_u16();
                            let body = r.body_mut().read_to_string().unwrap_or_default();
                            let kind = serde_json::from_str::<serde_json::Value>(&body)
                                .ok()
                                .and_then(|v| v["kind"].as_str().map(str::to_owned))
                                .unwrap_or_default();
                            format!("{name}: {status} {kind}")
                        }
                        Err(e) => format!("{name}: transport error {e}"),
                    };
                    *outcomes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .entry(outcome)
                        .or_default() += 1;
                }
            }));
        }
    }
    // Let the adversarial calls fill the node's threads and queues.
    let deadline = Instant::now() + Duration::from_secs(30);
    while outcomes.lock().expect("outcomes").values().sum::<u64>() < 150
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let samples = echo_latencies(&http(), api, calls);
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("client thread");
    }
    let outcomes = outcomes.lock().expect("outcomes").clone();
    (samples, outcomes)
}

fn print_outcomes(outcomes: &BTreeMap<String, u64>) {
    println!("  adversarial calls by outcome:");
    for (outcome, n) in outcomes {
        println!("    {outcome:<40} {n:>7}");
    }
    let hung = outcomes
        .keys()
        .filter(|k| k.contains("transport error"))
        .count();
    assert_eq!(hung, 0, "an adversarial call failed without an answer");
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let root = tempfile::tempdir().expect("tempdir");
    let client = root.path().join("client");
    // The node as it runs by default, and the same node with one pool of
    // `cores` threads any function may fill (calls first come, first served).
    let fair = start(&root.path().join("fair"), &["--no-autoscale"]);
    let pool = cores.to_string();
    let fifo = start(
        &root.path().join("fifo"),
        &["--no-autoscale", "--executor-pool", &pool],
    );
    for node in [&fair, &fifo] {
        for name in ["echo"].iter().chain(ADVERSARIES.iter()) {
            deploy(&node.api, name, 1, &client);
        }
    }
    let agent = http();
    let _ = echo_latencies(&agent, &fair.api, CALLS);
    let idle = echo_latencies(&agent, &fair.api, CALLS);
    let (loaded, outcomes) = under_load(&fair.api, CALLS);
    fair.stop();
    let (shared, shared_outcomes) = under_load(&fifo.api, SHARED_CALLS);
    fifo.stop();

    println!(
        "echo on one node, calls in a row, idle and beside {} adversarial callers",
        adversaries().len() * PER_ADVERSARY
    );
    let (_, idle_p99) = report_latencies("echo, idle", &idle);
    let (_, loaded_p99) = report_latencies("echo, under load", &loaded);
    print_outcomes(&outcomes);
    report_latencies(&format!("echo, load, {cores}-thread pool"), &shared);
    print_outcomes(&shared_outcomes);
    let ratio = loaded_p99 / idle_p99;
    let verdict = if ratio <= TARGET { "✓" } else { "✗" };
    println!("echo p99 under load / idle p99: {ratio:.2} (target ≤ {TARGET}) {verdict}");
}
