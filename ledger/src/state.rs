//! Rewards and balances, derived from the chain alone.
//!
//! Each settlement moves fuel × price from the invoker to every executor
//! whose receipt agrees with the majority ([`crate::Settlement::verdict`]);
//! disputed executors earn nothing; the proposer earns the block reward. A
//! settlement that would overdraw its invoker, or settles an (invoker,
//! invocation) a second time, makes the block invalid; so does a proposer
//! or voter the chain recorded equivocating, or recording one twice. [`State`] is the fold of every block's [`Effects`]
//! over the genesis balances; nothing else writes balances.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::genesis::Genesis;
use crate::keys::{Digest, PublicKey};
use crate::koth::Claim;

/// One block's balance changes, by key (sorted, so the encoding is
/// canonical).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effects(pub BTreeMap<PublicKey, i128>);

/// Balances and paid invocations after some prefix of the chain.
#[derive(Clone, Debug)]
pub struct State {
    /// Height of the last applied block (0: genesis only).
    pub height: u64,
    /// Hash of the last applied block (the chain id at genesis).
    pub head: Digest,
    balances: HashMap<PublicKey, u128>,
    /// Settled (invoker, invocation) pairs, each kept as 16 bytes of its
    /// blake3 hash: every node holds one per call ever settled, and a
    /// 128-bit collision (a call wrongly refused as settled) is out of
    /// reach.
    settled: HashSet<u128>,
    /// Each committee key's last claim seen on the chain (as proposer, or
    /// in a block's `voted` claims) and the height it was last seen. Only
    /// hashed parts of blocks count: nodes hold different copies of the
    /// finality evidence, so activity read from it would differ by node.
    active: HashMap<PublicKey, (Claim, u64)>,
    /// Voters the chain recorded equivocating: excluded for good, as
    /// voters and as proposers.
    excluded: HashSet<PublicKey>,
}

fn settled_key(invoker: &PublicKey, invocation: u128) -> u128 {
    let mut m = [0u8; 48];
    m[..32].copy_from_slice(&invoker.0);
    m[32..].copy_from_slice(&invocation.to_le_bytes());
    let d = Digest::of(b"orb/settled/1\0", &m);
    let mut k = [0u8; 16];
    k.copy_from_slice(&d.0[..16]);
    u128::from_le_bytes(k)
}

impl State {
    /// The state at genesis.
    pub fn genesis(genesis: &Genesis) -> Self {
        Self {
            height: 0,
            head: genesis.id(),
            balances: genesis
                .balances
                .iter()
                .map(|(k, v)| (*k, u128::from(*v)))
                .collect(),
            settled: HashSet::new(),
            active: HashMap::new(),
            excluded: HashSet::new(),
        }
    }

    /// Whether `claim` has expired by height `height`: it was last seen on
    /// the chain more than the genesis' claim expiry before. A claim the
    /// chain has not seen (a new member, or a key's new claim) has not.
    pub fn claim_expired(&self, genesis: &Genesis, claim: &Claim, height: u64) -> bool {
        genesis.claim_expiry != 0
            && self.active.get(&claim.key).is_some_and(|(c, last)| {
                c == claim && height.saturating_sub(*last) > genesis.claim_expiry
            })
    }

    /// The height `key`'s claim was last seen on the chain, if it was.
    pub fn last_active(&self, key: &PublicKey) -> Option<(Claim, u64)> {
        self.active.get(key).copied()
    }

    /// Whether the chain recorded `key` equivocating.
    pub fn is_excluded(&self, key: &PublicKey) -> bool {
        self.excluded.contains(key)
    }

    /// The voters the chain recorded equivocating, sorted.
    pub fn excluded(&self) -> Vec<PublicKey> {
        let mut v: Vec<PublicKey> = self.excluded.iter().copied().collect();
        v.sort();
        v
    }

    /// A key's balance.
    pub fn balance(&self, key: &PublicKey) -> u128 {
        self.balances.get(key).copied().unwrap_or(0)
    }

