//! Agents on real nodes: the `counter` example hosted on node `a`, its
//! messages sent through node `b` (the supernode `s` joins them), over
//! HTTP and with `orb agent`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::example;
use crate::network::NodeProc;
use crate::replication::{node, wait_providers};

/// `orb agent ARGS… --node NODE` with the client dir `client`.
fn agent_cli(node: &NodeProc, client: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orb"))
        .arg("agent")
        .args(args)
        .args(["--node", &node.api])
        .env("ORB_DATA_DIR", client)
        .env_remove("ORB_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run orb agent")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// What a POST of `message` to `agent` through `node` answered: status,
/// body, `x-orb-seq`, `x-orb-duplicate`.
fn post(node: &NodeProc, agent: &str, message: &str, id: &str) -> (u16, String, u64, bool) {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/agent/{agent}?message_id={id}", node.api);
    let mut r = http.post(&url).send(message).expect("post a message");
    let header = |r: &ureq::http::Response<ureq::Body>, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let seq = header(&r, "x-orb-seq").parse().unwrap_or(0);
    let duplicate = header(&r, "x-orb-duplicate") == "true";
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().expect("body");
    (status, body, seq, duplicate)
}

/// Deploys the example agent module `name` as `name` through `node`: the
/// node's answer.
fn deploy_example(node: &NodeProc, client: &Path, name: &str) -> Value {
    json_of(&agent_cli(
        node,
        client,
        &[
            "deploy",
            example(name).to_str().expect("a UTF-8 path"),
            "--name",
            name,
            "--json",
        ],
    ))
}

fn id(n: u32) -> String {
    format!("{n:032x}")
}

/// An agent module whose step leaves a state of 1 MiB + 1 byte.
fn oversized_state_agent() -> Vec<u8> {
    // stdout gets: variant 0, varint 1,048,577, that many zero bytes, an
    // empty reply (varint 0).
    wat::parse_str(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 17)
  (data (i32.const 0) "\64\00\00\00\06\00\10\00")
  (data (i32.const 100) "\00\81\80\40")
  (func (export "_start")
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .expect("wat")
}

/// A supernode `s` and two nodes `a`, `b` that bootstrap from it, none
/// scaling by itself.
fn trio(r: &Path) -> [NodeProc; 3] {
    let s = node(r, "s", None, &["--no-autoscale"]);
    let boot = s.addrs[0].clone();
    let a = node(r, "a", Some(&boot), &["--no-autoscale"]);
    let b = node(r, "b", Some(&boot), &["--no-autoscale"]);
    [s, a, b]
}

#[test]
fn a_counter_applies_each_message_once_in_order_and_keeps_its_count_across_a_sigkill() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let client = r.join("client");
    let [s, a, b] = trio(r);
    let counter = example("counter");
    let deployed = json_of(&agent_cli(
        &a,
        &client,
        &[
            "deploy",
            counter.to_str().unwrap(),
            "--name",
            "counter",
            "--init",
            "10",
            "--json",
        ],
    ));
    assert_eq!(deployed["agent"], true, "{deployed}");
    wait_providers(&[&b], "counter", 1);

    // 30 messages through b, each applied once, in order, from --init.
    for n in 1..=30u32 {
        let (status, body, seq, dup) = post(&b, "counter/alice", "inc", &id(n));
        assert_eq!(
            (status, body.as_str(), seq, dup),
            (200, (10 + n).to_string().as_str(), u64::from(n), false)
        );
    }
    // A retry of message 5 gets the reply it got then; nothing is applied.
    let (status, body, seq, dup) = post(&b, "counter/alice", "inc", &id(5));
    assert_eq!((status, body.as_str(), seq, dup), (200, "15", 5, true));
    let sent = json_of(&agent_cli(
        &b,
        &client,
        &["send", "counter/alice", "add 5", "--json"],
    ));
    assert_eq!(
        (sent["reply"].as_str(), sent["seq"].as_u64()),
        (Some("45"), Some(31))
    );
    // Another agent of the same module has its own state.
    let (_, bob, bob_seq, _) = post(&b, "counter/bob", "inc", &id(1));
    assert_eq!((bob.as_str(), bob_seq), ("11", 1));

    // A message the agent refuses changes nothing.
    let (status, body, _, _) = post(&b, "counter/alice", "jump", &id(99));
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("step_failed") && body.contains("unknown message"),
        "{body}"
    );
    let state = json_of(&agent_cli(
        &b,
        &client,
        &["state", "counter/alice", "--json"],
    ));
    assert_eq!(
        (state["state"].as_u64(), state["seq"].as_u64()),
        (Some(45), Some(31))
    );

    // b, which the messages entered, counted each by its outcome.
    let text = crate::metrics::scrape(&b.api);
    let steps = |outcome: &str| {
        crate::metrics::sample(
            &text,
            &format!(r#"orb_agent_steps_total{{module="counter",outcome="{outcome}"}}"#),
        )
    };
    assert_eq!(steps("applied"), Some(32.0), "{text}");
    assert_eq!(steps("duplicate"), Some(1.0), "{text}");
    assert_eq!(steps("step_failed"), Some(1.0), "{text}");

    let logs = Command::new(env!("CARGO_BIN_EXE_orb"))
        .args([
            "logs",
            "counter/alice",
            "--json",
            "-n",
            "0",
            "--node",
            &b.api,
        ])
        .env("ORB_DATA_DIR", &client)
        .env_remove("ORB_LOG")
        .output()
        .unwrap();
    // orb logs shows alice's steps on her host: the 31 applied in order,
    // then the refused one with the guest's complaint.
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    let steps: Vec<Value> = String::from_utf8_lossy(&logs.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(steps.len(), 32, "{steps:?}");
    for (i, step) in steps[..31].iter().enumerate() {
        assert_eq!(
            (
                step["agent"].as_str(),
                step["outcome"].as_str(),
                step["seq"].as_u64()
            ),
            (Some("counter/alice"), Some("ok"), Some(i as u64 + 1)),
            "{step}"
        );
        assert_eq!(step["host"], a.peer_id.as_str(), "{step}");
    }
    assert_ne!(steps[31]["outcome"], "ok", "{}", steps[31]);
    assert!(
        steps[31]["log"]
            .as_str()
            .is_some_and(|l| l.contains("unknown message")),
        "{}",
        steps[31]
    );

    // The host is SIGKILLed and restarted with its data dir: the count is
    // the one it acknowledged.
    a.stop();
    let a = node(r, "a", Some(&s.addrs[0]), &["--no-autoscale"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let out = agent_cli(&b, &client, &["send", "counter/alice", "get", "--json"]);
        if out.status.success() {
            break json_of(&out);
        }
        assert!(
            Instant::now() < deadline,
            "counter/alice unreachable after the restart: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (got["reply"].as_str(), got["seq"].as_u64()),
        (Some("45"), Some(32))
    );
    let (_, body, seq, _) = post(&b, "counter/alice", "inc", &id(33));
    assert_eq!((body.as_str(), seq), ("46", 33));

    // The log: every message once, in order, each step's state chained to
    // the one before.
    let log = json_of(&agent_cli(&b, &client, &["log", "counter/alice", "--json"]));
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 33);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1));
        if i > 0 {
            assert_eq!(e["before"], entries[i - 1]["after"], "entry {}", i + 1);
        }
    }
    assert_eq!(entries[30]["message"]["text"], "add 5");
    let listed = json_of(&agent_cli(&a, &client, &["ls", "--json"]));
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["agent"].as_str())
        .collect();
    assert_eq!(names, ["counter/alice", "counter/bob"]);

    // An agent that sends: each message to relay/r makes it send `inc`
    // to counter/x, delivered once after its step is durable, a retry of
    // relay's message included.
    deploy_example(&a, &client, "relay");
    wait_providers(&[&b], "relay", 1);
    for n in 1..=5u32 {
        let (status, body, _, _) = post(&b, "relay/r", "x", &id(100 + n));
        assert_eq!((status, body), (200, n.to_string()));
    }
    let (_, body, _, dup) = post(&b, "relay/r", "x", &id(102));
    assert_eq!((body.as_str(), dup), ("2", true));
    // Scheduled sends: one to counter/y in 1 s, one to counter/z that a
    // later step cancels before it is due.
    for (n, message) in [(106, "later y 1"), (107, "later z 1"), (108, "cancel z")] {
        let (status, body, _, _) = post(&b, "relay/r", message, &id(n));
        assert_eq!(status, 200, "{message}: {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let out = agent_cli(&b, &client, &["state", "counter/x", "--json"]);
        if out.status.success() {
            let state = json_of(&out);
            if state["seq"].as_u64() >= Some(5) {
                break state;
            }
        }
        assert!(Instant::now() < deadline, "relay's messages not delivered");
        std::thread::sleep(Duration::from_millis(100));
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = agent_cli(&b, &client, &["state", "counter/y", "--json"]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the scheduled send never came");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing more arrives: five messages to x, each applied once; the
    // scheduled one to y once; the cancelled one to z never.
    std::thread::sleep(Duration::from_millis(1200));
    let again = json_of(&agent_cli(&b, &client, &["state", "counter/x", "--json"]));
    assert_eq!(
        (state["state"].as_u64(), again["seq"].as_u64()),
        (Some(15), Some(5))
    );
    let y = json_of(&agent_cli(&b, &client, &["state", "counter/y", "--json"]));
    assert_eq!(
        (y["state"].as_u64(), y["seq"].as_u64()),
        (Some(11), Some(1))
    );
    let z = agent_cli(&b, &client, &["state", "counter/z", "--json"]);
    assert!(!z.status.success(), "a cancelled send arrived");
    let log = json_of(&agent_cli(&b, &client, &["log", "counter/x", "--json"]));
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .all(|e| e["sender"] == "relay/r" && e["message"]["text"] == "inc"),
        "{log}"
    );

    // Bad input, each a clear error.
    let out = agent_cli(&b, &client, &["send", "nobody/x", "inc"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no agent module nobody"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = agent_cli(&b, &client, &["send", "counter", "inc"]);
    assert_eq!(out.status.code(), Some(2), "a bad name is a usage error");
    let (status, body, _, _) = post(&b, "counter/Alice", "inc", &id(1));
    assert_eq!(status, 400, "{body}");
    // A message over the limit (1 MiB) is refused before it reaches a host.
    let huge = "x".repeat((1 << 20) + 1);
    let (status, body, _, _) = post(&b, "counter/alice", &huge, &id(99));
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("too_large") && body.contains("at most 1048576"),
        "{body}"
    );
    // A module that is not an agent.
    deploy_example(&a, &client, "echo");
    wait_providers(&[&b], "echo", 1);
    let (status, body, _, _) = post(&b, "echo/x", "hello", &id(1));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("not_an_agent"), "{body}");
    let out = agent_cli(&b, &client, &["state", "echo/x"]);
    assert!(!out.status.success(), "no state after a refused step");
    // A step that leaves a state over the limit.
    let big = r.join("big.wasm");
    std::fs::write(&big, oversized_state_agent()).unwrap();
    json_of(&agent_cli(
        &a,
        &client,
        &["deploy", big.to_str().unwrap(), "--name", "big", "--json"],
    ));
    let (status, body, _, _) = post(&a, "big/x", "grow", &id(1));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("state_too_large"), "{body}");
}

