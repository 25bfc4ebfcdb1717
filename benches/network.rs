//! `scripts/bench network`: the calls/s of a whole local network with
//! replicated execution, against the same network without it, in one run.
//!
//! Six real `orb node` processes (release build) on loopback share one
//! genesis whose faucet funds every node's key, so a call may enter at any
//! node; sampled verification is off (`--verify-fraction 0`), so R is
//! exactly the work per call. Node 0 deploys `echo` with three replicas.
//! Eight client threads post to `POST /fn/echo?replicas=R` on all six entry
//! nodes in turn, for a warm-up and then a fixed time, first with R = 1
//! (the baseline) then with R = 3. Each run reports calls/s, the client's
//! p50/p99 latency, failed calls and answers short of R replicas; after
//! each run the network drains (every node at one height, empty mempools)
//! and the run reports the blocks finalized, block finality p50/p99 (first
//! candidate seen → fsync'd commit, every node's samples) and, read from a
//! stopped node's chain at the end, how many of the run's calls were
//! settled exactly once.
//!
//! Target: calls/s(R = 3) / calls/s(R = 1) ≥ 0.3, that is, a replicated
//! call costs the network little more than running it three times. On a
//! saturated machine the executions alone would give 1/3; what a call costs
//! once whatever R is (the HTTP hop, routing, the settlement, its share of
//! consensus) lifts the ratio, and what each replica adds (a request to a
//! peer, a signed receipt to check) lowers it.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use orb_ledger::{Chain, Genesis, PublicKey};
use serde_json::Value;

mod support;
use support::{Node, agent, deploy_echo, functions_dir, start_network, summary};

const NODES: usize = 6;
const CLIENTS: usize = 8;
const WARM_UP: Duration = Duration::from_secs(3);
const MEASURE: Duration = Duration::from_secs(15);
const INPUT: &[u8] = b"hello from the network benchmark, 64 bytes of input for echo!!";
const TARGET: f64 = 0.3;

fn get(agent: &ureq::Agent, node: &Node, path: &str) -> Value {
    let body = agent
        .get(format!("{}{path}", node.api))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .body_mut()
        .read_to_string()
        .expect("body");
    serde_json::from_str(&body).expect("json")
}

/// Waits for `done` over every node's `/api/ledger`, or panics after `secs`.
fn wait_ledgers(
    http: &ureq::Agent,
    nodes: &[Node],
    what: &str,
    secs: u64,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let ledgers: Vec<Value> = nodes.iter().map(|n| get(http, n, "/api/ledger")).collect();
        if done(&ledgers) {
            return ledgers;
        }
        assert!(Instant::now() < deadline, "{what}: not after {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn height(ledger: &Value) -> u64 {
    ledger["height"].as_u64().unwrap_or(0)
}

fn finality_samples(ledger: &Value) -> Vec<f64> {
    ledger["finality_us"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect()
}

/// What one client thread saw during the measured time.
#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    failed: u64,
    short: u64,
    errors: Vec<String>,
    executors: HashMap<String, u64>,
    /// Every successful call's invocation id, warm-up included.
    invocations: Vec<u128>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_ms.extend(other.latencies_ms);
        self.failed += other.failed;
        self.short += other.short;
        if self.errors.len() < 3 {
            self.errors.extend(other.errors);
        }
        for (peer, n) in other.executors {
            *self.executors.entry(peer).or_default() += n;
        }
        self.invocations.extend(other.invocations);
    }
}

/// One call; the invocation id, executor and replicas that answered.
fn call(http: &ureq::Agent, url: &str) -> Result<(u128, String, usize), String> {
    let mut response = http.post(url).send(INPUT).map_err(|e| e.to_string())?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let invocation = u128::from_str_radix(&header("x-orb-invocation"), 16)
        .map_err(|e| format!("x-orb-invocation: {e}"))?;
    let executor = header("x-orb-executor");
    let replicas = header("x-orb-replicas").parse().unwrap_or(0);
    let body = response
        .body_mut()
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    if body != INPUT {
        return Err(format!("wrong output: {}", String::from_utf8_lossy(&body)));
    }
    Ok((invocation, executor, replicas))
}

