//! Sequencing: how an agent's hosts put its messages in one order and
//! agree on its states.
//!
//! An agent is hosted by a fixed list of R hosts. One of them, the
//! *sequencer*, takes the agent's messages, gives each the next sequence
//! number and asks every host to apply it; a step counts once a strict
//! majority of the R hosts have applied it durably and agree on its
//! result (the state hashes before and after and the reply). The rules
//! are Paxos over the agent's history, with the state hash standing for
//! the history:
//!
//! - A sequencer leads under a [`Ballot`] (a round number and its place in
//!   the host list; ballots are totally ordered). It starts by asking the
//!   hosts to *prepare*: each promises to ignore lower ballots and tells
//!   its [`Head`] (sequence number, state hash, and the ballot under which
//!   it accepted that state). With a strict majority of promises, the
//!   sequencer takes the head with the highest (ballot, seq) among them
//!   ([`Recovery`]): any step a majority acknowledged is in it, because
//!   every majority shares a host with that one. It then *syncs* the
//!   hosts to that head (a host whose head differs fetches the state and
//!   the log from the sequencer) before it sequences anything new.
//! - Each message is replicated with its sequence number and the hash of
//!   the state it applies to; a host applies it only on exactly that state
//!   ([`Standing::replicate`]), else it catches up first. A sequencer
//!   proposes at most one message for a sequence number under a ballot: a
//!   step that did not reach a majority may still be held by some hosts,
//!   so the sequencer takes over under a new ballot before the next one
//!   (two messages at one place under one ballot would rank alike in a
//!   recovery, and the wrong one could be chosen).
//! - The votes of one step are counted by a [`Round`]: a result held by a
//!   strict majority of the hosts is the agent's; the hosts that gave
//!   another are outvoted and resynchronised from the majority.
//!
//! - The host list can change (a host leaves, another takes its place):
//!   each list is an *epoch*, and a ballot belongs to one (its round's
//!   high 32 bits), so every ballot of a later epoch is above every ballot
//!   of an earlier one and hosts refuse ballots of an epoch that is not
//!   theirs. While an agent moves, a takeover needs a strict majority of
//!   the old list *and* of the new ([`Recovery`] counts each), then syncs
//!   a majority of the new: whatever an old majority acknowledged is then
//!   held by a new majority, and from there on the new list alone counts.
//!
//! Nothing here does I/O or reads a clock: a node's driver persists the
//! [`Standing`] before answering, sends the requests and feeds the
//! answers in; the same rules run in the tests' simulation below.

use serde::{Deserialize, Serialize};

/// A sequencer's term: a round number, then the sequencer's place in the
/// agent's host list (so two hosts never lead under equal ballots).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// Increases with every takeover.
    pub round: u64,
    /// The sequencer's index in the host list.
    pub leader: u32,
}

impl Ballot {
    /// The ballot host `leader` takes over with in host list `epoch` after
    /// seeing `highest`: above it, and in that epoch.
    pub fn after(highest: Ballot, leader: u32, epoch: u32) -> Ballot {
        Ballot {
            round: (highest.round + 1).max(u64::from(epoch) << 32),
            leader,
        }
    }

    /// The host list this ballot was taken in.
    pub fn epoch(&self) -> u32 {
        (self.round >> 32) as u32
    }
}

/// Where a host's copy of an agent stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Messages applied.
    pub seq: u64,
    /// blake3 of the state after them.
    pub hash: [u8; 32],
    /// The ballot under which this state was accepted.
    pub accepted: Ballot,
}

impl Head {
    /// An agent no message reached yet, starting from the state hashed
    /// `hash`.
    pub fn genesis(hash: [u8; 32]) -> Head {
        Head {
            seq: 0,
            hash,
            accepted: Ballot::default(),
        }
    }

    /// Orders heads for recovery: a later ballot first, then more applied.
    fn rank(&self) -> (Ballot, u64) {
        (self.accepted, self.seq)
    }
}

