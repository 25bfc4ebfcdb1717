//! Checkpoints, consistency and inclusion proofs, checked by the binary
//! (`verify-proof` with no data dir at all).

use std::path::Path;

use orb_ledger::{Checkpoint, Digest, InclusionProof, Keypair};

use super::{Node, ok};
use crate::{assert_fails, stdout};

#[test]
fn a_checkpoint_is_extended_by_growth_and_refuses_a_rewrite() {
    let node = Node::new(8, 2);
    let file = node.dir.path().join("cp.json");
    let out = node.orb(&["ledger", "checkpoint", "--out", file.to_str().unwrap()]);
    ok(&out);
    let cp: Checkpoint = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!((cp.height, cp.signer), (8, node.node_key()));
    assert!(cp.verify());

    node.grow(3);
    let since = ["ledger", "consistency", "--since", file.to_str().unwrap()];
    let out = node.orb(&since);
    ok(&out);
    assert!(
        stdout(&out).starts_with("chain at height 11 extends checkpoint at height 8 ("),
        "{}",
        stdout(&out)
    );

    // Checkpoints of the same chain and height, signed by another key:
    // block 5 rewritten (the head is still ours: the history root differs),
    // then only the head rewritten, then a valid one altered after signing.
    let chain = node.chain();
    let mut hashes = chain.block_hashes().unwrap();
    drop(chain);
    hashes.truncate(8);
    let other = Keypair::generate();
    let write = |cp: &Checkpoint| std::fs::write(&file, serde_json::to_vec(cp).unwrap()).unwrap();
    let mut rewritten = hashes.clone();
    rewritten[4].0[0] ^= 1;
    write(&Checkpoint::new(&other, node.committee.chain(), &rewritten).unwrap());
    assert_fails(
        &node.orb(&since),
        1,
        "does not extend the checkpoint at height 8",
    );
    let mut rewritten = hashes.clone();
    rewritten[7].0[0] ^= 1;
    write(&Checkpoint::new(&other, node.committee.chain(), &rewritten).unwrap());
    assert_fails(&node.orb(&since), 1, "block 8 of this chain is");
    let mut altered = Checkpoint::new(&other, node.committee.chain(), &hashes).unwrap();
    ok(&{
        write(&altered);
        node.orb(&since)
    });
    altered.head = Digest([7; 32]);
    write(&altered);
    assert_fails(&node.orb(&since), 1, "bad signature");
    // Another chain's checkpoint, and a file that is no checkpoint.
    write(&Checkpoint::new(&other, Digest([1; 32]), &hashes).unwrap());
    assert_fails(&node.orb(&since), 1, "for chain");
    write(&Checkpoint::new(&other, node.committee.chain(), &[Digest([2; 32]); 12]).unwrap());
    assert_fails(&node.orb(&since), 1, "only reaches 11");
    std::fs::write(&file, b"{}").unwrap();
    assert_fails(&node.orb(&since), 2, "not a checkpoint");
}

#[test]
fn a_proof_verifies_with_no_node_and_no_data_dir() {
    let node = Node::new(9, 4);
    let id = node.chain().block(7).unwrap().unwrap().settlements[2]
        .body
        .receipts[0]
        .id();
    let proof_file = node.dir.path().join("proof.json");
    let out = node.orb(&[
        "ledger",
        "prove",
        &id.to_hex(),
        "--out",
        proof_file.to_str().unwrap(),
    ]);
    ok(&out);

    let elsewhere = tempfile::tempdir().unwrap();
    let no_data = elsewhere.path().join("does-not-exist");
    let verify = |file: &Path| {
        crate::orb(&no_data)
            .current_dir(elsewhere.path())
            .args(["ledger", "verify-proof"])
            .arg(file)
            .output()
            .unwrap()
    };
    let out = verify(&proof_file);
    ok(&out);
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("valid: receipt {id} is in the chain")),
        "{text}"
    );
    let signer = orb_net::identity::peer_of(node.node_key().0)
        .unwrap()
        .to_string();
    assert!(
        text.contains("block        7 (settlement 2 of 4, receipt 0 of 1)"),
        "{text}"
    );
    assert!(
        text.contains("height 9 of chain") && text.contains(&signer),
        "{text}"
    );
    assert!(!no_data.exists(), "verify-proof touched the data dir");

    let proof: InclusionProof =
        serde_json::from_slice(&std::fs::read(&proof_file).unwrap()).unwrap();
    let bad_file = elsewhere.path().join("bad.json");
    let mut bad = proof.clone();
    bad.settlement.body.receipts[0].body.fuel += 1;
    std::fs::write(&bad_file, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert_fails(&verify(&bad_file), 1, "executor signature is bad");
    let mut bad = proof;
    bad.history_path[0].0[0] ^= 1;
    std::fs::write(&bad_file, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert_fails(&verify(&bad_file), 1, "not in the checkpoint's history");
    std::fs::write(&bad_file, b"not json").unwrap();
    assert_fails(&verify(&bad_file), 2, "not an inclusion proof");
    assert_fails(
        &verify(&elsewhere.path().join("missing.json")),
        2,
        "cannot read",
    );

    let unknown = Digest([9; 32]).to_hex();
    assert_fails(
        &node.orb(&["ledger", "prove", &unknown]),
        2,
        &format!("receipt {unknown} is not in the chain"),
    );
    assert_fails(
        &node.orb(&["ledger", "prove", "abc"]),
        2,
        "not a receipt id",
    );
}
