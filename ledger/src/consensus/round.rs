//! One height being decided, and the poll this replica has open for it.
//!
//! A poll asks k sampled members at once; their signed votes arrive one by
//! one ([`OpenPoll::add`]). It closes as soon as its outcome cannot change
//! (avalanchego's early termination): one block has α_confidence votes, or
//! no block can still reach α_preference, or every member answered, or its
//! timeout passed. Closing on the outcome rather than on the slowest
//! answer is what keeps a silent member from costing every poll a timeout.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::block::{Block, Poll};
use crate::keys::{Digest, PublicKey};
use crate::snowball::{Params, Snowball};
use crate::vote::Vote;

/// What one vote did to a poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Added {
    /// Counted.
    Counted,
    /// Not for this poll, or not from an asked member: ignored.
    Ignored,
    /// The voter had already voted for another block in this poll: the
    /// two votes are the evidence; the voter's vote no longer counts.
    Equivocation(Box<(Vote, Vote)>),
}

/// A poll in flight.
#[derive(Clone, Debug)]
pub(crate) struct OpenPoll {
    pub(crate) round: u64,
    pub(crate) sent: Duration,
    asked: BTreeSet<PublicKey>,
    answered: BTreeSet<PublicKey>,
    votes: BTreeMap<PublicKey, Vote>,
    /// Votes whose signatures [`OpenPoll::check_signatures`] checked.
    checked: BTreeSet<PublicKey>,
    /// Voters caught equivocating in this poll (their votes do not count).
    void: BTreeSet<PublicKey>,
}

impl OpenPoll {
    pub(crate) fn new(
        round: u64,
        sent: Duration,
        asked: impl IntoIterator<Item = PublicKey>,
    ) -> Self {
        Self {
            round,
            sent,
            asked: asked.into_iter().collect(),
            answered: BTreeSet::new(),
            votes: BTreeMap::new(),
            checked: BTreeSet::new(),
            void: BTreeSet::new(),
        }
    }

    /// Whether `from` was asked.
    pub(crate) fn asked(&self, from: &PublicKey) -> bool {
        self.asked.contains(from)
    }

    /// An answer from `from` without a vote (refused, no preference, lost).
    pub(crate) fn no_vote(&mut self, from: PublicKey) {
        if self.asked.contains(&from) {
            self.answered.insert(from);
        }
    }

    /// A vote from `from` whose chain, height, round and asker the caller
    /// checked (its signature is checked when the poll closes; an
    /// [`Added::Equivocation`] is evidence only once both are).
    pub(crate) fn add(&mut self, from: PublicKey, vote: Vote) -> Added {
        if vote.body.voter != from || !self.asked.contains(&from) || self.void.contains(&from) {
            return Added::Ignored;
        }
        self.answered.insert(from);
        match self.votes.get(&from) {
            None => {
                self.votes.insert(from, vote);
                Added::Counted
            }
            Some(first) if first.body.block == vote.body.block => Added::Ignored,
            Some(_) => {
                let first = self.votes.remove(&from).expect("checked above");
                self.void.insert(from);
                Added::Equivocation(Box::new((first, vote)))
            }
        }
    }

    /// Checks the signatures of the votes not checked yet, in one batch;
    /// a bad one is dropped and voids its voter in this poll (only the
    /// voter can send a vote as itself). Call before trusting
    /// [`OpenPoll::done`]: a poll must not close on an unchecked count.
    pub(crate) fn check_signatures(&mut self, verifier: &crate::Verifier) {
        let fresh: Vec<PublicKey> = self
            .votes
            .keys()
            .filter(|k| !self.checked.contains(*k))
            .copied()
            .collect();
        let batch: Vec<_> = fresh
            .iter()
            .map(|k| self.votes[k].signed_message())
            .collect();
        let all_good = verifier.verify_batch(&batch);
        for k in fresh {
            if all_good || self.votes[&k].verify_with(verifier) {
                self.checked.insert(k);
            } else {
                self.votes.remove(&k);
                self.void.insert(k);
            }
        }
    }

    fn counts(&self) -> BTreeMap<Digest, usize> {
        let mut counts = BTreeMap::new();
        for v in self.votes.values() {
            *counts.entry(v.body.block).or_default() += 1;
        }
        counts
    }

