//! The network, end to end: real `orb node` processes on real sockets.
//!
//! Loopback tests run anywhere. The LAN (mDNS) and NAT tests build private
//! network namespaces with veth pairs (and nftables masquerade for the NAT)
//! and need root and `ip`; without them they say so and skip.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{assert_fails, example, json, stdout};

/// A running `orb node`, killed on drop.
pub(crate) struct NodeProc {
    child: Child,
    pub(crate) dir: PathBuf,
    pub(crate) api: String,
    pub(crate) peer_id: String,
    /// `/ip4/…/tcp/…/p2p/…` addresses it listens on.
    pub(crate) addrs: Vec<String>,
    pub(crate) netns: Option<String>,
    /// The API token the node printed (it prints one it generated when its
    /// API is beyond loopback).
    pub(crate) api_token: Option<String>,
}

fn command_in(netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_orb")]);
            cmd
        }
        None => Command::new(env!("CARGO_BIN_EXE_orb")),
    }
}

impl NodeProc {
    /// Starts a node with its data in `dir`, listening on `listen`.
    pub(crate) fn start(dir: &Path, listen: &str, extra: &[&str], netns: Option<&str>) -> Self {
        std::fs::create_dir_all(dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .expect("log file");
        // The API on a free loopback port, unless `extra` says where.
        let api = if extra.contains(&"--api") {
            &[][..]
        } else {
            &["--api", "127.0.0.1:0"][..]
        };
        let mut child = command_in(netns)
            .args(["node", "--listen", listen])
            .args(api)
            .args(extra)
            .env("ORB_DATA_DIR", dir)
            // ORB_TEST_LOG sets the nodes' filter when a test is debugged.
            .env(
                "ORB_LOG",
                std::env::var("ORB_TEST_LOG").unwrap_or("orb_net=info,orb=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn orb node");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut peer_id, mut addrs, mut api) = (String::new(), Vec::new(), String::new());
        let mut api_token = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "node in {} did not start: {}",
                    dir.display(),
                    std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
                )
            });
            if let Some(p) = line.strip_prefix("peer id: ") {
                peer_id = p.to_owned();
            } else if let Some(a) = line.strip_prefix("listening: ") {
                addrs.push(a.to_owned());
            } else if let Some(a) = line.strip_prefix("api: ") {
                api = a.to_owned();
            } else if let Some(t) = line.strip_prefix("api token: ") {
                api_token = t.split_whitespace().next().map(str::to_owned);
            }
        }
        Self {
            child,
            dir: dir.to_owned(),
            api,
            peer_id,
            addrs,
            netns: netns.map(str::to_owned),
            api_token,
        }
    }

    /// Runs a client command against this node.
    pub(crate) fn client(&self, args: &[&str]) -> Output {
        command_in(self.netns.as_deref())
            .args(args)
            .args(["--node", &self.api])
            .env("ORB_DATA_DIR", self.dir.join("client"))
            .env_remove("ORB_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("run orb client")
    }

    /// `orb status --json`.
    pub(crate) fn status(&self) -> Value {
        let out = self.client(&["status", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&out)
    }

    /// Waits until `check` holds for the node's status.
    pub(crate) fn wait_status(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.status();
            if check(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached; status {status}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Invokes `target` with `input` through this node.
    pub(crate) fn invoke(&self, target: &str, input: &str) -> Output {
        self.client(&["invoke", target, "--input", input, "--json"])
    }

    /// The node's peak resident memory so far (VmHWM), in MiB; 0 when
    /// unknown.
    pub(crate) fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()));
        status
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib / 1024)
    }

    /// Stops the node as an operator does, with SIGTERM, and waits (30 s
    /// at most) until it has shut down; how it exited.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        use nix::sys::signal::{Signal, kill};
        let pid = i32::try_from(self.child.id()).expect("a pid");
        kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the node") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not stop on SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn stop(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.clone()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

/// `host:port` of an API URL (`http://127.0.0.1:7420`).
fn socket_of(api: &str) -> &str {
    api.trim_start_matches("http://").trim_end_matches('/')
}

