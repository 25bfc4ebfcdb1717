//! Request streams between two real `orb-net` nodes on loopback: many
//! requests in flight on one stream, the window, a stream dropped mid-call
//! and reopened.

use std::time::Duration;

use orb_functions::FunctionId;
use orb_net::{
    Error, Invoke, Multiaddr, Net, NetConfig, NetEvent, PeerId, PeerStore, Request, Response,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A node in this process; its event loop runs in `tasks`.
struct Node {
    net: Net,
    events: mpsc::Receiver<NetEvent>,
    addr: Multiaddr,
    _db: sled::Db,
}

async fn node(
    dir: &std::path::Path,
    name: &str,
    listen: &str,
    window: usize,
    tasks: &mut JoinSet<()>,
) -> Node {
    let config = NetConfig {
        listen: vec![listen.parse().expect("listen address")],
        supernode: true,
        stream_window: window,
        request_timeout: Duration::from_secs(10),
        ..NetConfig::default()
    };
    let db = sled::open(dir.join(name)).expect("sled");
    let key =
        orb_net::identity::load_or_create(&dir.join(format!("{name}.key"))).expect("identity");
    let (net, events, event_loop) =
        orb_net::start(key, &config, PeerStore::open(&db).expect("peer store")).expect("start");
    tasks.spawn(event_loop.run());
    let status = net
        .wait_for(Duration::from_secs(10), |s| !s.listen.is_empty())
        .await
        .expect("status");
    let addr = format!("{}/p2p/{}", status.listen[0], net.peer_id())
        .parse()
        .expect("address");
    Node {
        net,
        events,
        addr,
        _db: db,
    }
}

fn invoke(n: u128) -> Request {
    Request::Invoke(Invoke {
        invocation: n,
        function: FunctionId::of(b"echo"),
        input: n.to_be_bytes().to_vec(),
        fuel: None,
        trace: None,
    })
}

fn echoed(response: &Response) -> u128 {
    match response {
        Response::Output { output, .. } => {
            u128::from_be_bytes(output[..].try_into().expect("16-byte output"))
        }
        other => panic!("not an output: {other:?}"),
    }
}

/// The next request `node` receives (and its reply).
async fn next_request(node: &mut Node) -> (u128, orb_net::Reply) {
    let event = tokio::time::timeout(Duration::from_secs(10), node.events.recv())
        .await
        .expect("a request in 10 s")
        .expect("events open");
    match event {
        NetEvent::Request {
            request: Request::Invoke(call),
            reply,
            ..
        } => (call.invocation, reply),
        NetEvent::Request { request, .. } => panic!("unexpected {request:?}"),
        NetEvent::Announcement { .. } => Box::pin(next_request(node)).await,
    }
}

fn output(n: u128) -> Response {
    Response::Output {
        output: n.to_be_bytes().to_vec(),
        fuel: n as u64,
        execution_us: 0,
        receipt: None,
    }
}

async fn pair(
    window_a: usize,
    window_b: usize,
) -> (tempfile::TempDir, JoinSet<()>, Node, Node, PeerId) {
    let dir = tempfile::tempdir().expect("dial");
    let mut tasks = JoinSet::new();
    let b = node(
        dir.path(),
        "b",
        "/ip4/127.0.0.1/tcp/0",
        window_b,
        &mut tasks,
    )
    .await;
    let a = node(
        dir.path(),
        "a",
        "/ip4/127.0.0.1/tcp/0",
        window_a,
        &mut tasks,
    )
    .await;
    let peer = a.net.dial(b.addr.clone()).await.expect("request");
    (dir, tasks, a, b, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_in_flight_are_answered_in_any_order_each_to_its_caller() {
    let (_dir, _tasks, a, mut b, peer) = pair(64, 64).await;
    const N: u128 = 32;
    let mut calls = JoinSet::new();
    for n in 0..N {
        let net = a.net.clone();
        calls.spawn(async move {
            let response = net.request(peer, &invoke(n)).await.unwrap();
            (n, echoed(&response))
        });
    }
    // Hold every request, then answer them last first: all 32 are in
    // flight on the one stream at once.
    let mut held = Vec::new();
    for _ in 0..N {
        held.push(next_request(&mut b).await);
    }
    while let Some((n, reply)) = held.pop() {
        assert!(reply.send(output(n)));
    }
    let mut seen = 0;
    while let Some(done) = calls.join_next().await {
        let (asked, answered) = done.unwrap();
        assert_eq!(asked, answered);
        seen += 1;
    }
    assert_eq!(seen, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_window_refuses_at_once_and_frees_as_answers_come() {
    let (_dir, _tasks, a, mut b, peer) = pair(4, 64).await;
    let mut calls = JoinSet::new();
    for n in 0..4 {
        let net = a.net.clone();
        calls.spawn(async move { net.request(peer, &invoke(n)).await });
    }
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(next_request(&mut b).await);
    }
    // Four in flight: a fifth is refused without being sent.
    match a.net.request(peer, &invoke(99)).await {
        Err(Error::WindowFull { window: 4, .. }) => {}
        other => panic!("expected a full window, got {other:?}"),
    }
    let (n, reply) = held.remove(0);
    reply.send(output(n));
    // One answer frees one slot: the next request goes through.
    calls.join_next().await.unwrap().unwrap().unwrap();
    let net = a.net.clone();
    let fifth = tokio::spawn(async move { net.request(peer, &invoke(5)).await });
    let (n, reply) = next_request(&mut b).await;
    assert_eq!(n, 5);
    reply.send(output(n));
    assert_eq!(echoed(&fifth.await.unwrap().unwrap()), 5);
    for (n, reply) in held {
        reply.send(output(n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answerer_holds_at_most_its_window_of_a_flood() {
    // a would send 200 at once; b reads at most 4 before answering any.
    let (_dir, _tasks, a, mut b, peer) = pair(256, 4).await;
    let mut calls = JoinSet::new();
    for n in 0..200 {
        let net = a.net.clone();
        calls.spawn(async move { net.request(peer, &invoke(n)).await });
    }
    let mut answered = 0;
    while answered < 200 {
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(next_request(&mut b).await);
        }
        // The window is full: nothing more is read from the stream until
        // one of these is answered.
        let more = tokio::time::timeout(Duration::from_millis(50), b.events.recv()).await;
        assert!(more.is_err(), "a fifth request was read with 4 unanswered");
        for (n, reply) in held {
            reply.send(output(n));
            answered += 1;
        }
    }
    while let Some(done) = calls.join_next().await {
        let response = done.unwrap().unwrap();
        echoed(&response);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_reply_is_refused_and_a_dropped_stream_fails_its_calls_then_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = JoinSet::new();
    let mut b_tasks = JoinSet::new();
    let b = node(dir.path(), "b", "/ip4/127.0.0.1/tcp/0", 64, &mut b_tasks).await;
    let a = node(dir.path(), "a", "/ip4/127.0.0.1/tcp/0", 64, &mut tasks).await;
    let peer = a.net.dial(b.addr.clone()).await.unwrap();
    let mut b = b;

    // A reply dropped unanswered answers "refused", not silence.
    let net = a.net.clone();
    let call = tokio::spawn(async move { net.request(peer, &invoke(1)).await });
    let (_, reply) = next_request(&mut b).await;
    drop(reply);
    assert!(matches!(call.await.unwrap(), Ok(Response::Refused(_))));

    // b goes away with a call in flight: the call fails (it does not wait
    // for its timeout), and so does the next one while b is down.
    let net = a.net.clone();
    let call = tokio::spawn(async move { net.request(peer, &invoke(2)).await });
    let _held = next_request(&mut b).await;
    let b_addr = b.addr.clone();
    b_tasks.abort_all();
    while b_tasks.join_next().await.is_some() {}
    drop(b);
    let started = std::time::Instant::now();
    assert!(matches!(call.await.unwrap(), Err(Error::Request { .. })));
    assert!(started.elapsed() < Duration::from_secs(10));

    // b comes back at the same address with the same key: the next call
    // opens a new stream by itself.
    let listen: String = b_addr
        .iter()
        .take(2)
        .map(|p| p.to_string())
        .collect::<String>();
    let mut b = node(dir.path(), "b", &listen, 64, &mut b_tasks).await;
    // The first dial may still meet the old listener's socket closing
    // (refused, or a handshake cut short); a node retries, so does this.
    let mut dialed = None;
    for _ in 0..100 {
        match a.net.dial(b_addr.clone()).await {
            Ok(p) => {
                dialed = Some(p);
                break;
            }
            Err(Error::Dial { .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("dial: {e}"),
        }
    }
    assert_eq!(dialed, Some(peer), "b is reachable again at its address");
    let net = a.net.clone();
    let call = tokio::spawn(async move { net.request(peer, &invoke(3)).await });
    let (n, reply) = next_request(&mut b).await;
    reply.send(output(n));
    assert_eq!(echoed(&call.await.unwrap().unwrap()), 3);
}