    /// Whether the outcome is settled (or nothing more can come).
    pub(crate) fn done(&self, params: &Params) -> bool {
        let outstanding = self.asked.len() - self.answered.len();
        if outstanding == 0 {
            return true;
        }
        let top = self.counts().into_values().max().unwrap_or(0);
        top >= params.alpha_confidence()
            || top + outstanding < params.alpha_preference()
            // A win for the preference is settled, confidence out of reach.
            || (top >= params.alpha_preference() && top + outstanding < params.alpha_confidence())
    }

    /// Whether it ran out of time at `now`.
    pub(crate) fn expired(&self, now: Duration, timeout: Duration) -> bool {
        now.saturating_sub(self.sent) > timeout
    }

    /// Members asked that have not answered.
    pub(crate) fn silent(&self) -> impl Iterator<Item = &PublicKey> {
        self.asked.difference(&self.answered)
    }

    /// The votes, one per voter, their signatures checked.
    pub(crate) fn close(mut self, verifier: &crate::Verifier) -> Vec<Vote> {
        self.check_signatures(verifier);
        self.votes.into_values().collect()
    }
}

/// One height being decided.
#[derive(Debug)]
pub(crate) struct Round {
    pub(crate) height: u64,
    pub(crate) candidates: BTreeMap<Digest, Arc<Block>>,
    /// When this replica saw the first candidate.
    pub(crate) first_seen: Option<Duration>,
    pub(crate) proposed: bool,
    /// This replica proposed the next height on its preference here.
    pub(crate) pipelined: bool,
    /// Members this replica's proposal went to with one of its polls.
    pub(crate) candidate_to: BTreeSet<PublicKey>,
    pub(crate) snowball: Option<Snowball<Digest>>,
    /// When the preference was taken, or the last round timeout moved on.
    pub(crate) round_started: Option<Duration>,
    /// When this replica sent its first poll at this height.
    pub(crate) first_poll: Option<Duration>,
    /// The polls in flight, oldest first: their outcomes are recorded in
    /// this order, whichever settles first.
    pub(crate) polls: VecDeque<OpenPoll>,
    /// The current run of confident polls (Snowball's), with their votes:
    /// the last β of them are the finality evidence.
    pub(crate) streak: Vec<Poll>,
    /// When the last poll recorded closed: a poll sent before then saw
    /// the network as it was before that outcome, so it is not recorded.
    pub(crate) last_recorded: Option<Duration>,
    pub(crate) fetching: BTreeMap<Digest, Duration>,
    /// When this replica first had settlements to propose at this height.
    pub(crate) ready: Option<Duration>,
}

impl Round {
    pub(crate) fn new(height: u64) -> Self {
        Self {
            height,
            candidates: BTreeMap::new(),
            first_seen: None,
            proposed: false,
            pipelined: false,
            candidate_to: BTreeSet::new(),
            snowball: None,
            round_started: None,
            first_poll: None,
            polls: VecDeque::new(),
            streak: Vec::new(),
            last_recorded: None,
            fetching: BTreeMap::new(),
            ready: None,
        }
    }

    /// Whether to ask for `hash` now: not asked yet, or asked `retry` ago
    /// (the answer may have been lost or refused).
    pub(crate) fn may_fetch(&mut self, hash: Digest, now: Duration, retry: Duration) -> bool {
        match self.fetching.get(&hash) {
            Some(t) if now.saturating_sub(*t) < retry => false,
            _ => {
                self.fetching.insert(hash, now);
                true
            }
        }
    }

