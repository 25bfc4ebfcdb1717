//! Settlements waiting for a block, in id order (so every proposer with
//! the same mempool proposes the same block), bounded.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::block::Block;
use crate::genesis::Genesis;
use crate::keys::{Digest, PublicKey};
use crate::settlement::Settlement;
use crate::state::{Effects, State};

#[derive(Clone, Debug)]
pub(crate) struct Mempool {
    waiting: BTreeMap<Digest, Settlement>,
    limit: usize,
}

impl Mempool {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            waiting: BTreeMap::new(),
            limit,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.waiting.len() >= self.limit
    }

    pub(crate) fn insert(&mut self, s: Settlement) {
        if !self.is_full() {
            self.waiting.insert(s.id(), s);
        }
    }

    /// Drops what `state` settled (included, or another settlement of an
    /// invocation settled now: never paid twice).
    pub(crate) fn prune(&mut self, state: &State) {
        self.waiting
            .retain(|_, s| !state.is_settled(&s.body.invoker, s.body.invocation));
    }

    /// A block's worth: settlements in order while their invokers can pay,
    /// one per invocation, at most the genesis' receipts. With `after`, the
    /// block goes on top of that block, not decided yet, whose `effects`
    /// on `state` were computed: its invocations are left out and its
    /// debits count as spent.
    pub(crate) fn take(
        &self,
        genesis: &Genesis,
        state: &State,
        after: Option<(&Block, &Effects)>,
    ) -> Vec<Settlement> {
        let mut out = Vec::new();
        let mut receipts = 0;
        let mut spent: HashMap<PublicKey, i128> = HashMap::new();
        let mut taken = HashSet::new();
        if let Some((parent, effects)) = after {
            for s in &parent.settlements {
                taken.insert((s.body.invoker, s.body.invocation));
            }
            for (key, delta) in &effects.0 {
                *spent.entry(*key).or_default() -= *delta;
            }
        }
        for s in self.waiting.values() {
            let n = s.body.receipts.len();
            if receipts + n > genesis.max_receipts as usize {
                break;
            }
            if !taken.insert((s.body.invoker, s.body.invocation)) {
                continue;
            }
            let cost = s.cost(genesis.price) as i128;
            let paid = spent.entry(s.body.invoker).or_default();
            if state.balance(&s.body.invoker) as i128 - *paid >= cost {
                *paid += cost;
                receipts += n;
                out.push(s.clone());
            }
        }
        out
    }
}
