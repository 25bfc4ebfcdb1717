//! Hostile peers on a real network: nodes started with `--byzantine` modes
//! flood announcements, send ones that do not decode, send bad frames on
//! the request streams, never answer, or answer late. Honest nodes must
//! detect each, bound it (rate limits, rerouting, bans), say it once per
//! peer in their logs, and keep answering calls.

use std::time::{Duration, Instant};

use serde_json::Value;

use std::collections::HashSet;
use std::path::Path;

use orb_ledger::{Chain, Params, PublicKey};

use crate::consensus::{audit_clean, deploy_echo, height, key_of, ledger_network, wait_all};
use crate::json;
use crate::network::NodeProc;
use crate::replication::{deploy_on, node, wait_providers};

/// `node`'s view of `peer` in `orb peers --json`.
fn peer_seen(node: &NodeProc, peer: &str) -> Value {
    let peers = json(&node.client(&["peers", "--json"]));
    peers
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["peer_id"] == peer)
        .cloned()
        .unwrap_or(Value::Null)
}

fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not in {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Lines of `log` about `peer` that contain `what`.
fn said(log: &str, peer: &str, what: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(peer) && l.contains(what))
        .count()
}

/// The lines saying `peer` misbehaved in this way (once per kind).
fn misbehaved(log: &str, peer: &str, kind: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("peer misbehaved") && l.contains(peer) && l.contains(kind))
        .count()
}

pub(crate) fn echo_through(node: &NodeProc, input: &str) -> Value {
    let out = node.invoke("echo", input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["output"], input, "{v}");
    v
}

#[test]
fn peers_that_flood_or_send_garbage_are_banned_and_calls_go_on() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let publisher = r.join("publisher");
    let s = node(r, "s", None, &["--no-autoscale"]);
    let boot = s.addrs[0].clone();
    let h = node(r, "h", Some(&boot), &["--no-autoscale"]);
    deploy_on(&h, "echo", &publisher);
    wait_providers(&[&s], "echo", 1);
    // g floods announcements and sends ones that do not decode.
    let g = node(
        r,
        "g",
        Some(&boot),
        &[
            "--no-autoscale",
            "--byzantine",
            "flood-gossip,malformed-gossip",
        ],
    );
    // s, g's way in, bans it; what s rejects it does not forward, so h
    // hears g only if g reached it directly (then h bans it too).
    wait_for("s bans g", 60, || {
        peer_seen(&s, &g.peer_id)["banned"] == true
    });
    // f sends bad frames instead of requests: its calls to h never
    // arrive as calls, and h bans it.
    let f = node(
        r,
        "f",
        Some(&boot),
        &["--no-autoscale", "--byzantine", "bad-frames"],
    );
    wait_providers(&[&f], "echo", 1);
    wait_for("h bans f", 60, || {
        let _ = f.invoke("echo", "from a bad framer");
        peer_seen(&h, &f.peer_id)["banned"] == true
    });
    // Calls through the honest nodes go on.
    for i in 0..5 {
        let v = echo_through(&s, &format!("still served {i}"));
        assert_eq!(v["executor"], h.peer_id.as_str(), "{v}");
    }
    // Each said once per peer and kind in the log, not per message.
    let log = s.log();
    assert_eq!(said(&log, &g.peer_id, "peer banned"), 1, "{log}");
    for (log, who) in [(s.log(), "s"), (h.log(), "h")] {
        assert!(said(&log, &g.peer_id, "peer banned") <= 1, "{who}:\n{log}");
        for kind in [
            "announcements over the rate limit",
            "malformed announcement",
        ] {
            assert!(
                misbehaved(&log, &g.peer_id, kind) <= 1,
                "{who}: {kind}:\n{log}"
            );
        }
    }
    let log = h.log();
    assert_eq!(said(&log, &f.peer_id, "peer banned"), 1, "{log}");
    for kind in [
        "request-stream frame over the size limit",
        "malformed request-stream frame",
    ] {
        assert!(misbehaved(&log, &f.peer_id, kind) <= 1, "{kind}:\n{log}");
    }
}