/// One host's part in an agent's replication: the highest ballot it
/// promised and its head. Persisted with the state it describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// Ballots below this one are refused.
    pub promised: Ballot,
    /// The host's copy.
    pub head: Head,
}

/// A host's answer to a prepare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prepared {
    /// It promised; here is its head.
    Promise(Head),
    /// It promised a higher ballot before.
    Stale {
        /// That ballot.
        promised: Ballot,
    },
}

/// What a host does with a replicated message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replicated {
    /// Apply it: the host has exactly the state it applies to.
    Apply,
    /// The host's last step is at that very place, accepted under an
    /// earlier ballot: if its log holds this message there (on the same
    /// state before), it accepts that step under this ballot and votes
    /// it; else it catches up. A vote must always stand for a step
    /// accepted under the voting ballot, or a later recovery could rank
    /// an older copy above the one the vote helped agree.
    Holds,
    /// A late copy of a step of this very ballot that the host is already
    /// past: it votes what its log holds at that place and changes
    /// nothing (going back would drop later agreed steps).
    Late,
    /// The host is behind, elsewhere, or past it with steps of an earlier
    /// ballot (which no majority agreed: the sequencer's recovery would
    /// have had them): it catches up from the sequencer.
    CatchUp,
    /// A higher ballot was promised: the sender no longer leads.
    Stale {
        /// The ballot promised.
        promised: Ballot,
    },
}

/// What a host does with a sync to the sequencer's head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synced {
    /// It has that state: it accepts it under the new ballot.
    Same,
    /// It already holds a later state under this very ballot (the sync
    /// came late, after steps that build on it): nothing to do, and it
    /// must not go back.
    Past,
    /// It catches up from the sequencer.
    CatchUp,
    /// A higher ballot was promised.
    Stale {
        /// The ballot promised.
        promised: Ballot,
    },
}

impl Standing {
    /// A host of an agent no message reached yet.
    pub fn new(genesis: [u8; 32]) -> Standing {
        Standing {
            promised: Ballot::default(),
            head: Head::genesis(genesis),
        }
    }

    /// Answers a prepare under `ballot` (promising it when it is not
    /// below the promise: a sequencer may prepare again).
    pub fn prepare(&mut self, ballot: Ballot) -> Prepared {
        if ballot < self.promised {
            return Prepared::Stale {
                promised: self.promised,
            };
        }
        self.promised = ballot;
        Prepared::Promise(self.head)
    }

    /// What to do with message number `seq`, which applies to the state
    /// hashed `before`, replicated under `ballot`.
    pub fn replicate(&self, ballot: Ballot, seq: u64, before: [u8; 32]) -> Replicated {
        if ballot < self.promised {
            return Replicated::Stale {
                promised: self.promised,
            };
        }
        if seq == self.head.seq + 1 && before == self.head.hash {
            Replicated::Apply
        } else if seq <= self.head.seq && self.head.accepted == ballot {
            Replicated::Late
        } else if seq == self.head.seq {
            Replicated::Holds
        } else {
            Replicated::CatchUp
        }
    }

    /// What to do with a sync to `head` under `ballot`.
    pub fn sync(&self, ballot: Ballot, head: &Head) -> Synced {
        if ballot < self.promised {
            return Synced::Stale {
                promised: self.promised,
            };
        }
        if head.seq == self.head.seq && head.hash == self.head.hash {
            Synced::Same
        } else if self.head.accepted == ballot && self.head.seq >= head.seq {
            Synced::Past
        } else {
            Synced::CatchUp
        }
    }

    /// The host now holds state `hash` after `seq` messages, accepted
    /// under `ballot` (applied, synced or caught up).
    pub fn accept(&mut self, ballot: Ballot, seq: u64, hash: [u8; 32]) {
        self.promised = self.promised.max(ballot);
        self.head = Head {
            seq,
            hash,
            accepted: ballot,
        };
    }
}

/// A strict majority of `hosts`.
pub fn majority(hosts: usize) -> usize {
    hosts / 2 + 1
}

