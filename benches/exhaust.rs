//! `scripts/bench exhaust`: the latency of a short call on a node flooded
//! with deploys of large modules, and on the same node flooded with calls
//! to names nobody deployed, against the node idle, in one run.
//!
//! Two release nodes: `s` (the measured one, a supernode hosting `echo`)
//! and `p`, a peer in its DHT, so that a name `s` does not know is looked
//! up in the network. `s` has store quotas of 16 MiB per publisher and 48
//! MiB in all. `echo` is called one call after another over a keep-alive
//! connection: idle; while 2 clients post deploys of distinct 1 MiB
//! modules signed by 8 publishers (each compiled and stored until a quota
//! refuses it: 507); and while 8 clients call distinct unknown names (404
//! "no provider", or 503 when 64 lookups are already in flight).
//!
//! The same 8 clients sending requests the router refuses at once (404
//! for an unknown path) show what a flood of requests as such costs echo
//! on this machine, where the flooding clients share its cores with the
//! node: the floor the name flood is compared with too.
//!
//! Target: echo's p50 under each flood ≤ 2 × its idle p50. Also printed:
//! deploys stored and refused, names looked up, `s`'s stored bytes, the
//! names it remembers and its peak RSS.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use orb_functions::FunctionId;
use orb_net::NameRecord;

mod support;
use support::{deploy_echo, echo_latencies, peak_rss_mib, report_latencies, start};

const CALLS: usize = 2000;
const MODULE: usize = 1 << 20;
const MODULES: u64 = 64;
const PUBLISHERS: usize = 8;
const DEPLOYERS: usize = 2;
const LOOKERS: usize = 8;
const TARGET: f64 = 2.0;

fn http() -> ureq::Agent {
    support::any_status_agent()
}

/// A valid module of about `size` bytes: a data segment of pseudo-random
/// bytes drawn from `salt`, so each salt is another function.
fn big_module(size: usize, salt: u64) -> Vec<u8> {
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = String::with_capacity(size * 3);
    for _ in 0..size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.push_str(&format!("\\{:02x}", x as u8));
    }
    let pages = size / 65_536 + 1;
    wat::parse_str(format!(
        r#"(module (memory (export "memory") {pages}) (data (i32.const 0) "{data}") (func (export "_start")))"#
    ))
    .expect("wat")
}

type Outcomes = Arc<Mutex<BTreeMap<String, u64>>>;

fn count(outcomes: &Outcomes, what: String) {
    *outcomes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(what)
        .or_default() += 1;
}

/// Echo's latencies while `load` (one closure per client thread, called
/// in a loop with its call number) runs, and the load's outcomes.
fn beside<F>(api: &str, clients: Vec<F>) -> (Vec<f64>, BTreeMap<String, u64>)
where
    F: FnMut(u64) -> String + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Outcomes = Arc::default();
    let load: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let (stop, outcomes) = (stop.clone(), outcomes.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    count(&outcomes, client(i));
                    i += 1;
                }
            })
        })
        .collect();
    // The flood is under way before echo is measured.
    let deadline = Instant::now() + Duration::from_secs(30);
    while outcomes.lock().expect("outcomes").values().sum::<u64>() < 4 && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let samples = echo_latencies(&http(), api, CALLS);
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("client thread");
    }
    let outcomes = outcomes.lock().expect("outcomes").clone();
    (samples, outcomes)
}

fn print_outcomes(outcomes: &BTreeMap<String, u64>) {
    for (outcome, n) in outcomes {
        println!("    {outcome:<40} {n:>7}");
    }
    assert!(
        outcomes.keys().all(|k| !k.contains("transport error")),
        "a flooding call failed without an answer"
    );
}

/// `s`'s status: stored bytes and the names it remembers.
fn status(api: &str) -> serde_json::Value {
    let mut r = http()
        .get(&format!("{api}/api/status"))
        .call()
        .expect("status");
    serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json")
}