/// The result of one run at one replica count.
struct Run {
    replicas: usize,
    calls: usize,
    tally: Tally,
    blocks: u64,
    finality_ms: Vec<f64>,
    /// Of the run's answered calls: settled once, and more than once, in
    /// the finalized chain.
    settled: (usize, usize),
}

impl Run {
    fn rate(&self) -> f64 {
        self.calls as f64 / MEASURE.as_secs_f64()
    }
}

/// `CLIENTS` threads calling `echo` with `replicas` through every entry
/// node in turn; a warm-up, then `MEASURE`; then waits for the drain.
fn run(http: &ureq::Agent, nodes: &[Node], replicas: usize) -> Run {
    let before = wait_ledgers(http, nodes, "a drained network", 120, drained);
    let urls: Arc<Vec<String>> = Arc::new(
        nodes
            .iter()
            .map(|n| format!("{}/fn/echo?replicas={replicas}", n.api))
            .collect(),
    );
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (urls, measuring, stop) = (urls.clone(), measuring.clone(), stop.clone());
            std::thread::spawn(move || {
                let http = agent();
                let mut tally = Tally::default();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let measured = measuring.load(Ordering::Relaxed);
                    let started = Instant::now();
                    let result = call(&http, &urls[i % urls.len()]);
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    i += 1;
                    match result {
                        Ok((invocation, executor, answered)) => {
                            tally.invocations.push(invocation);
                            if !measured || stop.load(Ordering::Relaxed) {
                                continue;
                            }
                            tally.latencies_ms.push(ms);
                            *tally.executors.entry(executor).or_default() += 1;
                            if answered < replicas {
                                tally.short += 1;
                            }
                        }
                        Err(e) if measured => {
                            tally.failed += 1;
                            if tally.errors.len() < 3 {
                                tally.errors.push(e);
                            }
                        }
                        Err(_) => {}
                    }
                }
                tally
            })
        })
        .collect();
    std::thread::sleep(WARM_UP);
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(MEASURE);
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for c in clients {
        tally.merge(c.join().expect("client thread"));
    }
    let after = wait_ledgers(http, nodes, "the network drained", 120, drained);
    // A node keeps its last 1000 samples, far more than a run's blocks: the
    // run's are those past the count before it.
    let finality_ms = before
        .iter()
        .zip(&after)
        .flat_map(|(b, a)| {
            let seen = finality_samples(b).len();
            finality_samples(a).into_iter().skip(seen)
        })
        .map(|us| us / 1e3)
        .collect();
    Run {
        replicas,
        calls: tally.latencies_ms.len(),
        blocks: height(&after[0]) - height(&before[0]),
        tally,
        finality_ms,
        settled: (0, 0),
    }
}

/// Every node at one height with nothing left to settle.
fn drained(ledgers: &[Value]) -> bool {
    let h = height(&ledgers[0]);
    ledgers
        .iter()
        .all(|l| height(l) == h && l["mempool"].as_u64() == Some(0))
}

/// How many of `invocations` a chain settles once, and more than once.
fn settled(chain: &Chain, invocations: &[u128]) -> (usize, usize) {
    let mut count: HashMap<u128, usize> = HashMap::new();
    for h in 1..=chain.height() {
        let block = chain.block(h).expect("readable").expect("a block");
        for s in &block.settlements {
            *count.entry(s.body.invocation).or_default() += 1;
        }
    }
    let once = invocations.iter().filter(|i| count.get(i) == Some(&1));
    let more = invocations.iter().filter(|i| count.get(i) > Some(&1));
    (once.count(), more.count())
}

fn ms(samples: &[f64]) -> String {
    if samples.is_empty() {
        return "—".into();
    }
    let (p50, p99) = summary(samples.to_vec());
    format!("{p50:.1} / {p99:.1}")
}

