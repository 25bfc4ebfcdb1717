//! `scripts/bench agents`: messages/s and latency of agent steps against
//! stateless calls through the same node, in one run.
//!
//! One release node hosts `echo` (a function) and `counter` (an agent
//! module). Measured, each for a fixed time after a warm-up:
//! - one client, calls in a row: `POST /fn/echo` (the stateless floor),
//!   then `inc` to one agent (`POST /agent/counter/one`);
//! - 16 clients: `echo`, then `inc` to one agent (its steps run one at a
//!   time), then `inc` spread over 100 agents.
//!
//! A step does what a call does (a WASM instance on the executor pool)
//! plus reading the state, a sled transaction and an fsync before the
//! reply, so its floor is the call plus a durable write on this disk
//! (measured in the same run: a sled insert, flush and fdatasync). Target:
//! steps/s of one agent, one client ≥ 0.5 × the stateless calls/s.
//!
//! Then two more nodes join and `counter3` is deployed on all three
//! (`--replicas 3`): one agent with one client and 100 agents with 16
//! (target: R = 3 ≥ 0.3 × R = 1), and the time from a SIGKILL of an
//! agent's sequencer to its next message applied through another node.
//! And a topic's latency: a `chat` room's lines, each from before its
//! `say` to its event on a `GET /topic` stream, on the room's node and
//! through another.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::{agent, deploy_echo, functions_dir, start, summary};

const WARM_UP: Duration = Duration::from_secs(2);
const MEASURE: Duration = Duration::from_secs(8);
const TARGET: f64 = 0.5;
/// Steps/s of an agent on three hosts against one.
const R3_TARGET: f64 = 0.3;

/// `clients` threads posting `body` to the path `path(client, n)` for
/// [`MEASURE`] after [`WARM_UP`]: requests/s and latency p50/p99 (ms).
fn load(
    api: &str,
    clients: usize,
    body: &'static str,
    path: impl Fn(usize, u64) -> String + Send + Sync + 'static,
) -> (f64, f64, f64) {
    let path = Arc::new(path);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (path, stop, measuring, done) =
                (path.clone(), stop.clone(), measuring.clone(), done.clone());
            let api = api.to_owned();
            std::thread::spawn(move || {
                let http = agent();
                let mut samples = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let url = format!("{api}{}", path(c, n));
                    let started = Instant::now();
                    let mut r = http.post(&url).send(body).expect("request");
                    let _ = r.body_mut().read_to_vec().expect("body");
                    if measuring.load(Ordering::Relaxed) {
                        samples.push(started.elapsed().as_secs_f64() * 1e3);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
                samples
            })
        })
        .collect();
    std::thread::sleep(WARM_UP);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(MEASURE);
    let count = done.load(Ordering::Relaxed);
    let rate = count as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let samples: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client"))
        .collect();
    let (p50, p99) = summary(samples);
    (rate, p50, p99)
}

