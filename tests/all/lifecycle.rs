//! The node as a library: nodes started with `orb::Node::start` inside this
//! test process, on loopback, call each other, then stop with
//! `NodeHandle::shutdown` within a deadline — calls in flight answered,
//! the API closed, and the data dir free to start on again (sled's locks
//! on `node.db` and the chain released).

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use orb::{FunctionId, Multiaddr, Node, NodeConfig, NodeHandle};
use orb_ledger::Genesis;
use serde_json::Value;
use tokio::runtime::Runtime;

use crate::example;

/// How long a shutdown may take (the grace period below plus the joins).
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A node on loopback with its state in `dir`, ports chosen by the system.
fn config(dir: &Path, bootstrap: Vec<Multiaddr>) -> NodeConfig {
    NodeConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
        bootstrap,
        api: "127.0.0.1:0".parse().expect("address"),
        executor_threads: Some(1),
        verify_fraction: 0.0,
        shutdown_grace: Duration::from_secs(10),
        ..NodeConfig::new(dir)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `GET path` on the node's API, as JSON.
fn get(node: &NodeHandle, path: &str) -> Value {
    let url = format!("http://{}{path}", node.api_addr());
    let body = agent()
        .get(&url)
        .call()
        .expect("GET")
        .body_mut()
        .read_to_string()
        .expect("body");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body}"))
}

/// Polls `check` until it holds; fails naming `what` after `secs`.
fn wait_until(what: &str, secs: u64, mut check: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let Some(why_not) = check() else { return };
        assert!(
            Instant::now() < deadline,
            "{what}: not in {secs} s: {why_not}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Shuts `node` down and checks it took less than the deadline and closed
/// its API.
fn shut_down(rt: &Runtime, node: NodeHandle) {
    let api = node.api_addr();
    let started = Instant::now();
    let stopped =
        rt.block_on(async { tokio::time::timeout(SHUTDOWN_DEADLINE, node.shutdown()).await });
    let took = started.elapsed();
    match stopped {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("shutdown failed: {e}"),
        Err(_) => panic!("shutdown took more than {SHUTDOWN_DEADLINE:?}"),
    }
    assert!(
        TcpStream::connect(api).is_err(),
        "the API on {api} still accepts connections after {took:?}"
    );
}

/// Calls `target` through `node` until it answers `input` (the providers
/// become known by gossip and the DHT); returns the executor.
fn invoke_until_answered(rt: &Runtime, node: &NodeHandle, target: &str, input: &[u8]) -> String {
    let mut executor = String::new();
    wait_until("a call answered", 60, || {
        match rt.block_on(node.invoke(target, input.to_vec())) {
            Ok(done) if done.output == input => {
                executor = done.executor;
                None
            }
            Ok(done) => Some(format!("wrong output {:?}", done.output)),
            Err(e) => Some(e.to_string()),
        }
    });
    executor
}

#[test]
fn three_nodes_in_one_process_call_each_other_and_shut_down_cleanly() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| root.path().join(n))
        .collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).expect("data dir");
    }
    // A ledger, so that shutdown also stops consensus and frees the chain.
    let funded = dirs
        .iter()
        .map(|d| (crate::consensus::key_of(d), 1_000_000_000))
        .collect();
    let genesis = root.path().join("genesis.json");
    let text = serde_json::to_string(&Genesis::local("lifecycle", funded)).expect("genesis");
    std::fs::write(&genesis, text).expect("write genesis");

    let rt = runtime();
    let start = |dir: &Path, bootstrap: Vec<Multiaddr>| {
        let config = NodeConfig {
            genesis: Some(genesis.clone()),
            ..config(dir, bootstrap)
        };
        rt.block_on(Node::start(config)).expect("node starts")
    };
    let a = start(&dirs[0], Vec::new());
    let boot = a.listen_addrs().to_vec();
    assert!(!boot.is_empty(), "a listens somewhere");
    let b = start(&dirs[1], boot.clone());
    let c = start(&dirs[2], boot);
    for node in [&b, &c] {
        wait_until("connected to a", 30, || {
            let status = get(node, "/api/status");
            (status["connected"].as_u64().unwrap_or(0) == 0).then(|| status.to_string())
        });
    }

    // a hosts echo; c calls it through the library, b over HTTP.
    let module = std::fs::read(example("echo")).expect("echo module");
    let echo: FunctionId = rt.block_on(a.host(&module)).expect("a hosts echo");
    let executor = invoke_until_answered(&rt, &c, &echo.to_hex(), b"through c");
    assert_eq!(executor, a.peer_id().to_string());
    let url = format!("http://{}/fn/{}", b.api_addr(), echo.to_hex());
    wait_until("b answers over HTTP", 60, || {
        let mut response = agent().post(&url).send(&b"through b"[..]).expect("POST");
        let status = response.status();
        let body = response.body_mut().read_to_vec().expect("body");
        (status != 200 || body != b"through b")
            .then(|| format!("{status}: {}", String::from_utf8_lossy(&body)))
    });

    let a_peer = a.peer_id();
    for node in [c, b, a] {
        shut_down(&rt, node);
    }

    // The data dir is free: a node starts on it again, with the same
    // identity, the chain it kept, and echo hosted again.
    let again = rt
        .block_on(Node::start(config(&dirs[0], Vec::new())))
        .expect("a starts again on its data dir");
    assert_eq!(again.peer_id(), a_peer);
    let ledger = get(&again, "/api/ledger");
    assert!(ledger["chain"].is_string(), "the chain is kept: {ledger}");
    let executor = invoke_until_answered(&rt, &again, &echo.to_hex(), b"after restart");
    assert_eq!(executor, a_peer.to_string());
    shut_down(&rt, again);
}

#[test]
fn shutdown_lets_a_call_in_flight_finish() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let node = rt
        .block_on(Node::start(config(dir.path(), Vec::new())))
        .expect("node starts");
    let spin = std::fs::read(example("spin")).expect("spin module");
    let spin = rt.block_on(node.host(&spin)).expect("hosts spin");
    let url = format!("http://{}/fn/{}", node.api_addr(), spin.to_hex());

    // spin runs until its fuel is spent (well under a second): start calls
    // until one is seen running, then shut down while it runs.
    let call = loop {
        let url = url.clone();
        let call = std::thread::spawn(move || {
            let mut response = agent().post(&url).send(&b""[..]).expect("POST");
            let body = response.body_mut().read_to_string().expect("body");
            (response.status().as_u16(), body)
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let running = loop {
            if get(&node, "/api/status")["load"].as_u64().unwrap_or(0) > 0 {
                break true;
            }
            if call.is_finished() || Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if running {
            break call;
        }
        call.join().expect("the call's thread");
    };
    shut_down(&rt, node);
    let (status, body) = call.join().expect("the call's thread");
    assert_eq!(status, 422, "the call is answered, not cut: {body}");
    assert!(body.contains("out_of_fuel"), "{body}");
}