fn main() {
    let root = tempfile::tempdir().expect("tempdir");
    let s = start(
        &root.path().join("s"),
        &[
            "--no-autoscale",
            "--publisher-quota-bytes",
            "16MiB",
            "--store-quota-bytes",
            "48MiB",
        ],
    );
    let p = start(
        &root.path().join("p"),
        &["--no-autoscale", "--bootstrap", &s.addr],
    );
    deploy_echo(&s.api, 1, &root.path().join("client"));
    // The modules and their signed names, made before anything is timed.
    let publishers: Vec<Keypair> = (0..PUBLISHERS)
        .map(|_| Keypair::generate_ed25519())
        .collect();
    let deploys: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
        (0..MODULES)
            .map(|i| {
                let module = big_module(MODULE, i + 1);
                let name = format!("big-{i}");
                let key = &publishers[i as usize % PUBLISHERS];
                let record =
                    NameRecord::sign(key, &name, FunctionId::of(&module)).expect("sign a name");
                let url = format!(
                    "{}/api/deploy?name={name}&replicas=1&publisher={}&signature={}",
                    s.api,
                    hex::encode(&record.publisher),
                    hex::encode(&record.signature)
                );
                (url, module)
            })
            .collect(),
    );

    let _warm = echo_latencies(&http(), &s.api, CALLS);
    let idle = echo_latencies(&http(), &s.api, CALLS);

    let deployers = (0..DEPLOYERS)
        .map(|t| {
            let deploys = deploys.clone();
            let agent = http();
            move |i: u64| {
                let (url, module) = &deploys[(i as usize * DEPLOYERS + t) % deploys.len()];
                match agent.post(url).send(&module[..]) {
                    Ok(r) => format!("deploy: {}", r.status().as_u16()),
                    Err(e) => format!("deploy: transport error {e}"),
                }
            }
        })
        .collect();
    let (deploying, deploy_outcomes) = beside(&s.api, deployers);
    let after_deploys = status(&s.api);

    let api = s.api.clone();
    let lookers = (0..LOOKERS)
        .map(|t| {
            let agent = http();
            let api = api.clone();
            move |i: u64| match agent
                .post(&format!("{api}/fn/nobody-deployed-{t}-{i}"))
                .send("x")
            {
                Ok(r) => format!("unknown name: {}", r.status().as_u16()),
                Err(e) => format!("unknown name: transport error {e}"),
            }
        })
        .collect();
    let (looking, lookup_outcomes) = beside(&s.api, lookers);
    let flooders = (0..LOOKERS)
        .map(|_| {
            let agent = http();
            let url = format!("{api}/no-such-path");
            move |_: u64| match agent.get(&url).call() {
                Ok(r) => format!("unknown path: {}", r.status().as_u16()),
                Err(e) => format!("unknown path: transport error {e}"),
            }
        })
        .collect();
    let (flooded, flood_outcomes) = beside(&s.api, flooders);
    let after_lookups = status(&s.api);
    let rss = peak_rss_mib(s.child.id());
    p.stop();
    s.stop();

    println!(
        "echo on node s, {CALLS} calls in a row: idle, beside {DEPLOYERS} clients deploying \
         {MODULES} distinct {} KiB modules of {PUBLISHERS} publishers, beside {LOOKERS} clients \
         calling distinct unknown names",
        MODULE >> 10
    );
    let (idle_p50, _) = report_latencies("echo, idle", &idle);
    let (deploy_p50, _) = report_latencies("echo, beside the deploy flood", &deploying);
    print_outcomes(&deploy_outcomes);
    println!(
        "    stored on s: {} bytes (quotas: 16 MiB per publisher, 48 MiB in all)",
        after_deploys["stored_bytes"]
    );
    let (lookup_p50, _) = report_latencies("echo, beside the name flood", &looking);
    print_outcomes(&lookup_outcomes);
    println!(
        "    names s remembers: {} resolved, {} missing (bound 10,000 each); peak RSS {rss} MiB",
        after_lookups["names"]["resolved"], after_lookups["names"]["missing"]
    );
    let (floor_p50, _) = report_latencies("echo, beside a flood of 404s", &flooded);
    print_outcomes(&flood_outcomes);
    for (what, p50) in [("deploy flood", deploy_p50), ("name flood", lookup_p50)] {
        let ratio = p50 / idle_p50;
        let verdict = if ratio <= TARGET { "✓" } else { "✗" };
        println!(
            "echo p50 beside the {what} / idle p50: {ratio:.2} (target ≤ {TARGET}) {verdict}; \
             / p50 beside a flood of 404s: {:.2}",
            p50 / floor_p50
        );
    }
}
