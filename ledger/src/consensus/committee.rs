//! A replica's view of the committee: the King-of-the-Hill table fed by
//! gossiped claims, and which of its members this replica samples.
//!
//! A member is left out of polls when
//! - its claim has **expired**: the chain has not recorded it voting (a
//!   block's `voted` claims) or proposing for `claim_expiry` heights
//!   ([`State::claim_expired`], the rule the audit checks), or, for a claim
//!   the chain has never seen, it joined this table that long ago; its slot
//!   is freed and the same claim is refused from then on;
//! - it **equivocated** (two signed votes for one height, round and asker
//!   naming different blocks): excluded for good;
//! - it is **benched**: it left several polls in a row unanswered, so for a
//!   while it is not asked (avalanchego's benchlist) but still sampled,
//!   counting as a member that did not answer; then it is tried again.
//!
//! Pure: times and heights come in as arguments.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::genesis::Genesis;
use crate::keys::PublicKey;
use crate::koth::{Claim, Koth};
use crate::state::State;

/// Unanswered polls in a row that bench a member.
const BENCH_AFTER: u32 = 3;

/// Why a member is not sampled, or `Eligible`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    Eligible,
    Benched,
    Excluded,
}

#[derive(Clone, Debug, Default)]
struct Record {
    /// The height this table first held the claim.
    joined: u64,
    /// Polls left unanswered in a row.
    misses: u32,
    benched_until: Option<Duration>,
}

/// The committee as one replica sees it.
#[derive(Clone, Debug)]
pub(crate) struct Committee {
    koth: Koth,
    /// The table's holders by key, and sorted (rebuilt on every change:
    /// changes are rare, lookups are on every message).
    held: BTreeMap<PublicKey, Claim>,
    sorted: Vec<PublicKey>,
    records: BTreeMap<PublicKey, Record>,
    /// Claims that expired here: refused if gossiped again.
    expired: BTreeSet<Claim>,
    /// Equivocators.
    excluded: BTreeSet<PublicKey>,
    bench_for: Duration,
}

impl Committee {
    pub(crate) fn new(genesis: &Genesis, bench_for: Duration) -> Self {
        Self {
            koth: Koth::new(genesis.id(), genesis.slots, genesis.difficulty),
            held: BTreeMap::new(),
            sorted: Vec::new(),
            records: BTreeMap::new(),
            expired: BTreeSet::new(),
            excluded: BTreeSet::new(),
            bench_for,
        }
    }

    /// Offers a gossiped or mined claim at `height`; true when it took a
    /// slot.
    pub(crate) fn offer(&mut self, claim: Claim, height: u64) -> bool {
        // Most offers are members' claims gossiped again.
        if self.held.get(&claim.key) == Some(&claim)
            || self.expired.contains(&claim)
            || self.excluded.contains(&claim.key)
        {
            return false;
        }
        // One slot per key: a key's new claim replaces its old one only if
        // it takes a slot.
        let old = if self.held.contains_key(&claim.key) {
            self.koth.remove(&claim.key)
        } else {
            None
        };
        match self.koth.try_insert(claim) {
            Ok(_) => {
                self.records.insert(
                    claim.key,
                    Record {
                        joined: height,
                        ..Record::default()
                    },
                );
                self.forget_displaced();
                true
            }
            Err(_) => {
                // Most offers that fail come from keys holding nothing:
                // the table did not change.
                if let Some(old) = old {
                    let _ = self.koth.try_insert(old);
                    self.reindex();
                }
                false
            }
        }
    }

    /// Rebuilds the index and drops records of keys that lost their slot
    /// to a harder claim.
    fn forget_displaced(&mut self) {
        self.reindex();
        let held = &self.held;
        self.records.retain(|k, _| held.contains_key(k));
    }

    fn reindex(&mut self) {
        self.held = self.koth.claims().into_iter().map(|c| (c.key, c)).collect();
        self.sorted = self.held.keys().copied().collect();
    }

    /// Frees the slots of claims expired at `height`; returns them.
    pub(crate) fn expire(&mut self, genesis: &Genesis, state: &State, height: u64) -> Vec<Claim> {
        if genesis.claim_expiry == 0 {
            return Vec::new();
        }
        let lapsed: Vec<Claim> = self
            .koth
            .claims()
            .into_iter()
            .filter(|c| {
                if state.claim_expired(genesis, c, height) {
                    return true;
                }
                let on_chain = state
                    .last_active(&c.key)
                    .is_some_and(|(held, _)| held == *c);
                let joined = self.records.get(&c.key).map_or(height, |r| r.joined);
                !on_chain && height.saturating_sub(joined) > genesis.claim_expiry
            })
            .collect();
        for c in &lapsed {
            self.koth.remove(&c.key);
            self.records.remove(&c.key);
            self.expired.insert(*c);
        }
        if !lapsed.is_empty() {
            self.reindex();
        }
        lapsed
    }

    /// Excludes an equivocator for good; true when it was not already.
    pub(crate) fn exclude(&mut self, key: PublicKey) -> bool {
        self.koth.remove(&key);
        self.records.remove(&key);
        self.reindex();
        self.excluded.insert(key)
    }

    /// The equivocators this replica knows of.
    pub(crate) fn excluded(&self) -> impl Iterator<Item = &PublicKey> {
        self.excluded.iter()
    }