#[test]
fn silent_and_slow_providers_are_rerouted_around_and_scored() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let publisher = r.join("publisher");
    // The entry node leaves a provider that offended out for a minute.
    let s = node(
        r,
        "s",
        None,
        &["--no-autoscale", "--busy-window-ms", "60000"],
    );
    let boot = s.addrs[0].clone();
    let h = node(r, "h", Some(&boot), &["--no-autoscale"]);
    let q = node(
        r,
        "q",
        Some(&boot),
        &["--no-autoscale", "--byzantine", "silent"],
    );
    let w = node(
        r,
        "w",
        Some(&boot),
        &["--no-autoscale", "--byzantine", "slow"],
    );
    for host in [&h, &q, &w] {
        deploy_on(host, "echo", &publisher);
    }
    wait_providers(&[&s], "echo", 3);
    // Every call is answered, by h in the end; q's silence costs one call
    // a timeout, w's slowness one call three seconds.
    let scored = |peer: &str| peer_seen(&s, peer)["score"].as_f64().unwrap_or(0.0) > 0.0;
    let mut calls = 0;
    while !(scored(&q.peer_id) && scored(&w.peer_id)) {
        assert!(calls < 12, "q and w not both tried in {calls} calls");
        echo_through(&s, &format!("call {calls}"));
        calls += 1;
    }
    // Both are left out now: the next calls go to h, first try.
    for i in 0..3 {
        let v = echo_through(&s, &format!("after {i}"));
        assert_eq!(v["executor"], h.peer_id.as_str(), "{v}");
    }
    let log = s.log();
    assert_eq!(
        said(&log, &q.peer_id, "request left unanswered"),
        1,
        "{log}"
    );
    assert_eq!(
        misbehaved(&log, &w.peer_id, "answer far slower than its work"),
        1,
        "{log}"
    );
    // Scored, not banned: an honest node that was slow once is not cut off.
    for p in [&q.peer_id, &w.peer_id] {
        assert_eq!(peer_seen(&s, p)["banned"], false);
    }
}