/// POSTs each body to `path` in turn on one HTTP/1.1 connection to `api`
/// and returns the response bodies (each must be a 200 that keeps the
/// connection open).
fn posts_on_one_connection(api: &str, path: &str, bodies: &[&str]) -> Vec<String> {
    use std::io::{Read, Write};
    let addr = socket_of(api);
    let stream = std::net::TcpStream::connect(addr).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut out = Vec::new();
    for body in bodies {
        write!(
            writer,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write request");
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut length = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header");
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "connection" => assert_ne!(value.trim(), "close", "the gateway closed"),
                _ => {}
            }
        }
        let mut answer = vec![0; length.expect("a sized body")];
        reader.read_exact(&mut answer).expect("body");
        out.push(String::from_utf8(answer).expect("utf-8"));
    }
    out
}

pub(crate) fn connected(n: u64) -> impl Fn(&Value) -> bool {
    move |s| s["connected"].as_u64().unwrap_or(0) >= n
}

#[test]
fn five_nodes_deploy_invoke_restart_and_reroute() {
    let root = tempfile::tempdir().unwrap();
    let a = NodeProc::start(&root.path().join("a"), LOOPBACK, &["--supernode"], None);
    let b = NodeProc::start(
        &root.path().join("b"),
        LOOPBACK,
        &["--supernode", "--bootstrap", &a.addrs[0]],
        None,
    );
    let (boot_a, boot_b) = (a.addrs[0].clone(), b.addrs[0].clone());
    let boot = [
        "--bootstrap",
        boot_a.as_str(),
        "--bootstrap",
        boot_b.as_str(),
    ];
    let mut nodes = vec![a, b];
    for name in ["c", "d", "e"] {
        nodes.push(NodeProc::start(
            &root.path().join(name),
            LOOPBACK,
            &boot,
            None,
        ));
    }
    // On loopback every node is reachable: AutoNAT (served by the
    // supernodes) confirms each node's address within seconds and promotes
    // it to a DHT server, so its provider records carry its address.
    for node in &nodes {
        node.wait_status("connected to both supernodes", connected(2));
        node.wait_status("promoted by AutoNAT", |s| s["dht_server"] == true);
    }
    let status = nodes[0].status();
    assert_eq!(status["supernode"], true, "{status}");
    assert_eq!(status["nat"], "public", "{status}");
    assert_eq!(status["dht_server"], true, "{status}");

    // Deploy on c with two replicas.
    let module = example("echo");
    let out = nodes[2].client(&[
        "deploy",
        module.to_str().unwrap(),
        "--name",
        "echo",
        "--replicas",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deployed = json(&out);
    let providers: Vec<String> = deployed["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(providers.len(), 2, "{deployed}");
    assert_eq!(providers[0], nodes[2].peer_id);
    let id = deployed["function"].as_str().unwrap().to_owned();
    assert_eq!(
        id,
        blake3::hash(&std::fs::read(&module).unwrap())
            .to_hex()
            .as_str()
    );

    // A node that never saw the function and hosts nothing calls it by name.
    let caller = nodes
        .iter()
        .position(|n| !providers.contains(&n.peer_id))
        .unwrap();
    let out = nodes[caller].invoke("echo", "hello network");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let called = json(&out);
    assert_eq!(called["output"], "hello network");
    assert!(providers.contains(&called["executor"].as_str().unwrap().to_owned()));
    assert!(called["fuel"].as_u64().unwrap() > 0);
    assert_eq!(called["function"], id.as_str());
    for hop in ["resolve", "network", "execution", "total"] {
        assert!(called["timings_us"][hop].is_u64(), "{called}");
    }
    // And by id, with plain output.
    let out = nodes[caller].client(&["invoke", &id, "--input", "by id"]);
    assert_eq!(stdout(&out), "by id");

    // The gateway keeps the connection: three calls on one socket.
    let answers = posts_on_one_connection(&nodes[caller].api, "/fn/echo", &["one", "two", "three"]);
    assert_eq!(answers, ["one", "two", "three"]);

    // What the caller knows now.
    let out = nodes[caller].client(&["ls", "--json"]);
    let listed = json(&out);
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == id.as_str())
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        !entry["providers"].as_array().unwrap().is_empty(),
        "{listed}"
    );
    let peers = json(&nodes[caller].client(&["peers", "--json"]));
    assert!(peers.as_array().unwrap().len() >= 2, "{peers}");

    // Errors a user can act on.
    assert_fails(
        &nodes[caller].invoke("nope", "x"),
        4,
        "no provider for nope",
    );
    assert_fails(&nodes[caller].invoke("Not A Name", "x"), 2, "a name is");
    let junk = root.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    assert_fails(
        &nodes[caller].client(&["deploy", junk.to_str().unwrap(), "--name", "junk"]),
        2,
        "",
    );

    // Restart the caller without --bootstrap: same peer id, rejoins from
    // its peer store, calls again.
    let old = nodes.remove(caller);
    let (old_id, dir) = (old.peer_id.clone(), old.dir.clone());
    old.stop();
    let again = NodeProc::start(&dir, LOOPBACK, &[], None);
    assert_eq!(again.peer_id, old_id);
    again.wait_status("rejoined from the peer store", connected(1));
    let out = again.invoke("echo", "after restart");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["output"], "after restart");

    // Kill the second provider: calls move on to the first without failing.
    let second = nodes
        .iter()
        .position(|n| n.peer_id == providers[1])
        .unwrap();
    nodes.remove(second).stop();
    for i in 0..5 {
        let out = again.invoke("echo", &format!("call {i}"));
        assert!(
            out.status.success(),
            "call {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let called = json(&out);
        assert_eq!(called["output"], format!("call {i}"));
        assert_eq!(called["executor"], providers[0].as_str());
    }
}

/// A private network namespace, deleted on drop.
pub(crate) struct Netns(pub(crate) String);

impl Netns {
    /// Creates namespace `name` with `lo` up; `None` (after saying why) when
    /// this machine cannot (not root, no `ip`).
    pub(crate) fn create(name: &str) -> Option<Self> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        match Command::new("ip").args(["netns", "add", name]).output() {
            Ok(out) if out.status.success() => {
                let ns = Self(name.to_owned());
                ns.run(&["link", "set", "lo", "up"]);
                Some(ns)
            }
            Ok(out) => {
                eprintln!(
                    "skipped: cannot create network namespaces ({})",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: `ip` is not available ({e})");
                None
            }
        }
    }

    /// Runs `ip -n NS args…`, which must succeed.
    pub(crate) fn run(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip -n {} {}: {}",
            self.0,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a command inside the namespace.
    pub(crate) fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Two namespaces joined by a veth pair: `a` is 10.78.0.1, `b` 10.78.0.2.
fn lan(tag: &str) -> Option<(Netns, Netns)> {
    let pid = std::process::id();
    let a = Netns::create(&format!("orb{tag}{pid}a"))?;
    let b = Netns::create(&format!("orb{tag}{pid}b"))?;
    a.run(&[
        "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.0,
    ]);
    for (ns, dev, ip) in [(&a, "va", "10.78.0.1/24"), (&b, "vb", "10.78.0.2/24")] {
        ns.run(&["addr", "add", ip, "dev", dev]);
        ns.run(&["link", "set", dev, "up"]);
        // mDNS multicasts on 224.0.0.251: it needs a route out of the link.
        ns.run(&["route", "add", "224.0.0.0/4", "dev", dev]);
    }
    Some((a, b))
}

#[test]
fn mdns_finds_peers_on_the_same_lan_without_bootstrap() {
    let Some((ns_a, ns_b)) = lan("m") else { return };
    let root = tempfile::tempdir().unwrap();
    let a = NodeProc::start(
        &root.path().join("a"),
        "/ip4/10.78.0.1/tcp/0",
        &["--mdns"],
        Some(&ns_a.0),
    );
    let b = NodeProc::start(
        &root.path().join("b"),
        "/ip4/10.78.0.2/tcp/0",
        &["--mdns"],
        Some(&ns_b.0),
    );
    b.wait_status("found a by mDNS", connected(1));
    let peers = json(&b.client(&["peers", "--json"]));
    assert!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == a.peer_id.as_str() && p["connected"] == true),
        "{peers}"
    );
}

/// The NAT topology, all in namespaces created here:
///
/// ```text
///  inet: bridge 10.99.0.0/24 ── pub  (R, supernode, 10.99.0.1)
///                            ── pub2 (C, public node, 10.99.0.3)
///                            ── nat  (router: wan 10.99.0.2, lan 192.168.77.1,
///                                     nftables masquerade, drops unsolicited input)
///                                      └── priv (B, private node, 192.168.77.2)
/// ```
///
/// R and C have no route to 192.168.77.0/24: B is reachable only through
/// what it opens.
struct NatLab {
    // Dropped in reverse order of creation.
    _spaces: Vec<Netns>,
    public: String,
    public2: String,
    private: String,
}

fn nat_lab() -> Option<NatLab> {
    let pid = std::process::id();
    let inet = Netns::create(&format!("orbn{pid}i"))?;
    let public = Netns::create(&format!("orbn{pid}r"))?;
    let public2 = Netns::create(&format!("orbn{pid}c"))?;
    let nat = Netns::create(&format!("orbn{pid}n"))?;
    let private = Netns::create(&format!("orbn{pid}b"))?;
    inet.run(&["link", "add", "br0", "type", "bridge"]);
    inet.run(&["link", "set", "br0", "up"]);
    for (ns, dev, port, ip) in [
        (&public, "eth0", "p-pub", "10.99.0.1/24"),
        (&nat, "wan", "p-nat", "10.99.0.2/24"),
        (&public2, "eth0", "p-pub2", "10.99.0.3/24"),
    ] {
        inet.run(&[
            "link", "add", port, "type", "veth", "peer", "name", dev, "netns", &ns.0,
        ]);
        inet.run(&["link", "set", port, "master", "br0", "up"]);
        ns.run(&["addr", "add", ip, "dev", dev]);
        ns.run(&["link", "set", dev, "up"]);
    }
    nat.run(&[
        "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", &private.0,
    ]);
    nat.run(&["addr", "add", "192.168.77.1/24", "dev", "lan"]);
    nat.run(&["link", "set", "lan", "up"]);
    private.run(&["addr", "add", "192.168.77.2/24", "dev", "eth0"]);
    private.run(&["link", "set", "eth0", "up"]);
    private.run(&["route", "add", "default", "via", "192.168.77.1"]);
    let out = nat.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = r#"
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" ip saddr 192.168.77.0/24 masquerade
  }
}
table inet filter {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iifname { "lo", "lan" } accept
  }
}
"#;
    let rules_file = std::env::temp_dir().join(format!("orb-nat-{pid}.nft"));
    std::fs::write(&rules_file, rules).expect("write nft rules");
    let out = nat.exec(&["nft", "-f", &rules_file.to_string_lossy()]);
    let _ = std::fs::remove_file(&rules_file);
    if !out.status.success() {
        eprintln!(
            "skipped: nftables unavailable ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Some(NatLab {
        public: public.0.clone(),
        public2: public2.0.clone(),
        private: private.0.clone(),
        _spaces: vec![private, nat, public2, public, inet],
    })
}