/// Receipts of `executor` in the chain kept in `dir`.
fn receipts_of(dir: &Path, executor: &orb_ledger::PublicKey) -> usize {
    let chain = orb_ledger::Chain::open_dir(&dir.join("ledger"), None).expect("open the chain");
    (1..=chain.height())
        .filter_map(|h| chain.block(h).expect("readable"))
        .map(|b| {
            b.receipts()
                .filter(|(_, r)| r.body.executor == *executor)
                .count()
        })
        .sum()
}

#[test]
fn an_agent_asks_another_and_gets_its_reply_once_as_a_message() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let client = r.join("client");
    let [_s, a, b] = trio(r);
    // The asker on a, the counter it asks on b.
    for (host, module) in [(&a, "asker"), (&b, "counter")] {
        json_of(&agent_cli(
            host,
            &client,
            &[
                "deploy",
                example(module).to_str().unwrap(),
                "--name",
                module,
                "--json",
            ],
        ));
    }
    wait_providers(&[&a], "counter", 1);
    wait_providers(&[&b], "asker", 1);
    for n in 1..=2 {
        assert_eq!(post(&b, "counter/c", "inc", &id(n)).1, n.to_string());
    }
    let (status, body, _, _) = post(&b, "asker/q", "ask counter/c inc", &id(10));
    assert_eq!((status, body.as_str()), (200, "asking 1"));
    let (_, body, _, _) = post(&b, "asker/q", "ask nothing/here get", &id(11));
    assert_eq!(body, "asking 2");
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let st = agent_state_on(&a, "asker/q");
        if st["state"]["answers"]["2"].is_string() && st["state"]["answers"]["1"].is_string() {
            break st;
        }
        assert!(Instant::now() < deadline, "no answers: {st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The counter's reply to the ask, once; an agent of no module is an
    // answer that failed.
    assert_eq!(state["state"]["answers"]["1"], "3", "{state}");
    assert_eq!(state["state"]["failed"], 1, "{state}");
    assert!(
        state["state"]["answers"]["2"]
            .as_str()
            .unwrap()
            .contains("nothing"),
        "{state}"
    );
    let log = json_of(&agent_cli(&b, &client, &["log", "counter/c", "--json"]));
    let from_asker: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["sender"] == "asker/q")
        .collect();
    assert_eq!(from_asker.len(), 1, "{log}");
    assert_eq!(post(&b, "counter/c", "get", &id(3)).1, "3");
    let log = json_of(&agent_cli(&a, &client, &["log", "asker/q", "--json"]));
    let answers = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["sender"] == "asker/q")
        .count();
    assert_eq!(answers, 2, "{log}");
}

/// Three nodes on one chain (n0 funded) with `modules` deployed as agents
/// through n1 (their only host), known to n0; and the client's dir.
fn ledger_agents(
    root: &Path,
    chain: &str,
    modules: &[&str],
) -> (Vec<NodeProc>, std::path::PathBuf) {
    let (nodes, _, _) = crate::consensus::ledger_network(
        root,
        3,
        chain,
        orb_ledger::Params::new(3, 2, 2, 2).expect("params"),
        "200",
        &[],
    );
    let client = root.join("client");
    for module in modules {
        let path = example(module);
        json_of(&agent_cli(
            &nodes[1],
            &client,
            &[
                "deploy",
                path.to_str().expect("utf-8"),
                "--name",
                module,
                "--json",
            ],
        ));
        wait_providers(&[&nodes[0]], module, 1);
    }
    (nodes, client)
}