    /// A member answered a poll.
    pub(crate) fn answered(&mut self, key: &PublicKey) {
        if let Some(r) = self.records.get_mut(key) {
            r.misses = 0;
            r.benched_until = None;
        }
    }

    /// A member left a poll unanswered at `now`.
    pub(crate) fn missed(&mut self, key: &PublicKey, now: Duration) {
        if let Some(r) = self.records.get_mut(key) {
            r.misses += 1;
            if r.misses >= BENCH_AFTER {
                r.benched_until = Some(now + self.bench_for);
            }
        }
    }

    pub(crate) fn standing(&self, key: &PublicKey, now: Duration) -> Standing {
        if self.excluded.contains(key) {
            return Standing::Excluded;
        }
        match self.records.get(key).and_then(|r| r.benched_until) {
            Some(until) if now < until => Standing::Benched,
            _ => Standing::Eligible,
        }
    }

    /// The members polls sample from, sorted: every member but the
    /// excluded. Benched members stay in the sample (they count as not
    /// answering, without being asked): dropping them would let a node cut
    /// off from most of the committee reach α among the few it still hears
    /// from, and decide alone.
    pub(crate) fn sampled(&self, now: Duration) -> Vec<PublicKey> {
        self.sorted
            .iter()
            .filter(|k| self.standing(k, now) != Standing::Excluded)
            .copied()
            .collect()
    }

    /// Every member holding a slot, sorted.
    pub(crate) fn members(&self) -> &[PublicKey] {
        &self.sorted
    }

    pub(crate) fn holds(&self, key: &PublicKey) -> Option<Claim> {
        self.held.get(key).copied()
    }

    pub(crate) fn filled(&self) -> usize {
        self.koth.filled()
    }

    pub(crate) fn slots(&self) -> u32 {
        self.koth.slots()
    }

    /// Mines up to `tries` nonces from `start` for an empty slot; the
    /// claim found, or where to go on from.
    pub(crate) fn mine(&self, key: PublicKey, start: u64, tries: u64) -> Result<Claim, u64> {
        const CHUNK: u64 = 1 << 10;
        let mut nonce = start;
        let end = start.saturating_add(tries);
        while nonce < end {
            let n = CHUNK.min(end - nonce);
            match self.koth.mine(key, nonce, n) {
                Some(c) if self.koth.is_free(&c) && !self.expired.contains(&c) => return Ok(c),
                Some(c) => nonce = c.nonce + 1,
                None => nonce += n,
            }
        }
        Err(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genesis(expiry: u64) -> Genesis {
        let mut g = Genesis::local("committee", Vec::new());
        g.claim_expiry = expiry;
        g
    }

    fn claim_of(c: &Committee, key: PublicKey) -> Claim {
        c.mine(key, 0, 1 << 20).expect("an empty slot is found")
    }

    #[test]
    fn a_member_that_misses_polls_is_benched_then_tried_again() {
        let g = genesis(0);
        let mut c = Committee::new(&g, Duration::from_secs(10));
        let k = PublicKey([1; 32]);
        assert!(c.offer(claim_of(&c, k), 1));
        let t = Duration::from_secs(1);
        c.missed(&k, t);
        c.missed(&k, t);
        assert_eq!(
            c.standing(&k, t),
            Standing::Eligible,
            "two misses do not bench"
        );
        c.missed(&k, t);
        assert_eq!(c.standing(&k, t), Standing::Benched);
        assert_eq!(c.sampled(t), vec![k], "benched, still in the sample");
        assert_eq!(
            c.standing(&k, t + Duration::from_secs(11)),
            Standing::Eligible
        );
        c.answered(&k);
        c.missed(&k, t);
        assert_eq!(
            c.standing(&k, t),
            Standing::Eligible,
            "an answer resets the count"
        );
    }

    #[test]
    fn a_claim_never_seen_on_chain_expires_after_the_expiry_and_is_refused_again() {
        let g = genesis(5);
        let state = State::genesis(&g);
        let mut c = Committee::new(&g, Duration::from_secs(10));
        let k = PublicKey([2; 32]);
        let claim = claim_of(&c, k);
        assert!(c.offer(claim, 1));
        assert!(c.expire(&g, &state, 6).is_empty(), "5 heights: not yet");
        assert_eq!(c.expire(&g, &state, 7), vec![claim]);
        assert_eq!(c.filled(), 0, "the slot is free");
        assert!(!c.offer(claim, 7), "the lapsed claim is refused");
        let fresh = claim_of(&c, k);
        assert_ne!(fresh, claim);
        assert!(c.offer(fresh, 7), "a new claim of the same key is taken");
    }

    #[test]
    fn an_equivocator_is_excluded_for_good() {
        let g = genesis(0);
        let mut c = Committee::new(&g, Duration::from_secs(10));
        let k = PublicKey([3; 32]);
        assert!(c.offer(claim_of(&c, k), 1));
        assert!(c.exclude(k));
        assert!(!c.exclude(k));
        assert_eq!(c.standing(&k, Duration::ZERO), Standing::Excluded);
        assert!(!c.offer(claim_of(&c, k), 2));
        assert!(c.members().is_empty());
    }
}
