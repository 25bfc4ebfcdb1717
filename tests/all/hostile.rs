//! Hostile peers on a real network: nodes started with `--byzantine` modes
//! flood announcements, send ones that do not decode, send bad frames on
//! the request streams, never answer, or answer late. Honest nodes must
//! detect each, bound it (rate limits, rerouting, bans), say it once per
//! peer in their logs, and keep answering calls.

use std::time::{Duration, Instant};

use serde_json::Value;

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

fn echo_through(node: &NodeProc, input: &str) -> Value {
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
