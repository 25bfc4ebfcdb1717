//! A committee in one process: mines claims for its members, proposes
//! blocks and signs the finality evidence a real network's Snowball polls
//! would gather. Used by tests and `scripts/bench ledger` to build chains
//! the audit must accept (and, tampered with, refuse) without a network.

use crate::block::{Block, Poll};
use crate::genesis::Genesis;
use crate::keys::{Digest, Keypair, PublicKey};
use crate::koth::{Claim, Koth};
use crate::receipt::{Receipt, ReceiptBody};
use crate::settlement::{Settlement, SettlementBody};
use crate::vote::VoteBody;

/// Members holding committee slots on a local genesis.
pub struct Committee {
    /// The chain's genesis.
    pub genesis: Genesis,
    /// The members' keys.
    pub keys: Vec<Keypair>,
    /// Their claims, one slot each.
    pub claims: Vec<Claim>,
}

impl Committee {
    /// `members` keys (at least the genesis' α_confidence, at most its
    /// slots), each mining until it holds its own slot; `faucet` gets the
    /// initial balances.
    pub fn new(genesis_of: impl FnOnce(Vec<PublicKey>) -> Genesis, members: usize) -> Self {
        let keys: Vec<Keypair> = (0..members).map(|_| Keypair::generate()).collect();
        let genesis = genesis_of(keys.iter().map(Keypair::public).collect());
        let chain = genesis.id();
        let mut koth = Koth::new(chain, genesis.slots, genesis.difficulty);
        let mut nonce = 0u64;
        for k in &keys {
            while koth.holds(&k.public()).is_none() {
                if let Some(c) = koth.mine(k.public(), nonce, 1 << 16) {
                    // Never displace another member: only empty slots.
                    let free = !koth
                        .claims()
                        .iter()
                        .any(|h| h.slot(&chain, genesis.slots) == c.slot(&chain, genesis.slots));
                    if free {
                        let _ = koth.try_insert(c);
                    }
                    nonce = c.nonce + 1;
                } else {
                    nonce += 1 << 16;
                }
            }
        }
        let claims = keys
            .iter()
            .filter_map(|k| koth.holds(&k.public()))
            .collect();
        Self {
            genesis,
            keys,
            claims,
        }
    }

    /// The chain id.
    pub fn chain(&self) -> Digest {
        self.genesis.id()
    }

    /// A proposal by member `height % members`, finalized: β polls, each
    /// with α_confidence votes from members taken in turn.
    pub fn block(&self, height: u64, prev: Digest, settlements: Vec<Settlement>) -> Block {
        let p = height as usize % self.keys.len();
        let mut block = Block::propose(
            &self.keys[p],
            self.chain(),
            height,
            prev,
            self.claims[p],
            settlements,
        );
        self.finalize(&mut block);
        block
    }

    /// Adds the evidence of β polls.
    pub fn finalize(&self, block: &mut Block) {
        let p = block.header.height as usize % self.keys.len();
        let params = self.genesis.snowball;
        let hash = block.hash();
        block.evidence.claims = self.claims.clone();
        block.evidence.polls = (0..params.beta() as u64)
            .map(|round| Poll {
                round,
                votes: (0..params.alpha_confidence())
                    .map(|i| {
                        let voter = &self.keys[(round as usize + i) % self.keys.len()];
                        VoteBody {
                            chain: self.chain(),
                            height: block.header.height,
                            round,
                            asker: self.keys[p].public(),
                            block: hash,
                            voter: voter.public(),
                        }
                        .sign(voter)
                    })
                    .collect(),
            })
            .collect();
    }
}

/// A receipt signed by `executor`.
pub fn receipt(executor: &Keypair, invoker: PublicKey, invocation: u128, fuel: u64) -> Receipt {
    ReceiptBody {
        invocation,
        function: Digest::of(b"fn", &invocation.to_le_bytes()[..1]),
        input: Digest::of(b"in", &invocation.to_le_bytes()),
        output: Digest::of(b"out", &invocation.to_le_bytes()),
        fuel,
        executor: executor.public(),
        invoker,
    }
    .sign(executor)
}

/// A settlement of one receipt per executor, signed by `invoker`: every
/// executor reports the same result (`fuel`), except those in `liars`,
/// which report another output.
pub fn settlement(
    invoker: &Keypair,
    invocation: u128,
    executors: &[&Keypair],
    liars: &[usize],
    fuel: u64,
) -> Settlement {
    let receipts = executors
        .iter()
        .enumerate()
        .map(|(i, executor)| {
            let mut r = receipt(executor, invoker.public(), invocation, fuel);
            if liars.contains(&i) {
                r.body.output = Digest::of(b"lie", &invocation.to_le_bytes());
                r = r.body.sign(executor);
            }
            r
        })
        .collect();
    SettlementBody {
        invocation,
        invoker: invoker.public(),
        receipts,
    }
    .sign(invoker)
}

/// A settlement of a single receipt by `executor`.
pub fn single(executor: &Keypair, invoker: &Keypair, invocation: u128, fuel: u64) -> Settlement {
    settlement(invoker, invocation, &[executor], &[], fuel)
}
