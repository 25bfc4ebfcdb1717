//! `scripts/bench ledger` (part): time to finality on a local network.
//!
//! Ten real `orb node` processes (release build) on loopback share one
//! genesis (k 5, α 4/4, β 6, 8 committee slots, a faucet for node 0).
//! Node 0 hosts `echo` with three replicas; four client threads
//! (`ORB_BENCH_CLIENTS`) call it through node 0 for a fixed time, each
//! again as soon as it is answered (or, with `ORB_BENCH_RATE`, at that
//! many calls/s over all of them), so
//! receipts flow into every mempool. Each node records, for every block,
//! the time from the first candidate it saw to the commit (the block's
//! write follows, off the consensus thread); the benchmark reports p50/p99
//! over all nodes' records, the blocks and receipts finalized, and
//! receipts/s, and how busy the machine was meanwhile (CPU time from
//! /proc/stat, runnable threads from /proc/loadavg).
//!
//! The floor, in the same run and under the same load: β (6) round trips
//! one after another on a bare long-lived libp2p stream between two other
//! processes on the same transport (a decision takes β polls, each at
//! least one round trip), sampled every 20 ms while the clients call.
//! Next to it, the nodes' own record of their polls (sent → closed) and of
//! the wait from the first candidate to the first poll.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orb_ledger::{Genesis, PublicKey};
use serde_json::Value;

mod support;
use support::{Node, agent, bare, deploy_echo, start_network, summary};

const NODES: usize = 10;
const LOAD: Duration = Duration::from_secs(20);
/// Snowball's β in the bench's genesis: polls a decision takes.
const BETA: usize = 6;

fn ledger(agent: &ureq::Agent, node: &Node) -> Value {
    let body = agent
        .get(format!("{}/api/ledger", node.api))
        .call()
        .expect("GET /api/ledger")
        .body_mut()
        .read_to_string()
        .expect("body");
    serde_json::from_str(&body).expect("json")
}