#[test]
fn agent_steps_are_paid_once_like_calls_and_a_retry_is_not_paid_again() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    // n1 hosts the counter; n0 (the funded node) sends, so it pays.
    let (nodes, client) = ledger_agents(root.path(), "agent-receipts", &["counter"]);
    for n in 1..=6u32 {
        let (status, body, _, dup) = post(&nodes[0], "counter/paid", "inc", &id(n));
        assert_eq!((status, body, dup), (200, n.to_string(), false));
    }
    let (_, body, _, dup) = post(&nodes[0], "counter/paid", "inc", &id(3));
    assert_eq!((body.as_str(), dup), ("3", true));
    let host = crate::consensus::key_of(&nodes[1].dir);
    // The six settlements in committed blocks, every node at one height.
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::consensus::ledger(&nodes[0])["unsettled"].as_u64() != Some(0) {
        assert!(Instant::now() < deadline, "settlements never committed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    crate::hostile::wait_agreed(&all, 1);
    let log = json_of(&agent_cli(
        &nodes[0],
        &client,
        &["log", "counter/paid", "--json"],
    ));
    let dirs: Vec<_> = nodes.into_iter().map(NodeProc::stop).collect();
    for dir in &dirs {
        crate::consensus::audit_clean(dir);
        assert_eq!(receipts_of(dir, &host), 6, "{}", dir.display());
    }
    // The receipts state each step's state hashes: `orb agent audit`
    // checks the log against the chain, entry by entry.
    let audit = |log: &Value| {
        let file = root.path().join("log.json");
        std::fs::write(&file, log.to_string()).unwrap();
        Command::new(env!("CARGO_BIN_EXE_orb"))
            .args(["--data-dir", dirs[0].to_str().unwrap()])
            .args(["agent", "audit", "counter/paid", "--log"])
            .arg(&file)
            .arg("--json")
            .output()
            .unwrap()
    };
    let report = json_of(&audit(&log));
    assert_eq!(
        (
            report["clean"].as_bool(),
            report["stated"].as_u64(),
            report["receipts"].as_u64()
        ),
        (Some(true), Some(6), Some(6)),
        "{report}"
    );
    assert_eq!(report["executors"].as_array().unwrap().len(), 1);
    // A log that says step 3 replied otherwise is not what the chain states.
    let mut forged = log.clone();
    forged[2]["reply"]["text"] = Value::from("99");
    let out = audit(&forged);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["problems"],
        serde_json::json!(["no receipt in the chain states step 3"])
    );
}

/// What a POST answered, with the headers of a replicated agent.
struct Reply {
    status: u16,
    body: String,
    seq: u64,
    sequencer: String,
    outvoted: String,
}

fn post_full(node: &NodeProc, agent: &str, message: &str, id: &str) -> Option<Reply> {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let url = format!("{}/agent/{agent}?message_id={id}", node.api);
    let mut r = http.post(&url).send(message).ok()?;
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (seq, sequencer, outvoted) = (
        header("x-orb-seq").parse().unwrap_or(0),
        header("x-orb-sequencer"),
        header("x-orb-outvoted"),
    );
    Some(Reply {
        status: r.status().as_u16(),
        body: r.body_mut().read_to_string().ok()?,
        seq,
        sequencer,
        outvoted,
    })
}

