//! Reading the chain: balances, blocks, export, and writing a genesis.

use orb_ledger::{Genesis, Keypair, PublicKey};
use serde_json::Value;

use super::{FAUCET, MEMBERS, Node, ok};
use crate::{assert_fails, json, run_orb, stdout};

#[test]
fn balances_are_what_the_receipts_paid() {
    let (blocks, per_block) = (7u64, 4u64);
    let node = Node::new(blocks, per_block);
    let g = &node.committee.genesis;
    let fuel = |i: u64| u128::from(100 + i) * u128::from(g.price);
    let spent: u128 = blocks as u128 * (0..per_block).map(fuel).sum::<u128>();
    // Member m runs receipts i ≡ m (mod 6) and proposes heights h ≡ m.
    let earned = |m: usize| -> u128 {
        let runs: u128 = (0..per_block)
            .filter(|i| *i as usize % MEMBERS == m)
            .map(fuel)
            .sum();
        let proposed = (1..=blocks).filter(|h| *h as usize % MEMBERS == m).count() as u128;
        blocks as u128 * runs + proposed * u128::from(g.block_reward)
    };

    let payer = node.invoker.public();
    let peer = orb_net::identity::peer_of(payer.0).unwrap().to_string();
    let out = node.orb(&["ledger", "balance", &peer, "--json"]);
    ok(&out);
    let b = json(&out);
    assert_eq!(
        b["balance"].as_u64().map(u128::from),
        Some(u128::from(FAUCET) - spent)
    );
    assert_eq!(b["height"], blocks);
    assert_eq!(b["peer"], peer);

    let executor = node.committee.keys[1].public();
    let out = node.orb(&["ledger", "balance", &executor.to_hex()]);
    ok(&out);
    assert_eq!(
        stdout(&out),
        format!("{} credits at height {blocks}\n", earned(1))
    );

    let out = node.orb(&["ledger", "balances", "--json"]);
    ok(&out);
    let all = json(&out);
    let all = all["balances"].as_array().unwrap();
    assert_eq!(all.len(), 1 + MEMBERS);
    let total: u128 = all
        .iter()
        .map(|b| u128::from(b["balance"].as_u64().unwrap()))
        .sum();
    assert_eq!(
        total,
        u128::from(FAUCET) + blocks as u128 * u128::from(g.block_reward)
    );
    for m in 0..MEMBERS {
        let key = node.committee.keys[m].public().to_hex();
        let listed = all.iter().find(|b| b["key"] == key.as_str()).unwrap();
        assert_eq!(listed["balance"].as_u64().map(u128::from), Some(earned(m)));
    }
    let stranger = Keypair::generate().public().to_hex();
    assert_eq!(
        stdout(&node.orb(&["ledger", "balance", &stranger])),
        "0 credits at height 7\n"
    );
    assert_fails(
        &node.orb(&["ledger", "balance", "12D3KooWnope"]),
        2,
        "peer id",
    );
}

#[test]
fn show_and_export_read_the_blocks() {
    let node = Node::new(6, 3);
    let out = node.orb(&["ledger", "show", "2", "--json"]);
    ok(&out);
    let b = json(&out);
    let stored = node.chain().block(2).unwrap().unwrap();
    assert_eq!(b["height"], 2);
    assert_eq!(b["hash"], stored.hash().to_hex());
    assert_eq!(b["prev"], stored.header.prev.to_hex());
    assert_eq!(b["settlements"].as_array().unwrap().len(), 3);
    let s1 = &b["settlements"][1];
    assert_eq!(s1["id"], stored.settlements[1].id().to_hex());
    assert_eq!(
        s1["receipts"][0]["id"],
        stored.settlements[1].body.receipts[0].id().to_hex()
    );
    assert_eq!(s1["receipts"][0]["fuel"], 101);
    assert_eq!(s1["receipts"][0]["status"], "paid");
    assert_eq!(
        (
            b["evidence"]["polls"].as_u64(),
            b["evidence"]["votes"].as_u64()
        ),
        (Some(6), Some(24))
    );
    let out = node.orb(&["ledger", "show"]);
    ok(&out);
    let text = stdout(&out);
    assert!(text.starts_with("block 6 of 6 on chain "), "{text}");
    assert!(
        text.contains("settlements 3 ")
            && text.contains("paid")
            && text.contains("6 polls, 24 votes"),
        "{text}"
    );
    assert_fails(
        &node.orb(&["ledger", "show", "7"]),
        2,
        "no block at height 7",
    );
    assert_fails(&node.orb(&["ledger", "show", "x"]), 2, "not a height");

    let out = node.orb(&["ledger", "export"]);
    ok(&out);
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["height"], i as u64 + 1);
        assert_eq!(l["header"]["height"], i as u64 + 1);
        assert!(l["hash"].is_string() && l["effects"].is_object() && l["evidence"].is_object());
    }
    let out = node.orb(&["ledger", "export", "--from", "2", "--to", "4"]);
    assert_eq!(stdout(&out).lines().count(), 3);
    assert_fails(
        &node.orb(&["ledger", "export", "--from", "7"]),
        2,
        "--from 7",
    );
    assert_fails(&node.orb(&["ledger", "export", "--to", "7"]), 2, "--to 7");

    // A chain with no blocks yet says so; a data dir with no chain says how.
    let empty = Node::new(0, 0);
    let out = empty.orb(&["ledger", "show"]);
    ok(&out);
    assert!(
        stdout(&out).starts_with("no blocks yet"),
        "{}",
        stdout(&out)
    );
    ok(&empty.orb(&["ledger", "audit"]));
    let out = empty.orb(&["ledger", "export"]);
    ok(&out);
    assert!(out.stdout.is_empty());
    let nowhere = tempfile::tempdir().unwrap();
    assert_fails(
        &run_orb(nowhere.path(), &["ledger", "show"], None),
        2,
        "--data-dir",
    );
}