/// Every executor a receipt on the (stopped) node's chain in `dir` pays.
fn executors_paid(dir: &Path) -> HashSet<PublicKey> {
    let chain = Chain::open_dir(&dir.join("ledger"), None).expect("open the chain");
    (1..=chain.height())
        .filter_map(|h| chain.block(h).expect("readable"))
        .flat_map(|b| {
            b.receipts()
                .map(|(_, r)| r.body.executor)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits until `nodes` agree on one height of at least `at_least`, with
/// nothing left in their mempools.
pub(crate) fn wait_agreed(nodes: &[&NodeProc], at_least: u64) {
    wait_all(nodes, "the honest nodes at one height", 90, |ls| {
        let h = height(&ls[0]);
        h >= at_least && ls.iter().all(|l| height(l) == h && l["mempool"] == 0)
    });
}

#[test]
fn voters_that_equivocate_or_vote_for_no_block_are_excluded_banned_and_blocks_go_on() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    // n4 answers each query with two votes naming different blocks; n5
    // with a vote for a block that does not exist.
    let (nodes, _, _) = ledger_network(
        root.path(),
        6,
        "byzantine-voters",
        Params::new(4, 3, 3, 3).unwrap(),
        "200",
        &[
            &[],
            &[],
            &[],
            &[],
            &["--byzantine", "equivocate"],
            &["--byzantine", "unknown-votes"],
        ],
    );
    let (honest, liars) = nodes.split_at(4);
    let (e, u) = (&liars[0], &liars[1]);
    let honest: Vec<&NodeProc> = honest.iter().collect();
    deploy_echo(honest[0], "2", &[]);
    // Calls (n0 pays) go on (each settles, so each height has something to decide)
    // until the equivocator is excluded everywhere and someone banned the
    // voter for nothing.
    let equivocator = key_of(&e.dir).to_hex();
    let excluded_everywhere = |honest: &[&NodeProc]| {
        honest.iter().all(|n| {
            crate::consensus::ledger(n)["equivocators"]
                .as_array()
                .is_some_and(|v| v.iter().any(|k| k == equivocator.as_str()))
        })
    };
    let banned_somewhere = |peer: &str| honest.iter().any(|n| peer_seen(n, peer)["banned"] == true);
    let mut calls = 0;
    wait_for("e excluded everywhere, e and u banned", 90, || {
        echo_through(honest[0], &format!("call {calls}"));
        calls += 1;
        excluded_everywhere(&honest) && banned_somewhere(&e.peer_id) && banned_somewhere(&u.peer_id)
    });
    // Blocks go on among the honest nodes, on one chain.
    for i in 0..5 {
        echo_through(honest[0], &format!("after {i}"));
    }
    wait_agreed(&honest, 2);
    // Said once per peer and kind, not per vote.
    for n in &honest {
        let log = n.log();
        assert!(
            misbehaved(&log, &e.peer_id, "two conflicting votes for one query") <= 1,
            "{log}"
        );
        assert!(
            misbehaved(&log, &u.peer_id, "vote for a block it could not produce") <= 1,
            "{log}"
        );
    }
    let heads: Vec<u64> = nodes
        .into_iter()
        .take(4)
        .map(|n| audit_clean(&n.stop()))
        .collect();
    assert!(heads.iter().all(|h| *h == heads[0]), "{heads:?}");
}

#[test]
fn forged_claims_are_refused_at_the_door_and_a_wrong_receipt_earns_nothing() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    // n3 computes right but signs receipts for another fuel.
    let (mut nodes, _, boot) = ledger_network(
        root.path(),
        4,
        "byzantine-receipts",
        Params::new(4, 3, 3, 3).unwrap(),
        "200",
        &[&[], &[], &[], &["--byzantine", "wrong-receipt"]],
    );
    let wrong = key_of(&nodes[3].dir);
    // Hosted on all four: n3's receipt is refused, the other three agree.
    deploy_echo(&nodes[0], "4", &[]);
    // f publishes ten claims a second without the work they claim.
    let genesis = root.path().join("genesis.json");
    let f = NodeProc::start(
        &root.path().join("f"),
        "/ip4/127.0.0.1/tcp/0",
        &[
            "--bootstrap",
            boot.as_str(),
            "--genesis",
            genesis.to_str().expect("a utf-8 path"),
            "--byzantine",
            "forged-claims",
        ],
        None,
    );
    wait_for("n0 bans f", 60, || {
        peer_seen(&nodes[0], &f.peer_id)["banned"] == true
    });
    // Calls run on the node's default of one replica unless asked: each
    // of these asks for all four, so n3 runs the first of them at least.
    wait_providers(&[&nodes[0]], "echo", 4);
    for i in 0..12 {
        let input = format!("call {i}");
        let out = nodes[0].client(&[
            "invoke",
            "echo",
            "--input",
            &input,
            "--json",
            "--replicas",
            "4",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json(&out)["output"], input.as_str());
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_agreed(&all, 2);
    // Nothing forged got in: the committee is the nodes' own keys (f's
    // honest claim may be in it too).
    let ours: HashSet<String> = nodes
        .iter()
        .chain([&f])
        .map(|n| key_of(&n.dir).to_hex())
        .collect();
    for n in &all {
        let l = crate::consensus::ledger(n);
        let committee = l["committee"].as_array().expect("a committee");
        assert!(committee.len() >= 4, "{l}");
        assert!(
            committee
                .iter()
                .all(|k| k.as_str().is_some_and(|k| ours.contains(k))),
            "{l}"
        );
    }
    let log = nodes[0].log();
    assert_eq!(
        misbehaved(&log, &f.peer_id, "forged claim or evidence"),
        1,
        "{log}"
    );
    // n3 ran calls for n0, which refused its receipts (and scored it).
    let seen = peer_seen(&nodes[0], &nodes[3].peer_id);
    assert!(seen["score"].as_f64().unwrap_or(0.0) > 0.0, "{seen}");
    drop(f);
    // Every chain audits clean, and no receipt of n3 is paid on any.
    let dirs: Vec<_> = nodes.drain(..).map(NodeProc::stop).collect();
    for dir in &dirs {
        audit_clean(dir);
        let paid = executors_paid(dir);
        assert!(!paid.contains(&wrong), "{}: n3 was paid", dir.display());
        assert!(paid.len() >= 2, "{}: {paid:?}", dir.display());
    }
}
