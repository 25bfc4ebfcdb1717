//! `scripts/bench serve`: the same `wasi:http/proxy` component served by
//! an Orb node's gateway and by `wasmtime serve`, in one run.
//!
//! The example router (`components/router.wasm`) is deployed on one
//! release `orb node` and handed to `wasmtime serve` of the same wasmtime
//! version as Orb's (`ORB_WASMTIME` names the binary; `scripts/bench serve`
//! installs it). 16 client threads, each on its own keep-alive connection,
//! send `GET /hello?name=orb` as fast as they are answered: to
//! `/fn/router/hello?name=orb` on the node, to `/hello?name=orb` on
//! `wasmtime serve`. Rounds alternate between the two (4 s each after a
//! warm-up, 3 rounds, medians). Every response must be 200 with the same
//! body on both sides; the bench counts any other answer and fails if one
//! came. Orb runs each request metered, with its deterministic clocks and
//! randomness, in a fresh instance, as `wasmtime serve` runs each in a fresh
//! instance. Target: Orb ≥ 1.5 × `wasmtime serve`'s requests/s.

#![allow(clippy::print_stdout)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::{any_status_agent as client, deploy_file, functions_dir, start, summary};

const CLIENTS: usize = 16;
const ROUND: Duration = Duration::from_secs(4);
const ROUNDS: usize = 3;
const BODY: &str = r#"{"hello":"orb"}"#;

/// `wasmtime serve`, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `url` answers 200 with the router's body.
fn wait_ready(url: &str, what: &str) {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut r) = http.get(url).call()
            && r.status() == 200
            && r.body_mut().read_to_string().is_ok_and(|b| b == BODY)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer {url} in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The CPU time process `pid` has used so far (user and system), in
/// seconds, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's name (which may hold spaces): state is
    // the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// Clock ticks per second, the unit of /proc/PID/stat's times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .expect("getconf CLK_TCK")
    })
}

/// What one round of [`CLIENTS`] clients got from `url` in `time`, and
/// the CPU the server (process `server`) spent on each request.
struct Round {
    per_second: f64,
    latencies_us: Vec<f64>,
    wrong: u64,
    cpu_us: f64,
}

fn round(url: &str, server: u32, time: Duration) -> Round {
    let cpu_before = cpu_seconds(server);
    let stop = Arc::new(AtomicBool::new(false));
    let wrong = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, stop, wrong) = (url.to_owned(), stop.clone(), wrong.clone());
            std::thread::spawn(move || {
                let http = client();
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let right = http.get(&url).call().is_ok_and(|mut r| {
                        r.status() == 200 && r.body_mut().read_to_string().is_ok_and(|b| b == BODY)
                    });
                    latencies.push(t.elapsed().as_secs_f64() * 1e6);
                    if !right {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(time);
    stop.store(true, Ordering::Relaxed);
    let latencies_us: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a client"))
        .collect();
    let cpu = cpu_seconds(server) - cpu_before;
    Round {
        per_second: latencies_us.len() as f64 / started.elapsed().as_secs_f64(),
        cpu_us: cpu * 1e6 / latencies_us.len().max(1) as f64,
        latencies_us,
        wrong: wrong.load(Ordering::Relaxed),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let wasmtime = std::env::var_os("ORB_WASMTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("wasmtime"));
    let router = functions_dir().join("components").join("router.wasm");
    assert!(router.exists(), "{}: run scripts/guests", router.display());
    let version = Command::new(&wasmtime)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/bench serve installs it)",
                wasmtime.display()
            )
        });
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();

    let dir = tempfile::tempdir().expect("tempdir");
    let node = start(&dir.path().join("node"), &["--no-autoscale"]);
    deploy_file(&node.api, &router, "router", 1, &dir.path().join("client"));
    let orb = format!("{}/fn/router/hello?name=orb", node.api);

    let port = free_port();
    let serve_process = Serve(
        Command::new(&wasmtime)
            .args(["serve", "-S", "cli=y", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(&router)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wasmtime serve"),
    );
    let serve = format!("http://127.0.0.1:{port}/hello?name=orb");
    wait_ready(&orb, "the node");
    wait_ready(&serve, "wasmtime serve");

    let (orb_pid, serve_pid) = (node.child.id(), serve_process.0.id());
    round(&orb, orb_pid, Duration::from_secs(1));
    round(&serve, serve_pid, Duration::from_secs(1));
    let (mut orb_rounds, mut serve_rounds) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        orb_rounds.push(round(&orb, orb_pid, ROUND));
        serve_rounds.push(round(&serve, serve_pid, ROUND));
    }
    let wrong: u64 = orb_rounds
        .iter()
        .chain(&serve_rounds)
        .map(|r| r.wrong)
        .sum();
    let report = |rounds: Vec<Round>| {
        let rate = median(rounds.iter().map(|r| r.per_second).collect());
        let cpu = median(rounds.iter().map(|r| r.cpu_us).collect());
        let (p50, p99) = summary(rounds.into_iter().flat_map(|r| r.latencies_us).collect());
        (rate, p50, p99, cpu)
    };
    let (orb_rate, orb50, orb99, orb_cpu) = report(orb_rounds);
    let (serve_rate, serve50, serve99, serve_cpu) = report(serve_rounds);
    println!(
        "the router component, {CLIENTS} keep-alive clients, GET /hello (medians of {ROUNDS} rounds of {} s):",
        ROUND.as_secs()
    );
    println!(
        "  orb node gateway   {orb_rate:>9.0} requests/s   p50 {orb50:>7.0} µs   p99 {orb99:>7.0} µs   server CPU {orb_cpu:>5.0} µs/request"
    );
    println!(
        "  wasmtime serve     {serve_rate:>9.0} requests/s   p50 {serve50:>7.0} µs   p99 {serve99:>7.0} µs   server CPU {serve_cpu:>5.0} µs/request   ({version})"
    );
    println!(
        "  server CPU per request, wasmtime serve / orb  {:.2} (the clients share the 2 cores)",
        serve_cpu / orb_cpu
    );
    println!(
        "  orb / wasmtime serve  {:.2} (target >= 1.5); answers other than 200 {BODY}: {wrong}",
        orb_rate / serve_rate
    );
    assert_eq!(wrong, 0, "every response must be 200 with the same body");
    node.stop();
}
