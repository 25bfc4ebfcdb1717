//! The replica: one node's consensus state and its rules (see the module
//! above for the step / ready / advance contract).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::seq::IndexedRandom;

use super::committee::{Committee, Standing};
use super::lottery::{first, rank};
use super::mempool::Mempool;
use super::round::{Added, OpenPoll, Round};
use super::{Commit, Config, Event, Gossip, Input, Liveness, Message, Query, Ready};
use crate::block::{Block, Evidence, MAX_EQUIVOCATIONS, Poll, Records};
use crate::genesis::Genesis;
use crate::keys::{Digest, Keypair, PublicKey, Verifier};
use crate::koth::Claim;
use crate::settlement::Settlement;
use crate::snowball::{Params, Snowball};
use crate::state::State;
use crate::vote::{Vote, VoteBody};

/// Committed blocks kept in memory to answer fetches.
const RECENT: usize = 16;
/// Committed block hashes kept to answer queries for past heights.
const HASHES: usize = 1024;
/// Proposals for the next height kept until it is reached.
const FUTURE: usize = 64;
/// Finality samples kept.
const FINALITY: usize = 1000;

/// One node's consensus.
pub struct Replica {
    key: Keypair,
    me: PublicKey,
    genesis: Genesis,
    id: Digest,
    params: Params,
    config: Config,
    verifier: Arc<Verifier>,
    /// The state after the last committed block.
    state: State,
    hashes: BTreeMap<u64, Digest>,
    recent: VecDeque<Arc<Block>>,
    committee: Committee,
    mempool: Mempool,
    outbox: Vec<Settlement>,
    /// Equivocations known here and not yet on the chain: the next
    /// proposal records them.
    unrecorded: BTreeMap<PublicKey, Box<(Vote, Vote)>>,
    round: Round,
    future: Vec<Arc<Block>>,
    next_poll: u64,
    rng: rand::rngs::StdRng,
    last_commit: Duration,
    last_claim: Option<Duration>,
    nonce: u64,
    behind: Option<PublicKey>,
    last_sync: Option<Duration>,
    finality: VecDeque<u64>,
    /// Recent blocks' wait from the first candidate to the first poll.
    waits: VecDeque<u64>,
    /// Recent polls' time from sent to closed.
    poll_times: VecDeque<u64>,
    pipelined: u64,
    durable: u64,
    out: Ready,
}

