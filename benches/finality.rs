//! `scripts/bench ledger` (part): time to finality on a local network.
//!
//! Ten real `orb node` processes (release build) on loopback share one
//! genesis (k 5, α 4/4, β 6, 8 committee slots, a faucet for node 0).
//! Node 0 hosts `echo` with three replicas; four client threads call it
//! through node 0 for a fixed time, so receipts flow into every mempool.
//! Each node records, for every block, the time from the first candidate
//! it saw to the durable commit; the benchmark reports p50/p99 over all
//! nodes' records, the blocks and receipts finalized, and receipts/s.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orb_ledger::{Genesis, PublicKey};
use serde_json::Value;

mod support;
use support::{Node, agent, deploy_echo, start_network, summary};

const NODES: usize = 10;
const LOAD: Duration = Duration::from_secs(20);

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

fn main() {
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
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, calls) = (url.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || {
                let http = agent();
                while !stop.load(Ordering::Relaxed) {
                    if http.post(&url).send(&b"finality"[..]).is_ok() {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let began = Instant::now();
    std::thread::sleep(LOAD);
    stop.store(true, Ordering::Relaxed);
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
    let samples: Vec<f64> = ledgers
        .iter()
        .flat_map(|l| {
            l["finality_us"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.as_f64())
        })
        .map(|us| us / 1e3)
        .collect();
    let blocks = ledgers[0]["height"].as_u64().unwrap_or(0);
    let calls = calls.load(Ordering::Relaxed);
    let (p50, p99) = summary(samples.clone());
    println!(
        "time to finality, {NODES} nodes on loopback (k 5, α 4/4, β 6, 8 slots), {} s of calls:",
        LOAD.as_secs()
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
        "  finality p50          {p50:.1} ms  (first candidate seen → fsync'd commit; {} samples over all nodes)",
        samples.len()
    );
    println!("  finality p99          {p99:.1} ms");
}