/// A sequencer's takeover: the promises of the hosts so far.
///
/// It needs a strict majority of every host list it is given: one list
/// normally, the old and the new one while an agent moves.
#[derive(Clone, Debug)]
pub struct Recovery<E> {
    lists: Vec<Vec<E>>,
    promises: Vec<(E, Head)>,
    refused: Option<Ballot>,
    failed: Vec<E>,
}

/// What a recovering sequencer does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovering<E> {
    /// Answers are outstanding and no majority promised yet.
    Wait,
    /// A strict majority promised: lead from the head of `from`.
    Lead {
        /// The host holding the head to start from.
        from: E,
        /// That head.
        head: Head,
    },
    /// A host promised a higher ballot: another sequencer leads.
    Superseded(Ballot),
    /// Too many hosts failed to answer for a majority.
    NoQuorum,
}

impl<E: Clone + PartialEq> Recovery<E> {
    /// A takeover needing a strict majority of each of `lists`, the
    /// sequencer's own promise first.
    pub fn new(lists: Vec<Vec<E>>, me: E, head: Head) -> Self {
        Self {
            lists,
            promises: vec![(me, head)],
            refused: None,
            failed: Vec::new(),
        }
    }

    /// A host's answer.
    pub fn answer(&mut self, from: E, prepared: Prepared) {
        match prepared {
            Prepared::Promise(head) => {
                if !self.promises.iter().any(|(e, _)| *e == from) {
                    self.promises.push((from, head));
                }
            }
            Prepared::Stale { promised } => {
                self.refused = Some(self.refused.map_or(promised, |r| r.max(promised)))
            }
        }
    }

    /// A host gave no answer.
    pub fn failed(&mut self, from: E) {
        self.failed.push(from);
    }

    /// The decision on the answers so far.
    pub fn decision(&self) -> Recovering<E> {
        if let Some(b) = self.refused {
            return Recovering::Superseded(b);
        }
        let count = |list: &[E], of: &[E]| list.iter().filter(|e| of.contains(e)).count();
        let promised: Vec<E> = self.promises.iter().map(|(e, _)| e.clone()).collect();
        if self
            .lists
            .iter()
            .all(|list| count(list, &promised) >= majority(list.len()))
        {
            let (from, head) = self
                .promises
                .iter()
                .max_by_key(|(_, h)| h.rank())
                .cloned()
                .unwrap_or_else(|| unreachable!("a majority is at least one promise"));
            return Recovering::Lead { from, head };
        }
        if self
            .lists
            .iter()
            .any(|list| list.len() - count(list, &self.failed) < majority(list.len()))
        {
            return Recovering::NoQuorum;
        }
        Recovering::Wait
    }
}

/// The votes of one step: each host's result (its state hashes before and
/// after and its reply, digested together), or no answer.
#[derive(Clone, Debug)]
pub struct Round<E, V> {
    hosts: usize,
    votes: Vec<(E, V)>,
    failed: Vec<E>,
}

/// The outcome of a [`Round`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Counted<E, V> {
    /// No result can be known yet.
    Wait,
    /// A strict majority of the hosts gave `result`.
    Agreed {
        /// Their result.
        result: V,
        /// The hosts that gave it, in the order they answered.
        agreed: Vec<E>,
        /// The hosts that gave another, in the order they answered.
        outvoted: Vec<E>,
    },
    /// No result can reach a strict majority of the hosts any more.
    NoMajority,
}