/// Client threads calling `echo` (`ORB_BENCH_CLIENTS`, 4 by default).
fn client_count() -> usize {
    std::env::var("ORB_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// With `ORB_BENCH_RATE` (calls/s over all clients), how often each
/// client calls; without it, each calls again as soon as it is answered.
fn pace() -> Option<Duration> {
    let rate: f64 = std::env::var("ORB_BENCH_RATE").ok()?.parse().ok()?;
    Some(Duration::from_secs_f64(
        client_count() as f64 / rate.max(0.001),
    ))
}

/// The machine's CPU time so far, from /proc/stat: (busy, total) ticks.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Threads runnable on the machine now, from /proc/loadavg.
fn runnable() -> Option<f64> {
    let avg = std::fs::read_to_string("/proc/loadavg").ok()?;
    avg.split_whitespace()
        .nth(3)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// Every node's recent values of a microsecond list in /api/ledger, in ms.
fn all_ms(ledgers: &[Value], field: &str) -> Vec<f64> {
    ledgers
        .iter()
        .flat_map(|l| l[field].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_f64())
        .map(|us| us / 1e3)
        .collect()
}

fn main() {
    bare::serve_if_peer();
    let root = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<_> = (0..NODES)
        .map(|i| root.path().join(format!("n{i}")))
        .collect();
    let key = orb_net::identity::load_or_create(&dirs[0].join("identity.key")).expect("key");
    let payer =
        PublicKey(orb_net::identity::ed25519_public(&key.public().to_peer_id()).expect("ed25519"));
    let genesis = Genesis::local("finality-bench", vec![(payer, u64::MAX / 4)]);
    let nodes = start_network(
        &dirs,
        &genesis,
        &["--block-interval-ms", "200", "--executor-threads", "1"],
    );
    let http = agent();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !nodes.iter().all(|n| {
        ledger(&http, n)["committee"].as_array().map_or(0, Vec::len) >= genesis.slots as usize
    }) {
        assert!(
            Instant::now() < deadline,
            "the committee did not fill in 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    deploy_echo(&nodes[0].api, 3, &root.path().join("client"));

    let url = format!("{}/fn/echo", nodes[0].api);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..client_count())
        .map(|_| {
            let (url, stop, calls) = (url.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || {
                let http = agent();
                let every = pace();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if http.post(&url).send(&b"finality"[..]).is_ok() {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(rest) = every.and_then(|e| e.checked_sub(t.elapsed())) {
                        std::thread::sleep(rest);
                    }
                }
            })
        })
        .collect();
    let began = Instant::now();
    let floor = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            bare::round_trips(
                b"finality",
                &bare::Plan {
                    warmup: 10,
                    samples: usize::MAX,
                    batch: BETA,
                    pace: Duration::from_millis(20),
                    until: Some(stop),
                },
            )
        })
    };
    let cpu_before = cpu_ticks();
    let queue = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                seen.extend(runnable());
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        })
    };
    std::thread::sleep(LOAD);
    let cpu_after = cpu_ticks();
    stop.store(true, Ordering::Relaxed);
    let floor = floor.join().expect("the floor's thread");
    let (queue50, _) = summary(queue.join().expect("the sampler's thread"));
    let busy = (cpu_after.0 - cpu_before.0) as f64 / (cpu_after.1 - cpu_before.1).max(1) as f64;
    for c in clients {
        let _ = c.join();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let ledgers = loop {
        let ls: Vec<Value> = nodes.iter().map(|n| ledger(&http, n)).collect();
        let h = ls[0]["height"].as_u64().unwrap_or(0);
        if ls
            .iter()
            .all(|l| l["height"].as_u64() == Some(h) && l["mempool"] == 0)
        {
            break ls;
        }
        assert!(
            Instant::now() < deadline,
            "the network did not drain in 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = began.elapsed().as_secs_f64();
    let samples = all_ms(&ledgers, "finality_us");
    let blocks = ledgers[0]["height"].as_u64().unwrap_or(0);
    let calls = calls.load(Ordering::Relaxed);
    let (p50, p99) = summary(samples.clone());
    let (floor50, floor99) = summary(floor.iter().map(|us| us / 1e3).collect());
    let (poll50, poll99) = summary(all_ms(&ledgers, "poll_us"));
    let (wait50, wait99) = summary(all_ms(&ledgers, "wait_us"));
    println!(
        "time to finality, {NODES} nodes on loopback (k 5, α 4/4, β 6, 8 slots), {} s of calls by {} clients{}:",
        LOAD.as_secs(),
        client_count(),
        pace().map_or(
            ", each calling again once answered".to_owned(),
            |every| format!(", each calling every {:.1} ms", every.as_secs_f64() * 1e3)
        )
    );
    println!(
        "  machine under load    CPU {:.0} % busy, p50 {queue50:.0} threads runnable ({} cores)",
        busy * 100.0,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "  calls made            {calls} ({:.0}/s)",
        calls as f64 / LOAD.as_secs_f64()
    );
    println!("  blocks finalized      {blocks}");
    println!(
        "  receipts finalized/s  {:.0} (calls until drained / {elapsed:.1} s)",
        calls as f64 / elapsed
    );
    println!(
        "  finality p50          {p50:.1} ms  (first candidate seen → commit; {} samples over all nodes)",
        samples.len()
    );
    println!("  finality p99          {p99:.1} ms");
    println!(
        "  floor                 p50 {floor50:.1} ms, p99 {floor99:.1} ms  ({BETA} round trips in a row on a bare libp2p stream between two other processes, under the same load; {} samples)",
        floor.len()
    );
    println!(
        "  finality / floor      p50 {:.2}, p99 {:.2}  (target p50 <= 50 ms, p99 <= 150 ms)",
        p50 / floor50,
        p99 / floor99
    );
    println!(
        "  polls, sent → closed  p50 {poll50:.1} ms, p99 {poll99:.1} ms  (every member's last polls)"
    );
    println!(
        "  first candidate → first poll  p50 {wait50:.1} ms, p99 {wait99:.1} ms  (blocks decided here)"
    );
}
