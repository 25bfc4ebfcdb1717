//! The audit over the binary: clean at every level, and each kind of
//! tampering found at its height and level (exit 1).

use std::process::Output;

use orb_ledger::{Block, Keypair, StoredBlock, encode};

use super::{Node, ok, rewrite};
use crate::{assert_fails, json, stdout};

/// An `orb ledger audit --level LEVEL --json`.
fn audit(node: &Node, level: &str) -> Output {
    node.orb(&["ledger", "audit", "--level", level, "--json"])
}

/// An audit that fails: exit 1, the finding in the JSON and on stderr.
fn assert_mismatch(out: &Output, height: u64, level: u64, reason: &str) {
    assert_fails(
        out,
        1,
        &format!("MISMATCH at height {height} (level {level})"),
    );
    let report = json(out);
    assert_eq!(report["clean"], false);
    assert_eq!(report["finding"]["height"], height, "{report}");
    assert_eq!(report["finding"]["level"], level, "{report}");
    let why = report["finding"]["reason"].as_str().unwrap_or_default();
    assert!(why.contains(reason), "{why} should contain {reason}");
}

#[test]
fn audit_is_clean_at_every_level() {
    let node = Node::new(8, 5);
    for level in 0..=4u64 {
        let out = audit(&node, &level.to_string());
        ok(&out);
        let r = json(&out);
        assert_eq!(r["clean"], true, "{r}");
        assert_eq!(r["level"], level);
        assert_eq!((r["from"].as_u64(), r["to"].as_u64()), (Some(1), Some(8)));
        assert_eq!(
            (r["blocks"].as_u64(), r["receipts"].as_u64()),
            (Some(8), Some(40))
        );
        let votes = if level >= 2 { 8 * 6 * 4 } else { 0 };
        assert_eq!(r["votes"], votes, "β 6 polls of α 4 votes per block");
        assert!(r["receipts_per_second"].as_f64().unwrap() > 0.0);
        assert_eq!(r["balances"].is_array(), level >= 3);
    }
    let out = node.orb(&["ledger", "audit"]);
    ok(&out);
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "audit level 3 of blocks 1..=8: clean — 8 blocks, 40 receipts, 192 votes in "
        ),
        "{text}"
    );
    assert!(text.contains("receipts/s"), "{text}");
    assert!(out.stderr.is_empty(), "no progress bar off a terminal");
    let out = node.orb(&[
        "ledger", "audit", "--from", "3", "--to", "5", "--level", "2",
    ]);
    ok(&out);
    assert!(stdout(&out).contains("of blocks 3..=5: clean — 3 blocks, 15 receipts"));
    assert_fails(&node.orb(&["ledger", "audit", "--level", "5"]), 2, "5");
    assert_fails(
        &node.orb(&["ledger", "audit", "--from", "9"]),
        2,
        "above the head",
    );
}

#[test]
fn a_flipped_byte_is_found_at_its_height() {
    let node = Node::new(6, 3);
    rewrite(&node.ledger(), "blocks", 4, |mut b| {
        let n = b.len();
        b[n / 2] ^= 0x01;
        Some(b)
    });
    let out = audit(&node, "3");
    assert_fails(&out, 1, "MISMATCH at height 4");
    assert_eq!(json(&out)["finding"]["height"], 4);
}

#[test]
fn a_forged_receipt_signature_is_found_at_level_2() {
    let node = Node::new(5, 3);
    let c = &node.committee;
    let mallory = Keypair::generate();
    // Mallory pays herself more for receipt 0 of block 5, signs it with
    // her own key and re-proposes the block with a correct Merkle root.
    rewrite(&node.ledger(), "blocks", 5, |bytes| {
        let mut stored = StoredBlock::decode(&bytes).expect("stored block");
        let b = &stored.block;
        let mut settlements = b.settlements.clone();
        let mut body = settlements[0].body.receipts[0].body.clone();
        body.fuel *= 100;
        settlements[0].body.receipts[0] = body.sign(&mallory);
        let proposer = c
            .keys
            .iter()
            .position(|k| k.public() == b.header.proposer.key);
        let mut forged = Block::propose(
            &c.keys[proposer.expect("a member proposed it")],
            b.header.chain,
            5,
            b.header.prev,
            b.header.proposer,
            settlements,
        );
        c.finalize(&mut forged);
        stored.block = forged;
        Some(encode(&stored))
    });
    ok(&audit(&node, "1"));
    assert_mismatch(&audit(&node, "2"), 5, 2, "in settlement 0");
    assert_mismatch(&audit(&node, "3"), 5, 2, "bad executor signature");
}

#[test]
fn a_changed_balance_is_found_at_level_3() {
    let node = Node::new(5, 3);
    let executor = node.committee.keys[1].public();
    rewrite(&node.ledger(), "blocks", 3, |bytes| {
        let mut stored = StoredBlock::decode(&bytes).expect("stored block");
        *stored.effects.0.get_mut(&executor).expect("paid") += 5;
        Some(encode(&stored))
    });
    ok(&audit(&node, "2"));
    assert_mismatch(&audit(&node, "3"), 3, 3, &executor.to_hex());
    let out = node.orb(&["ledger", "audit"]);
    assert_fails(&out, 1, "recomputed from the receipts");
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
}

#[test]
fn a_dropped_block_is_found() {
    let node = Node::new(5, 1);
    rewrite(&node.ledger(), "blocks", 3, |_| None);
    assert_mismatch(&audit(&node, "0"), 3, 0, "block 3 is missing");
    assert_fails(&node.orb(&["ledger", "show", "3"]), 2, "missing");
}