    /// All non-zero balances, sorted by key.
    pub fn balances(&self) -> Vec<(PublicKey, u128)> {
        let mut v: Vec<_> = self
            .balances
            .iter()
            .filter(|(_, b)| **b > 0)
            .map(|(k, b)| (*k, *b))
            .collect();
        v.sort();
        v
    }

    /// Whether `invoker` already settled `invocation`.
    pub fn is_settled(&self, invoker: &PublicKey, invocation: u128) -> bool {
        self.settled.contains(&settled_key(invoker, invocation))
    }

    /// The block's effects on this state, or why the block cannot apply.
    pub fn effects(&self, genesis: &Genesis, block: &Block) -> Result<Effects, String> {
        let height = block.header.height;
        let proposer = &block.header.proposer;
        if self.claim_expired(genesis, proposer, height) {
            return Err(format!(
                "the proposer's claim ({}) has expired",
                proposer.key
            ));
        }
        if let Some(c) = block
            .evidence
            .claims
            .iter()
            .find(|c| self.claim_expired(genesis, c, height))
        {
            return Err(format!("voter {}'s committee claim has expired", c.key));
        }
        if self.is_excluded(&proposer.key) {
            return Err(format!(
                "the proposer ({}) was recorded equivocating",
                proposer.key
            ));
        }
        if let Some(c) = block
            .evidence
            .claims
            .iter()
            .find(|c| self.is_excluded(&c.key))
        {
            return Err(format!("voter {} was recorded equivocating", c.key));
        }
        if let Some(c) = block
            .voted
            .iter()
            .find(|c| self.claim_expired(genesis, c, height))
        {
            return Err(format!(
                "voted claim of {} has expired: it cannot be revived",
                c.key
            ));
        }
        if let Some((a, _)) = block
            .equivocations
            .iter()
            .find(|(a, _)| self.is_excluded(&a.body.voter))
        {
            return Err(format!(
                "voter {}'s equivocation is recorded a second time",
                a.body.voter
            ));
        }
        let mut delta: BTreeMap<PublicKey, i128> = BTreeMap::new();
        let mut seen = HashSet::new();
        for (i, s) in block.settlements.iter().enumerate() {
            let b = &s.body;
            let key = (b.invoker, b.invocation);
            if self.settled.contains(&settled_key(&key.0, key.1)) || !seen.insert(key) {
                return Err(format!(
                    "settlement {i} settles invocation {:032x} of {} a second time",
                    b.invocation, b.invoker
                ));
            }
            let cost = s.cost(genesis.price) as i128;
            let invoker_now =
                self.balance(&b.invoker) as i128 + delta.get(&b.invoker).copied().unwrap_or(0);
            if invoker_now < cost {
                return Err(format!(
                    "settlement {i}: invoker {} has {invoker_now} credits, the call costs {cost}",
                    b.invoker
                ));
            }
            *delta.entry(b.invoker).or_default() -= cost;
            for r in s.verdict().agreed {
                let r = &b.receipts[r].body;
                *delta.entry(r.executor).or_default() +=
                    i128::from(r.fuel) * i128::from(genesis.price);
            }
        }
        *delta.entry(block.header.proposer.key).or_default() += i128::from(genesis.block_reward);
        delta.retain(|_, d| *d != 0);
        Ok(Effects(delta))
    }

    /// Applies a block whose effects were computed by [`State::effects`].
    pub fn apply(&mut self, block: &Block, effects: &Effects) {
        for (k, d) in &effects.0 {
            let b = self.balances.entry(*k).or_default();
            *b = (*b as i128 + d).max(0) as u128;
        }
        for s in &block.settlements {
            self.settled
                .insert(settled_key(&s.body.invoker, s.body.invocation));
        }
        let h = block.header.height;
        let proposer = block.header.proposer;
        self.active.insert(proposer.key, (proposer, h));
        for c in &block.voted {
            self.active.insert(c.key, (*c, h));
        }
        for (a, _) in &block.equivocations {
            self.excluded.insert(a.body.voter);
            self.active.remove(&a.body.voter);
        }
        self.height = block.header.height;
        self.head = block.hash();
    }
}
