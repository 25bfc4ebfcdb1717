//! `scripts/bench ledger` (part): the audit and the durable append
//! against their floors, in one run.
//!
//! A chain of 200 blocks × 250 receipts is built by an in-process
//! committee (`orb_ledger::sim`) into a temp sled store, then:
//!
//! - audit, level 3 (links, Merkle roots, receipt and vote signatures,
//!   balances recomputed from genesis, read from sled), in receipts/s,
//!   against the floor over the same receipts in memory: per block, the
//!   receipts' signed messages (`Receipt::signed_message`) checked by one
//!   `ed25519_dalek::verify_batch` (keys decompressed inside the timing)
//!   and each receipt's Merkle leaf (`Receipt::leaf`: blake3 of its
//!   canonical bytes). Target: ≥ 0.8× the floor.
//! - durable append of the same pre-built, finalized blocks into a fresh
//!   chain: `Chain::append` (validation, then one value per block — block,
//!   effects and receipt index entry — in one sled insert, flush, fsync of
//!   the log file and directory); the same write through
//!   `SledStore::commit` alone (no validation); the floor, the same bytes
//!   inserted raw into a fresh sled db and `flush()`ed, also with the
//!   fsyncs `SledStore::commit` adds, for the same durability; and the
//!   floor of append itself (target: ≥ 0.8× it): the audit's floor
//!   (`verify_batch` + Merkle leaves) plus that fsync'd write.
//!
//! Each figure prints its p50 per block with its throughput.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use orb_ledger::sim::{Committee, single};
use orb_ledger::{
    AuditOptions, Block, Chain, Effects, Genesis, Keypair, LedgerStore, SledStore, StoredBlock,
    Table, audit, height_key, stored_block, stored_effects,
};

mod support;
use support::summary;

const BLOCKS: u64 = 200;
const RECEIPTS: u64 = 250;
const ROUNDS: usize = 3;

fn p50(samples: Vec<f64>) -> f64 {
    summary(samples).0
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// Builds the chain in `dir`; returns its blocks, effects and genesis.
fn build(dir: &std::path::Path) -> (Vec<Block>, Vec<Effects>, Genesis) {
    let invokers: Vec<Keypair> = (0..4).map(|_| Keypair::generate()).collect();
    let faucet = invokers
        .iter()
        .map(|k| (k.public(), u64::MAX / 8))
        .collect();
    let committee = Committee::new(|_| Genesis::local("bench", faucet), 6);
    let mut chain =
        Chain::open_dir(dir, Some(committee.genesis.clone())).expect("open the bench chain");
    for h in 1..=BLOCKS {
        let settlements = (0..RECEIPTS)
            .map(|i| {
                let executor = &committee.keys[i as usize % committee.keys.len()];
                let invoker = &invokers[i as usize % invokers.len()];
                single(
                    executor,
                    invoker,
                    u128::from(h) << 32 | u128::from(i),
                    1000 + i,
                )
            })
            .collect();
        let block = committee.block(h, chain.head(), settlements);
        chain.append(block).expect("append");
    }
    let store = chain.store();
    let blocks = (1..=BLOCKS)
        .map(|h| stored_block(store, h).expect("read").expect("block"))
        .collect();
    let effects = (1..=BLOCKS)
        .map(|h| stored_effects(store, h).expect("read").expect("effects"))
        .collect();
    (blocks, effects, committee.genesis.clone())
}

/// One audit at level 3; per-block seconds from the progress callback.
fn audit_once(store: &SledStore) -> (f64, Vec<f64>) {
    let started = Instant::now();
    let mut last = started;
    let mut per_block = Vec::with_capacity(BLOCKS as usize);
    let report = audit(
        store,
        AuditOptions {
            level: 3,
            ..AuditOptions::default()
        },
        &mut |_| {
            let now = Instant::now();
            per_block.push((now - last).as_secs_f64());
            last = now;
        },
    )
    .expect("audit");
    assert!(report.finding.is_none(), "{:?}", report.finding);
    assert_eq!(report.receipts, BLOCKS * RECEIPTS);
    (started.elapsed().as_secs_f64(), per_block)
}

/// The floor: batch verification of each block's signatures (invokers'
/// and executors') and the Merkle leaves of its settlements.
fn floor_once(blocks: &[Block]) -> (f64, Vec<f64>) {
    let started = Instant::now();
    let mut per_block = Vec::with_capacity(blocks.len());
    for block in blocks {
        let t = Instant::now();
        let signed: Vec<_> = block
            .settlements
            .iter()
            .flat_map(|s| {
                std::iter::once(s.signed_message())
                    .chain(s.body.receipts.iter().map(|r| r.signed_message()))
            })
            .collect();
        let keys: Vec<_> = signed
            .iter()
            .map(|(k, _, _)| ed25519_dalek::VerifyingKey::from_bytes(&k.0).expect("key"))
            .collect();
        let messages: Vec<&[u8]> = signed.iter().map(|(_, m, _)| m.as_slice()).collect();
        let signatures: Vec<_> = signed
            .iter()
            .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
            .collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).expect("valid receipts");
        let leaves: Vec<_> = block.settlements.iter().map(|s| s.leaf()).collect();
        std::hint::black_box(leaves);
        per_block.push(t.elapsed().as_secs_f64());
    }
    (started.elapsed().as_secs_f64(), per_block)
}

