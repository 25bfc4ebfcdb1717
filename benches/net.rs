//! `scripts/bench net`: a networked call against its floor, in one run.
//!
//! Two real `orb node` processes on loopback (release build): `b` hosts
//! `echo`, `a` does not, so every call a makes crosses the network.
//!
//! - networked invoke, a → b: resolve (cached), request-response over
//!   libp2p (TCP, Noise, yamux), execution on b, response. Timed by node a
//!   (its `x-orb-network-us` + `x-orb-execution-us` headers) for each call
//!   of a client that posts to a's `POST /fn/echo` one call at a time;
//! - end to end: the same calls timed by the client, HTTP hop included;
//! - the floor: a raw TCP round trip of the same bytes on loopback plus a
//!   local execution of the same call (orb-functions, in process);
//! - the transport alone: two `orb-net` handles in this process, one
//!   answering every invoke request at once with its input (no execution,
//!   no node), to separate what libp2p request-response costs from what the
//!   node adds;
//! - throughput: 16 concurrent HTTP clients against a for a few seconds.
//!
//! Target: networked invoke p50 ≤ 2 × (TCP round trip p50 + execution p50).

#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orb_functions::{CallOptions, Runtime, RuntimeConfig};

mod support;
use support::{agent, deploy_echo, functions_dir, start, summary};

const CALLS: usize = 3000;
const INPUT: &[u8] = b"hello from the network benchmark, 64 bytes of input for echo!!";

fn post(agent: &ureq::Agent, url: &str) -> (u64, u64) {
    let mut response = agent.post(url).send(INPUT).expect("call");
    let header = |name: &str| -> u64 {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let hop = (header("x-orb-network-us"), header("x-orb-execution-us"));
    let body = response.body_mut().read_to_vec().expect("body");
    assert_eq!(body, INPUT);
    hop
}

fn tcp_round_trip() -> Vec<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = vec![0u8; INPUT.len()];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; INPUT.len()];
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 200 {
        let t = Instant::now();
        s.write_all(INPUT).expect("write");
        s.read_exact(&mut buf).expect("read");
        if i >= 200 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples
}

fn local_execution() -> Vec<f64> {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let bytes =
        std::fs::read(functions_dir().join("echo.wasm")).expect("echo.wasm (run scripts/guests)");
    let function = runtime.load(&bytes).expect("load");
    let opts = CallOptions::default();
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 200 {
        let t = Instant::now();
        let out = runtime.call(&function, INPUT, &opts).expect("call");
        if i >= 200 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        assert_eq!(out.output, INPUT);
    }
    samples
}

/// Round trips of an invoke request between two `orb-net` nodes in this
/// process, the responder echoing the input without running anything.
fn transport_round_trip() -> Vec<f64> {
    use orb_net::{Invoke, NetConfig, NetEvent, PeerStore, Request, Response};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
            supernode: true,
            ..NetConfig::default()
        };
        let db = sled::open(dir.path().join("b")).expect("sled");
        let key = orb_net::identity::load_or_create(&dir.path().join("b.key")).expect("key");
        let (b, mut events, b_loop) =
            orb_net::start(key, &config, PeerStore::open(&db).expect("peers")).expect("b");
        // The event loops and the responder end with this block (the set aborts them).
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(b_loop.run());
        let responder = b.clone();
        tasks.spawn(async move {
            while let Some(event) = events.recv().await {
                if let NetEvent::Request {
                    request: Request::Invoke(call),
                    channel,
                    ..
                } = event
                {
                    let response = Response::Output {
                        output: call.input,
                        fuel: 0,
                        execution_us: 0,
                        receipt: None,
                    };
                    let _ = responder.respond(channel, response).await;
                }
            }
        });
        let status = b
            .wait_for(Duration::from_secs(5), |s| !s.listen.is_empty())
            .await
            .expect("status");
        let b_addr: orb_net::Multiaddr = format!("{}/p2p/{}", status.listen[0], b.peer_id())
            .parse()
            .expect("addr");
        let db = sled::open(dir.path().join("a")).expect("sled");
        let key = orb_net::identity::load_or_create(&dir.path().join("a.key")).expect("key");
        let (a, _events, a_loop) = orb_net::start(
            key,
            &NetConfig::default(),
            PeerStore::open(&db).expect("peers"),
        )
        .expect("a");
        tasks.spawn(a_loop.run());
        let peer = a.dial(b_addr).await.expect("dial");
        let call = Invoke {
            invocation: 1,
            function: orb_functions::FunctionId::of(b"echo"),
            input: INPUT.to_vec(),
            fuel: None,
        };
        let mut samples = Vec::with_capacity(CALLS);
        for i in 0..CALLS + 200 {
            let t = Instant::now();
            let response = a
                .request(peer, Request::Invoke(call.clone()))
                .await
                .expect("request");
            if i >= 200 {
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
            assert!(matches!(response, Response::Output { .. }));
        }
        samples
    })
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(&dir.path().join("b"), &[]);
    let a = start(&dir.path().join("a"), &["--bootstrap", &b.addr]);
    deploy_echo(&b.api, 1, &dir.path().join("publisher"));

    let url = format!("{}/fn/echo", a.api);
    let client = agent();
    for _ in 0..300 {
        post(&client, &url);
    }
    let (mut hop, mut end_to_end) = (Vec::with_capacity(CALLS), Vec::with_capacity(CALLS));
    for _ in 0..CALLS {
        let t = Instant::now();
        let (network, execution) = post(&client, &url);
        end_to_end.push(t.elapsed().as_secs_f64() * 1e6);
        hop.push((network + execution) as f64);
    }
    let (tcp50, tcp99) = summary(tcp_round_trip());
    let (rr50, rr99) = summary(transport_round_trip());
    let (exe50, exe99) = summary(local_execution());
    let (hop50, hop99) = summary(hop);
    let (e2e50, e2e99) = summary(end_to_end);
    let floor = tcp50 + exe50;

    // 16 concurrent clients for 5 seconds.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (stop, done, url) = (stop.clone(), done.clone(), url.clone());
            std::thread::spawn(move || {
                let client = agent();
                while !stop.load(Ordering::Relaxed) {
                    post(&client, &url);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread");
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    println!("networked echo, {CALLS} sequential calls, 64-byte input, two nodes on loopback:");
    println!("  raw TCP round trip          p50 {tcp50:8.1} us   p99 {tcp99:8.1} us");
    println!("  local execution (echo)      p50 {exe50:8.1} us   p99 {exe99:8.1} us");
    println!("  floor = TCP + execution     p50 {floor:8.1} us");
    println!(
        "  orb-net request-response    p50 {rr50:8.1} us   p99 {rr99:8.1} us   (libp2p TCP+Noise+yamux, no execution, no node)"
    );
    println!(
        "  networked invoke a -> b     p50 {hop50:8.1} us   p99 {hop99:8.1} us   ratio to floor {:.2} (target <= 2.0)",
        hop50 / floor
    );
    println!(
        "  end to end via HTTP on a    p50 {e2e50:8.1} us   p99 {e2e99:8.1} us   ratio to floor {:.2}",
        e2e50 / floor
    );
    println!("  16 concurrent HTTP clients: {rate:.0} calls/s");
}