    /// Records a closed poll's answers in Snowball and keeps the votes of
    /// the confident run Snowball is on (its length is Snowball's count:
    /// it is not counted twice).
    ///
    /// Snowball's polls are one after another: each goes out with the
    /// preference the one before it left. A poll `sent` before the last
    /// recorded one closed is not recorded (whatever its outcome): polls in
    /// flight together ask the same members at the same moment, and
    /// counting them as consecutive would let β of them, answered by one
    /// snapshot of preferences, decide in one round trip — in a small
    /// committee, a block the others may then move away from. Whether it
    /// was recorded.
    pub(crate) fn record(
        &mut self,
        round: u64,
        sent: Duration,
        now: Duration,
        answers: &[Digest],
        votes: Vec<Vote>,
    ) -> bool {
        let Some(sb) = self.snowball.as_mut() else {
            return false;
        };
        if self.last_recorded.is_some_and(|closed| sent < closed) {
            return false;
        }
        self.last_recorded = Some(now);
        sb.record_poll(answers);
        match sb.run() {
            Some((value, length)) => {
                let value = *value;
                if length == 1 || self.streak.len() + 1 != length {
                    self.streak.clear();
                }
                if self.streak.len() + 1 == length {
                    self.streak.push(Poll {
                        round,
                        votes: votes
                            .into_iter()
                            .filter(|v| v.body.block == value)
                            .collect(),
                    });
                }
                let beta = sb.params().beta();
                if self.streak.len() > beta {
                    let extra = self.streak.len() - beta;
                    self.streak.drain(..extra);
                }
            }
            None => self.streak.clear(),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;
    use crate::vote::VoteBody;

    fn vote(key: &Keypair, block: u8) -> Vote {
        VoteBody {
            chain: Digest([0; 32]),
            height: 1,
            round: 7,
            asker: PublicKey([9; 32]),
            block: Digest([block; 32]),
            voter: key.public(),
        }
        .sign(key)
    }

    #[test]
    fn a_poll_closes_as_soon_as_its_outcome_is_settled() {
        // (answers in arrival order: Some(block) a vote, None no vote) →
        // after how many answers the poll is done; k 7, α 4/6.
        let params = Params::new(7, 4, 6, 2).unwrap();
        let table: &[(&[Option<u8>], usize)] = &[
            // α_confidence reached.
            (&[Some(1); 6], 6),
            // α_preference out of reach for every block.
            (&[None, None, None, None], 4),
            (&[Some(1), Some(2), Some(3), Some(4), Some(5)], 5),
            // A win for 1, confidence out of reach: 4 + 1 < 6.
            (&[Some(1), None, None, Some(1), Some(1), Some(1)], 6),
            // 5 + 1 could still reach 6: needs every answer.
            (
                &[
                    Some(1),
                    Some(1),
                    Some(1),
                    Some(1),
                    Some(1),
                    Some(2),
                    Some(1),
                ],
                7,
            ),
        ];
        for (answers, done_after) in table {
            let keys: Vec<Keypair> = (0..7).map(|_| Keypair::generate()).collect();
            let mut poll = OpenPoll::new(7, Duration::ZERO, keys.iter().map(Keypair::public));
            let mut at = None;
            for (i, (a, k)) in answers.iter().zip(&keys).enumerate() {
                match a {
                    Some(b) => assert_eq!(poll.add(k.public(), vote(k, *b)), Added::Counted),
                    None => poll.no_vote(k.public()),
                }
                if at.is_none() && poll.done(&params) {
                    at = Some(i + 1);
                }
            }
            assert_eq!(at, Some(*done_after), "answers {answers:?}");
        }
    }

    #[test]
    fn two_votes_of_one_voter_for_different_blocks_are_evidence_and_void() {
        let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate()).collect();
        let mut poll = OpenPoll::new(7, Duration::ZERO, keys.iter().map(Keypair::public));
        let k = &keys[0];
        assert_eq!(poll.add(k.public(), vote(k, 1)), Added::Counted);
        assert_eq!(poll.add(k.public(), vote(k, 1)), Added::Ignored, "a repeat");
        let Added::Equivocation(pair) = poll.add(k.public(), vote(k, 2)) else {
            panic!("a conflicting vote is evidence");
        };
        assert!(pair.0.equivocates(&pair.1, &crate::Verifier::uncached()));
        assert_eq!(
            poll.add(k.public(), vote(k, 1)),
            Added::Ignored,
            "void from now on"
        );
        assert_eq!(
            poll.add(keys[1].public(), vote(&keys[2], 1)),
            Added::Ignored,
            "another's vote"
        );
        assert!(poll.close(&crate::Verifier::uncached()).is_empty());
    }
}
