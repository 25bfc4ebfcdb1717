//! Stores that are not a chain's problem: missing, without genesis,
//! corrupt, cut short by sled's recovery, held by a running node (exit 2,
//! never a panic).

use std::path::Path;

use super::{Node, ok, open_raw};
use crate::{assert_fails, json, run_orb, stdout};

/// The data dir's ledger, broken in some way that is not a chain's.
fn assert_unreadable(data_dir: &Path, needle: &str) {
    for args in [
        &["ledger", "audit"][..],
        &["ledger", "balances"],
        &["ledger", "show"],
        &["ledger", "checkpoint"],
    ] {
        let out = run_orb(data_dir, args, None);
        assert_fails(&out, 2, needle);
    }
}

#[test]
fn a_corrupt_store_is_exit_2_without_a_panic() {
    // Garbage through sled's log: it refuses the log or recovers an empty
    // store, with no genesis; either way exit 2.
    let node = Node::new(4, 2);
    let db = node.ledger().join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().skip(64).step_by(7) {
        *b = 0xa5;
    }
    std::fs::write(&db, &bytes).unwrap();
    assert_unreadable(node.dir.path(), "ledger in");

    let node = Node::new(3, 1);
    std::fs::write(node.ledger().join("db"), vec![0xffu8; 4096]).unwrap();
    assert_unreadable(node.dir.path(), "ledger in");

    // A data dir with no ledger, and a store with no genesis.
    let empty = tempfile::tempdir().unwrap();
    assert_unreadable(empty.path(), "no ledger in");
    assert!(!empty.path().join("ledger").exists(), "nothing was created");
    drop(open_raw(&empty.path().join("ledger")));
    assert_unreadable(empty.path(), "has no genesis");

    // sled rewrites a garbage `conf` with its defaults (ours): the chain
    // itself is intact.
    let node = Node::new(3, 1);
    std::fs::write(node.ledger().join("conf"), b"garbage\n").unwrap();
    let out = node.orb(&["ledger", "audit"]);
    ok(&out);
    assert!(
        stdout(&out).contains("clean — 3 blocks"),
        "{}",
        stdout(&out)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_store_cut_short_by_recovery_is_caught_by_a_checkpoint() {
    // A log damaged mid-way is cut back to its last intact write when sled
    // opens it, as after a crash: the audit then sees a shorter, valid
    // chain. An earlier checkpoint is what shows blocks were lost.
    let node = Node::new(8, 3);
    let file = node.dir.path().join("cp.json");
    ok(&node.orb(&["ledger", "checkpoint", "--out", file.to_str().unwrap()]));
    // Without a snapshot (sled writes one now and then) nothing but the
    // log says how far it went.
    for entry in std::fs::read_dir(node.ledger()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snap.")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let db = node.ledger().join("db");
    let bytes = std::fs::read(&db).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap();
    std::fs::write(&db, &bytes[..end * 2 / 3]).unwrap();
    let out = node.orb(&["ledger", "audit", "--json"]);
    ok(&out);
    let head = json(&out)["head"].as_u64().unwrap();
    assert!((1..8).contains(&head), "cut back to {head} blocks");
    let out = node.orb(&["ledger", "consistency", "--since", file.to_str().unwrap()]);
    assert_fails(&out, 1, &format!("this ledger only reaches {head}"));
}

#[test]
fn a_store_held_by_a_node_is_named() {
    let node = Node::new(2, 1);
    let held = node.chain();
    let out = node.orb(&["ledger", "balances"]);
    assert_fails(&out, 2, "is open by a running node; stop it");
    drop(held);
}