#[test]
fn a_private_node_behind_nat_is_reached_through_a_relay_then_directly() {
    let Some(lab) = nat_lab() else { return };
    let root = tempfile::tempdir().unwrap();
    let r = NodeProc::start(
        &root.path().join("r"),
        "/ip4/10.99.0.1/tcp/0",
        &["--supernode", "--listen", "/ip4/10.99.0.1/udp/0/quic-v1"],
        Some(&lab.public),
    );
    let c = NodeProc::start(
        &root.path().join("c"),
        "/ip4/10.99.0.3/tcp/0",
        &[
            "--supernode",
            "--listen",
            "/ip4/10.99.0.3/udp/0/quic-v1",
            "--bootstrap",
            &r.addrs[0],
        ],
        Some(&lab.public2),
    );
    // TCP and QUIC: DCUtR over TCP loses a simultaneous-open race now and
    // then; over QUIC it does not.
    let b = NodeProc::start(
        &root.path().join("b"),
        "/ip4/192.168.77.2/tcp/0",
        &[
            "--listen",
            "/ip4/192.168.77.2/udp/0/quic-v1",
            "--bootstrap",
            &r.addrs[0],
        ],
        Some(&lab.private),
    );

    // AutoNAT never confirms b (it says private, or nothing when it has no
    // candidate address to test); b reserves a slot on the relay and
    // advertises its relayed address.
    // The reservation and the relayed address it yields are reported one
    // after the other: wait for both.
    let status = b.wait_status("a relay reservation and its relayed address", |s| {
        !s["relays"].as_array().unwrap().is_empty()
            && s["external"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a.as_str().unwrap_or("").contains("/p2p-circuit"))
    });
    assert_ne!(status["nat"], "public", "{status}");
    assert_eq!(status["supernode"], false, "{status}");
    assert_eq!(status["dht_server"], false, "{status}");
    // Either public node relays (c is a supernode too).
    let relay = status["relays"][0].as_str().unwrap();
    assert!(relay == r.peer_id || relay == c.peer_id, "{status}");
    assert!(
        status["external"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().contains("/p2p-circuit")),
        "{status}"
    );
    assert_eq!(r.status()["nat"], "public");

    // The private node hosts a function; the public node calls it.
    let module = example("reverse");
    let out = b.client(&["deploy", module.to_str().unwrap(), "--name", "reverse"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let called = loop {
        let out = c.invoke("reverse", "behind the nat");
        if out.status.success() {
            break json(&out);
        }
        assert!(
            Instant::now() < deadline,
            "c cannot call b: {}\nb log:\n{}\nc log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            b.log(),
            c.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(called["output"], "tan eht dniheb");
    assert_eq!(called["executor"], b.peer_id.as_str());

    // DCUtR punches through the (port-preserving) masquerade: c ends up
    // with a direct connection to b.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let peers = json(&c.client(&["peers", "--json"]));
        let direct = peers.as_array().unwrap().iter().any(|p| {
            p["peer_id"] == b.peer_id.as_str() && p["connected"] == true && p["relayed"] == false
        });
        if direct {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no direct connection c -> b: {peers}\nc log:\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = c.invoke("reverse", "direct");
    assert_eq!(json(&out)["output"], "tcerid");
}

#[test]
fn a_provider_that_dies_mid_call_makes_the_caller_try_the_next() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let s = NodeProc::start(&root.path().join("s"), LOOPBACK, &["--supernode"], None);
    let boot = s.addrs[0].clone();
    let p1 = NodeProc::start(
        &root.path().join("p1"),
        LOOPBACK,
        &["--bootstrap", &boot],
        None,
    );
    let p2 = NodeProc::start(
        &root.path().join("p2"),
        LOOPBACK,
        &["--bootstrap", &boot],
        None,
    );
    for node in [&s, &p1, &p2] {
        node.wait_status("connected", connected(2));
        node.wait_status("promoted by AutoNAT", |s| s["dht_server"] == true);
    }
    let module = example("fib");
    let out = p1.client(&[
        "deploy",
        module.to_str().unwrap(),
        "--name",
        "fib",
        "--replicas",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let providers: Vec<String> = json(&out)["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(providers.len(), 2);
    let mut nodes = vec![s, p1, p2];
    let hosts: Vec<usize> = providers
        .iter()
        .map(|p| nodes.iter().position(|n| &n.peer_id == p).unwrap())
        .collect();

    // A caller that hosts nothing, and a call long enough (fib 37, a few
    // hundred ms) to kill its executor while it runs.
    let caller = NodeProc::start(
        &root.path().join("q"),
        LOOPBACK,
        &["--bootstrap", &boot],
        None,
    );
    caller.wait_status("connected", connected(1));
    let (api, dir) = (caller.api.clone(), caller.dir.join("client"));
    let call = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_orb"))
            .args(["invoke", "fib", "--input", "37", "--json", "--node", &api])
            .env("ORB_DATA_DIR", dir)
            .output()
            .expect("invoke")
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let busy = loop {
        if let Some(&i) = hosts
            .iter()
            .find(|&&i| nodes[i].status()["load"].as_u64().unwrap_or(0) > 0)
        {
            break i;
        }
        assert!(Instant::now() < deadline, "no provider ever ran the call");
        std::thread::sleep(Duration::from_millis(5));
    };
    let victim = nodes.remove(busy);
    let victim_id = victim.peer_id.clone();
    victim.stop();
    let out = call.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let called = json(&out);
    assert_eq!(called["output"], "24157817");
    assert_ne!(called["executor"], victim_id.as_str());
    assert!(providers.contains(&called["executor"].as_str().unwrap().to_owned()));
}

#[test]
fn a_node_started_under_the_common_1024_open_files_limit_raises_it_and_says_so() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (child, _api) = node_under_prlimit(root.path(), "1024:8192", &[]);
    // prlimit execs the node: same process.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok())
        .collect::<Vec<_>>();
    assert_eq!(open_files, [8192, 8192], "{limits}");
    let log = stop_and_log(child);
    assert!(log.contains("open files limit raised"), "{log}");
}

#[test]
fn an_oversized_body_is_refused_before_it_is_read() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().unwrap();
    let n = NodeProc::start(&root.path().join("n"), LOOPBACK, &["--supernode"], None);
    let addr = socket_of(&n.api);
    for path in ["/fn/echo", "/api/deploy"] {
        // Claims 1 GiB and sends none of it: the answer must come at once.
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1073741824\r\n\r\n"
        )
        .unwrap();
        let mut answer = [0u8; 512];
        let got = stream
            .read(&mut answer)
            .expect("an answer without the body");
        let head = String::from_utf8_lossy(&answer[..got]);
        assert!(head.starts_with("HTTP/1.1 413"), "{path}: {head}");
    }
}

#[test]
fn a_client_that_stalls_in_its_headers_is_cut_off_and_others_are_served() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().unwrap();
    let n = NodeProc::start(
        &root.path().join("n"),
        LOOPBACK,
        &["--supernode", "--header-timeout-ms", "300"],
        None,
    );
    let addr = socket_of(&n.api);
    // Half a request line, then nothing.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"POST /fn/echo HTTP/1.1\r\nHost: ").unwrap();
    let mut rest = Vec::new();
    // The node closes the connection (after a 408, or without a word).
    let closed = slow.read_to_end(&mut rest);
    assert!(closed.is_ok(), "still open after 10 s: {closed:?}");
    let head = String::from_utf8_lossy(&rest);
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 408"),
        "{head}"
    );
    // Another client is served as usual.
    let status = n.status();
    assert!(status["peer_id"].is_string(), "{status}");
}

#[test]
fn one_client_cannot_hold_more_than_its_share_of_connections() {
    use std::io::Read;
    let root = tempfile::tempdir().unwrap();
    let n = NodeProc::start(
        &root.path().join("n"),
        LOOPBACK,
        &["--supernode", "--max-client-connections", "3"],
        None,
    );
    let addr = socket_of(&n.api);
    let held: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    // The fourth is closed as it arrives.
    let mut extra = std::net::TcpStream::connect(addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(extra.read(&mut buf).expect("closed, not timed out"), 0);
    // Once they close, the client is served again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = n.client(&["status", "--json"]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_deploy_to_an_api_beyond_loopback_needs_the_node_token() {
    let root = tempfile::tempdir().unwrap();
    let n = NodeProc::start(
        &root.path().join("n"),
        LOOPBACK,
        &["--supernode", "--api", "0.0.0.0:0"],
        None,
    );
    // Bound to every interface; reached here through loopback.
    let api = n.api.replace("0.0.0.0", "127.0.0.1");
    let deploy = |token: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orb"));
        cmd.args(["deploy", example("echo").to_str().unwrap()])
            .args(["--name", "echo", "--node", &api])
            .env("ORB_DATA_DIR", n.dir.join("client"))
            .env_remove("ORB_LOG")
            .env_remove("ORB_API_TOKEN")
            .stdin(std::process::Stdio::null());
        if let Some(t) = token {
            cmd.env("ORB_API_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    assert_fails(&deploy(None), 2, "needs its API token");
    assert_fails(&deploy(Some("not the token")), 2, "needs its API token");
    // The token it generated is the one it printed at start.
    let token = std::fs::read_to_string(n.dir.join("api.token")).unwrap();
    assert_eq!(n.api_token.as_deref(), Some(token.trim()));
    let out = deploy(Some(token.trim()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Calls and reads need no token.
    let answer = ureq::post(format!("{api}/fn/echo"))
        .send("hi")
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(answer, "hi");

    // The console asks for the token too: its Deploy form has the field,
    // an upload without the token is refused, one with it is inspected,
    // and the deploy it confirms lands.
    let page = get_text(&format!("{api}/console/deploy"));
    assert!(page.contains(r#"name="token""#), "{page}");
    let module = std::fs::read(example("reverse")).unwrap();
    let upload = |token: Option<&str>| {
        let mut fields = vec![
            ("module", Some("reverse.wasm"), module.as_slice()),
            ("name", None, b"reverse".as_slice()),
            ("replicas", None, b"1".as_slice()),
        ];
        if let Some(t) = token {
            fields.push(("token", None, t.as_bytes()));
        }
        let (kind, body) = multipart(&fields);
        ureq::post(format!("{api}/console/deploy"))
            .config()
            .http_status_as_error(false)
            .build()
            .header("content-type", kind)
            .send(&body[..])
            .unwrap()
    };
    assert_eq!(upload(None).status(), 401);
    assert_eq!(upload(Some("not the token")).status(), 401);
    let mut inspected = upload(Some(token.trim()));
    assert_eq!(inspected.status(), 200);
    let page = inspected.body_mut().read_to_string().unwrap();
    assert!(page.contains("Runnable"), "{page}");
    let id = orb_functions::FunctionId::of(&module).to_hex();
    let confirm = |token: &str| {
        ureq::post(format!("{api}/console/deploy/confirm"))
            .config()
            .http_status_as_error(false)
            .build()
            .send_form([
                ("function", id.as_str()),
                ("name", "reverse"),
                ("replicas", "1"),
                ("token", token),
            ])
            .unwrap()
    };
    assert_eq!(confirm("not the token").status(), 401);
    let mut deployed = confirm(token.trim());
    let page = deployed.body_mut().read_to_string().unwrap();
    assert!(page.contains(r#"id="deployed""#), "{page}");
    let answer = ureq::post(format!("{api}/fn/reverse"))
        .send("abc")
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(answer, "cba");
}

#[test]
fn a_node_given_its_api_token_guards_deploys_audits_and_moves_with_it() {
    let root = tempfile::tempdir().unwrap();
    let chosen = "chosen-token-0123456789";
    let n = NodeProc::start(
        &root.path().join("n"),
        LOOPBACK,
        &["--supernode", "--api", "0.0.0.0:0", "--api-token", chosen],
        None,
    );
    // A token the operator chose is neither printed nor written down.
    assert_eq!(n.api_token, None);
    assert!(!n.dir.join("api.token").exists());
    let api = n.api.replace("0.0.0.0", "127.0.0.1");
    let post = |path: &str, token: Option<&str>, extra: &[(&str, &str)], body: &str| {
        let mut req = ureq::post(format!("{api}{path}"))
            .config()
            .http_status_as_error(false)
            .build();
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let mut answer = if path.starts_with("/console") {
            req.header("content-type", "application/x-www-form-urlencoded")
                .send(body)
        } else {
            req.header("content-type", "application/json").send(body)
        }
        .unwrap();
        let status = answer.status().as_u16();
        (
            status,
            answer.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let cross = [("sec-fetch-site", "cross-site")];
    let other_origin = [("origin", "http://127.0.0.1:9")];

    // An agent move: 401 without the token, past it with (this node has
    // no such agent module), 403 from another site's page even with it.
    let moving = r#"{"name":"counter","from":null,"to":"12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"}"#;
    let (status, body) = post("/api/agents/move", None, &[], moving);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("needs its API token"), "{body}");
    let (status, body) = post("/api/agents/move", Some(chosen), &[], moving);
    assert!(status != 401 && status != 403, "{status} {body}");
    assert_eq!(
        post("/api/agents/move", Some(chosen), &cross, moving).0,
        403
    );
    assert_eq!(
        post("/api/agents/move", Some(chosen), &other_origin, moving).0,
        403
    );
    assert_eq!(post("/api/deploy", Some(chosen), &cross, "{}").0, 403);

    // The console's audit: 401 without the token or with a wrong one; with
    // it the post goes through (to "no ledger" on this node); 403 from
    // another site's page.
    let (status, body) = post("/console/audit", None, &[], "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        post("/console/audit", None, &[], "token=not-the-token-at-all").0,
        401
    );
    let form = format!("token={chosen}");
    let (status, body) = post("/console/audit", None, &[], &form);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no ledger"), "{body}");
    let (status, body) = post("/console/audit", None, &cross, &form);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("another site"), "{body}");
    // The console's invoke needs no token, but not from another site.
    let invoke = "function=echo&input=hi&replicas=1";
    assert_eq!(post("/console/invoke", None, &other_origin, invoke).0, 403);
    assert_ne!(post("/console/invoke", None, &[], invoke).0, 403);

    // A deploy with the chosen token lands.
    let out = Command::new(env!("CARGO_BIN_EXE_orb"))
        .args(["deploy", example("echo").to_str().unwrap()])
        .args(["--name", "echo", "--node", &api, "--api-token", chosen])
        .env("ORB_DATA_DIR", n.dir.join("client"))
        .env_remove("ORB_LOG")
        .env_remove("ORB_API_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_weak_api_token_is_refused_at_start() {
    let root = tempfile::tempdir().unwrap();
    for (token, says) in [
        ("short", "at least 16"),
        ("has a space in it!", "visible ASCII"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_orb"))
            .args(["node", "--api", "127.0.0.1:0", "--api-token", token])
            .env("ORB_DATA_DIR", root.path())
            .env_remove("ORB_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_fails(&out, 2, says);
    }
}

fn get_text(url: &str) -> String {
    ureq::get(url)
        .call()
        .expect("GET")
        .body_mut()
        .read_to_string()
        .expect("a body")
}

/// A `multipart/form-data` body of `fields` (name, file name, bytes): its
/// content type and bytes, as a browser's form upload sends them.
fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "orb-test-boundary-7f3a9c";
    let mut body = Vec::new();
    for (name, file, bytes) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/wasm\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// What a new user tried: a node under the common `ulimit -n 1024` (hard
/// limit too, so it cannot raise it) while one client holds 1,100 idle
/// HTTP connections. Before the limits, calls stopped being answered until
/// the connections closed. Now the idle ones are cut after the header
/// timeout, a full fd table is said once a minute, and calls are answered.
#[test]
fn calls_are_answered_beside_1100_idle_connections_under_a_1024_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // This process holds the 1,100 connections: it needs the fds.
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < 4096
    {
        if hard < 4096 {
            eprintln!("skipped: this process may open only {hard} files");
            return;
        }
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise our own limit");
    }
    let root = tempfile::tempdir().unwrap();
    let (child, api) = node_under_prlimit(
        root.path(),
        "1024:1024",
        &[
            "--header-timeout-ms",
            "3000",
            "--max-client-connections",
            "4096",
        ],
    );
    let client = root.path().join("client");
    let out = crate::orb(&client)
        .args([
            "deploy",
            example("echo").to_str().unwrap(),
            "--name",
            "echo",
        ])
        .args(["--node", &api])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = socket_of(&api).to_owned();
    let idle: Vec<std::net::TcpStream> = (0..1100)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert!(idle.len() >= 1000, "only {} connections opened", idle.len());
    // Calls while they are held: answered (the node may make a call wait
    // in the listen backlog until the idle ones are cut, never forever).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    for i in 0..5 {
        let input = format!("beside idle connections {i}");
        let mut r = agent
            .post(format!("{api}/fn/echo"))
            .send(input.as_bytes())
            .unwrap_or_else(|e| panic!("call {i} not answered: {e}"));
        assert_eq!(r.body_mut().read_to_string().unwrap(), input);
    }
    drop(idle);
    let log = stop_and_log(child);
    // Out of descriptors (when it came to that) is said once a minute,
    // not at every retry of the accept loop.
    assert!(log.matches("cannot accept").count() <= 1, "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// `orb node` under `prlimit --nofile=LIMITS` (prlimit execs the node: the
/// child is the node), with a private data dir; returns it once it serves,
/// with its API URL.
fn node_under_prlimit(dir: &Path, limits: &str, extra: &[&str]) -> (Child, String) {
    let nofile = format!("--nofile={limits}");
    let mut child = Command::new("prlimit")
        .args([nofile.as_str(), "--", env!("CARGO_BIN_EXE_orb"), "node"])
        .args(["--listen", LOOPBACK, "--api", "127.0.0.1:0"])
        .args(extra)
        .env("ORB_DATA_DIR", dir)
        .env("ORB_LOG", "orb=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prlimit orb node");
    let mut api = String::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        if let Some(a) = line.expect("a line").strip_prefix("api: ") {
            api = a.to_owned();
            break;
        }
    }
    (child, api)
}

/// Kills a node started by [`node_under_prlimit`] and returns its log.
fn stop_and_log(mut child: Child) -> String {
    use std::io::Read;
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut log);
    }
    log
}