/// Sends `message` with id `id` until it is applied (retrying with the
/// same id on 502/503 or no answer, as `orb agent send` does).
fn send_until_applied(node: &NodeProc, agent: &str, message: &str, id: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match post_full(node, agent, message, id) {
            Some(r) if r.status == 200 => return r,
            Some(r) if r.status != 502 && r.status != 503 => {
                panic!("{agent} {message}: {} {}", r.status, r.body)
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{agent}: message {id} never applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Node `i`, which is up.
fn up(nodes: &[Option<NodeProc>], i: usize) -> &NodeProc {
    nodes[i].as_ref().expect("a node that is up")
}

fn agent_state_on(node: &NodeProc, agent: &str) -> Value {
    let out = ureq::get(&format!("{}/agent/{agent}/state", node.api))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    serde_json::from_str(&out).unwrap_or(Value::Null)
}

/// A network of `names.len()` nodes on loopback (the first a supernode)
/// and the agent module `module` deployed as itself through the second
/// with `--replicas 3`: the nodes, the indices of its three hosts, and a
/// node that is not one of them (which knows the three).
fn three_hosts(
    r: &Path,
    client: &Path,
    names: &[&str],
    module: &str,
) -> (Vec<NodeProc>, Vec<usize>, usize) {
    three_hosts_with(r, client, names, module, &[])
}

/// [`three_hosts`] with more flags for every node.
fn three_hosts_with(
    r: &Path,
    client: &Path,
    names: &[&str],
    module: &str,
    more: &[&str],
) -> (Vec<NodeProc>, Vec<usize>, usize) {
    let flags: Vec<&str> = ["--no-autoscale"].iter().chain(more).copied().collect();
    let s = node(r, names[0], None, &flags);
    let boot = s.addrs[0].clone();
    let mut nodes = vec![s];
    for name in &names[1..] {
        nodes.push(node(r, name, Some(&boot), &flags));
    }
    let others = (names.len() - 1) as u64;
    for n in &nodes {
        n.wait_status("every other node connected", |st| {
            st["connected"].as_u64().unwrap_or(0) >= others
        });
    }
    let deployed = json_of(&agent_cli(
        &nodes[1],
        client,
        &[
            "deploy",
            example(module).to_str().expect("utf-8"),
            "--name",
            module,
            "--replicas",
            "3",
            "--json",
        ],
    ));
    let hosts: Vec<usize> = deployed["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .map(|p| {
            nodes
                .iter()
                .position(|n| Some(n.peer_id.as_str()) == p.as_str())
                .expect("a host among the nodes")
        })
        .collect();
    assert_eq!(hosts.len(), 3, "{deployed}");
    let entry = (0..nodes.len())
        .find(|i| !hosts.contains(i))
        .expect("a node that is not a host");
    wait_providers(&[&nodes[entry]], module, 3);
    (nodes, hosts, entry)
}

/// Five nodes on loopback (`s` a supernode) with an agent module on three
/// of them ([`three_hosts_with`]), held under [`crate::HEAVY`]; a node is
/// `None` once stopped.
struct Lab {
    _heavy: std::sync::MutexGuard<'static, ()>,
    root: tempfile::TempDir,
    client: std::path::PathBuf,
    names: [&'static str; 5],
    nodes: Vec<Option<NodeProc>>,
    hosts: Vec<usize>,
    entry: usize,
    peer_ids: Vec<String>,
}

impl Lab {
    fn new(module: &str, more: &[&str]) -> Lab {
        let _heavy = crate::HEAVY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let root = tempfile::tempdir().expect("a temp dir");
        let client = root.path().join("client");
        let names = ["s", "a", "b", "c", "d"];
        let (nodes, hosts, entry) = three_hosts_with(root.path(), &client, &names, module, more);
        let peer_ids = nodes.iter().map(|n| n.peer_id.clone()).collect();
        Lab {
            _heavy,
            root,
            client,
            names,
            nodes: nodes.into_iter().map(Some).collect(),
            hosts,
            entry,
            peer_ids,
        }
    }
}

#[test]
fn a_counter_on_three_hosts_applies_1000_messages_once_while_its_sequencers_are_killed() {
    let Lab {
        _heavy,
        root,
        client,
        names,
        mut nodes,
        hosts,
        entry,
        peer_ids,
    } = Lab::new("counter", &[]);
    let r = root.path();
    let flags = ["--no-autoscale"];

    let agent = "counter/x";
    let mut sequencers = Vec::new();
    let mut killed: Vec<usize> = Vec::new();
    for n in 1..=1000u32 {
        let reply = send_until_applied(up(&nodes, entry), agent, "inc", &id(n));
        assert_eq!(
            (reply.body.as_str(), reply.seq),
            (n.to_string().as_str(), u64::from(n)),
            "message {n}"
        );
        if sequencers.last() != Some(&reply.sequencer) {
            sequencers.push(reply.sequencer.clone());
        }
        // Kill the agent's sequencer at 300 and the next one at 600;
        // restart each 200 messages later with its data dir, joining
        // through the entry node (which stays up: the supernode may be
        // one of the hosts).
        if n == 300 || n == 600 {
            let victim = hosts
                .iter()
                .copied()
                .find(|i| peer_ids[*i] == reply.sequencer)
                .unwrap();
            killed.push(victim);
            nodes[victim].take().unwrap().stop();
        }
        if n == 500 || n == 800 {
            let victim = *killed.last().unwrap();
            let rejoin = up(&nodes, entry).addrs[0].clone();
            nodes[victim] = Some(node(r, names[victim], Some(&rejoin), &flags));
        }
    }
    assert!(
        sequencers.len() >= 2,
        "the sequencer never changed: {sequencers:?}"
    );
    // Every host ends at 1,000, each message applied once.
    for h in &hosts {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = agent_state_on(up(&nodes, *h), agent);
            if st["seq"].as_u64() == Some(1000) {
                assert_eq!(st["state"].as_u64(), Some(1000), "{}: {st}", names[*h]);
                break;
            }
            // A host that was down catches up on the next step.
            if Instant::now() > deadline {
                let nudge =
                    send_until_applied(up(&nodes, entry), agent, "get", &id(5000 + *h as u32));
                assert_eq!(nudge.body, "1000");
                panic!("{} stays at {st}", names[*h]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let log = json_of(&agent_cli(
        up(&nodes, entry),
        &client,
        &["log", agent, "--json"],
    ));
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 1000);
    let mut ids: Vec<&str> = entries
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "a message applied twice");
}

#[test]
fn a_byzantine_agent_host_is_outvoted_on_every_step_and_earns_nothing() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let (nodes, _, _) = crate::consensus::ledger_network(
        root.path(),
        3,
        "agent-byzantine",
        orb_ledger::Params::new(3, 2, 2, 2).unwrap(),
        "200",
        // Each step waits for all three votes however loaded the machine
        // is: the liar's is then always seen, named and unpaid.
        &[
            &["--agent-vote-grace-ms", "5000"],
            &["--agent-vote-grace-ms", "5000"],
            &[
                "--byzantine",
                "wrong-output",
                "--agent-vote-grace-ms",
                "5000",
            ],
        ],
    );
    let client = root.path().join("client");
    for n in &nodes {
        n.wait_status("2 connected peers", |st| {
            st["connected"].as_u64().unwrap_or(0) >= 2
        });
    }
    // n1 deploys on all three; n0 (funded) sends and pays.
    let deployed = json_of(&agent_cli(
        &nodes[1],
        &client,
        &[
            "deploy",
            example("counter").to_str().unwrap(),
            "--name",
            "counter",
            "--replicas",
            "3",
            "--json",
        ],
    ));
    assert_eq!(
        deployed["providers"].as_array().unwrap().len(),
        3,
        "{deployed}"
    );
    wait_providers(&[&nodes[0]], "counter", 3);
    let liar = nodes[2].peer_id.clone();
    for n in 1..=10u32 {
        let reply = send_until_applied(&nodes[0], "counter/b", "inc", &id(n));
        assert_eq!(reply.body, n.to_string(), "message {n}");
        assert_eq!(reply.outvoted, liar, "message {n}");
    }
    // The honest hosts agree; the liar took part in every step (as the
    // sequencer it fetches the majority's state after each of its own; as
    // a follower it is resynchronised before the next one).
    let honest = agent_state_on(&nodes[1], "counter/b");
    assert_eq!(honest["state"].as_u64(), Some(10), "{honest}");
    assert_eq!(
        agent_state_on(&nodes[0], "counter/b")["hash"],
        honest["hash"]
    );
    assert_eq!(agent_state_on(&nodes[2], "counter/b")["seq"], 10);
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::consensus::ledger(&nodes[0])["unsettled"].as_u64() != Some(0) {
        assert!(Instant::now() < deadline, "settlements never committed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    crate::hostile::wait_agreed(&all, 1);
    let keys: Vec<_> = nodes
        .iter()
        .map(|n| crate::consensus::key_of(&n.dir))
        .collect();
    let dirs: Vec<_> = nodes.into_iter().map(NodeProc::stop).collect();
    for dir in &dirs {
        crate::consensus::audit_clean(dir);
    }
    // Every step is one settlement of three receipts; the liar's receipt
    // is disputed in each, and it earned block rewards at most.
    let chain = orb_ledger::Chain::open_dir(&dirs[0].join("ledger"), None).unwrap();
    let (mut steps, mut liar_rewards) = (0, 0u128);
    for h in 1..=chain.height() {
        let block = chain.block(h).unwrap().unwrap();
        if block.header.proposer.key == keys[2] {
            liar_rewards += u128::from(chain.genesis().block_reward);
        }
        for settlement in &block.settlements {
            let verdict = settlement.verdict();
            assert_eq!(settlement.body.receipts.len(), 3);
            for (i, r) in settlement.body.receipts.iter().enumerate() {
                assert_eq!(
                    verdict.disputed.contains(&i),
                    r.body.executor == keys[2],
                    "only the liar's receipt is disputed"
                );
            }
            steps += 1;
        }
    }
    assert_eq!(steps, 10);
    assert_eq!(chain.balance(&keys[2]), liar_rewards);
}

#[test]
fn a_reminder_fires_once_at_its_time_across_a_sigkill_and_restart_of_every_host() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let client = r.join("client");
    let flags = ["--no-autoscale"];
    let names = ["s", "a", "b", "c"];
    let (nodes, hosts, entry) = three_hosts(r, &client, &names, "auction");
    let mut nodes: Vec<Option<NodeProc>> = nodes.into_iter().map(Some).collect();

    // Open for 4 s, bid, then SIGKILL every host before the deadline.
    let agent = "auction/x";
    let opened = Instant::now();
    let reply = send_until_applied(up(&nodes, entry), agent, "open 4", &id(1));
    assert_eq!(reply.body, "open for 4 s");
    assert_eq!(
        send_until_applied(up(&nodes, entry), agent, "bid ann 7", &id(2)).body,
        "leading"
    );
    // Nobody but the reminder closes it.
    let refused = post_full(up(&nodes, entry), agent, "close", &id(3)).unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    for h in &hosts {
        nodes[*h].take().unwrap().stop();
    }
    // Back on their data dirs, joining through the node that stayed up.
    let rejoin = up(&nodes, entry).addrs[0].clone();
    for h in &hosts {
        nodes[*h] = Some(node(r, names[*h], Some(&rejoin), &flags));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let closed = loop {
        let st = agent_state_on(up(&nodes, entry), agent);
        if st["state"]["closed"] == true {
            break st;
        }
        assert!(Instant::now() < deadline, "the auction never closed: {st}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        opened.elapsed() >= Duration::from_secs(4),
        "closed before its deadline: {closed}"
    );
    assert_eq!(closed["state"]["closes"], 1, "{closed}");
    assert_eq!(closed["state"]["best"], serde_json::json!(["ann", 7]));
    // A bid after the deadline is refused; the close was applied once,
    // sent by the agent itself, on every host.
    assert_eq!(
        send_until_applied(up(&nodes, entry), agent, "bid bob 9", &id(4)).body,
        "refused: sold to ann for 7"
    );
    let log = json_of(&agent_cli(
        up(&nodes, entry),
        &client,
        &["log", agent, "--json"],
    ));
    let closes: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"]["text"] == "close")
        .collect();
    assert_eq!(closes.len(), 1, "{log}");
    assert_eq!(closes[0]["sender"], agent, "{log}");
    for h in &hosts {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = agent_state_on(up(&nodes, *h), agent);
            if st["seq"].as_u64() == Some(4) {
                assert_eq!(st["state"]["closes"], 1, "{}: {st}", names[*h]);
                break;
            }
            assert!(Instant::now() < deadline, "{} stays at {st}", names[*h]);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn an_upgrade_moves_every_host_to_the_new_module_at_one_seq_keeping_the_state() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let client = r.join("client");
    let (nodes, hosts, entry) = three_hosts(r, &client, &["s", "a", "b", "c"], "counter");
    let agent = "counter/u";
    for n in 1..=5u32 {
        assert_eq!(
            send_until_applied(&nodes[entry], agent, "inc", &id(n)).body,
            n.to_string()
        );
    }
    // `dec` is not a message of version 1.
    let refused = post_full(&nodes[entry], agent, "dec", &id(6)).unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);

    // Through a node that does not host counter: refused, nothing moves.
    let v2 = example("counter2");
    let out = agent_cli(
        &nodes[entry],
        &client,
        &["upgrade", "counter", v2.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("through one of its hosts"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let upgraded = json_of(&agent_cli(
        &nodes[hosts[0]],
        &client,
        &["upgrade", "counter", v2.to_str().unwrap(), "--json"],
    ));
    let (old, new) = (
        upgraded["replaces"].as_str().unwrap().to_owned(),
        upgraded["function"].as_str().unwrap().to_owned(),
    );
    assert_ne!(old, new);
    let mut upgraded_hosts: Vec<&str> = upgraded["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = hosts.iter().map(|h| nodes[*h].peer_id.as_str()).collect();
    upgraded_hosts.sort_unstable();
    expected.sort_unstable();
    assert_eq!(upgraded_hosts, expected);

    // The next message runs version 2 on the state of version 1, through
    // the entry node whichever version it resolves the name to.
    let reply = send_until_applied(&nodes[entry], agent, "dec", &id(7));
    assert_eq!((reply.body.as_str(), reply.seq), ("4", 6));
    assert_eq!(
        send_until_applied(&nodes[entry], agent, "inc", &id(8)).body,
        "5"
    );
    // Every host switched at seq 6: before it version 1, from it version 2.
    for h in &hosts {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = agent_state_on(&nodes[*h], agent);
            if st["seq"].as_u64() == Some(7) {
                assert_eq!(
                    (st["state"].as_u64(), st["function"].as_str()),
                    (Some(5), Some(new.as_str())),
                    "{st}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "a host stays at {st}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let log = json_of(&agent_cli(
        &nodes[hosts[0]],
        &client,
        &["log", agent, "--json"],
    ));
    let versions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["function"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [&old, &old, &old, &old, &old, &new, &new]);
    // Other agents of the module move too, from their initial state.
    assert_eq!(
        send_until_applied(&nodes[entry], "counter/fresh", "inc", &id(9)).body,
        "1"
    );
}

#[test]
fn a_cognitive_agent_calls_a_function_and_gets_its_answer_once_as_a_message() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let client = r.join("client");
    let [_s, a, b] = trio(r);
    crate::replication::deploy_on(&b, "wordcount", &client);
    deploy_example(&a, &client, "wordstore");
    wait_providers(&[&a], "wordcount", 1);
    wait_providers(&[&b], "wordstore", 1);
    let (status, body, _, _) = post(&b, "wordstore/w", "the cat the hat", &id(1));
    assert_eq!((status, body.as_str()), (200, "counting 1"));
    // The answer comes back as the agent's next message, once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let st = agent_state_on(&b, "wordstore/w");
        if st["state"]["counts"]["1"].is_string() {
            break st;
        }
        assert!(Instant::now() < deadline, "no answer: {st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        state["state"]["counts"]["1"],
        r#"{"cat":1,"hat":1,"the":2}"#
    );
    assert_eq!(state["state"]["failed"], 0);
    let (_, body, _, _) = post(&b, "wordstore/w", "get", &id(2));
    assert_eq!(body, "1 of 1 counted");
    let log = json_of(&agent_cli(&b, &client, &["log", "wordstore/w", "--json"]));
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{log}");
    assert_eq!(entries[1]["sender"], "wordstore/w");
    assert_eq!(entries[1]["reply"]["text"], "stored 1");
}

/// One node `a` on which `queue` messages may wait for an agent, with the
/// example agent module `module` deployed as itself.
fn queue_of(
    queue: &str,
    module: &str,
) -> (
    std::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    NodeProc,
) {
    let heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().expect("a temp dir");
    let a = node(
        root.path(),
        "a",
        None,
        &["--no-autoscale", "--agent-queue", queue],
    );
    deploy_example(&a, &root.path().join("client"), module);
    (heavy, root, a)
}

#[test]
fn a_full_queue_answers_busy_and_every_message_retried_is_applied_exactly_once() {
    // Two messages may wait for an agent on a; 48 arrive at once.
    let (_heavy, _root, a) = queue_of("2", "counter");
    const SENT: u32 = 48;
    let start = std::sync::Barrier::new(SENT as usize);
    let answers: Vec<(u32, u16, String)> = std::thread::scope(|scope| {
        let senders: Vec<_> = (1..=SENT)
            .map(|n| {
                let (a, start) = (&a, &start);
                scope.spawn(move || {
                    start.wait();
                    let (status, body, _, _) = post(a, "counter/q", "inc", &id(n));
                    (n, status, body)
                })
            })
            .collect();
        senders.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let busy: Vec<u32> = answers
        .iter()
        .filter(|(_, status, _)| *status == 503)
        .map(|(n, _, body)| {
            assert!(body.contains(r#""kind":"busy""#), "{body}");
            *n
        })
        .collect();
    assert!(!busy.is_empty(), "nothing was busy: {answers:?}");
    let mut counts: Vec<u64> = answers
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .map(|(_, _, body)| body.parse().unwrap())
        .collect();
    assert_eq!(counts.len() + busy.len(), SENT as usize, "{answers:?}");
    // A busy message was not applied: sent again with its id, it is, once.
    for n in busy {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body, _, duplicate) = post(&a, "counter/q", "inc", &id(n));
            if status == 200 {
                assert!(!duplicate, "message {n} had been applied while busy");
                counts.push(body.parse().unwrap());
                break;
            }
            assert_eq!(status, 503, "{body}");
            assert!(Instant::now() < deadline, "message {n} stays busy");
        }
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=u64::from(SENT)).collect::<Vec<_>>());
    assert_eq!(
        agent_state_on(&a, "counter/q")["state"].as_u64(),
        Some(u64::from(SENT))
    );
}

#[test]
fn a_scheduled_call_runs_a_function_periodically_until_the_agent_stops_it() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let client = r.join("client");
    let [_s, a, b] = trio(r);
    // The function on b, the trigger on a, the messages through b.
    crate::replication::deploy_on(&b, "wordcount", &client);
    deploy_example(&a, &client, "cron");
    wait_providers(&[&a], "wordcount", 1);
    wait_providers(&[&b], "cron", 1);
    let (status, body, _, _) = post(&b, "cron/c", "every 0.3 wordcount the cat", &id(1));
    assert_eq!((status, body.as_str()), (200, "every 0.3 s: wordcount"));
    let runs = |node: &NodeProc| agent_state_on(node, "cron/c")["state"]["runs"].as_u64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while runs(&b).unwrap_or(0) < 3 {
        assert!(
            Instant::now() < deadline,
            "not run 3 times: {}",
            agent_state_on(&b, "cron/c")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let state = agent_state_on(&b, "cron/c")["state"].clone();
    assert_eq!(state["last"], r#"{"cat":1,"the":1}"#, "{state}");
    assert_eq!(state["failed"], 0, "{state}");
    // Each run is one answer, brought by the agent's own scheduled call,
    // each set again by the step before it.
    let log = json_of(&agent_cli(&b, &client, &["log", "cron/c", "--json"]));
    let entries = log.as_array().unwrap();
    for (i, e) in entries.iter().enumerate().skip(1) {
        assert_eq!(e["sender"], "cron/c", "{log}");
        assert_eq!(e["reply"]["text"], format!("run {i}"), "{log}");
        assert_eq!(e["message"]["text"], r#"{"cat":1,"the":1}"#, "{log}");
    }
    // Stopped, it runs at most once more (a call already out), and the
    // count stays where it is for five periods.
    let (status, body, _, _) = post(&b, "cron/c", "stop", &id(2));
    assert_eq!(status, 200, "{body}");
    let stopped: u64 = body
        .strip_prefix("stopped after ")
        .and_then(|b| b.strip_suffix(" runs"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    std::thread::sleep(Duration::from_millis(1_500));
    let after = runs(&b).unwrap();
    assert!(after <= stopped + 1, "ran on: {stopped} then {after}");
    let (_, body, _, _) = post(&b, "cron/c", "get", &id(3));
    assert_eq!(
        body,
        format!("{after} runs, 0 failed; last: {{\"cat\":1,\"the\":1}}")
    );
    // A bad schedule is refused by the agent's step.
    let (status, _, _, _) = post(&b, "cron/c", "every 0 wordcount x", &id(4));
    assert_eq!(status, 422);
}

#[test]
fn a_send_after_blocks_arrives_once_when_the_chain_is_that_many_blocks_further() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    // n1 hosts both modules; n0 (the funded node) sends, so its steps are
    // settled, and settlements are what blocks are made of.
    let (nodes, client) = ledger_agents(root.path(), "agent-blocks", &["counter", "relay"]);
    let height = |node: &NodeProc| {
        crate::consensus::ledger(node)["height"]
            .as_u64()
            .expect("a height")
    };
    let count = |agent: &str| agent_state_on(&nodes[1], agent)["state"].as_u64();
    let set_from = height(&nodes[1]);
    let (status, body, _, _) = post(&nodes[0], "relay/r", "blocks b 3", &id(1));
    assert_eq!((status, body.as_str()), (200, "1"));
    // Traffic makes blocks; the inc arrives once the host's chain is 3
    // blocks past its height when the relay step was put in order.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut n = 100;
    let fired_at = loop {
        let seen = height(&nodes[1]);
        if count("counter/b") == Some(1) {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "never arrived; chain at {seen}, set at {set_from}"
        );
        n += 1;
        let (status, _, _, _) = post(&nodes[0], "counter/traffic", "inc", &id(n));
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "the inc arrived at height {fired_at}; the relay step was put in order at {set_from} or later"
    );
    assert!(
        fired_at >= set_from + 3,
        "arrived at height {fired_at}, set at {set_from}"
    );
    // Three more blocks: still once, sent by the relay.
    while height(&nodes[1]) < fired_at + 3 {
        assert!(Instant::now() < deadline, "the chain stopped");
        n += 1;
        post(&nodes[0], "counter/traffic", "inc", &id(n));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count("counter/b"), Some(1));
    let log = json_of(&agent_cli(
        &nodes[0],
        &client,
        &["log", "counter/b", "--json"],
    ));
    let entries = log.as_array().expect("a log");
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["sender"], "relay/r", "{log}");
    // Without a chain the step is refused and changes nothing.
    let plain = tempfile::tempdir().unwrap();
    let solo = node(plain.path(), "solo", None, &[]);
    let relay = example("relay");
    json_of(&agent_cli(
        &solo,
        &client,
        &[
            "deploy",
            relay.to_str().unwrap(),
            "--name",
            "relay",
            "--json",
        ],
    ));
    let (status, body, _, _) = post(&solo, "relay/r", "blocks b 3", &id(1));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("no reward chain"), "{body}");
}

/// What `child` printed, once it has exited by itself within `limit`
/// (killed and failed past it).
fn output_within(mut child: std::process::Child, limit: Duration) -> Vec<u8> {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).expect("stdout");
        out
    });
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            return reader.join().expect("reader");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines a chat member has (its `get` reply, from its state).
fn chat_lines(node: &NodeProc, member: &str) -> Vec<String> {
    agent_state_on(node, member)["state"]["lines"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|s| s.as_str().expect("a line").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_topic_reaches_agents_clients_and_pipelines_once_in_order_across_a_sigkill() {
    let Lab {
        _heavy,
        root: _root,
        client,
        names,
        mut nodes,
        hosts,
        entry,
        peer_ids,
    } = Lab::new("chat", &[]);
    let at = |nodes: &[Option<NodeProc>]| up(nodes, entry).api.clone();

    // A client follows the topic through a node that hosts nothing.
    let follower = Command::new(env!("CARGO_BIN_EXE_orb"))
        .args([
            "--node",
            &at(&nodes),
            "topic",
            "subscribe",
            "chat/lobby/lines",
        ])
        .args(["--count", "4", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut joined = Vec::new();
    for (n, member) in ["chat/ann", "chat/bob"].into_iter().enumerate() {
        let reply = send_until_applied(up(&nodes, entry), member, "join lobby", &id(n as u32));
        assert_eq!(reply.body, "joined lobby");
        joined.push(reply.sequencer);
    }
    let say = |nodes: &[Option<NodeProc>], n: u32, line: &str| {
        let reply = send_until_applied(up(nodes, entry), "chat/lobby", line, &id(100 + n));
        assert_eq!(reply.body, n.to_string());
    };
    say(&nodes, 1, "say ann hi");
    say(&nodes, 2, "say bob yo there");
    say(&nodes, 3, "say ann bye");
    let wanted = ["ann: hi", "bob: yo there", "ann: bye", "bob: last"];
    let wait_lines = |nodes: &[Option<NodeProc>], host: usize, member: &str, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines = chat_lines(up(nodes, host), member);
            if lines.len() >= n {
                assert_eq!(lines, wanted[..n], "{member} on {}", names[host]);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{member} on {} has {lines:?}",
                names[host]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_lines(&nodes, hosts[0], "chat/ann", 3);
    // Ann's sequencer, which brought her the lines, is SIGKILLed; one
    // more line is said; another host brings it, and nothing twice.
    let victim = hosts
        .iter()
        .copied()
        .find(|i| peer_ids[*i] == joined[0])
        .expect("ann's sequencer is a host");
    nodes[victim].take().unwrap().stop();
    say(&nodes, 4, "say bob last");
    for h in hosts.iter().copied().filter(|h| *h != victim) {
        wait_lines(&nodes, h, "chat/ann", 4);
        wait_lines(&nodes, h, "chat/bob", 4);
    }
    let live = hosts.iter().copied().find(|h| *h != victim).unwrap();
    let log = json_of(&agent_cli(
        up(&nodes, live),
        &client,
        &["log", "chat/ann", "--json"],
    ));
    let from_room: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["sender"] == "chat/lobby")
        .collect();
    assert_eq!(from_room.len(), 4, "{log}");
    // The client got the four lines in order, each once, with their places.
    let out = output_within(follower, Duration::from_secs(30));
    let got: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<&str> = got
        .iter()
        .map(|p| p["message"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, wanted);
    assert!(got.iter().all(|p| p["publisher"] == "chat/lobby"));
    let places: Vec<(u64, u64)> = got
        .iter()
        .map(|p| (p["seq"].as_u64().unwrap(), p["index"].as_u64().unwrap()))
        .collect();
    assert!(places.windows(2).all(|w| w[0] < w[1]), "{places:?}");
    // One batch after the second line's place: the last two.
    let (seq, index) = places[1];
    let out = Command::new(env!("CARGO_BIN_EXE_orb"))
        .args(["--node", &at(&nodes), "topic", "read", "chat/lobby/lines"])
        .args(["--after", &format!("{seq}.{index}"), "--json"])
        .output()
        .unwrap();
    let batch = json_of(&out);
    let texts: Vec<&str> = batch["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["ann: bye", "bob: last"]);
    // A topic that is not one is a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_orb"))
        .args(["--node", &at(&nodes), "topic", "read", "chat/lobby"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A pipeline reads the topic as its source and sends each line on to
    // counter/NAME; run twice over the same lines, it counts each once.
    json_of(&agent_cli(
        up(&nodes, entry),
        &client,
        &[
            "deploy",
            example("counter").to_str().unwrap(),
            "--name",
            "counter",
            "--json",
        ],
    ));
    for run in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_orb"))
            .args(["--node", &at(&nodes), "pipeline", "run", "chat"])
            .args(["--topic", "chat/lobby/lines", "--count", "4", "--json"])
            .output()
            .unwrap();
        let report = json_of(&out);
        assert_eq!(
            (&report["per_speaker"], &report["sent"], &report["failed"]),
            (
                &serde_json::json!({"ann": 2, "bob": 2}),
                &Value::from(4),
                &Value::from(0)
            ),
            "run {run}: {report}"
        );
        for (counter, n) in [("counter/ann", 2), ("counter/bob", 2)] {
            let st = agent_state_on(up(&nodes, entry), counter);
            assert_eq!(st["state"].as_u64(), Some(n), "run {run}: {counter} {st}");
        }
    }
}

/// Whether an answer to `message` was `busy` (503 of that kind); any
/// answer but that and 200 fails the test.
fn was_busy(status: u16, body: &str, message: &str) -> bool {
    match status {
        200 => false,
        503 => {
            assert!(body.contains(r#""kind":"busy""#), "{body}");
            true
        }
        _ => panic!("{message}: {status} {body}"),
    }
}

/// Posts `message` to `agent` until it is applied, counting the answers
/// that were `busy`.
fn post_counting_busy(
    node: &NodeProc,
    agent: &str,
    message: &str,
    id: &str,
    busy: &mut u64,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body, _, _) = post(node, agent, message, id);
        if !was_busy(status, &body, message) {
            return body;
        }
        *busy += 1;
        assert!(Instant::now() < deadline, "{agent}: {message} stays busy");
    }
}

/// How many agent messages to `chat` agents `node` answered busy.
fn busy_counted(node: &NodeProc) -> u64 {
    let text = crate::metrics::scrape(&node.api);
    crate::metrics::sample(
        &text,
        r#"orb_agent_steps_total{module="chat",outcome="busy"}"#,
    )
    .unwrap_or(0.0) as u64
}

#[test]
fn a_subscriber_too_busy_to_take_a_publication_gets_it_later_in_order_and_loses_none() {
    // One message may wait for an agent on a: while clients keep chat/ann
    // busy, the lines of the room she joined find her queue full.
    let (_heavy, _root, a) = queue_of("1", "chat");
    let mut busy_seen = 0u64;
    let joined = post_counting_busy(&a, "chat/ann", "join lobby", &id(0), &mut busy_seen);
    assert_eq!(joined, "joined lobby");
    const LINES: u32 = 40;
    const CLIENTS: u32 = 6;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let hammer_busy = std::sync::atomic::AtomicU64::new(0);
    let hammered = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in 0..CLIENTS {
            let (a, stop, hammer_busy, hammered) = (&a, &stop, &hammer_busy, &hammered);
            scope.spawn(move || {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let (status, body, _, _) =
                        post(a, "chat/ann", "get", &id(1_000_000 * (t + 1) + n));
                    if was_busy(status, &body, "get") {
                        hammer_busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    hammered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        // The clients are at it before the first line is said.
        let deadline = Instant::now() + Duration::from_secs(30);
        while hammer_busy.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            assert!(
                Instant::now() < deadline,
                "the clients never found ann busy"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        for n in 1..=LINES {
            let line = format!("say lobby line {n}");
            let said = post_counting_busy(&a, "chat/lobby", &line, &id(100 + n), &mut busy_seen);
            assert_eq!(said, n.to_string());
        }
        // The clients keep ann busy until the node has counted more busy
        // answers than the clients were given and can still be in flight
        // (one a client): some delivery of a line found her queue full.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let counted = busy_counted(&a);
            let clients = busy_seen + hammer_busy.load(std::sync::atomic::Ordering::Relaxed);
            if counted > clients + CLIENTS as u64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no delivery found ann busy: {counted} busy counted, {clients} the clients'"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let wanted: Vec<String> = (1..=LINES).map(|n| format!("lobby: line {n}")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = chat_lines(&a, "chat/ann");
        if lines.len() >= wanted.len() {
            // Each line once, in the room's order.
            assert_eq!(lines, wanted);
            break;
        }
        assert_eq!(lines, wanted[..lines.len()], "a line lost or out of order");
        assert!(
            Instant::now() < deadline,
            "ann has {} of {LINES} lines",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // With the clients gone: the node counted the clients' busy answers and
    // those its own deliveries of the lines got, which came again later.
    let (counted, clients) = (busy_counted(&a), busy_seen + hammer_busy.into_inner());
    assert!(
        counted > clients,
        "{counted} busy counted, {clients} of them the clients' ({} gets)",
        hammered.into_inner()
    );
}

#[test]
fn a_host_that_is_gone_is_replaced_and_every_agent_moves_to_the_new_one_with_its_state() {
    let Lab {
        _heavy,
        root,
        client,
        names,
        mut nodes,
        hosts,
        entry,
        peer_ids,
    } = Lab::new("counter", &[]);
    let r = root.path();
    let (driver, gone, keep) = (hosts[0], hosts[1], hosts[2]);
    let agents = ["counter/x", "counter/y1", "counter/y2", "counter/y3"];
    let mut n = 0u32;
    let mut send = |nodes: &[Option<NodeProc>], agent: &str, message: &str| {
        n += 1;
        send_until_applied(up(nodes, entry), agent, message, &id(n)).body
    };
    for (a, count) in agents.iter().zip([40u32, 10, 10, 10]) {
        for _ in 0..count {
            send(&nodes, a, "inc");
        }
    }
    nodes[gone].take().unwrap().stop();

    // The move, while messages keep coming to counter/x.
    let moved = std::thread::scope(|scope| {
        let during = scope.spawn(|| {
            for k in 0..20u32 {
                let reply = send_until_applied(up(&nodes, entry), agents[0], "inc", &id(900 + k));
                assert_eq!(reply.body, (41 + k).to_string());
            }
        });
        let moved = json_of(&agent_cli(
            up(&nodes, driver),
            &client,
            &["move", "counter", "--from", &peer_ids[gone], "--json"],
        ));
        during.join().unwrap();
        moved
    });
    let to = moved["to"].as_str().expect("the new host").to_owned();
    let joined = peer_ids.iter().position(|p| *p == to).unwrap();
    assert!(!hosts.contains(&joined), "{moved}");
    assert_eq!(moved["agents"], 4, "{moved}");
    assert_eq!(moved["epoch"], 1, "{moved}");
    let now: Vec<&str> = moved["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(now.contains(&to.as_str()) && !now.contains(&peer_ids[gone].as_str()));
    // The new host holds each agent's state, fetched and checked, before
    // anything else reaches it.
    for a in &agents[1..] {
        let st = agent_state_on(up(&nodes, joined), a);
        assert_eq!(
            (st["seq"].as_u64(), st["state"].as_u64()),
            (Some(10), Some(10)),
            "{a} on the new host: {st}"
        );
    }

    // With another of the old hosts gone too, the two left (one of them
    // the new one) are a majority that has everything.
    nodes[keep].take().unwrap().stop();
    assert_eq!(send(&nodes, agents[0], "get"), "60");
    for a in &agents[1..] {
        assert_eq!(send(&nodes, a, "inc"), "11");
    }
    for a in &agents {
        let here = agent_state_on(up(&nodes, driver), a);
        let there = agent_state_on(up(&nodes, joined), a);
        assert_eq!(here["hash"], there["hash"], "{a}: {here} / {there}");
    }

    // The host that left comes back having missed the move: it learns it
    // from the hosts it asks, and passes messages on to them.
    let rejoin = up(&nodes, entry).addrs[0].clone();
    nodes[gone] = Some(node(r, names[gone], Some(&rejoin), &["--no-autoscale"]));
    let reply = send_until_applied(up(&nodes, gone), agents[1], "inc", &id(5000));
    assert_eq!(reply.body, "12");
    assert_ne!(reply.sequencer, peer_ids[gone]);
}

#[test]
fn agents_move_by_themselves_off_a_host_gone_longer_than_the_timeout() {
    let Lab {
        _heavy,
        root: _root,
        client: _,
        names,
        mut nodes,
        hosts,
        entry,
        ..
    } = Lab::new("counter", &["--agent-host-timeout-secs", "2"]);
    for n in 1..=20u32 {
        let reply = send_until_applied(up(&nodes, entry), "counter/x", "inc", &id(n));
        assert_eq!(reply.body, n.to_string());
    }
    nodes[hosts[1]].take().unwrap().stop();
    // One of the nodes that were not hosts takes the agent on: it keeps
    // counter/x with all 20 steps.
    let others: Vec<usize> = (0..names.len()).filter(|i| !hosts.contains(i)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let joined = loop {
        let found = others.iter().copied().find(|i| {
            let listed = ureq::get(&format!("{}/api/agents", up(&nodes, *i).api))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .unwrap_or(Value::Null);
            listed
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["agent"] == "counter/x" && a["seq"] == 20)
        });
        if let Some(i) = found {
            break i;
        }
        assert!(Instant::now() < deadline, "no node took counter/x on");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Another original host gone: the two left hold everything.
    nodes[hosts[2]].take().unwrap().stop();
    let reply = send_until_applied(up(&nodes, entry), "counter/x", "inc", &id(21));
    assert_eq!(reply.body, "21");
    assert!(
        [names[hosts[0]], names[joined]]
            .iter()
            .any(|n| reply.sequencer
                == up(&nodes, names.iter().position(|m| m == n).unwrap()).peer_id),
        "sequenced by {}",
        reply.sequencer
    );
}

#[test]
fn a_host_added_to_an_agent_module_holds_every_agent_and_counts_in_its_majorities() {
    let Lab {
        _heavy,
        root: _root,
        client,
        names,
        mut nodes,
        hosts,
        entry,
        peer_ids,
    } = Lab::new("counter", &[]);
    let mut n = 0;
    for (agent, count) in [("counter/x", 10), ("counter/y", 5)] {
        for _ in 0..count {
            n += 1;
            send_until_applied(up(&nodes, entry), agent, "inc", &id(n));
        }
    }
    let spare = (0..names.len())
        .find(|i| !hosts.contains(i) && *i != entry)
        .expect("a node that is neither a host nor the entry");
    let added = json_of(&agent_cli(
        up(&nodes, hosts[0]),
        &client,
        &["move", "counter", "--to", &peer_ids[spare], "--json"],
    ));
    assert_eq!(added["agents"], 2, "{added}");
    assert_eq!(added["from"], Value::Null, "{added}");
    assert_eq!(added["hosts"].as_array().map(Vec::len), Some(4), "{added}");
    for (agent, seq) in [("counter/x", 10), ("counter/y", 5)] {
        let st = agent_state_on(up(&nodes, spare), agent);
        assert_eq!(st["seq"], seq, "{agent} on the added host: {st}");
    }
    // Four hosts: three are a majority, two are not.
    nodes[hosts[1]].take().unwrap().stop();
    n += 1;
    assert_eq!(
        send_until_applied(up(&nodes, entry), "counter/x", "inc", &id(n)).body,
        "11"
    );
    assert_eq!(agent_state_on(up(&nodes, spare), "counter/x")["seq"], 11);
    nodes[hosts[2]].take().unwrap().stop();
    let reply = post_full(up(&nodes, entry), "counter/x", "inc", &id(n + 1)).expect("an answer");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("no_majority"), "{}", reply.body);
}

/// A peer speaking Orb's protocol directly (not through a node): it may
/// send an agent a message of its own, but not pass it off as another
/// agent's, as the agent's own reminder, or as a publication it follows.
#[test]
fn a_peer_cannot_pass_its_message_off_as_another_agents_or_as_a_publication() {
    use orb_net::{AgentMessage, NetConfig, PeerStore, Request, Response};
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let s = node(r, "s", None, &["--no-autoscale"]);
    let counter = example("counter");
    let deployed = json_of(&agent_cli(
        &s,
        &r.join("client"),
        &[
            "deploy",
            counter.to_str().unwrap(),
            "--name",
            "counter",
            "--json",
        ],
    ));
    assert_eq!(deployed["agent"], true, "{deployed}");
    let function = orb_functions::FunctionId::of(&std::fs::read(&counter).unwrap());
    let message = |n: u8, from_agent: Option<&str>, topic: Option<&str>| {
        Request::Agent(AgentMessage {
            agent: "counter/alice".into(),
            function,
            message_id: [n; 16],
            message: b"inc".to_vec(),
            from_agent: from_agent.map(str::to_owned),
            answer: None,
            topic: topic.map(str::to_owned),
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let answers = runtime.block_on(async {
        let db = sled::open(r.join("mallory/peers")).unwrap();
        let key = orb_net::identity::load_or_create(&r.join("mallory/identity.key")).unwrap();
        let (net, _events, event_loop) =
            orb_net::start(key, &NetConfig::default(), PeerStore::open(&db).unwrap()).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(event_loop.run());
        let peer = net.dial(s.addrs[0].parse().unwrap()).await.unwrap();
        let mut answers = Vec::new();
        for request in [
            message(1, None, None),
            message(2, Some("counter/bank"), None),
            message(3, Some("counter/alice"), None),
            message(4, Some("counter/bob"), Some("counter/bob/lines")),
            message(5, Some("counter/bob"), Some("counter/carol/lines")),
            message(6, None, Some("counter/bob/lines")),
        ] {
            answers.push(net.request(peer, &request).await.unwrap());
        }
        answers
    });
    assert!(
        matches!(answers[0], Response::Applied(_)),
        "a message of its own is applied: {:?}",
        answers[0]
    );
    let refused = |i: usize, why: &str| match &answers[i] {
        Response::Refused(said) => assert!(said.contains(why), "answer {i}: {said}"),
        other => panic!("answer {i} was not refused: {other:?}"),
    };
    refused(1, "only its hosts send its messages");
    refused(2, "only its hosts bring its reminders");
    refused(3, "only its hosts bring the publications it subscribed to");
    refused(4, "is not a topic of counter/bob");
    refused(5, "a publication without its publisher");
    // Only the first was applied.
    let (status, body, _, _) = post(&s, "counter/alice", "get", &id(7));
    assert_eq!((status, body.as_str()), (200, "1"));
}
