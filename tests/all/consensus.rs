//! The reward ledger on a real network: six `orb node` processes on
//! loopback with one genesis mine committee claims, sign receipts for the
//! calls they run, decide blocks by Snowball and commit them to sled; a
//! node killed with SIGKILL again and again keeps every block it
//! committed and catches up.

use std::path::Path;
use std::time::{Duration, Instant};

use orb_ledger::{AuditOptions, Chain, Genesis, PublicKey, SledStore};
use serde_json::Value;

use crate::example;
use crate::network::NodeProc;

const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";
const FAUCET: u64 = 1_000_000_000_000;

/// The node's `GET /api/ledger`.
pub(crate) fn ledger(node: &NodeProc) -> Value {
    let url = format!("{}/api/ledger", node.api);
    let body = ureq::get(&url)
        .call()
        .expect("GET /api/ledger")
        .body_mut()
        .read_to_string()
        .expect("body");
    serde_json::from_str(&body).expect("json")
}

/// Waits until `check` holds for every node's ledger.
pub(crate) fn wait_all(
    nodes: &[&NodeProc],
    what: &str,
    secs: u64,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let now: Vec<Value> = nodes.iter().map(|n| ledger(n)).collect();
        if check(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached in {secs} s; ledgers {now:#?}; log of the first:\n{}",
            nodes[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn key_of(dir: &Path) -> PublicKey {
    let key = orb_net::identity::load_or_create(&dir.join("identity.key")).expect("identity");
    let peer = key.public().to_peer_id();
    PublicKey(orb_net::identity::ed25519_public(&peer).expect("ed25519"))
}

pub(crate) fn height(v: &Value) -> u64 {
    v["height"].as_u64().unwrap_or(0)
}

pub(crate) fn audit_clean(dir: &Path) -> u64 {
    let store = SledStore::open(&dir.join("ledger")).expect("open the ledger");
    let report = orb_ledger::audit(
        &store,
        AuditOptions {
            level: 4,
            ..Default::default()
        },
        &mut |_| {},
    )
    .expect("readable");
    assert_eq!(report.finding, None, "audit of {}", dir.display());
    report.head
}

/// `n` nodes with a ledger on one genesis (Snowball `params`, node 0's key
/// funded), node 0 a supernode the others bootstrap from, each started with
/// `--block-interval-ms interval` and no sampled verification, node `i`
/// also with the flags `extra[i]` (when given); returns once the committee
/// is full, with the genesis and node 0's address.
pub(crate) fn ledger_network(
    root: &Path,
    n: usize,
    name: &str,
    params: orb_ledger::Params,
    interval: &str,
    extra: &[&[&str]],
) -> (Vec<NodeProc>, Genesis, String) {
    let dirs: Vec<_> = (0..n).map(|i| root.join(format!("n{i}"))).collect();
    let payer = key_of(&dirs[0]);
    let mut genesis = Genesis::local(name, vec![(payer, FAUCET)]);
    genesis.snowball = params;
    let genesis_file = root.join("genesis.json");
    std::fs::write(
        &genesis_file,
        serde_json::to_string(&genesis).expect("genesis json"),
    )
    .expect("write the genesis");
    let g = genesis_file.to_str().expect("a utf-8 path");
    let flags = [
        "--genesis",
        g,
        "--block-interval-ms",
        interval,
        "--verify-fraction",
        "0",
    ];
    let own = |i: usize| extra.get(i).copied().unwrap_or_default();
    let mut first = vec!["--supernode"];
    first.extend(flags);
    first.extend(own(0));
    let n0 = NodeProc::start(&dirs[0], LOOPBACK, &first, None);
    let boot = n0.addrs[0].clone();
    let mut nodes = vec![n0];
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let mut rest = vec!["--bootstrap", boot.as_str()];
        rest.extend(flags);
        rest.extend(own(i));
        nodes.push(NodeProc::start(dir, LOOPBACK, &rest, None));
    }
    wait_committee(&nodes.iter().collect::<Vec<_>>(), 60);
    (nodes, genesis, boot)
}

/// Waits up to `secs` until every node's ledger lists all of them in the
/// committee.
pub(crate) fn wait_committee(nodes: &[&NodeProc], secs: u64) {
    let n = nodes.len();
    wait_all(nodes, "a full committee", secs, |ls| {
        ls.iter()
            .all(|l| l["committee"].as_array().map_or(0, Vec::len) == n)
    });
}

/// Deploys the example `echo` through `node` with `replicas` (and `extra`
/// flags of `orb deploy`).
pub(crate) fn deploy_echo(node: &NodeProc, replicas: &str, extra: &[&str]) {
    let module = example("echo");
    let mut args = vec![
        "deploy",
        module.to_str().expect("a utf-8 path"),
        "--name",
        "echo",
        "--replicas",
        replicas,
    ];
    args.extend_from_slice(extra);
    let out = node.client(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn six_nodes_finalize_reward_blocks_and_a_killed_node_keeps_what_it_committed() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..6).map(|i| root.path().join(format!("n{i}"))).collect();
    // No sampled verification: the test counts what n0 paid for each call.
    let (mut nodes, genesis, boot) = ledger_network(
        root.path(),
        6,
        "consensus-test",
        orb_ledger::Params::new(5, 4, 4, 4).unwrap(),
        "200",
        &[],
    );
    // Deploy on n0 with three replicas; n0 pays for every call.
    deploy_echo(&nodes[0], "3", &[]);
    // A node without credits cannot call.
    let broke = nodes[3].invoke("echo", "no money");
    assert!(!broke.status.success());
    assert!(
        String::from_utf8_lossy(&broke.stderr).contains("no credits"),
        "{}",
        String::from_utf8_lossy(&broke.stderr)
    );

    let mut paid_to_others = 0u64;
    let mut calls = 0;
    let call = |nodes: &[NodeProc], paid: &mut u64, calls: &mut u64| {
        let out = nodes[0].invoke("echo", "reward me");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["executor"] != nodes[0].peer_id.as_str() {
            *paid += v["fuel"].as_u64().unwrap();
        }
        *calls += 1;
    };
    for _ in 0..20 {
        call(&nodes, &mut paid_to_others, &mut calls);
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    // The live balances (the differential reduce) follow the committed
    // height within a step of the consensus dataflow: every node derives
    // the same ones once all are at one height.
    let ls = wait_all(&all, "every receipt finalized everywhere", 90, |ls| {
        let h = height(&ls[0]);
        h >= 1
            && ls
                .iter()
                .all(|l| height(l) == h && l["mempool"] == 0 && l["balances"] == ls[0]["balances"])
    });
    // They add up: the faucet plus one reward per block.
    let h = height(&ls[0]);
    let total: i64 = ls[0]["balances"]
        .as_object()
        .unwrap()
        .values()
        .map(|b| b.as_i64().unwrap())
        .sum();
    assert_eq!(total as u64, FAUCET + h * genesis.block_reward);
    // n0 paid the fuel of every call others ran; whatever it earned as a
    // proposer is a multiple of the block reward (1000).
    assert_eq!(
        ls[0]["balances"][nodes[0].peer_id.as_str()]
            .as_i64()
            .unwrap() as u64
            % 1000,
        (FAUCET - paid_to_others) % 1000
    );
    assert!(!ls[0]["finality_us"].as_array().unwrap().is_empty());

    // Crash: SIGKILL node 5 three times while calls go on; each restart
    // keeps every block it had committed and catches up.
    for round in 0..3 {
        let before = height(&ledger(&nodes[5]));
        let victim = nodes.pop().unwrap();
        let dir = victim.stop();
        for _ in 0..5 {
            call(&nodes, &mut paid_to_others, &mut calls);
        }
        let back = NodeProc::start(
            &dir,
            LOOPBACK,
            &["--bootstrap", boot.as_str(), "--block-interval-ms", "200"],
            None,
        );
        let after = height(&ledger(&back));
        assert!(
            after >= before,
            "round {round}: committed height {before} before the kill, {after} after"
        );
        nodes.push(back);
        let all: Vec<&NodeProc> = nodes.iter().collect();
        wait_all(&all, "the restarted node caught up", 90, |ls| {
            let h = height(&ls[0]);
            ls.iter()
                .all(|l| height(l) == h && l["mempool"] == 0 && l["balances"] == ls[0]["balances"])
        });
    }
    let ls: Vec<Value> = nodes.iter().map(ledger).collect();
    let live = ls[0]["balances"].clone();

    // Offline: every chain audits clean at level 4 and the folded balances
    // equal the live ones.
    let heights: Vec<u64> = nodes.drain(..).map(|n| audit_clean(&n.stop())).collect();
    assert!(heights.iter().all(|h| *h == heights[0]), "{heights:?}");
    let chain = Chain::open_dir(&dirs[0].join("ledger"), None).unwrap();
    for (key, balance) in chain.state().balances() {
        let peer = orb_net::identity::peer_of(key.0).unwrap().to_string();
        assert_eq!(
            live[peer.as_str()].as_i64().unwrap() as u128,
            balance,
            "{peer}"
        );
    }
    assert_eq!(calls, 35);
}

#[test]
fn pipelined_proposals_never_commit_out_of_order_on_a_real_network() {
    // Four nodes, no block interval, calls without pause: the first in
    // the lottery proposes the next height while the current one is being
    // decided. Every chain is then one sequence of heights (the chain
    // refuses any other append), all alike, auditing clean at level 4.
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, _, _) = ledger_network(
        root.path(),
        4,
        "pipelining-test",
        orb_ledger::Params::new(4, 3, 3, 4).unwrap(),
        "0",
        &[],
    );
    deploy_echo(&nodes[0], "2", &[]);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    let url = format!("{}/fn/echo", nodes[0].api);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let answer = agent.post(&url).send(&b"pipeline"[..]).expect("POST");
                    assert_eq!(answer.status(), 200);
                }
            });
        }
        wait_all(&all, "a proposal made ahead of its parent", 60, |ls| {
            ls.iter().any(|l| l["pipelined"].as_u64().unwrap_or(0) > 0)
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let ls = wait_all(&all, "every settlement finalized everywhere", 90, |ls| {
        let h = height(&ls[0]);
        h >= 2 && ls.iter().all(|l| height(l) == h && l["mempool"] == 0)
    });
    let head = ls[0]["head"].clone();
    assert!(ls.iter().all(|l| l["head"] == head), "{ls:#?}");
    drop(all);
    let heights: Vec<u64> = nodes.drain(..).map(|n| audit_clean(&n.stop())).collect();
    assert!(heights.iter().all(|h| *h == heights[0]), "{heights:?}");
}