impl Replica {
    /// A replica on `genesis` whose chain is at `state`; `recent` are the
    /// last committed blocks (any number, oldest first: they answer
    /// fetches and queries for past heights). `verifier` may be shared
    /// with anything else that checks signatures in this process.
    pub fn new(
        genesis: Genesis,
        state: State,
        recent: Vec<Arc<Block>>,
        key: Keypair,
        config: Config,
        verifier: Arc<Verifier>,
        now: Duration,
    ) -> Self {
        let me = key.public();
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&Digest::of(b"orb/sample", &me.0).0);
        let id = genesis.id();
        let hashes = recent.iter().map(|b| (b.header.height, b.hash())).collect();
        let mut recent: VecDeque<Arc<Block>> = recent.into();
        while recent.len() > RECENT {
            recent.pop_front();
        }
        let mut committee = Committee::new(&genesis, config.bench_for);
        for voter in state.excluded() {
            committee.exclude(voter);
        }
        Self {
            me,
            key,
            id,
            params: genesis.snowball,
            committee,
            mempool: Mempool::new(config.max_mempool),
            round: Round::new(state.height + 1),
            durable: state.height,
            state,
            genesis,
            verifier,
            hashes,
            recent,
            outbox: Vec::new(),
            unrecorded: BTreeMap::new(),
            future: Vec::new(),
            next_poll: 1,
            rng: rand::rngs::StdRng::from_seed(seed),
            last_commit: now,
            last_claim: None,
            nonce: 0,
            behind: None,
            last_sync: None,
            finality: VecDeque::new(),
            waits: VecDeque::new(),
            poll_times: VecDeque::new(),
            pipelined: 0,
            out: Ready::default(),
            config,
        }
    }

    // ---- reading ---------------------------------------------------------

    /// This replica's key.
    pub fn key(&self) -> PublicKey {
        self.me
    }

    /// The committed height (what [`Replica::ready`] handed out, durable or
    /// not yet).
    pub fn height(&self) -> u64 {
        self.state.height
    }

    /// The height the driver said is durable.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// The committed head's hash (the chain id before block 1).
    pub fn head(&self) -> Digest {
        self.state.head
    }

    /// The state after the last committed block.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The committee members this replica knows, sorted.
    pub fn committee(&self) -> &[PublicKey] {
        self.committee.members()
    }

    /// Whether this replica holds a slot.
    pub fn is_member(&self) -> bool {
        self.committee.holds(&self.me).is_some()
    }

    /// Settlements waiting.
    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }

    /// Finality of recent blocks seen here, in microseconds.
    pub fn finality_us(&self) -> Vec<u64> {
        self.finality.iter().copied().collect()
    }

    /// For recent blocks decided here, how long this replica waited from
    /// the first candidate to its first poll, in microseconds.
    pub fn wait_us(&self) -> Vec<u64> {
        self.waits.iter().copied().collect()
    }

    /// How long recent polls took from sent to closed, in microseconds.
    pub fn poll_us(&self) -> Vec<u64> {
        self.poll_times.iter().copied().collect()
    }

    /// Proposals this replica made for a height while the one before it
    /// was still being decided.
    pub fn pipelined(&self) -> u64 {
        self.pipelined
    }

    /// Voters this replica excluded for equivocating (caught here, told
    /// by gossip, or recorded on the chain).
    pub fn equivocators(&self) -> Vec<PublicKey> {
        self.committee.excluded().copied().collect()
    }

    /// The candidates for the height being decided.
    pub fn candidates(&self) -> Vec<Digest> {
        self.round.candidates.keys().copied().collect()
    }

    /// A candidate (or recently committed block) by hash.
    pub fn candidate(&self, hash: &Digest) -> Option<Arc<Block>> {
        self.round.candidates.get(hash).cloned().or_else(|| {
            self.recent
                .iter()
                .rev()
                .find(|b| b.hash() == *hash)
                .cloned()
        })
    }

    /// This replica's current preference, if it has one.
    pub fn preference(&self) -> Option<Digest> {
        self.round.snowball.as_ref().map(|s| *s.preference())
    }

    /// The hash of the block committed at `height`, if still known.
    pub fn hash_at(&self, height: u64) -> Option<Digest> {
        self.hashes.get(&height).copied()
    }

    // ---- the contract ----------------------------------------------------

    /// Handles one input at `now`.
    pub fn step(&mut self, input: Input, now: Duration) {
        match input {
            Input::Claim(c) => {
                self.committee.offer(c, self.round.height);
            }
            Input::Settlements { settlements, local } => self.on_settlements(settlements, local),
            Input::Proposal(block) => self.on_proposal(block, now),
            Input::Committed { block, from } => {
                let height = block.header.height;
                if height == self.round.height {
                    self.commit(block, now, false);
                } else if height > self.round.height {
                    self.behind = Some(from);
                }
            }
            Input::Votes { from, round, votes } => self.on_votes(from, round, votes, now),
            Input::Query { id, from, query } => {
                let vote = self.answer(&query, from, now);
                self.out.messages.push(Message::Answer { id, vote });
            }
            Input::FetchBlock { id, hash } => {
                let block = self.candidate(&hash);
                self.out.messages.push(Message::AnswerBlock { id, block });
            }
            Input::Equivocation(pair) => {
                if pair.0.equivocates(&pair.1, &self.verifier) && pair.0.body.chain == self.id {
                    self.excluded(pair, false);
                }
            }
            Input::Tick => self.tick(now),
        }
    }

    /// What to do now: persist `persist`, then send `messages`.
    pub fn ready(&mut self) -> Ready {
        std::mem::take(&mut self.out)
    }

    /// The driver made every block up to `height` durable.
    pub fn advance(&mut self, height: u64) {
        self.durable = self.durable.max(height.min(self.state.height));
    }

    // ---- inputs ----------------------------------------------------------

    fn on_settlements(&mut self, settlements: Vec<Settlement>, local: bool) {
        // Only proposers need a mempool; a node outside the committee
        // still passes its own settlements on.
        let member = self.is_member();
        for s in settlements {
            if self.mempool.is_full() {
                break;
            }
            if !local && !member {
                continue;
            }
            if self.state.is_settled(&s.body.invoker, s.body.invocation) || s.check().is_err() {
                continue;
            }
            let (key, message, sig) = s.signed_message();
            let mut batch = vec![(key, message, sig)];
            batch.extend(s.body.receipts.iter().map(|r| r.signed_message()));
            if !self.verifier.verify_batch(&batch) {
                continue;
            }
            if local {
                self.outbox.push(s.clone());
            }
            self.mempool.insert(s);
        }
    }

    fn on_proposal(&mut self, block: Arc<Block>, now: Duration) {
        let h = block.header.height;
        if h > self.round.height {
            if h == self.round.height + 1 && self.future.len() < FUTURE {
                self.future.push(block);
            }
            return;
        }
        // Only members vote on candidates; the others wait for the
        // committed block.
        if !self.is_member() {
            return;
        }
        let hash = block.hash();
        if h < self.round.height || self.round.candidates.contains_key(&hash) {
            return;
        }
        let checked = block
            .check_linked_proposal_with(
                &self.id,
                h,
                &self.state.head,
                &self.genesis,
                &self.verifier,
            )
            .and_then(|()| self.state.effects(&self.genesis, &block).map(drop));
        match checked {
            Ok(()) => {
                // Our own pipelined proposal, checked now its parent is
                // committed: this height has our proposal.
                self.round.proposed |= block.header.proposer.key == self.me;
                self.round.first_seen.get_or_insert(now);
                self.round.fetching.remove(&hash);
                self.round.candidates.insert(hash, block);
                // A decision that waited for this block's body.
                self.try_decide(now);
                // The lottery's first may be here already: prefer it and
                // poll now, not on the next tick.
                if self.prefer(now) {
                    self.poll(now);
                }
            }
            Err(reason) => self.out.events.push(Event::Refused { height: h, reason }),
        }
    }

    fn vote(&self, height: u64, round: u64, asker: PublicKey, block: Digest) -> Vote {
        VoteBody {
            chain: self.id,
            height,
            round,
            asker,
            block,
            voter: self.me,
        }
        .sign(&self.key)
    }

    fn answer(&mut self, q: &Query, from: PublicKey, now: Duration) -> Option<Vote> {
        if q.chain != self.id || !self.is_member() {
            return None;
        }
        if q.height < self.round.height {
            let hash = self.hashes.get(&q.height).copied()?;
            return Some(self.vote(q.height, q.round, from, hash));
        }
        if q.height > self.round.height {
            self.behind = Some(from);
            return None;
        }
        if let Some(candidate) = &q.candidate
            && !self.round.candidates.contains_key(&q.block)
            && candidate.hash() == q.block
        {
            self.on_proposal(candidate.clone(), now);
        }
        if self.round.snowball.is_none() {
            if self.round.candidates.contains_key(&q.block) {
                // Adopt the first value queried with.
                self.round.snowball = Some(Snowball::new(self.params, q.block));
                self.round.round_started = Some(now);
            } else {
                if self.round.may_fetch(q.block, now, self.config.retry) {
                    self.out.messages.push(Message::Fetch {
                        hash: q.block,
                        peer: from,
                    });
                }
                return None;
            }
        }
        let pref = *self.round.snowball.as_ref()?.preference();
        Some(self.vote(q.height, q.round, from, pref))
    }

    fn on_votes(&mut self, from: PublicKey, round: u64, votes: Vec<Vote>, now: Duration) {
        // Any answer, even to a poll closed without waiting for it, shows
        // the member is there.
        self.committee.answered(&from);
        let Some(poll) = self.round.polls.iter_mut().find(|p| p.round == round) else {
            return;
        };
        if !poll.asked(&from) {
            return;
        }
        let height = self.round.height;
        let mut caught = Vec::new();
        let mut unknown = Vec::new();
        let mut any = false;
        // One vote is counted now; its signature is checked with the
        // poll's others, in one batch, before the count may close the poll.
        // More than one may be an equivocation: each is checked now.
        let several = votes.len() > 1;
        for v in votes {
            let b = &v.body;
            let valid = b.chain == self.id
                && b.height == height
                && b.round == round
                && b.asker == self.me
                && b.voter == from
                && (!several || v.verify_with(&self.verifier));
            if !valid {
                continue;
            }
            any = true;
            if !self.round.candidates.contains_key(&b.block) {
                unknown.push(b.block);
            }
            if let Added::Equivocation(pair) = poll.add(from, v)
                && pair.0.equivocates(&pair.1, &self.verifier)
            {
                caught.push(pair);
            }
        }
        if !any {
            // Refused or no preference yet: the poll need not wait for
            // it, and it is not held against the member (silence is).
            poll.no_vote(from);
        }
        for pair in caught {
            self.excluded(pair, true);
        }
        // A vote for a block this replica does not hold: the voter holds
        // it (an honest one votes only for blocks it has), so it is asked
        // for it; a voter that cannot produce it is caught by the driver.
        for hash in unknown {
            if self.round.may_fetch(hash, now, self.config.retry) {
                self.out.messages.push(Message::Fetch { hash, peer: from });
            }
        }
        self.close_polls(now);
    }

    /// Whether the oldest poll in flight can be closed: its outcome is
    /// settled, counting only votes whose signatures hold (checked now, in
    /// one batch, if the unchecked count says it is), or its time ran out
    /// (`Some(true)`).
    fn oldest_closes(&mut self, now: Duration) -> Option<bool> {
        let poll = self.round.polls.front_mut()?;
        if poll.expired(now, self.config.poll_timeout) {
            return Some(true);
        }
        if !poll.done(&self.params) {
            return None;
        }
        poll.check_signatures(&self.verifier);
        poll.done(&self.params).then_some(false)
    }

    /// Records an equivocation: the voter is excluded here, kept for the
    /// next proposal (which puts it on the chain) and, when this replica
    /// caught it, everyone is told.
    fn excluded(&mut self, pair: Box<(Vote, Vote)>, caught_here: bool) {
        let voter = pair.0.body.voter;
        if self.committee.exclude(voter) {
            self.out.events.push(Event::Equivocation { voter });
            if !self.state.is_excluded(&voter) {
                self.unrecorded.insert(voter, pair.clone());
            }
            if caught_here {
                self.out
                    .messages
                    .push(Message::Gossip(Gossip::Equivocation(pair)));
            }
        }
    }

    // ---- polls and decisions ----------------------------------------------

    /// Closes the polls that can be, oldest first, recording each outcome
    /// in the order the polls went out (a later poll that settled first
    /// waits for the ones before it); then decides if it can and sends new
    /// polls for the ones closed. Only a poll that ran out of time holds
    /// its silence against the members that did not answer (one closed
    /// early simply did not wait for them).
    fn close_polls(&mut self, now: Duration) {
        let height = self.round.height;
        let mut closed = false;
        while let Some(timed_out) = self.oldest_closes(now) {
            let poll = self.round.polls.pop_front().expect("the oldest closes");
            closed = true;
            let (round, sent) = (poll.round, poll.sent);
            keep(&mut self.poll_times, now.saturating_sub(sent));
            if timed_out {
                for k in poll.silent() {
                    self.committee.missed(k, now);
                }
            }
            // Votes of members excluded meanwhile do not count.
            let votes: Vec<Vote> = poll
                .close(&self.verifier)
                .into_iter()
                .filter(|v| self.committee.standing(&v.body.voter, now) != Standing::Excluded)
                .collect();
            let answers: Vec<Digest> = votes.iter().map(|v| v.body.block).collect();
            // A poll not recorded (it went out before the last recorded
            // one closed) does not break a tie either: it saw the network
            // before that outcome.
            let recorded = self.round.record(round, sent, now, &answers, votes);
            if recorded && self.config.liveness == Liveness::TieBreak {
                self.break_tie(&answers);
            }
            self.try_decide(now);
            if self.round.height != height {
                // Committed: the polls left were for the height decided.
                return;
            }
        }
        if closed {
            // Event-driven: new polls go out as soon as earlier ones closed
            // (and a confident run may let the next height be proposed).
            self.propose_next(now);
            self.poll(now);
        }
    }

    /// A split no sample can break (no block reached α_preference): lean
    /// every replica the same way, toward the candidate with the smallest
    /// lottery ticket among the most voted in the poll. This replica's
    /// preference is kept when it alone is the most voted: a poll short of
    /// α_preference only because members were silent (crashed, cut off) is
    /// not a split, and leaning on the ticket then would move members off
    /// a block one of them may have decided already. Deciding still takes
    /// β consecutive polls of α_confidence votes.
    fn break_tie(&mut self, answers: &[Digest]) {
        let mut counts: BTreeMap<Digest, usize> = BTreeMap::new();
        for a in answers {
            *counts.entry(*a).or_default() += 1;
        }
        let Some(sb) = self.round.snowball.as_mut() else {
            return;
        };
        let top = counts.values().max().copied().unwrap_or(0);
        if top >= self.params.alpha_preference() || sb.decided().is_some() {
            return;
        }
        let most: Vec<&Digest> = counts
            .iter()
            .filter(|(_, n)| **n == top)
            .map(|(h, _)| h)
            .collect();
        if most == [sb.preference()] {
            return;
        }
        let best = first(
            &self.state.head,
            counts
                .iter()
                .filter(|(_, n)| **n == top)
                .filter_map(|(h, _)| self.round.candidates.get(h)),
        )
        .map(|b| b.hash());
        if let Some(best) = best
            && best != *sb.preference()
        {
            *sb = Snowball::new(self.params, best);
            self.round.streak.clear();
        }
    }

    /// [`Liveness::Timeout`]: a round that ran out without a decision moves
    /// on to the lottery's first candidate, re-proposed.
    fn round_timeout(&mut self, now: Duration) {
        let r = &mut self.round;
        let (Some(sb), Some(started)) = (r.snowball.as_mut(), r.round_started) else {
            return;
        };
        if sb.decided().is_some() || now.saturating_sub(started) < self.config.round_timeout {
            return;
        }
        r.round_started = Some(now);
        // A replica on a confident run is not moved: the network may be
        // about to decide its preference.
        if sb.run().is_some() {
            return;
        }
        let Some(best) = first(&self.state.head, r.candidates.values()).cloned() else {
            return;
        };
        let hash = best.hash();
        if hash != *sb.preference() {
            *sb = Snowball::new(self.params, hash);
            r.streak.clear();
        }
        self.out
            .messages
            .push(Message::Gossip(Gossip::Proposal(best)));
    }

    fn try_decide(&mut self, now: Duration) {
        let Some(decided) = self
            .round
            .snowball
            .as_ref()
            .and_then(|s| s.decided().copied())
        else {
            return;
        };
        let beta = self.params.beta();
        let streak = &self.round.streak;
        if streak.len() < beta
            || streak
                .iter()
                .any(|p| p.votes.first().map(|v| v.body.block) != Some(decided))
        {
            return;
        }
        let Some(block) = self.round.candidates.get(&decided).cloned() else {
            let voter = streak
                .last()
                .and_then(|p| p.votes.first())
                .map(|v| v.body.voter);
            if let Some(peer) = voter
                && self.round.may_fetch(decided, now, self.config.retry)
            {
                self.out.messages.push(Message::Fetch {
                    hash: decided,
                    peer,
                });
            }
            return;
        };
        let polls: Vec<Poll> = streak[streak.len() - beta..].to_vec();
        let mut claims: Vec<Claim> = Vec::new();
        for p in &polls {
            for v in &p.votes {
                if let Some(c) = self.committee.holds(&v.body.voter)
                    && !claims.contains(&c)
                {
                    claims.push(c);
                }
            }
        }
        let mut block = (*block).clone();
        block.evidence = Evidence { claims, polls };
        self.commit(Arc::new(block), now, true);
    }

    fn commit(&mut self, block: Arc<Block>, now: Duration, decided_here: bool) {
        let height = block.header.height;
        // A block decided here was checked as a proposal, its votes as they
        // came in; checking it again hits the verifier's memory.
        let checked = block
            .check_linked_proposal_with(
                &self.id,
                height,
                &self.state.head,
                &self.genesis,
                &self.verifier,
            )
            .and_then(|()| block.check_evidence_with(&self.genesis, &self.verifier))
            .and_then(|()| self.state.effects(&self.genesis, &block));
        let effects = match checked {
            Ok(effects) => effects,
            Err(reason) => {
                self.out.events.push(Event::Refused { height, reason });
                if decided_here {
                    self.round.streak.clear();
                }
                return;
            }
        };
        let hash = block.hash();
        self.state.apply(&block, &effects);
        self.mempool.prune(&self.state);
        for (a, _) in &block.equivocations {
            let voter = a.body.voter;
            self.unrecorded.remove(&voter);
            if self.committee.exclude(voter) {
                self.out.events.push(Event::Equivocation { voter });
            }
        }
        let finality = self.round.first_seen.map(|t| now.saturating_sub(t));
        if let Some(f) = finality {
            keep(&mut self.finality, f);
        }
        if let (Some(seen), Some(polled)) = (self.round.first_seen, self.round.first_poll)
            && decided_here
        {
            keep(&mut self.waits, polled.saturating_sub(seen));
        }
        self.out.events.push(Event::Committed {
            height,
            hash,
            receipts: block.receipt_count(),
            finality,
            polls: self.round.snowball.as_ref().map_or(0, Snowball::polls),
            candidates: self.round.candidates.len(),
            decided_here,
        });
        if decided_here {
            self.out
                .messages
                .push(Message::Gossip(Gossip::Committed(block.clone())));
        }
        self.out.persist.push(Commit {
            block: block.clone(),
            effects,
        });
        self.hashes.insert(height, hash);
        while self.hashes.len() > HASHES {
            self.hashes.pop_first();
        }
        self.recent.push_back(block);
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        self.round = Round::new(height + 1);
        self.last_commit = now;
        let lapsed = self
            .committee
            .expire(&self.genesis, &self.state, self.round.height);
        if lapsed.iter().any(|c| c.key == self.me) {
            // Our own claim lapsed: mine a new one.
            self.last_claim = None;
        }
        for b in std::mem::take(&mut self.future) {
            self.on_proposal(b, now);
        }
    }

    // ---- time --------------------------------------------------------------

    fn tick(&mut self, now: Duration) {
        self.mine(now);
        if !self.outbox.is_empty() {
            self.out
                .messages
                .push(Message::Gossip(Gossip::Settlements(std::mem::take(
                    &mut self.outbox,
                ))));
        }
        if self.behind.is_none()
            && now.saturating_sub(self.last_sync.unwrap_or_default().max(self.last_commit))
                >= self.config.idle_sync
        {
            let others: Vec<PublicKey> = self
                .committee
                .members()
                .iter()
                .filter(|m| **m != self.me)
                .copied()
                .collect();
            self.behind = others.choose(&mut self.rng).copied();
        }
        if let Some(peer) = self.behind.take()
            && self
                .last_sync
                .is_none_or(|t| now.saturating_sub(t) > self.config.retry / 2)
        {
            self.last_sync = Some(now);
            self.out.messages.push(Message::Sync {
                from: self.round.height,
                peer,
            });
        }
        if !self.is_member() {
            return;
        }
        self.propose(now);
        self.propose_next(now);
        self.prefer(now);
        if self.config.liveness == Liveness::Timeout {
            self.round_timeout(now);
        }
        let height = self.round.height;
        self.close_polls(now);
        if self.round.height != height {
            return;
        }
        self.try_decide(now);
        self.poll(now);
    }

    /// Takes a first preference, the candidate with the smallest lottery
    /// ticket, once the gathering window has passed since the first
    /// candidate, or at once when that candidate's proposer is the
    /// committee's first in the lottery (no member can propose a better
    /// one). Whether it took one now.
    fn prefer(&mut self, now: Duration) -> bool {
        let r = &self.round;
        if r.snowball.is_some() || !self.is_member() {
            return false;
        }
        let Some(pick) = first(&self.state.head, r.candidates.values()) else {
            return false;
        };
        let gathered = r
            .first_seen
            .is_some_and(|t| now.saturating_sub(t) >= self.config.gather);
        let unbeatable = || {
            rank(
                &self.state.head,
                self.committee.members(),
                &pick.header.proposer.key,
            ) == 0
        };
        if !gathered && !unbeatable() {
            return false;
        }
        let pick = pick.hash();
        self.round.snowball = Some(Snowball::new(self.params, pick));
        self.round.round_started = Some(now);
        true
    }

    fn mine(&mut self, now: Duration) {
        if let Some(mine) = self.committee.holds(&self.me) {
            if self
                .last_claim
                .is_none_or(|t| now.saturating_sub(t) > self.config.claim_every)
            {
                self.last_claim = Some(now);
                self.out.messages.push(Message::Gossip(Gossip::Claim(mine)));
            }
            return;
        }
        // Only empty slots: a full committee is not attacked by honest
        // nodes; slots free up as claims lapse.
        if self.committee.filled() >= self.committee.slots() as usize || self.config.mine_tries == 0
        {
            return;
        }
        match self
            .committee
            .mine(self.me, self.nonce, self.config.mine_tries)
        {
            Ok(c) => {
                self.nonce = c.nonce + 1;
                if self.committee.offer(c, self.round.height) {
                    self.last_claim = Some(now);
                    self.out.messages.push(Message::Gossip(Gossip::Claim(c)));
                }
            }
            Err(next) => self.nonce = next,
        }
    }

    fn propose(&mut self, now: Duration) {
        let Some(claim) = self.committee.holds(&self.me) else {
            return;
        };
        if self.round.proposed || (self.mempool.is_empty() && self.unrecorded.is_empty()) {
            return;
        }
        // Members propose in lottery order: the first at once, the next
        // only when nothing was proposed one step later, and so on, so a
        // height normally has one candidate. Ranks count from when this
        // node had something to propose, so that settlements arriving
        // everywhere at once do not make every member propose at once.
        let prev = self.state.head;
        let rank = rank(&prev, self.committee.members(), &self.me);
        let ready = *self.round.ready.get_or_insert(now);
        let due = (self.last_commit + self.config.block_interval).max(ready)
            + self.config.proposer_step * rank;
        if now < due || (rank > 0 && !self.round.candidates.is_empty()) {
            return;
        }
        let settlements = self.mempool.take(&self.genesis, &self.state, None);
        let equivocations: Vec<(Vote, Vote)> = self
            .unrecorded
            .values()
            .take(MAX_EQUIVOCATIONS)
            .map(|p| (**p).clone())
            .collect();
        if settlements.is_empty() && equivocations.is_empty() {
            return;
        }
        // Who voted for the previous block, as its evidence here says
        // (claims that lapsed since are left out: the chain refuses them).
        let voted = self.voted(self.round.height);
        let block = Arc::new(Block::propose_with(
            &self.key,
            self.id,
            self.round.height,
            prev,
            claim,
            settlements,
            Records {
                equivocations,
                voted,
            },
        ));
        self.round.proposed = true;
        self.out
            .messages
            .push(Message::Gossip(Gossip::Proposal(block.clone())));
        self.on_proposal(block, now);
    }

    /// The claims a proposal at `height` records as having voted: the
    /// voters in the last committed block's evidence (claims that lapse by
    /// `height` are left out: the chain refuses them).
    fn voted(&self, height: u64) -> Vec<Claim> {
        self.recent
            .back()
            .filter(|b| b.header.height + 2 >= height)
            .map(|b| b.voters_claims())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !self.state.claim_expired(&self.genesis, c, height))
            .collect()
    }

    /// Pipelining: while this height is being decided, the member first in
    /// the lottery on top of its preference proposes the next height on
    /// that block, with settlements the preference leaves out, once the
    /// preference is on a confident run and the block interval has passed
    /// since the height's first candidate. The proposal waits, at every
    /// member, until this height commits; it is checked then against the
    /// committed head like any proposal, so it is only ever committed
    /// after its parent (one on a block that lost is refused, and the
    /// proposer proposes again as usual).
    fn propose_next(&mut self, now: Duration) {
        let r = &self.round;
        let Some(claim) = self.committee.holds(&self.me) else {
            return;
        };
        if r.pipelined || self.mempool.is_empty() {
            return;
        }
        let Some(sb) = &r.snowball else { return };
        let Some((pref, _)) = sb.run() else { return };
        let Some(parent) = r.candidates.get(pref).cloned() else {
            return;
        };
        let due = r.first_seen.unwrap_or(now) + self.config.block_interval;
        if now < due || rank(&parent.hash(), self.committee.members(), &self.me) != 0 {
            return;
        }
        let Ok(effects) = self.state.effects(&self.genesis, &parent) else {
            return;
        };
        self.round.pipelined = true;
        let settlements = self
            .mempool
            .take(&self.genesis, &self.state, Some((&parent, &effects)));
        if settlements.is_empty() {
            return;
        }
        // Equivocations the parent does not record go with it too: when
        // every height is pipelined, they would otherwise never be.
        let equivocations: Vec<(Vote, Vote)> = self
            .unrecorded
            .iter()
            .filter(|(voter, _)| {
                !parent
                    .equivocations
                    .iter()
                    .any(|(a, _)| a.body.voter == **voter)
            })
            .take(MAX_EQUIVOCATIONS)
            .map(|(_, p)| (**p).clone())
            .collect();
        let height = self.round.height + 1;
        let block = Arc::new(Block::propose_with(
            &self.key,
            self.id,
            height,
            parent.hash(),
            claim,
            settlements,
            Records {
                equivocations,
                voted: self.voted(height),
            },
        ));
        self.pipelined += 1;
        self.out
            .messages
            .push(Message::Gossip(Gossip::Proposal(block.clone())));
        self.on_proposal(block, now);
    }

    /// Sends polls until [`Config::polls_in_flight`] are in flight.
    fn poll(&mut self, now: Duration) {
        while self.round.polls.len() < self.config.polls_in_flight.max(1) {
            if !self.poll_once(now) {
                return;
            }
        }
    }

    /// Sends one poll; whether it did.
    fn poll_once(&mut self, now: Duration) -> bool {
        if !self.is_member() {
            return false;
        }
        let Some(sb) = &self.round.snowball else {
            return false;
        };
        let value = *sb.decided().unwrap_or(sb.preference());
        let members = self.committee.sampled(now);
        if members.len() < self.params.alpha_confidence() {
            return false;
        }
        let peers: Vec<PublicKey> = members
            .sample(&mut self.rng, self.params.k().min(members.len()))
            .copied()
            .collect();
        let round = self.next_poll;
        self.next_poll += 1;
        let height = self.round.height;
        self.round.first_poll.get_or_insert(now);
        let mut poll = OpenPoll::new(round, now, peers.iter().copied());
        if peers.contains(&self.me) {
            poll.add(self.me, self.vote(height, round, self.me, value));
        }
        let (benched, asked): (Vec<PublicKey>, Vec<PublicKey>) = peers
            .into_iter()
            .filter(|p| *p != self.me)
            .partition(|p| self.committee.standing(p, now) == Standing::Benched);
        for p in benched {
            poll.no_vote(p);
        }
        self.round.polls.push_back(poll);
        // Our own proposal goes with each poll that prefers it and asks a
        // member not sent it yet.
        let candidate = self
            .round
            .candidates
            .get(&value)
            .filter(|b| b.header.proposer.key == self.me)
            .filter(|_| asked.iter().any(|p| !self.round.candidate_to.contains(p)))
            .cloned();
        if candidate.is_some() {
            self.round.candidate_to.extend(asked.iter().copied());
        }
        self.out.messages.push(Message::Query {
            query: Query {
                chain: self.id,
                height,
                round,
                block: value,
                candidate,
            },
            peers: asked,
        });
        // A poll settled already (every member sampled is benched, or it
        // sampled only itself) is closed by the next tick, not here: the
        // next poll would start at once, and so on without end.
        true
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("me", &self.me)
            .field("height", &self.state.height)
            .field("member", &self.is_member())
            .finish_non_exhaustive()
    }
}

/// Keeps `d` in microseconds among the last [`FINALITY`] of `recent`.
fn keep(recent: &mut VecDeque<u64>, d: Duration) {
    recent.push_back(d.as_micros() as u64);
    if recent.len() > FINALITY {
        recent.pop_front();
    }
}
