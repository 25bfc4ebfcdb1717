//! The chain on a store that fails on purpose ([`orb_ledger::fault`]):
//! for each kind of fault at each block's commit, the chain reports the
//! error and writes nothing more (poisoned), the store a crash leaves
//! opens to the height the fault says it must hold, audits clean at level
//! 4, and takes the remaining blocks.

use orb_ledger::fault::{Fault, FaultyStore};
use orb_ledger::sim::{Committee, single};
use orb_ledger::{
    AuditOptions, Block, Chain, ChainError, Genesis, Keypair, LedgerStore, MemStore, Table, audit,
};

const BLOCKS: u64 = 8;

fn blocks() -> (Genesis, Vec<Block>) {
    let invoker = Keypair::generate();
    let payer = invoker.public();
    let c = Committee::new(|_| Genesis::local("faults", vec![(payer, 1 << 40)]), 5);
    let mut model = Chain::open(MemStore::new(), Some(c.genesis.clone())).expect("test fixture");
    let mut out = Vec::new();
    for h in 1..=BLOCKS {
        let receipts = (0..4)
            .map(|i| single(&c.keys[i % 5], &invoker, u128::from(h * 10 + i as u64), 10))
            .collect();
        let b = c.block(h, model.head(), receipts);
        model.append(b.clone()).expect("test fixture");
        out.push(b);
    }
    (c.genesis.clone(), out)
}

fn audit_clean(store: &FaultyStore) -> u64 {
    let report = audit(
        store,
        AuditOptions {
            level: 4,
            ..Default::default()
        },
        &mut |_| {},
    )
    .expect("test fixture");
    assert_eq!(report.finding, None);
    report.head
}

#[test]
fn every_fault_at_every_commit_poisons_the_chain_and_a_restart_recovers_an_auditable_chain() {
    let (genesis, blocks) = blocks();
    for fault in Fault::ALL {
        for at in 1..=BLOCKS {
            let what = format!("{fault:?} at block {at}");
            let store = FaultyStore::new();
            // Commit 0 writes the genesis; block h is commit h.
            store.plan(at, fault);
            let mut chain = Chain::open(store, Some(genesis.clone())).unwrap();
            let mut acknowledged = 0;
            let mut failed = None;
            for b in &blocks {
                match chain.append(b.clone()) {
                    Ok(_) => acknowledged = b.header.height,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match fault {
                Fault::LostSync => {
                    assert!(failed.is_none(), "{what}: a lying fsync reports nothing");
                    assert_eq!(acknowledged, BLOCKS);
                }
                Fault::Error | Fault::ErrorAfterWrite | Fault::Torn => {
                    assert!(
                        matches!(failed, Some(ChainError::Store(_))),
                        "{what}: {failed:?}"
                    );
                    assert_eq!(acknowledged, at - 1, "{what}");
                    // Poisoned: the next write is refused, the state is
                    // the last acknowledged one.
                    let next = chain.append(blocks[at as usize - 1].clone()).unwrap_err();
                    assert!(matches!(next, ChainError::Poisoned(_)), "{what}: {next}");
                    assert_eq!(chain.height(), acknowledged, "{what}");
                }
            }
            // A crash now: what the disk kept.
            let store = chain.store().crash();
            let expected = match fault {
                // The torn block is dropped on opening: it was never
                // acknowledged.
                Fault::Error | Fault::Torn => at - 1,
                Fault::ErrorAfterWrite => at,
                // Durable again from the next good commit on; a lie at the
                // last commit loses that block (the audit sees a shorter,
                // valid chain).
                Fault::LostSync if at == BLOCKS => BLOCKS - 1,
                Fault::LostSync => BLOCKS,
            };
            let mut chain = Chain::open(store, None).unwrap();
            assert_eq!(chain.height(), expected, "{what}");
            let dropped = (fault == Fault::Torn).then_some(at);
            assert_eq!(chain.dropped_torn(), dropped, "{what}");
            assert_eq!(audit_clean(chain.store()), expected, "{what}");
            for b in blocks.iter().skip(expected as usize) {
                chain.append(b.clone()).unwrap();
            }
            assert_eq!(chain.head(), blocks.last().unwrap().hash(), "{what}");
            audit_clean(chain.store());
        }
    }
}

/// A group commit of three blocks torn in its last write: opening keeps
/// the two whole ones and drops the torn third; one torn below the head
/// is corruption, and opening says so instead of dropping it.
#[test]
fn a_torn_group_commit_keeps_its_whole_blocks_and_a_damaged_middle_block_is_refused() {
    let (genesis, blocks) = blocks();
    let store = FaultyStore::new();
    let mut chain = Chain::open(store, Some(genesis.clone())).unwrap();
    for b in &blocks[..2] {
        chain.append(b.clone()).unwrap();
    }
    // Each block's effects, from a model chain that takes them one by one.
    let mut model = Chain::open(MemStore::new(), Some(genesis.clone())).unwrap();
    for b in &blocks[..2] {
        model.append(b.clone()).unwrap();
    }
    let effects: Vec<_> = blocks[2..5]
        .iter()
        .map(|b| (b, model.append(b.clone()).unwrap()))
        .collect();
    chain.store().plan(chain.store().commits(), Fault::Torn);
    let group: Vec<_> = effects.iter().map(|(b, e)| (*b, e)).collect();
    let err = chain.commit_checked_all(&group).unwrap_err();
    assert!(matches!(err, ChainError::Store(_)), "{err}");
    let crashed = chain.store().crash();
    let mut reopened = Chain::open(crashed, None).unwrap();
    assert_eq!(reopened.dropped_torn(), Some(5));
    assert_eq!(reopened.height(), 4);
    assert_eq!(audit_clean(reopened.store()), 4);
    for b in &blocks[4..] {
        reopened.append(b.clone()).unwrap();
    }
    assert_eq!(audit_clean(reopened.store()), BLOCKS);

    // Height 3 of 8 damaged: not a torn write, so nothing is dropped.
    let store = reopened.store().crash();
    let key = orb_ledger::height_key(3);
    let value = store.get(Table::Blocks, &key).unwrap().unwrap();
    store
        .commit(&[(
            Table::Blocks,
            key.to_vec(),
            value[..value.len() / 2].to_vec(),
        )])
        .unwrap();
    match Chain::open(store, None) {
        Err(ChainError::Corrupt(why)) => assert!(why.contains("block 3"), "{why}"),
        Err(e) => panic!("expected a corrupt ledger, got {e}"),
        Ok(c) => panic!("opened a damaged chain at height {}", c.height()),
    }
}