fn main() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<_> = (0..NODES)
        .map(|i| root.path().join(format!("n{i}")))
        .collect();
    let balances = dirs
        .iter()
        .map(|dir| {
            let key = orb_net::identity::load_or_create(&dir.join("identity.key")).expect("key");
            let public = orb_net::identity::ed25519_public(&key.public().to_peer_id());
            (PublicKey(public.expect("ed25519")), 1 << 50)
        })
        .collect();
    let genesis = Genesis::local("network-bench", balances);
    let nodes = start_network(
        &dirs,
        &genesis,
        &["--block-interval-ms", "200", "--verify-fraction", "0"],
    );
    let http = agent();
    let members = NODES.min(genesis.slots as usize);
    wait_ledgers(&http, &nodes, "a full committee", 60, |ls| {
        ls.iter()
            .all(|l| l["committee"].as_array().map_or(0, Vec::len) >= members)
    });
    deploy_echo(&nodes[0].api, 3, &root.path().join("client"));
    let echo = std::fs::read(functions_dir().join("echo.wasm")).expect("echo.wasm");
    let echo = orb_functions::FunctionId::of(&echo).to_hex();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes.iter().all(|n| {
        let list = get(&http, n, "/api/functions");
        list.as_array().into_iter().flatten().any(|f| {
            f["function"] == echo.as_str() && f["providers"].as_array().map_or(0, Vec::len) >= 3
        })
    }) {
        assert!(
            Instant::now() < deadline,
            "echo's 3 providers not known to every node in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut runs = [run(&http, &nodes, 1), run(&http, &nodes, 3)];

    // Count settlements in node 0's chain, read after a clean stop.
    let dir0 = dirs[0].clone();
    for node in nodes {
        node.stop();
    }
    let chain = Chain::open_dir(&dir0.join("ledger"), None).expect("node 0's chain");
    for r in &mut runs {
        r.settled = settled(&chain, &r.tally.invocations);
    }

    println!(
        "network: {NODES} release nodes on loopback (k 5, α 4/4, β 6, blocks ≥ 200 ms apart), \
         echo on 3 of them, --verify-fraction 0;"
    );
    println!(
        "{CLIENTS} client threads over all {NODES} entry nodes' POST /fn/echo?replicas=R, \
         {} s warm-up, then {} s measured:",
        WARM_UP.as_secs(),
        MEASURE.as_secs()
    );
    println!();
    println!(
        "  {:<34} {:>16} {:>16}",
        "",
        format!("R = {}", runs[0].replicas),
        format!("R = {}", runs[1].replicas)
    );
    let row = |label: &str, f: &dyn Fn(&Run) -> String| {
        println!("  {label:<34} {:>16} {:>16}", f(&runs[0]), f(&runs[1]));
    };
    row("calls/s", &|r| format!("{:.0}", r.rate()));
    row("calls (measured)", &|r| r.calls.to_string());
    row("latency p50 / p99, ms", &|r| ms(&r.tally.latencies_ms));
    row("failed calls", &|r| r.tally.failed.to_string());
    row("answers from fewer than R", &|r| r.tally.short.to_string());
    row("executors answering (busiest)", &|r| {
        let busiest = r.tally.executors.values().max().copied().unwrap_or(0);
        format!(
            "{} ({:.0}%)",
            r.tally.executors.len(),
            100.0 * busiest as f64 / r.calls.max(1) as f64
        )
    });
    row("blocks finalized (run + drain)", &|r| r.blocks.to_string());
    row("finality p50 / p99, ms", &|r| ms(&r.finality_ms));
    row("finality samples (all nodes)", &|r| {
        r.finality_ms.len().to_string()
    });
    row("calls answered (warm-up too)", &|r| {
        r.tally.invocations.len().to_string()
    });
    row("… settled once in the chain", &|r| {
        r.settled.0.to_string()
    });
    row("… settled more than once", &|r| r.settled.1.to_string());
    let all_finality: Vec<f64> = runs.iter().flat_map(|r| r.finality_ms.clone()).collect();
    println!();
    println!(
        "  chain: {} blocks; finality over both runs p50 / p99 {} ms ({} samples)",
        chain.height(),
        ms(&all_finality),
        all_finality.len()
    );
    for r in &runs {
        for e in &r.tally.errors {
            println!("  R = {} error: {e}", r.replicas);
        }
    }
    let ratio = runs[1].rate() / runs[0].rate();
    println!(
        "  calls/s R = 3 / R = 1: {ratio:.2} (target ≥ {TARGET}: {})",
        if ratio >= TARGET { "met" } else { "MISSED" }
    );
}
