//! What the networked benchmarks share: starting real `orb node`
//! processes (release build), percentiles, an HTTP agent.

#![allow(dead_code)]

pub(crate) mod bare;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) fn functions_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ORB_FUNCTIONS_DIR") {
        return dir.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("functions")
}

pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) api: String,
    pub(crate) addr: String,
}

impl Node {
    /// Stops the node as Ctrl-C would (SIGTERM: it flushes its stores),
    /// killing it if it has not exited after 10 s.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(dir: &std::path::Path, extra: &[&str]) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orb"))
        .args([
            "node",
            "--supernode",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("ORB_DATA_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start orb node");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut api, mut addr) = (String::new(), String::new());
    while api.is_empty() {
        let line = lines.next().expect("node output").expect("line");
        if let Some(a) = line.strip_prefix("listening: ") {
            addr = a.to_owned();
        } else if let Some(a) = line.strip_prefix("api: ") {
            api = a.to_owned();
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Node { child, api, addr }
}

/// Starts one node per dir sharing `genesis` (node 0 first, the others
/// joining through it), each with `extra` flags.
#[allow(dead_code)] // not every bench runs a ledger network
pub(crate) fn start_network(
    dirs: &[std::path::PathBuf],
    genesis: &orb_ledger::Genesis,
    extra: &[&str],
) -> Vec<Node> {
    let root = dirs[0].parent().expect("dirs under a root");
    std::fs::create_dir_all(root).expect("root dir");
    let file = root.join("genesis.json");
    std::fs::write(&file, serde_json::to_string(genesis).expect("json")).expect("write");
    let mut common = vec!["--genesis", file.to_str().expect("utf-8")];
    common.extend_from_slice(extra);
    let first = start(&dirs[0], &common);
    let boot = first.addr.clone();
    let mut nodes = vec![first];
    for dir in &dirs[1..] {
        let mut args = vec!["--bootstrap", boot.as_str()];
        args.extend_from_slice(&common);
        nodes.push(start(dir, &args));
    }
    nodes
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) fn summary(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

/// An HTTP agent that hands back every status (the bench judges it).
pub(crate) fn any_status_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(true)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Deploys the example `echo` through the node at `api` with `replicas`.
pub(crate) fn deploy_echo(api: &str, replicas: u32, client_dir: &std::path::Path) {
    deploy(api, "echo", replicas, client_dir);
}

/// Deploys the example function `name` through the node at `api`.
pub(crate) fn deploy(api: &str, name: &str, replicas: u32, client_dir: &std::path::Path) {
    let file = functions_dir().join(format!("{name}.wasm"));
    deploy_file(api, &file, name, replicas, client_dir);
}

/// Deploys the module or component in `file` as `name` through the node
/// at `api`.
pub(crate) fn deploy_file(
    api: &str,
    file: &std::path::Path,
    name: &str,
    replicas: u32,
    client_dir: &std::path::Path,
) {
    let out = Command::new(env!("CARGO_BIN_EXE_orb"))
        .args(["--node", api, "deploy", "--name", name, "--replicas"])
        .arg(replicas.to_string())
        .arg(file)
        .env("ORB_DATA_DIR", client_dir)
        .output()
        .expect("deploy");
    assert!(
        out.status.success(),
        "deploy {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `calls` echo calls in a row through `agent` on the node at `api`, one
/// after another on a keep-alive connection: their latencies in µs,
/// sorted.
pub(crate) fn echo_latencies(agent: &ureq::Agent, api: &str, calls: usize) -> Vec<f64> {
    let url = format!("{api}/fn/echo");
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls {
        let input = format!("hello {i}");
        let started = std::time::Instant::now();
        let mut response = agent.post(&url).send(input.as_bytes()).expect("echo");
        let body = response.body_mut().read_to_vec().expect("body");
        samples.push(started.elapsed().as_secs_f64() * 1e6);
        assert_eq!(response.status(), 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(body, input.as_bytes());
    }
    samples.sort_by(f64::total_cmp);
    samples
}

/// Prints p50, p90 and p99 of sorted `samples` (µs) under `what`.
pub(crate) fn report_latencies(what: &str, samples: &[f64]) -> (f64, f64) {
    let (p50, p90, p99) = (
        percentile(samples, 0.5),
        percentile(samples, 0.9),
        percentile(samples, 0.99),
    );
    println!("{what:<34} p50 {p50:>9.0} µs   p90 {p90:>9.0} µs   p99 {p99:>9.0} µs");
    (p50, p99)
}

/// A process's peak resident memory (VmHWM), in MiB; 0 when unknown.
pub(crate) fn peak_rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}