impl<E: Clone, V: Clone + PartialEq> Round<E, V> {
    /// A round among `hosts` hosts.
    pub fn new(hosts: usize) -> Self {
        Self {
            hosts,
            votes: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// A host's vote.
    pub fn vote(&mut self, from: E, result: V) {
        self.votes.push((from, result));
    }

    /// A host gave no vote (no answer, or it could not apply the step).
    pub fn failed(&mut self, from: E) {
        self.failed.push(from);
    }

    /// Whether every host answered.
    pub fn complete(&self) -> bool {
        self.votes.len() + self.failed.len() >= self.hosts
    }

    /// The count so far.
    pub fn decision(&self) -> Counted<E, V> {
        let need = majority(self.hosts);
        for (_, candidate) in &self.votes {
            let agreed: Vec<E> = self
                .votes
                .iter()
                .filter(|(_, v)| v == candidate)
                .map(|(e, _)| e.clone())
                .collect();
            if agreed.len() >= need {
                return Counted::Agreed {
                    result: candidate.clone(),
                    agreed,
                    outvoted: self
                        .votes
                        .iter()
                        .filter(|(_, v)| v != candidate)
                        .map(|(e, _)| e.clone())
                        .collect(),
                };
            }
        }
        let outstanding = self.hosts - self.votes.len() - self.failed.len();
        let best = self
            .votes
            .iter()
            .map(|(_, c)| self.votes.iter().filter(|(_, v)| v == c).count())
            .max()
            .unwrap_or(0);
        if best + outstanding < need {
            Counted::NoMajority
        } else {
            Counted::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    //! A simulation of the rules: hosts whose state is the list of the
    //! message ids they applied, sequencers that take over at random,
    //! crashes at every point of a step (some hosts got the message, some
    //! did not), lost answers, and hosts replaced by new ones (a move to a
    //! new host list, learned by each host at its own time). After every
    //! step the sequencer acknowledges, the acknowledged messages must be
    //! in every state a takeover could recover, once each and in the order
    //! acknowledged.
    use super::*;

    fn hash(state: &[u64]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for m in state {
            h.update(&m.to_be_bytes());
        }
        *h.finalize().as_bytes()
    }

    #[derive(Clone, Default)]
    struct Host {
        standing: Standing,
        state: Vec<u64>,
        up: bool,
        /// The host list it knows (an epoch), and whether it knows the
        /// agent is still moving to it.
        epoch: u32,
        moving: bool,
    }

    impl Host {
        fn catch_up(&mut self, ballot: Ballot, from: &[u64]) {
            self.state = from.to_vec();
            self.standing
                .accept(ballot, from.len() as u64, hash(&self.state));
        }
    }

    /// Every host ever, the host list of each epoch, and whether the move
    /// into each epoch is done (a takeover in it synced a majority).
    struct World {
        hosts: Vec<Host>,
        lists: Vec<Vec<usize>>,
        done: Vec<bool>,
    }

    impl World {
        /// The lists a takeover by a host that knows `epoch` (moving or
        /// not) needs a majority of.
        fn quorum(&self, epoch: u32, moving: bool) -> Vec<Vec<usize>> {
            let e = epoch as usize;
            if moving {
                vec![self.lists[e].clone(), self.lists[e - 1].clone()]
            } else {
                vec![self.lists[e].clone()]
            }
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    /// Host `me` takes over in the epoch it knows and, if it can, applies
    /// message `m`: returns whether `m` was acknowledged.
    fn lead_and_step(world: &mut World, me: usize, m: u64, rng: &mut Rng) -> bool {
        let (epoch, moving) = (world.hosts[me].epoch, world.hosts[me].moving);
        let list = world.lists[epoch as usize].clone();
        let Some(place) = list.iter().position(|h| *h == me) else {
            return false;
        };
        let lists = world.quorum(epoch, moving);
        let mut asked: Vec<usize> = lists.concat();
        asked.sort_unstable();
        asked.dedup();
        asked.retain(|i| *i != me);
        let hosts = &mut world.hosts;
        let ballot = Ballot::after(hosts[me].standing.promised, place as u32, epoch);
        assert_eq!(ballot.epoch(), epoch);
        let Prepared::Promise(mine) = hosts[me].standing.prepare(ballot) else {
            unreachable!()
        };
        let mut recovery = Recovery::new(lists, me, mine);
        for &i in &asked {
            if world_answers(hosts, i, epoch, rng) {
                let answer = hosts[i].standing.prepare(ballot);
                recovery.answer(i, answer);
            } else {
                recovery.failed(i);
            }
        }
        let (from, head) = match recovery.decision() {
            Recovering::Lead { from, head } => (from, head),
            Recovering::NoQuorum | Recovering::Superseded(_) => return false,
            Recovering::Wait => unreachable!("every host answered or failed"),
        };
        let source = hosts[from].state.clone();
        hosts[me].catch_up(ballot, &source);
        assert_eq!(hosts[me].standing.head.hash, head.hash);
        // Sync: a majority of the (new) list must hold the head.
        let mut synced = 1;
        for &i in list.iter().filter(|i| **i != me) {
            if !world_answers(hosts, i, epoch, rng) {
                continue;
            }
            match hosts[i].standing.sync(ballot, &hosts[me].standing.head) {
                Synced::Same => {
                    let (seq, h) = (hosts[i].standing.head.seq, hosts[i].standing.head.hash);
                    hosts[i].standing.accept(ballot, seq, h);
                }
                Synced::CatchUp => hosts[i].catch_up(ballot, &source),
                Synced::Past => {}
                Synced::Stale { .. } => continue,
            }
            synced += 1;
        }
        if synced < majority(list.len()) {
            return false;
        }
        if moving {
            world.done[epoch as usize] = true;
        }
        let hosts = &mut world.hosts;
        // The step: every host that gets the message applies it; the
        // sequencer may crash after any number of them did.
        let seq = hosts[me].standing.head.seq + 1;
        let before = hosts[me].standing.head.hash;
        let mut after = hosts[me].state.clone();
        after.push(m);
        let result = hash(&after);
        let mut round = Round::new(list.len());
        let crash_after = if rng.chance(20) {
            Some(rng.next() as usize % list.len())
        } else {
            None
        };
        for (n, &i) in list.iter().filter(|i| **i != me).enumerate() {
            if crash_after == Some(n) {
                hosts[me].up = false;
                return false;
            }
            if !world_answers(hosts, i, epoch, rng) {
                round.failed(i);
                continue;
            }
            match hosts[i].standing.replicate(ballot, seq, before) {
                Replicated::Apply => {
                    hosts[i].state.push(m);
                    let h = hash(&hosts[i].state);
                    hosts[i].standing.accept(ballot, seq, h);
                    round.vote(i, h);
                }
                Replicated::CatchUp | Replicated::Holds | Replicated::Late => {
                    hosts[i].catch_up(ballot, &source);
                    round.failed(i);
                }
                Replicated::Stale { .. } => round.failed(i),
            }
        }
        // The sequencer's own write comes last, before the reply.
        round.vote(me, result);
        match round.decision() {
            Counted::Agreed { result: agreed, .. } => {
                assert_eq!(agreed, result);
                hosts[me].state = after;
                hosts[me].standing.accept(ballot, seq, result);
                true
            }
            _ => false,
        }
    }

    /// Whether host `i` answers a request of epoch `epoch` now.
    fn world_answers(hosts: &[Host], i: usize, epoch: u32, rng: &mut Rng) -> bool {
        hosts[i].up && hosts[i].epoch == epoch && !rng.chance(10)
    }

    /// The strict-majority subsets of `list`.
    fn majorities(list: &[usize]) -> Vec<Vec<usize>> {
        (1u32..1 << list.len())
            .filter(|s| s.count_ones() as usize == majority(list.len()))
            .map(|s| {
                (0..list.len())
                    .filter(|b| s & (1 << b) != 0)
                    .map(|b| list[b])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn acknowledged_messages_survive_takeovers_crashes_and_moves_once_and_in_order() {
        let mut moves = 0;
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let r = [1, 3, 3, 5][seed as usize % 4];
            let genesis = hash(&[]);
            let fresh = Host {
                standing: Standing::new(genesis),
                up: true,
                ..Host::default()
            };
            let mut world = World {
                hosts: vec![fresh.clone(); r],
                lists: vec![(0..r).collect()],
                done: vec![true],
            };
            let mut acknowledged = Vec::new();
            for m in 0..200u64 {
                let latest = world.lists.len() - 1;
                // A move: one host of the latest list is replaced by a
                // new one (or a new one added), once the previous move is
                // done.
                if r > 1 && world.done[latest] && rng.chance(4) {
                    let mut list = world.lists[latest].clone();
                    if list.len() < 5 && rng.chance(30) {
                        list.push(world.hosts.len());
                    } else {
                        let out = rng.next() as usize % list.len();
                        list[out] = world.hosts.len();
                    }
                    world.hosts.push(fresh.clone());
                    world.lists.push(list);
                    world.done.push(false);
                    moves += 1;
                }
                let latest = world.lists.len() - 1;
                // Each host of the last two lists learns the latest
                // registration when its turn comes (moving, then done).
                let mut members = world.lists[latest].clone();
                if latest > 0 {
                    members.extend(&world.lists[latest - 1]);
                }
                for i in members {
                    let h = &mut world.hosts[i];
                    if h.up && rng.chance(30) {
                        if (h.epoch as usize) < latest {
                            h.epoch = latest as u32;
                            h.moving = true;
                        } else if world.done[latest] {
                            h.moving = false;
                        }
                    }
                }
                // Churn: hosts go down and come back (a restart keeps what
                // was persisted: the standing and the state).
                for h in world.hosts.iter_mut() {
                    if rng.chance(5) {
                        h.up = !h.up;
                    }
                }
                let list = world.lists[latest].clone();
                if list.iter().filter(|i| world.hosts[**i].up).count() < majority(list.len()) {
                    for i in &list {
                        world.hosts[*i].up = true;
                    }
                }
                // Anyone up may try to lead: a host of any list, in the
                // epoch it knows.
                let up: Vec<usize> = (0..world.hosts.len())
                    .filter(|i| world.hosts[*i].up)
                    .collect();
                let me = up[rng.next() as usize % up.len()];
                if lead_and_step(&mut world, me, m, &mut rng) {
                    acknowledged.push(m);
                }
                // Every acknowledged message is in the state the next
                // takeover of the latest list would recover, once, in
                // order, whichever majorities answer it.
                let new = majorities(&world.lists[latest]);
                let quorums: Vec<Vec<usize>> = if world.done[latest] {
                    new
                } else {
                    let old = majorities(&world.lists[latest - 1]);
                    new.iter()
                        .flat_map(|n| old.iter().map(move |o| [n.clone(), o.clone()].concat()))
                        .collect()
                };
                for set in quorums {
                    let best = &set
                        .iter()
                        .map(|i| &world.hosts[*i])
                        .max_by_key(|h| h.standing.head.rank())
                        .unwrap()
                        .state;
                    let kept: Vec<u64> = best
                        .iter()
                        .copied()
                        .filter(|x| acknowledged.contains(x))
                        .collect();
                    assert_eq!(kept, acknowledged, "seed {seed}, R = {r}, after {m}");
                    let mut once = best.clone();
                    once.sort_unstable();
                    once.dedup();
                    assert_eq!(once.len(), best.len(), "seed {seed}: applied twice");
                }
            }
            assert!(
                acknowledged.len() > 30,
                "seed {seed}: only {} acknowledged",
                acknowledged.len()
            );
        }
        assert!(moves > 100, "only {moves} moves");
    }

    #[test]
    fn a_lower_ballot_is_refused_once_a_higher_one_is_promised() {
        let mut s = Standing::new([0; 32]);
        let b1 = Ballot::after(Ballot::default(), 0, 0);
        let b2 = Ballot::after(b1, 1, 0);
        assert_eq!(s.prepare(b2), Prepared::Promise(s.head));
        assert_eq!(s.prepare(b1), Prepared::Stale { promised: b2 });
        assert_eq!(
            s.replicate(b1, 1, [0; 32]),
            Replicated::Stale { promised: b2 }
        );
        assert_eq!(s.replicate(b2, 1, [0; 32]), Replicated::Apply);
        assert_eq!(s.replicate(b2, 1, [1; 32]), Replicated::CatchUp);
        s.accept(b2, 1, [1; 32]);
        assert_eq!(s.replicate(b2, 1, [0; 32]), Replicated::Late);
        let b3 = Ballot::after(b2, 0, 0);
        assert_eq!(s.replicate(b3, 1, [0; 32]), Replicated::Holds);
        s.accept(b3, 2, [2; 32]);
        assert_eq!(
            s.replicate(Ballot::after(b3, 1, 0), 1, [0; 32]),
            Replicated::CatchUp
        );
        let mut s = Standing::new([0; 32]);
        s.prepare(b2);
        s.accept(b2, 1, [1; 32]);
        // A sync of this ballot that comes after its first step does not
        // take the host back; one of another ballot would.
        assert_eq!(s.sync(b2, &Head::genesis([0; 32])), Synced::Past);
        assert_eq!(s.sync(b3, &Head::genesis([0; 32])), Synced::CatchUp);
        assert_eq!(s.replicate(b2, 3, [1; 32]), Replicated::CatchUp);
    }

    #[test]
    fn a_round_agrees_on_a_strict_majority_of_the_hosts_not_of_the_answers() {
        let mut round: Round<u8, u8> = Round::new(3);
        round.vote(0, 7);
        assert_eq!(round.decision(), Counted::Wait);
        round.failed(1);
        assert_eq!(round.decision(), Counted::Wait);
        round.vote(2, 9);
        assert_eq!(round.decision(), Counted::NoMajority);
        let mut round: Round<u8, u8> = Round::new(3);
        round.vote(0, 7);
        round.vote(1, 9);
        round.vote(2, 7);
        assert_eq!(
            round.decision(),
            Counted::Agreed {
                result: 7,
                agreed: vec![0, 2],
                outvoted: vec![1]
            }
        );
    }

    #[test]
    fn recovery_leads_from_the_latest_ballot_then_the_longest_history() {
        let h = |seq, round| Head {
            seq,
            hash: [seq as u8; 32],
            accepted: Ballot { round, leader: 0 },
        };
        let mut rec = Recovery::new(vec![vec!['a', 'b', 'c']], 'a', h(9, 1));
        assert_eq!(rec.decision(), Recovering::Wait);
        rec.answer('b', Prepared::Promise(h(5, 2)));
        assert_eq!(
            rec.decision(),
            Recovering::Lead {
                from: 'b',
                head: h(5, 2)
            }
        );
        let mut rec = Recovery::new(vec![vec!['a', 'b', 'c']], 'a', h(1, 1));
        rec.failed('b');
        rec.failed('c');
        assert_eq!(rec.decision(), Recovering::NoQuorum);
    }

    #[test]
    fn a_moving_agent_needs_a_majority_of_the_old_hosts_and_of_the_new() {
        let h = |seq| Head {
            seq,
            hash: [seq as u8; 32],
            accepted: Ballot::default(),
        };
        // Host c leaves, d joins: a majority of {a, b, d} is not enough.
        let lists = vec![vec!['a', 'b', 'd'], vec!['a', 'b', 'c']];
        let mut rec = Recovery::new(lists.clone(), 'd', h(0));
        rec.answer('a', Prepared::Promise(h(4)));
        assert_eq!(rec.decision(), Recovering::Wait);
        rec.answer('b', Prepared::Promise(h(5)));
        assert_eq!(
            rec.decision(),
            Recovering::Lead {
                from: 'b',
                head: h(5)
            }
        );
        let mut rec = Recovery::new(lists, 'd', h(0));
        rec.answer('a', Prepared::Promise(h(4)));
        rec.failed('b');
        assert_eq!(rec.decision(), Recovering::Wait);
        rec.failed('c');
        assert_eq!(rec.decision(), Recovering::NoQuorum);
        assert_eq!(Ballot::after(Ballot::default(), 2, 3).epoch(), 3);
        assert!(Ballot::after(Ballot::default(), 0, 1) > Ballot::after(h(9).accepted, 2, 0));
    }
}