#[test]
fn genesis_takes_faucets_by_data_dir_peer_id_and_key() {
    let root = tempfile::tempdir().unwrap();
    let node_dir = root.path().join("node-a");
    let key = Keypair::generate().public();
    let peer = Keypair::generate().public();
    let peer_id = orb_net::identity::peer_of(peer.0).unwrap().to_string();
    let out_file = root.path().join("genesis.json");
    let out = run_orb(
        root.path(),
        &[
            "ledger",
            "genesis",
            "--name",
            "demo",
            "--faucet",
            &format!("{}=1000", node_dir.display()),
            "--faucet",
            &format!("{peer_id}=20"),
            "--faucet",
            &format!("{key}=3"),
            "--slots",
            "10",
            "--out",
            out_file.to_str().unwrap(),
        ],
        None,
    );
    ok(&out);
    let genesis: Genesis = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    genesis.validate().unwrap();
    let node_key = orb_net::identity::load_or_create(&node_dir.join("identity.key")).unwrap();
    let node_key =
        PublicKey(orb_net::identity::ed25519_public(&node_key.public().to_peer_id()).unwrap());
    assert_eq!(
        genesis.balances,
        vec![(node_key, 1000), (peer, 20), (key, 3)]
    );
    assert_eq!((genesis.name.as_str(), genesis.slots), ("demo", 10));
    assert_eq!(genesis.snowball, Genesis::local("", vec![]).snowball);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("chain id: {}", genesis.id())),
        "{stderr}"
    );
    // To stdout, the same genesis again: the identity was kept.
    let again = run_orb(
        root.path(),
        &[
            "ledger",
            "genesis",
            "--name",
            "demo",
            "--slots",
            "10",
            "--faucet",
            &format!("{}=1000", node_dir.display()),
            "--faucet",
            &format!("{peer_id}=20"),
            "--faucet",
            &format!("{key}=3"),
        ],
        None,
    );
    ok(&again);
    assert_eq!(
        serde_json::from_slice::<Genesis>(&again.stdout).unwrap(),
        genesis
    );

    let genesis_with = |args: &[&str]| {
        let mut all = vec!["ledger", "genesis", "--name", "x"];
        all.extend_from_slice(args);
        run_orb(root.path(), &all, None)
    };
    assert_fails(
        &genesis_with(&["--k", "5", "--alpha-preference", "2"]),
        2,
        "alpha_preference",
    );
    assert_fails(
        &genesis_with(&["--alpha-confidence", "6"]),
        2,
        "alpha_confidence",
    );
    assert_fails(&genesis_with(&["--beta", "0"]), 2, "beta");
    assert_fails(&genesis_with(&["--slots", "3"]), 2, "3 slots");
    let k = key.to_hex();
    assert_fails(
        &genesis_with(&["--faucet", &format!("{k}=1"), "--faucet", &format!("{k}=2")]),
        2,
        "two initial balances",
    );
    assert_fails(&genesis_with(&["--faucet", "abcd=1"]), 2, "64 hex digits");
    assert_fails(
        &genesis_with(&["--faucet", &format!("{k}=lots")]),
        2,
        "bad amount",
    );
    assert_fails(&genesis_with(&["--faucet", &k]), 2, "KEY=AMOUNT");
}

#[test]
fn an_equivocation_on_the_chain_is_shown_audited_and_excludes_its_voter() {
    let node = Node::new(3, 1);
    let c = &node.committee;
    let liar = &c.keys[5];
    let vote = |block: u8| {
        orb_ledger::VoteBody {
            chain: c.chain(),
            height: 3,
            round: 9,
            asker: c.keys[0].public(),
            block: orb_ledger::Digest([block; 32]),
            voter: liar.public(),
        }
        .sign(liar)
    };
    let mut chain = node.chain();
    let h = chain.height() + 1;
    let mut block = orb_ledger::Block::propose_with(
        &c.keys[h as usize % c.keys.len()],
        c.chain(),
        h,
        chain.head(),
        c.claims[h as usize % c.keys.len()],
        Vec::new(),
        orb_ledger::Records {
            equivocations: vec![(vote(1), vote(2))],
            voted: Vec::new(),
        },
    );
    c.finalize(&mut block);
    chain
        .append(block)
        .expect("an equivocation is a valid block body");
    // The voter is out: a block it votes in is refused.
    let next = c.block(h + 1, chain.head(), Vec::new());
    let refused = chain.append(next).unwrap_err().to_string();
    assert!(refused.contains("recorded equivocating"), "{refused}");
    drop(chain);

    let out = node.orb(&["ledger", "show", "4", "--json"]);
    ok(&out);
    let b = json(&out);
    let e = &b["equivocations"];
    assert_eq!(e.as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(e[0]["voter"]["key"], liar.public().to_hex());
    assert_eq!(
        (e[0]["height"].as_u64(), e[0]["round"].as_u64()),
        (Some(3), Some(9))
    );
    let out = node.orb(&["ledger", "show", "4"]);
    ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("equivocations 1 (each voter excluded for good)")
            && text.contains("height 3 round 9"),
        "{text}"
    );
    let out = node.orb(&["ledger", "audit", "--level", "4", "--json"]);
    ok(&out);
    assert_eq!(json(&out)["clean"], true);
}
