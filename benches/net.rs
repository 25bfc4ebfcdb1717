//! `scripts/bench net`: a networked call against its floor, in one run.
//!
//! Two real `orb node` processes on loopback (release build): `b` hosts
//! `echo`, `a` does not, so every call a makes crosses the network.
//!
//! - networked invoke, a → b: resolve (cached), a request on a's long-lived
//!   request stream to b (libp2p TCP, Noise, yamux), execution on b, answer. Timed by node a
//!   (its `x-orb-network-us` + `x-orb-execution-us` headers) for each call
//!   of a client that posts to a's `POST /fn/echo` one call at a time;
//! - end to end: the same calls timed by the client, HTTP hop included;
//!   beside it the same client's calls to b's own `POST /fn/echo` (executed
//!   where they land, no network hop) and to a bare axum server in this
//!   process that echoes the body (tokio, hyper and axum as the node has
//!   them): what the HTTP hop alone costs;
//! - the floor: a round trip of the same bytes on one long-lived bare
//!   libp2p stream to another process (this bench re-run as the echoing
//!   peer), same TCP + Noise + yamux config, plus a local execution of the
//!   same call (orb-functions, in process); a raw TCP round trip for scale;
//! - the transport alone: two `orb-net` handles in this process, one
//!   answering every invoke request at once with its input (no execution,
//!   no node), to separate what orb-net's request streams cost from what
//!   the node adds;
//! - throughput: 16 concurrent HTTP clients for 5 s against a (executed on
//!   b) and against b itself (executed where it lands).
//!
//! Targets: networked invoke p50 ≤ 2 × floor and p99 ≤ 3 × floor; end to
//! end p50 ≤ 2.5 × floor; 16 clients on a ≥ 0.7 × 16 clients on b.

#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orb_functions::{CallOptions, Runtime, RuntimeConfig};

mod support;
use support::{agent, bare, deploy_echo, functions_dir, start, summary};

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

/// Round trips of the same request, by the same client, to a bare axum
/// server on its own runtime that answers with the body.
fn http_round_trip() -> Vec<f64> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/",
                axum::routing::post(|body: axum::body::Bytes| async move { body }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let url = format!("http://{}/", rx.recv().expect("addr"));
    timed(&url)
}

/// `CALLS` sequential posts of `INPUT` to `url` (after 200 unmeasured),
/// each checked, in microseconds.
fn timed(url: &str) -> Vec<f64> {
    let client = agent();
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 200 {
        let t = Instant::now();
        let mut response = client.post(url).send(INPUT).expect("call");
        let body = response.body_mut().read_to_vec().expect("body");
        if i >= 200 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        assert_eq!(body, INPUT);
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
        tasks.spawn(async move {
            while let Some(event) = events.recv().await {
                if let NetEvent::Request {
                    request: Request::Invoke(call),
                    reply,
                    ..
                } = event
                {
                    let response = Response::Output {
                        output: call.input,
                        fuel: 0,
                        execution_us: 0,
                        receipt: None,
                    };
                    reply.send(response);
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
        let call = Request::Invoke(Invoke {
            invocation: 1,
            function: orb_functions::FunctionId::of(b"echo"),
            input: INPUT.to_vec(),
            fuel: None,
            trace: None,
        });
        let mut samples = Vec::with_capacity(CALLS);
        for i in 0..CALLS + 200 {
            let t = Instant::now();
            let response = a.request(peer, &call).await.expect("request");
            if i >= 200 {
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
            assert!(matches!(response, Response::Output { .. }));
        }
        samples
    })
}

fn main() {
    bare::serve_if_peer();
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
    let (bare50, bare99) = summary(bare::round_trips(INPUT, &bare::Plan::calls(CALLS)));
    let (rr50, rr99) = summary(transport_round_trip());
    let (exe50, exe99) = summary(local_execution());
    let (hop50, hop99) = summary(hop);
    let (e2e50, e2e99) = summary(end_to_end);
    let floor = bare50 + exe50;
    let (http50, http99) = summary(http_round_trip());
    let (on_b50, on_b99) = summary(timed(&format!("{}/fn/echo", b.api)));
    let remote = clients_rate(&url);
    let local = clients_rate(&format!("{}/fn/echo", b.api));

    println!("networked echo, {CALLS} sequential calls, 64-byte input, two nodes on loopback:");
    println!("  raw TCP round trip          p50 {tcp50:8.1} us   p99 {tcp99:8.1} us");
    println!(
        "  bare libp2p stream          p50 {bare50:8.1} us   p99 {bare99:8.1} us   (one long-lived stream to another process, TCP+Noise+yamux)"
    );
    println!("  local execution (echo)      p50 {exe50:8.1} us   p99 {exe99:8.1} us");
    println!("  floor = stream + execution  p50 {floor:8.1} us");
    println!(
        "  orb-net request alone       p50 {rr50:8.1} us   p99 {rr99:8.1} us   ratio to the stream {:.2} (request streams, no execution, no node)",
        rr50 / bare50
    );
    println!(
        "  networked invoke a -> b     p50 {hop50:8.1} us   p99 {hop99:8.1} us   ratio to floor p50 {:.2} (target <= 2.0), p99 {:.2} (target <= 3.0)",
        hop50 / floor,
        hop99 / floor
    );
    println!(
        "  end to end via HTTP on a    p50 {e2e50:8.1} us   p99 {e2e99:8.1} us   ratio to floor {:.2} (target <= 2.5)",
        e2e50 / floor
    );
    println!(
        "  bare axum echo server       p50 {http50:8.1} us   p99 {http99:8.1} us   (the HTTP hop alone: same client, same server stack, nothing else)"
    );
    println!(
        "  end to end via HTTP on b    p50 {on_b50:8.1} us   p99 {on_b99:8.1} us   (executed where it lands, no network hop)"
    );
    println!(
        "  floor with the HTTP hop     p50 {:8.1} us   end to end on a / it {:.2}",
        floor + http50,
        e2e50 / (floor + http50)
    );
    println!(
        "  16 concurrent HTTP clients: {remote:.0} calls/s on a (executed on b), {local:.0} calls/s on b (executed there): ratio {:.2} (target >= 0.7)",
        remote / local
    );
}

/// Calls/s of 16 concurrent HTTP clients posting to `url` for 5 seconds.
fn clients_rate(url: &str) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (stop, done, url) = (stop.clone(), done.clone(), url.to_owned());
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
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