/// The write `Chain::append` commits for a block: one value (block,
/// effects, receipt index entry) at its height.
fn writes(block: &Block, effects: &Effects) -> Vec<orb_ledger::Write> {
    vec![(
        Table::Blocks,
        height_key(block.header.height).to_vec(),
        StoredBlock::encode(block, effects),
    )]
}

fn timed(n: usize, mut f: impl FnMut(usize)) -> (f64, Vec<f64>) {
    let started = Instant::now();
    let samples = (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed().as_secs_f64()
        })
        .collect();
    (started.elapsed().as_secs_f64(), samples)
}

/// The floor: each encoded block inserted into a fresh sled db and
/// flushed; with `fsync`, then the log file and the directory fsync'd too,
/// as `SledStore::commit` does.
fn raw_append(dir: &std::path::Path, encoded: &[Vec<u8>], fsync: bool) -> (f64, Vec<f64>) {
    let db = sled::open(dir).expect("fresh sled");
    timed(encoded.len(), |i| {
        db.insert(height_key(i as u64 + 1), encoded[i].as_slice())
            .expect("insert");
        db.flush().expect("flush");
        if fsync {
            std::fs::File::open(dir.join("db"))
                .and_then(|f| f.sync_all())
                .and_then(|()| std::fs::File::open(dir))
                .and_then(|d| d.sync_all())
                .expect("fsync");
        }
    })
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let built = Instant::now();
    let (blocks, effects, genesis) = build(&tmp.path().join("chain"));
    let build_s = built.elapsed().as_secs_f64();
    let receipts = (BLOCKS * RECEIPTS) as f64;

    let store = SledStore::open(&tmp.path().join("chain")).expect("reopen");
    let (mut audit_rates, mut floor_rates) = (Vec::new(), Vec::new());
    let (mut audit_p50, mut floor_p50) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (s, per) = audit_once(&store);
        audit_rates.push(receipts / s);
        audit_p50.push(p50(per));
        let (s, per) = floor_once(&blocks);
        floor_rates.push(receipts / s);
        floor_p50.push(p50(per));
    }
    drop(store);
    let (audit_rate, floor_rate) = (median(audit_rates), median(floor_rates));

    let n = blocks.len();
    let mut chain =
        Chain::open_dir(&tmp.path().join("append"), Some(genesis)).expect("fresh chain");
    let (append_s, append) = timed(n, |i| {
        chain.append(blocks[i].clone()).expect("append");
    });
    drop(chain);
    let commit_store = SledStore::open(&tmp.path().join("commit")).expect("fresh store");
    let (commit_s, commit) = timed(n, |i| {
        commit_store
            .commit(&writes(&blocks[i], &effects[i]))
            .expect("commit");
    });
    drop(commit_store);
    // The floor writes the same bytes the chain stores.
    let encoded: Vec<Vec<u8>> = blocks
        .iter()
        .zip(&effects)
        .map(|(b, e)| StoredBlock::encode(b, e))
        .collect();
    let (raw_s, raw) = raw_append(&tmp.path().join("raw"), &encoded, false);
    let (durable_s, durable) = raw_append(&tmp.path().join("raw-fsync"), &encoded, true);
    let (append_rate, commit_rate, raw_rate, durable_rate) = (
        n as f64 / append_s,
        n as f64 / commit_s,
        n as f64 / raw_s,
        n as f64 / durable_s,
    );
    let block_kib = encoded.iter().map(Vec::len).sum::<usize>() as f64 / n as f64 / 1024.0;

    let ms = |s: f64| s * 1e3;
    let (floor50, audit50) = (ms(median(floor_p50)), ms(median(audit_p50)));
    let (raw50, durable50) = (ms(p50(raw)), ms(p50(durable)));
    let (commit50, append50) = (ms(p50(commit)), ms(p50(append)));
    println!(
        "ledger: {BLOCKS} blocks x {RECEIPTS} receipts ({block_kib:.0} KiB a block), built in {build_s:.1} s"
    );
    println!("audit, median of {ROUNDS} rounds (p50 per block):");
    println!(
        "  floor: verify_batch + Merkle leaves   {floor_rate:>10.0} receipts/s   p50 {floor50:6.2} ms"
    );
    println!(
        "  orb ledger audit, level 3 (sled)     {audit_rate:>10.0} receipts/s   p50 {audit50:6.2} ms   ratio {:.2} (target >= 0.8)",
        audit_rate / floor_rate
    );
    println!("durable append of the same {n} finalized blocks (p50 per block):");
    println!(
        "  floor: sled insert + flush                   {raw_rate:>8.1} blocks/s   p50 {raw50:6.2} ms"
    );
    println!(
        "  floor: sled insert + flush + fsync file, dir {durable_rate:>8.1} blocks/s   p50 {durable50:6.2} ms"
    );
    println!(
        "  SledStore::commit alone (one value, fsync)   {commit_rate:>8.1} blocks/s   p50 {commit50:6.2} ms   ratio {:.2} to the fsync'd floor",
        commit_rate / durable_rate
    );
    println!(
        "  Chain::append (validate + commit)            {append_rate:>8.1} blocks/s   p50 {append50:6.2} ms   ratio {:.2} to the fsync'd write alone",
        append_rate / durable_rate
    );
    // Append verifies a block's signatures before it writes: its floor is
    // the audit's floor plus the fsync'd write.
    let both = floor50 + durable50;
    println!(
        "  floor: verify_batch + leaves, then the fsync'd write    p50 {both:6.2} ms   Chain::append p50 ratio {:.2} (target >= 0.8)",
        both / append50
    );
}
