//! What a node tells operators: `GET /metrics` (its counters match what was
//! done through it, in the Prometheus text format, and a real Prometheus
//! server scrapes them) and its logs (a call under its invocation id on
//! both nodes it touched, as JSON lines).

use serde_json::Value;
use std::time::Duration;

use crate::replication::{deploy_on, node, wait_providers};

/// `GET /metrics` of the node at `api`, checked to be OpenMetrics text.
pub(crate) fn scrape(api: &str) -> String {
    let mut r = ureq::get(&format!("{api}/metrics"))
        .call()
        .expect("GET /metrics");
    let kind = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    r.body_mut().read_to_string().expect("a body")
}

/// The value of the sample `name{labels}` (labels as written, in order).
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn post(api: &str, path: &str, body: &str) -> u16 {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    http.post(&format!("{api}{path}"))
        .send(body)
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[test]
fn the_counts_a_node_exports_are_the_calls_and_steps_made_through_it() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let publisher = r.join("publisher");
    let s = node(r, "s", None, &["--no-autoscale"]);
    let a = node(r, "a", Some(&s.addrs[0]), &["--no-autoscale"]);
    deploy_on(&s, "echo", &publisher);
    deploy_on(&s, "balloon", &publisher);
    wait_providers(&[&a], "echo", 1);
    wait_providers(&[&a], "balloon", 1);
    for i in 0..7 {
        assert_eq!(post(&a.api, "/fn/echo", &format!("hello {i}")), 200);
    }
    for _ in 0..2 {
        assert_eq!(post(&a.api, "/fn/balloon", ""), 422);
    }
    for i in 0..3 {
        assert_eq!(post(&a.api, &format!("/fn/nobody-{i}"), ""), 404);
    }
    let text = scrape(&a.api);
    assert_eq!(
        sample(
            &text,
            r#"orb_invocations_total{function="echo",outcome="ok"}"#
        ),
        Some(7.0),
        "{text}"
    );
    // A guest error counts under its kind.
    let ballooned: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(r#"orb_invocations_total{function="balloon","#))
        .collect();
    assert_eq!(ballooned.len(), 1, "{text}");
    assert!(
        ballooned[0].ends_with(" 2") && !ballooned[0].contains(r#"outcome="ok""#),
        "{ballooned:?}"
    );
    // Unknown names share one label value.
    assert_eq!(
        sample(
            &text,
            r#"orb_invocations_total{function="unknown",outcome="no_provider"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"orb_invoke_duration_seconds_count{hop="total"}"#),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"orb_invoke_duration_seconds_count{hop="network"}"#),
        Some(7.0)
    );
    assert!(sample(&text, "orb_fuel_consumed_total").is_some_and(|f| f > 0.0));
    // Its one peer, s, is a supernode: counted as such, not as direct.
    assert_eq!(
        sample(&text, r#"orb_peers{kind="supernode"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, r#"orb_peers{kind="direct"}"#), Some(0.0));
    // `/api/peers` (what `orb top` shows) names the same kind.
    let peers = crate::json(&a.client(&["peers", "--json"]));
    let kinds: Vec<&Value> = peers
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["connected"] == true)
        .map(|p| &p["kind"])
        .collect();
    assert_eq!(kinds, [&Value::from("supernode")], "{peers}");
    assert!(text.contains("# TYPE orb_invoke_duration_seconds histogram"));
    // libp2p's own: the connection to s, identify and ping with it.
    let established: f64 = text
        .lines()
        .filter(|l| l.starts_with("orb_libp2p_swarm_connections_established_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(established >= 1.0, "{text}");
    assert!(sample(&text, "orb_libp2p_identify_received_total").is_some_and(|n| n >= 1.0));
    assert!(text.contains("# TYPE orb_libp2p_ping_rtt_seconds histogram"));
    // Bytes in and out, from libp2p's bandwidth-counting transport.
    for direction in ["Inbound", "Outbound"] {
        let bytes: f64 = text
            .lines()
            .filter(|l| l.starts_with("orb_libp2p_bandwidth_bytes_total{"))
            .filter(|l| l.contains(&format!(r#"direction="{direction}""#)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(bytes > 0.0, "{direction} bytes: {text}");
    }
    // The executor is idle now; AutoNAT has one verdict.
    assert_eq!(sample(&text, "orb_executor_threads_busy"), Some(0.0));
    assert_eq!(sample(&text, "orb_executor_queue_depth"), Some(0.0));
    let nat: f64 = ["public", "private", "unknown"]
        .iter()
        .filter_map(|s| sample(&text, &format!(r#"orb_nat_status{{status="{s}"}}"#)))
        .sum();
    assert_eq!(nat, 1.0, "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
    // The executing node counted nothing: the calls entered at `a`.
    let there = scrape(&s.api);
    assert_eq!(
        sample(
            &there,
            r#"orb_invocations_total{function="echo",outcome="ok"}"#
        ),
        None
    );
    assert_eq!(sample(&there, "orb_functions_hosted"), Some(2.0), "{there}");
}

#[test]
fn a_ledger_node_exports_its_blocks_finality_polls_and_committee() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, _, _) = crate::consensus::ledger_network(
        root.path(),
        3,
        "metrics",
        orb_ledger::Params::new(3, 2, 2, 2).expect("params"),
        "200",
        &[],
    );
    crate::consensus::deploy_echo(&nodes[0], "1", &[]);
    for i in 0..3 {
        assert_eq!(post(&nodes[0].api, "/fn/echo", &format!("paid {i}")), 200);
    }
    let settled =
        crate::consensus::wait_all(&nodes[..1].iter().collect::<Vec<_>>(), "a block", 60, |l| {
            crate::consensus::height(&l[0]) >= 1
        });
    let height = crate::consensus::height(&settled[0]) as f64;
    let text = scrape(&nodes[0].api);
    let committed = sample(&text, "orb_blocks_committed_total").unwrap_or(0.0);
    assert!(
        committed >= height,
        "{committed} committed at height {height}: {text}"
    );
    assert!(sample(&text, "orb_chain_height").is_some_and(|h| h >= height));
    assert!(
        sample(&text, "orb_finality_seconds_count").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(&text, "orb_polls_sent_total").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(
        sample(&text, "orb_polls_answered_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "orb_committee_size"), Some(3.0));
    assert!(sample(&text, "orb_mempool_settlements").is_some());
}

/// Kills the child when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of a PromQL query that returns one sample, if it does.
fn query(prometheus: &str, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = ureq::get(&format!("{prometheus}/api/v1/query?query={encoded}"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn a_prometheus_server_scrapes_two_nodes_and_sees_their_calls() {
    let Ok(binary) = which("prometheus") else {
        eprintln!("skipped: no `prometheus` on PATH (scripts/setup installs Debian's package)");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let publisher = r.join("publisher");
    let s = node(r, "s", None, &["--no-autoscale"]);
    let a = node(r, "a", Some(&s.addrs[0]), &["--no-autoscale"]);
    deploy_on(&s, "echo", &publisher);
    wait_providers(&[&a], "echo", 1);
    for (n, calls) in [(&a, 5), (&s, 3)] {
        for i in 0..calls {
            assert_eq!(post(&n.api, "/fn/echo", &format!("call {i}")), 200);
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let targets: Vec<String> = [&s, &a]
        .iter()
        .map(|n| format!("'{}'", n.api.trim_start_matches("http://")))
        .collect();
    let config = r.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: orb\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let _server = Killed(
        std::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", r.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(r.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts"),
    );
    let prometheus = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let up = query(&prometheus, r#"count(up{job="orb"} == 1)"#);
        let ok = query(
            &prometheus,
            r#"sum(orb_invocations_total{function="echo",outcome="ok"})"#,
        );
        if up == Some(2.0) && ok == Some(8.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "prometheus sees up {up:?}, echo calls {ok:?}; its log:\n{}",
            std::fs::read_to_string(r.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Per node, as scraped: the calls that entered each.
    let through_a = query(
        &prometheus,
        &format!(
            r#"orb_invocations_total{{instance="{}",outcome="ok"}}"#,
            a.api.trim_start_matches("http://")
        ),
    );
    assert_eq!(through_a, Some(5.0));
}

/// The path of `program` on PATH.
fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

/// The JSON log lines of `node` whose message is `message` and whose
/// invocation is `invocation`.
fn logged(node: &crate::network::NodeProc, message: &str, invocation: &str) -> usize {
    node.log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message && v["fields"]["invocation"] == invocation)
        .count()
}

#[test]
fn a_call_is_logged_under_its_invocation_id_where_it_entered_and_where_it_ran() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let flags = [
        "--no-autoscale",
        "--log-format",
        "json",
        "--log-filter",
        "orb::calls=debug,orb=info",
    ];
    let s = node(r, "s", None, &flags);
    let a = node(r, "a", Some(&s.addrs[0]), &flags);
    deploy_on(&s, "echo", &r.join("publisher"));
    wait_providers(&[&a], "echo", 1);
    let http: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let response = http
        .post(&format!("{}/fn/echo", a.api))
        .send("traced")
        .expect("a call");
    let invocation = response
        .headers()
        .get("x-orb-invocation")
        .and_then(|v| v.to_str().ok())
        .expect("an invocation id")
        .to_owned();
    // Log lines are written as they happen; wait for both to be there.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while logged(&a, "answered", &invocation) == 0 || logged(&s, "executed", &invocation) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "invocation {invocation} not in both logs:\n{}\n---\n{}",
            a.log(),
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(logged(&a, "answered", &invocation), 1);
    assert_eq!(logged(&s, "executed", &invocation), 1);
    // Every line of a node's log is JSON.
    for line in a.log().lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}

/// `orb logs … --json` lines: (host, invocation, outcome, log).
fn calls_of(out: &[u8]) -> Vec<(String, String, String, String)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (s("host"), s("invocation"), s("outcome"), s("log"))
        })
        .collect()
}

#[test]
fn orb_logs_shows_each_call_on_every_host_that_ran_it_and_follows_new_ones() {
    use std::io::BufRead as _;
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let s = crate::replication::node(r, "s", None, &["--no-autoscale"]);
    let a = crate::replication::node(r, "a", Some(&s.addrs[0]), &["--no-autoscale"]);
    let b = crate::replication::node(r, "b", Some(&s.addrs[0]), &["--no-autoscale"]);
    let module = crate::example("wordcount");
    let out = a.client(&[
        "deploy",
        module.to_str().unwrap(),
        "--name",
        "wordcount",
        "--replicas",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::replication::wait_providers(&[&s], "wordcount", 2);
    // Two calls entering at s, each run on both hosts.
    for _ in 0..2 {
        assert_eq!(
            post(&s.api, "/fn/wordcount?replicas=2", "to be or not to be"),
            200
        );
    }
    let out = s.client(&["logs", "wordcount", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = calls_of(&out.stdout);
    assert_eq!(calls.len(), 4, "{calls:?}");
    // a and the peer it placed the second replica on.
    let hosts = crate::replication::providers_of(&s, "wordcount");
    assert!(hosts.contains(&a.peer_id), "{hosts:?}");
    let _ = &b;
    for (host, _, outcome, log) in &calls {
        assert!(hosts.contains(host), "{host} not in {hosts:?}");
        assert_eq!(
            (outcome.as_str(), log.as_str()),
            ("ok", "6 words, 4 distinct")
        );
    }
    let invocations: std::collections::BTreeSet<_> = calls.iter().map(|c| &c.1).collect();
    assert_eq!(invocations.len(), 2, "each call twice, once per host");

    // Human lines: one per call, naming the outcome and the guest's log.
    let out = s.client(&["logs", "wordcount"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains(" ok ") && l.ends_with("| 6 words, 4 distinct")),
        "{text}"
    );

    // --follow: a call made after it started shows, from both hosts.
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_orb"))
        .args([
            "logs",
            "wordcount",
            "--follow",
            "--json",
            "--lines",
            "0",
            "--node",
            &s.api,
        ])
        .env_remove("ORB_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("orb logs --follow");
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    let stdout = follow.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // The four kept calls come first; then the new one's two records.
    while seen.len() < 4 {
        seen.push(
            rx.recv_timeout(std::time::Duration::from_secs(30))
                .expect("the kept calls"),
        );
    }
    assert_eq!(post(&s.api, "/fn/wordcount?replicas=2", "one more"), 200);
    while seen.len() < 6 {
        seen.push(
            rx.recv_timeout(std::time::Duration::from_secs(30))
                .expect("the new call, followed"),
        );
    }
    follow.kill().expect("stop following");
    let _ = follow.wait();
    reader.join().expect("reader");
    let new = calls_of(seen[4..].join("\n").as_bytes());
    assert_eq!(new.len(), 2);
    assert_eq!(new[0].1, new[1].1, "one invocation");
    assert_ne!(new[0].0, new[1].0, "on both hosts");
    assert!(new.iter().all(|c| c.3 == "2 words, 2 distinct"), "{new:?}");
}

#[test]
fn orb_top_draws_the_node_its_peers_functions_and_calls() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let s = crate::replication::node(r, "s", None, &["--no-autoscale"]);
    let a = crate::replication::node(r, "a", Some(&s.addrs[0]), &["--no-autoscale"]);
    crate::replication::deploy_on(&a, "echo", &r.join("publisher"));
    crate::replication::wait_providers(&[&s], "echo", 1);
    for i in 0..3 {
        assert_eq!(post(&s.api, "/fn/echo", &format!("top {i}")), 200);
    }
    let out = s.client(&["top", "--once", "--size", "140x40"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&s.peer_id), "{text}");
    let a_short = format!("{}…{}", &a.peer_id[..8], &a.peer_id[a.peer_id.len() - 6..]);
    let row = text
        .lines()
        .find(|l| l.contains("│echo "))
        .unwrap_or_else(|| panic!("no echo row in:\n{text}"));
    // echo, its provider a, 3 calls in the last minute (0.05/s), no error.
    assert!(row.contains(&a_short) && row.contains("0.05"), "{row}");
    assert!(
        text.contains("peers (1)") && text.contains(&a_short),
        "{text}"
    );
    assert!(text.contains("echo: calls/s, last 60 s"), "{text}");
    // A node that is not there is a clear error, not a broken terminal.
    let gone = std::process::Command::new(env!("CARGO_BIN_EXE_orb"))
        .args(["top", "--node", "http://127.0.0.1:9"])
        .env_remove("ORB_LOG")
        .output()
        .expect("orb top");
    assert_eq!(gone.status.code(), Some(4), "{gone:?}");
}

#[test]
fn a_node_killed_right_after_a_deploy_hosts_and_names_the_function_again() {
    let root = tempfile::tempdir().unwrap();
    let s = crate::replication::node(root.path(), "s", None, &["--no-autoscale"]);
    crate::replication::deploy_on(&s, "echo", &root.path().join("publisher"));
    let names = |node: &crate::network::NodeProc| -> Vec<String> {
        let out = node.client(&["ls", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        list.as_array()
            .into_iter()
            .flatten()
            .flat_map(|f| f["names"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(&s), ["echo"]);
    let dir = s.stop();
    let again = crate::network::NodeProc::start(
        &dir,
        "/ip4/127.0.0.1/tcp/0",
        &["--supernode", "--no-autoscale"],
        None,
    );
    again.wait_status("echo hosted again", |st| st["hosted"] == 1);
    assert_eq!(
        names(&again),
        ["echo"],
        "kept with the function, not only in the lookup cache"
    );
}