/// One durable small write on this disk, as a step makes it: a sled
/// insert, its flush and an fdatasync of the file. (mean, p50) in ms: the
/// mean is what bounds steps/s of one client, the calls in a row.
fn durable_write(dir: &std::path::Path) -> (f64, f64) {
    let db = sled::open(dir).expect("sled");
    let file = std::fs::File::open(dir.join("db")).expect("sled's file");
    let samples: Vec<f64> = (0..500u32)
        .map(|i| {
            let started = Instant::now();
            db.insert(i.to_be_bytes(), vec![7u8; 200]).expect("insert");
            db.flush().expect("flush");
            file.sync_data().expect("fdatasync");
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    (mean, summary(samples).0)
}

/// `orb agent deploy counter.wasm --name NAME --replicas R` through `api`.
fn deploy_counter(api: &str, name: &str, replicas: u32, client: &std::path::Path) {
    deploy_agent(api, "counter", name, replicas, client);
}

/// `orb agent deploy MODULE.wasm --name NAME --replicas R` through `api`.
fn deploy_agent(api: &str, module: &str, name: &str, replicas: u32, client: &std::path::Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orb"))
        .args(["--node", api, "agent", "deploy", "--name", name])
        .args(["--replicas", &replicas.to_string()])
        .arg(functions_dir().join(format!("{module}.wasm")))
        .env("ORB_DATA_DIR", client)
        .output()
        .expect("orb agent deploy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `lines` lines said to the chat room `room` through `say_api`, each
/// timed from before its POST to its event on a server-sent event stream
/// of the room's topic read through `stream_api`: p50 and p99 (ms).
fn topic_latency(say_api: &str, stream_api: &str, room: &str, lines: usize) -> (f64, f64) {
    use std::io::BufRead as _;
    let (seen, events) = std::sync::mpsc::sync_channel::<String>(lines);
    let url = format!("{stream_api}/topic/chat/{room}/lines");
    let (open, opened) = std::sync::mpsc::sync_channel::<()>(1);
    let reader = std::thread::spawn(move || {
        let http = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        // A node that has not learned the room's module yet answers 404.
        let deadline = Instant::now() + Duration::from_secs(30);
        let response = loop {
            match http.get(&url).call() {
                Ok(r) => break r,
                Err(e) => {
                    assert!(Instant::now() < deadline, "GET {url}: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        open.send(()).expect("the bench");
        let body = std::io::BufReader::new(response.into_body().into_reader());
        let mut got = 0;
        for line in body.lines() {
            let line = line.expect("the stream");
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let p: serde_json::Value = serde_json::from_str(data.trim()).expect("json");
            let text = p["message"]["text"].as_str().unwrap_or_default().to_owned();
            seen.send(text).expect("the bench");
            got += 1;
            if got == lines {
                return;
            }
        }
    });
    opened.recv().expect("the stream opened");
    let http = agent();
    let mut samples = Vec::with_capacity(lines);
    for n in 0..lines {
        let started = Instant::now();
        http.post(&format!("{say_api}/agent/chat/{room}"))
            .send(format!("say bench line-{n}"))
            .expect("say");
        let text = events
            .recv_timeout(Duration::from_secs(10))
            .expect("the publication's event");
        assert_eq!(text, format!("bench: line-{n}"));
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    reader.join().expect("the reader");
    let (p50, p99) = summary(samples);
    (p50, p99)
}

fn row(what: &str, (rate, p50, p99): (f64, f64, f64)) -> f64 {
    println!("{what:<44} {rate:>9.0} /s   p50 {p50:>7.2} ms   p99 {p99:>7.2} ms");
    rate
}

fn main() {
    let root = tempfile::tempdir().expect("tempdir");
    let client = root.path().join("client");
    let node = start(&root.path().join("node"), &["--no-autoscale"]);
    deploy_echo(&node.api, 1, &client);
    deploy_counter(&node.api, "counter", 1, &client);

    println!("one node; echo calls vs counter steps (inc), each fsync'd before its reply");
    let call1 = row(
        "echo, 1 client",
        load(&node.api, 1, "hello", |_, _| "/fn/echo".into()),
    );
    let step1 = row(
        "counter/one, 1 client",
        load(&node.api, 1, "inc", |_, _| "/agent/counter/one".into()),
    );
    let call16 = row(
        "echo, 16 clients",
        load(&node.api, 16, "hello", |_, _| "/fn/echo".into()),
    );
    let one16 = row(
        "counter/one, 16 clients",
        load(&node.api, 16, "inc", |_, _| "/agent/counter/one".into()),
    );
    let many16 = row(
        "100 counters, 16 clients",
        load(&node.api, 16, "inc", |c, n| {
            format!("/agent/counter/a{}", (c as u64 * 7 + n) % 100)
        }),
    );
    // R = 3: two more nodes; `counter3` on all three.
    let dirs = ["node", "n1", "n2"];
    let others: Vec<_> = dirs[1..]
        .iter()
        .map(|d| {
            start(
                &root.path().join(d),
                &["--bootstrap", &node.addr, "--no-autoscale"],
            )
        })
        .collect();
    let status = |api: &str| -> serde_json::Value {
        agent()
            .get(&format!("{api}/api/status"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&node.api)["connected"].as_u64().unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "the nodes never connected");
        std::thread::sleep(Duration::from_millis(100));
    }
    deploy_counter(&node.api, "counter3", 3, &client);
    let step3 = row(
        "counter3/one (R = 3), 1 client",
        load(&node.api, 1, "inc", |_, _| "/agent/counter3/one".into()),
    );
    let many3 = row(
        "100 counters3 (R = 3), 16 clients",
        load(&node.api, 16, "inc", |c, n| {
            format!("/agent/counter3/a{}", (c as u64 * 7 + n) % 100)
        }),
    );
    // Topics: a chat room on this node; its lines read as server-sent
    // events here (woken by the step) and through another node (which
    // reads the room's host every 0.2 s).
    deploy_agent(&node.api, "chat", "chat", 1, &client);
    let (here50, here99) = topic_latency(&node.api, &node.api, "here", 200);
    println!(
        "topic → event stream on the publisher's node, 200 lines: p50 {here50:.2} ms   p99 {here99:.2} ms (say + step + event)"
    );
    let (there50, there99) = topic_latency(&node.api, &others[0].api, "there", 100);
    println!(
        "topic → event stream through another node, 100 lines: p50 {there50:.2} ms   p99 {there99:.2} ms (its read waits on the room's host for the next line)"
    );
    // Recovery: SIGKILL the sequencer of counter3/one, then time the first
    // message through another node that is applied.
    let send = |api: &str, id: u32| {
        agent()
            .post(&format!("{api}/agent/counter3/one?message_id={id:032x}"))
            .send("inc")
            .ok()
            .map(|r| {
                r.headers()
                    .get("x-orb-sequencer")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            })
    };
    let sequencer = send(&node.api, 1).expect("a step before the kill");
    let mut all = vec![node];
    all.extend(others);
    let apis: Vec<String> = all.iter().map(|n| n.api.clone()).collect();
    let victim = apis
        .iter()
        .position(|a| status(a)["peer_id"] == sequencer.as_str())
        .expect("the sequencer among the nodes");
    let entry = apis[(victim + 1) % 3].clone();
    let mut victim_node = all.remove(victim);
    let killed = Instant::now();
    let _ = victim_node.child.kill();
    let _ = victim_node.child.wait();
    let mut tries = 0;
    while send(&entry, 2).is_none() {
        tries += 1;
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "never served again"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let recovery = killed.elapsed().as_secs_f64() * 1e3;
    println!(
        "recovery after a SIGKILL of the sequencer (R = 3): served again in {recovery:.0} ms ({tries} refused tries)"
    );
    // Replay: 500 messages while it is down, then restart it on its data
    // dir and time its first message, which first brings it up to date.
    for id in 3..503 {
        send(&entry, id).expect("a step while a host is down");
    }
    let entry_addr = all
        .iter()
        .find(|n| n.api == entry)
        .map(|n| n.addr.clone())
        .expect("the entry node");
    let restarted = Instant::now();
    let back = start(
        &root.path().join(dirs[victim]),
        &["--bootstrap", &entry_addr, "--no-autoscale"],
    );
    let up = restarted.elapsed().as_secs_f64() * 1e3;
    let mut refused = 0;
    while send(&back.api, 503).is_none() {
        refused += 1;
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "never served again"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let served = restarted.elapsed().as_secs_f64() * 1e3;
    let seq = |api: &str| {
        agent()
            .get(&format!("{api}/agent/counter3/one/state"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["seq"].as_u64())
            .unwrap_or(0)
    };
    println!(
        "restart of that host after 500 more messages: API up in {up:.0} ms, its first message applied in {served:.0} ms ({refused} refused tries), its copy at seq {} as the others' {}",
        seq(&back.api),
        seq(&entry)
    );
    all.push(back);
    for n in all {
        n.stop();
    }
    let (write, write_p50) = durable_write(&root.path().join("floor"));
    let call = 1e3 / call1;
    println!(
        "floor of a step, 1 client: an echo call ({call:.2} ms: 1 / calls per s) + a durable sled write (mean {write:.2} ms, p50 {write_p50:.2} ms) = {:.2} ms",
        call + write
    );
    println!(
        "one agent, 1 client, vs that floor: {:.2}; steps/calls can be at most {:.2} on this disk (call / (call + durable write))",
        (call + write) / (1e3 / step1),
        call / (call + write)
    );
    let ratio = step1 / call1;
    let verdict = if ratio >= TARGET { "✓" } else { "✗" };
    println!("steps/s of one agent / calls/s, 1 client: {ratio:.2} (target ≥ {TARGET}) {verdict}");
    println!(
        "16 clients: one agent {:.2}×, 100 agents {:.2}× the calls/s",
        one16 / call16,
        many16 / call16
    );
    let r3 = step3 / step1;
    let verdict = if r3 >= R3_TARGET { "✓" } else { "✗" };
    println!(
        "R = 3 / R = 1, one agent, 1 client: {r3:.2} (target ≥ {R3_TARGET}) {verdict}; 100 agents, 16 clients: {:.2}",
        many3 / many16
    );
}
