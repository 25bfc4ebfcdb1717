//! `orb sim --agents N`: replicated agents on simulated nodes.
//!
//! Each agent lives on R of the nodes and its hosts run the sequencing
//! rules a node runs (`orb_ledger::sequencer`: ballots, promises, the
//! recovery of the newest copy, syncs, votes counted by a strict
//! majority); only the driver is the simulator's. It keeps what a node's
//! driver keeps: a host persists its standing and its copy before it
//! answers, holds the agent's turn while it sequences a step (requests
//! for that agent wait, as they wait for the turn in a node), writes its
//! own copy only after a majority agreed, and loses its leases and the
//! steps in flight when it crashes. Clients send each message with an id
//! to the agent's hosts in their order and send it again (the same id)
//! to the next host when no answer comes.
//!
//! Messages travel after a sampled per-link latency and may be lost;
//! nodes crash and restart (`--churn`), so sequencers fail over while
//! steps are in flight and two hosts may sequence at once. After the run
//! every acknowledged message must be, at the place it was acknowledged
//! at and once, in the copy a takeover by any strict majority of the
//! agent's hosts would recover.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use orb_ledger::sequencer::{
    Ballot, Counted, Head, Prepared, Recovering, Recovery, Replicated, Round, Standing, Synced,
    majority,
};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use super::spec::{Churn, Latency, chance};

/// What an agent simulation is run with.
pub(crate) struct AgentSetup {
    pub(crate) nodes: usize,
    pub(crate) agents: usize,
    pub(crate) replicas: usize,
    pub(crate) messages: usize,
    /// Messages the clients send a simulated second, in all.
    pub(crate) rate: f64,
    pub(crate) seed: u64,
    pub(crate) latency: Latency,
    pub(crate) loss: f64,
    pub(crate) churn: Option<Churn>,
    pub(crate) max_time: Duration,
}

/// How long a sequencer waits for answers before it counts the missing
/// ones as failed (a node's request timeout, scaled to simulated links).
const ANSWER_WAIT: u64 = 500_000;
/// How long a client waits for a reply before it tries the next host.
const CLIENT_WAIT: u64 = 1_500_000;
/// How long a request waits for an agent's turn before it is answered as
/// not applied (as in a node).
const TURN_WAIT: u64 = 1_000_000;
/// How long a client waits after a refusal before it sends again (times
/// the attempt, as `orb agent send` backs off).
const BACKOFF: u64 = 200_000;

type Hash = [u8; 32];

/// A host's copy of an agent: the message ids applied, in order, and the
/// hash after each (index 0: no message).
#[derive(Clone, Debug)]
struct Copy {
    ids: Vec<u64>,
    hashes: Vec<Hash>,
}

impl Copy {
    fn genesis() -> Self {
        Self {
            ids: Vec::new(),
            hashes: vec![[0; 32]],
        }
    }

    fn hash(&self) -> Hash {
        self.hashes[self.ids.len()]
    }

    fn push(&mut self, id: u64) {
        let mut h = blake3::Hasher::new();
        h.update(&self.hash());
        h.update(&id.to_be_bytes());
        self.hashes.push(*h.finalize().as_bytes());
        self.ids.push(id);
    }
}

/// What a host keeps of one agent on disk.
#[derive(Clone, Debug)]
struct Replica {
    standing: Standing,
    copy: Copy,
}

impl Replica {
    fn head(&self) -> Head {
        self.standing.head
    }

    /// Takes `copy` as this host's, accepted under `ballot`.
    fn adopt(&mut self, ballot: Ballot, copy: &Copy) {
        self.copy = copy.clone();
        self.standing
            .accept(ballot, copy.ids.len() as u64, copy.hash());
    }
}

#[derive(Clone, Debug)]
enum Msg {
    Send {
        agent: u32,
        id: u64,
    },
    Reply {
        agent: u32,
        id: u64,
        seq: Option<u64>,
    },
    Prepare {
        agent: u32,
        ballot: Ballot,
    },
    Promise {
        agent: u32,
        ballot: Ballot,
        answer: Prepared,
        copy: Copy,
    },
    Sync {
        agent: u32,
        ballot: Ballot,
        head: Head,
        copy: Copy,
    },
    Synced {
        agent: u32,
        ballot: Ballot,
        ok: bool,
        stale: Option<Ballot>,
    },
    Replicate {
        agent: u32,
        ballot: Ballot,
        seq: u64,
        before: Hash,
        id: u64,
        copy: Copy,
    },
    Vote {
        agent: u32,
        ballot: Ballot,
        seq: u64,
        after: Option<Hash>,
        stale: Option<Ballot>,
    },
}

impl Msg {
    fn agent(&self) -> u32 {
        match self {
            Msg::Send { agent, .. }
            | Msg::Reply { agent, .. }
            | Msg::Prepare { agent, .. }
            | Msg::Promise { agent, .. }
            | Msg::Sync { agent, .. }
            | Msg::Synced { agent, .. }
            | Msg::Replicate { agent, .. }
            | Msg::Vote { agent, .. } => *agent,
        }
    }
}

/// Where a sequencer is in one step.
enum Phase {
    Preparing {
        ballot: Ballot,
        recovery: Recovery<u32>,
        copies: HashMap<u32, Copy>,
        /// Hosts that have not answered.
        pending: Vec<u32>,
    },
    Syncing {
        ballot: Ballot,
        synced: usize,
        answered: usize,
    },
    Stepping {
        ballot: Ballot,
        seq: u64,
        after: Copy,
        round: Round<u32, Hash>,
        pending: Vec<u32>,
    },
}

/// A step a host sequences: the agent's turn is held.
struct Step {
    id: u64,
    client: u32,
    phase: Phase,
    /// Identifies the step's timeouts.
    token: u64,
}

enum Event {
    Deliver {
        from: u32,
        to: u32,
        msg: Msg,
    },
    /// A sequencer's wait for answers ends.
    Timeout {
        node: u32,
        agent: u32,
        token: u64,
    },
    /// A client's wait for a reply ends.
    ClientTimeout {
        message: usize,
        attempt: u32,
    },
    /// A client sends a refused message again.
    Retry {
        message: usize,
    },
    /// The next message leaves its client.
    Issue,
    Churn,
    Restart {
        node: u32,
    },
}

#[derive(Default)]
struct NodeState {
    up: bool,
    /// On disk.
    replicas: HashMap<u32, Replica>,
    /// In memory: lost on a crash.
    leases: HashMap<u32, Ballot>,
    steps: HashMap<u32, Step>,
    /// Requests and messages waiting for an agent's turn: (from, message,
    /// arrived at).
    waiting: HashMap<u32, VecDeque<(u32, Msg, u64)>>,
}

/// A message a client sends until it is acknowledged.
struct Outgoing {
    agent: u32,
    id: u64,
    first_sent: u64,
    /// Sends so far (each answered or timed out before the next).
    attempt: u32,
    /// The host it goes to next, in the agent's order: the next one after
    /// no answer, the first again after a refusal (as an entry node
    /// tries them).
    host: usize,
    acked: Option<u64>,
}

/// What the run saw.
#[derive(Default)]
pub(crate) struct AgentOut {
    pub(crate) acked: usize,
    pub(crate) retries: u64,
    pub(crate) duplicates: u64,
    pub(crate) takeovers: u64,
    pub(crate) failed_steps: u64,
    pub(crate) crashes: u64,
    pub(crate) violations: u64,
    pub(crate) first_violation: Option<String>,
    pub(crate) latencies_ms: Vec<f64>,
    pub(crate) messages: u64,
    pub(crate) events: u64,
    pub(crate) sim_secs: f64,
}

pub(crate) struct AgentWorld {
    setup: AgentSetup,
    rng: rand::rngs::StdRng,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    next_event: u64,
    next_token: u64,
    nodes: Vec<NodeState>,
    /// Each agent's hosts, in the order its clients try them.
    hosts: Vec<Vec<u32>>,
    outgoing: Vec<Outgoing>,
    /// (agent, message) by id.
    by_id: HashMap<u64, usize>,
    issued: usize,
    pub(crate) out: AgentOut,
    trace: blake3::Hasher,
}

/// The client's address: beyond the nodes.
const CLIENT: u32 = u32::MAX;

impl AgentWorld {
    pub(crate) fn new(setup: AgentSetup) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(setup.seed);
        let mut all: Vec<u32> = (0..setup.nodes as u32).collect();
        let hosts = (0..setup.agents)
            .map(|_| {
                all.shuffle(&mut rng);
                all[..setup.replicas].to_vec()
            })
            .collect();
        let nodes = (0..setup.nodes)
            .map(|_| NodeState {
                up: true,
                ..NodeState::default()
            })
            .collect();
        let mut world = Self {
            setup,
            rng,
            now: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_event: 0,
            next_token: 0,
            nodes,
            hosts,
            outgoing: Vec::new(),
            by_id: HashMap::new(),
            issued: 0,
            out: AgentOut::default(),
            trace: blake3::Hasher::new(),
        };
        world.schedule(0, Event::Issue);
        if let Some(c) = &world.setup.churn {
            let every = c.every.as_micros() as u64;
            world.schedule(every, Event::Churn);
        }
        world
    }

    fn schedule(&mut self, at: u64, event: Event) {
        let n = self.next_event;
        self.next_event += 1;
        self.events.insert(n, event);
        self.queue.push(Reverse((at, n)));
    }

    fn send(&mut self, from: u32, to: u32, msg: Msg) {
        self.out.messages += 1;
        if chance(&mut self.rng, self.setup.loss) {
            return;
        }
        let link = u64::from(from.min(to)) << 32 | u64::from(from.max(to));
        let delay = self.setup.latency.sample(link, &mut self.rng).as_micros() as u64;
        self.schedule(self.now + delay.max(1), Event::Deliver { from, to, msg });
    }

    /// Runs until every message is acknowledged (or the time is up).
    pub(crate) fn run(&mut self) {
        let end = self.setup.max_time.as_micros() as u64;
        while let Some(Reverse((at, n))) = self.queue.pop() {
            if at > end {
                break;
            }
            self.now = at;
            self.out.events += 1;
            let Some(event) = self.events.remove(&n) else {
                continue;
            };
            match event {
                Event::Deliver { from, to, msg } => {
                    self.trace.update(&at.to_be_bytes());
                    self.trace.update(&from.to_be_bytes());
                    self.trace.update(&to.to_be_bytes());
                    if to == CLIENT {
                        self.client_reply(msg);
                    } else if self.nodes[to as usize].up {
                        self.arrive(to, from, msg);
                    }
                }
                Event::Timeout { node, agent, token } => self.timeout(node, agent, token),
                Event::ClientTimeout { message, attempt } => {
                    let m = &self.outgoing[message];
                    if m.acked.is_none() && m.attempt == attempt {
                        self.out.retries += 1;
                        self.outgoing[message].host += 1;
                        self.resend(message);
                    }
                }
                Event::Retry { message } => {
                    if self.outgoing[message].acked.is_none() {
                        self.resend(message);
                    }
                }
                Event::Issue => self.issue(),
                Event::Churn => self.churn(),
                Event::Restart { node } => self.nodes[node as usize].up = true,
            }
            if self.issued == self.setup.messages && self.out.acked == self.setup.messages {
                break;
            }
        }
        self.out.sim_secs = self.now as f64 / 1e6;
        self.check();
    }

    pub(crate) fn trace(&self) -> String {
        self.trace.clone().finalize().to_hex()[..16].to_owned()
    }

    // Clients.

    fn issue(&mut self) {
        if self.issued >= self.setup.messages {
            return;
        }
        let agent = self.rng.random_range(0..self.setup.agents as u32);
        let id = self.rng.random::<u64>();
        self.by_id.insert(id, self.outgoing.len());
        self.outgoing.push(Outgoing {
            agent,
            id,
            first_sent: self.now,
            attempt: 0,
            host: 0,
            acked: None,
        });
        self.issued += 1;
        self.resend(self.outgoing.len() - 1);
        // Exponential gaps: a Poisson stream at the rate asked for.
        let mean = 1e6 / self.setup.rate.max(1e-3);
        let gap = -mean * (1.0 - self.rng.random::<f64>()).ln();
        self.schedule(self.now + gap as u64 + 1, Event::Issue);
    }

    fn resend(&mut self, message: usize) {
        let m = &mut self.outgoing[message];
        let hosts = &self.hosts[m.agent as usize];
        let to = hosts[m.host % hosts.len()];
        m.attempt += 1;
        let (agent, id, attempt) = (m.agent, m.id, m.attempt);
        self.send(CLIENT, to, Msg::Send { agent, id });
        self.schedule(
            self.now + CLIENT_WAIT,
            Event::ClientTimeout { message, attempt },
        );
    }

    fn client_reply(&mut self, msg: Msg) {
        let Msg::Reply { id, seq, .. } = msg else {
            return;
        };
        let Some(&i) = self.by_id.get(&id) else {
            return;
        };
        let m = &mut self.outgoing[i];
        match (seq, m.acked) {
            (Some(seq), None) => {
                m.acked = Some(seq);
                self.out.acked += 1;
                self.out
                    .latencies_ms
                    .push((self.now - m.first_sent) as f64 / 1e3);
            }
            (Some(seq), Some(was)) if seq != was => {
                self.violation(format!(
                    "message {id:x} acknowledged at {was}, then at {seq}"
                ));
            }
            (None, None) => {
                // Refused (busy, no majority): the first host again, later.
                self.out.retries += 1;
                m.host = 0;
                let wait = BACKOFF * u64::from(m.attempt.min(10));
                m.attempt += 1;
                self.schedule(self.now + wait, Event::Retry { message: i });
            }
            _ => {}
        }
    }

    // Hosts.

    fn replica(&mut self, node: u32, agent: u32) -> &mut Replica {
        self.nodes[node as usize]
            .replicas
            .entry(agent)
            .or_insert_with(|| Replica {
                standing: Standing::new([0; 32]),
                copy: Copy::genesis(),
            })
    }

    fn place(&self, node: u32, agent: u32) -> u32 {
        self.hosts[agent as usize]
            .iter()
            .position(|h| *h == node)
            .unwrap_or(0) as u32
    }

    /// A message reaches `node`: requests for an agent whose turn is held
    /// here wait for it.
    fn arrive(&mut self, node: u32, from: u32, msg: Msg) {
        let agent = msg.agent();
        let answer = matches!(
            msg,
            Msg::Promise { .. } | Msg::Synced { .. } | Msg::Vote { .. }
        );
        if answer {
            self.answer(node, from, msg);
            return;
        }
        let n = &mut self.nodes[node as usize];
        if n.steps.contains_key(&agent) || n.waiting.get(&agent).is_some_and(|q| !q.is_empty()) {
            n.waiting
                .entry(agent)
                .or_default()
                .push_back((from, msg, self.now));
            return;
        }
        self.handle(node, from, msg);
    }

    /// Handles a request in the agent's turn.
    fn handle(&mut self, node: u32, from: u32, msg: Msg) {
        match msg {
            Msg::Send { agent, id } => self.begin(node, agent, id, from),
            Msg::Prepare { agent, ballot } => {
                let r = self.replica(node, agent);
                let answer = r.standing.prepare(ballot);
                let copy = r.copy.clone();
                if matches!(answer, Prepared::Promise(_)) {
                    let leases = &mut self.nodes[node as usize].leases;
                    if leases.get(&agent).is_some_and(|b| *b < ballot) {
                        leases.remove(&agent);
                    }
                }
                self.send(
                    node,
                    from,
                    Msg::Promise {
                        agent,
                        ballot,
                        answer,
                        copy,
                    },
                );
            }
            Msg::Sync {
                agent,
                ballot,
                head,
                copy,
            } => {
                let r = self.replica(node, agent);
                let (ok, stale) = match r.standing.sync(ballot, &head) {
                    Synced::Stale { promised } => (false, Some(promised)),
                    Synced::Same => {
                        r.standing.accept(ballot, head.seq, head.hash);
                        (true, None)
                    }
                    Synced::Past => (true, None),
                    Synced::CatchUp if copy.hash() == head.hash => {
                        r.adopt(ballot, &copy);
                        (true, None)
                    }
                    Synced::CatchUp => (false, None),
                };
                if ok {
                    let leases = &mut self.nodes[node as usize].leases;
                    if leases.get(&agent).is_some_and(|b| *b < ballot) {
                        leases.remove(&agent);
                    }
                }
                self.send(
                    node,
                    from,
                    Msg::Synced {
                        agent,
                        ballot,
                        ok,
                        stale,
                    },
                );
            }
            Msg::Replicate {
                agent,
                ballot,
                seq,
                before,
                id,
                copy,
            } => {
                let vote = self.replicate(node, agent, (ballot, seq, before, id), &copy);
                let (after, stale) = match vote {
                    Ok(after) => (after, None),
                    Err(stale) => (None, Some(stale)),
                };
                self.send(
                    node,
                    from,
                    Msg::Vote {
                        agent,
                        ballot,
                        seq,
                        after,
                        stale,
                    },
                );
            }
            _ => {}
        }
    }

    /// A host's vote on a replicated step, as a node's driver gives it.
    fn replicate(
        &mut self,
        node: u32,
        agent: u32,
        (ballot, seq, before, id): (Ballot, u64, Hash, u64),
        copy: &Copy,
    ) -> Result<Option<Hash>, Ballot> {
        let r = self.replica(node, agent);
        for attempt in 0..2 {
            match r.standing.replicate(ballot, seq, before) {
                Replicated::Stale { promised } => return Err(promised),
                Replicated::Apply => {
                    r.copy.push(id);
                    let after = r.copy.hash();
                    r.standing.accept(ballot, seq, after);
                    let leases = &mut self.nodes[node as usize].leases;
                    if leases.get(&agent).is_some_and(|b| *b < ballot) {
                        leases.remove(&agent);
                    }
                    return Ok(Some(after));
                }
                Replicated::Late | Replicated::Holds => {
                    let i = seq as usize;
                    if r.copy.ids.get(i - 1) == Some(&id) && r.copy.hashes[i - 1] == before {
                        let after = r.copy.hashes[i];
                        if r.head().seq == seq && r.head().accepted < ballot {
                            r.standing.accept(ballot, seq, after);
                        }
                        return Ok(Some(after));
                    }
                    if r.head().accepted == ballot {
                        return Ok(None);
                    }
                }
                Replicated::CatchUp => {}
            }
            if attempt == 0 {
                if copy.hash() != before {
                    return Ok(None);
                }
                r.adopt(ballot, copy);
            }
        }
        Ok(None)
    }

    /// The agent's turn here ends: the next waiting request is handled.
    fn release(&mut self, node: u32, agent: u32) {
        self.nodes[node as usize].steps.remove(&agent);
        while let Some((from, msg, arrived)) = self.nodes[node as usize]
            .waiting
            .get_mut(&agent)
            .and_then(VecDeque::pop_front)
        {
            if self.now - arrived > TURN_WAIT {
                // Waited too long: answered as not applied.
                if let Msg::Send { id, .. } = msg {
                    self.send(
                        node,
                        from,
                        Msg::Reply {
                            agent,
                            id,
                            seq: None,
                        },
                    );
                }
                continue;
            }
            self.handle(node, from, msg);
            if self.nodes[node as usize].steps.contains_key(&agent) {
                return;
            }
        }
    }

    /// A message from a client reaches one of its agent's hosts: it leads.
    fn begin(&mut self, node: u32, agent: u32, id: u64, client: u32) {
        let token = self.next_token;
        self.next_token += 1;
        let phase = match self.nodes[node as usize].leases.get(&agent).copied() {
            Some(ballot) => {
                self.nodes[node as usize].steps.insert(
                    agent,
                    Step {
                        id,
                        client,
                        phase: Phase::Syncing {
                            ballot,
                            synced: 0,
                            answered: 0,
                        },
                        token,
                    },
                );
                self.step(node, agent, ballot);
                return;
            }
            None => {
                let place = self.place(node, agent);
                let hosts = self.hosts[agent as usize].clone();
                let r = self.replica(node, agent);
                let ballot = Ballot::after(r.standing.promised, place, 0);
                let Prepared::Promise(mine) = r.standing.prepare(ballot) else {
                    unreachable!("a ballot above the promise")
                };
                for h in hosts.iter().filter(|h| **h != node) {
                    self.send(node, *h, Msg::Prepare { agent, ballot });
                }
                Phase::Preparing {
                    ballot,
                    pending: hosts.iter().copied().filter(|h| *h != node).collect(),
                    recovery: Recovery::new(vec![hosts], node, mine),
                    copies: HashMap::new(),
                }
            }
        };
        self.nodes[node as usize].steps.insert(
            agent,
            Step {
                id,
                client,
                phase,
                token,
            },
        );
        self.schedule(
            self.now + ANSWER_WAIT,
            Event::Timeout { node, agent, token },
        );
        self.progress(node, agent);
    }

    /// An answer to this node's request.
    fn answer(&mut self, node: u32, from: u32, msg: Msg) {
        let agent = msg.agent();
        let Some(step) = self.nodes[node as usize].steps.get_mut(&agent) else {
            return;
        };
        match (&mut step.phase, msg) {
            (
                Phase::Preparing {
                    ballot,
                    recovery,
                    copies,
                    pending,
                },
                Msg::Promise {
                    ballot: b,
                    answer,
                    copy,
                    ..
                },
            ) if *ballot == b && pending.contains(&from) => {
                pending.retain(|h| *h != from);
                recovery.answer(from, answer);
                copies.insert(from, copy);
            }
            (
                Phase::Syncing {
                    ballot,
                    synced,
                    answered,
                },
                Msg::Synced {
                    ballot: b,
                    ok,
                    stale,
                    ..
                },
            ) if *ballot == b => {
                *answered += 1;
                if ok {
                    *synced += 1;
                }
                if let Some(s) = stale {
                    self.lose_lease(node, agent, s);
                }
            }
            (
                Phase::Stepping {
                    ballot,
                    seq,
                    round,
                    pending,
                    ..
                },
                Msg::Vote {
                    ballot: b,
                    seq: s,
                    after,
                    stale,
                    ..
                },
            ) if *ballot == b && *seq == s && pending.contains(&from) => {
                pending.retain(|h| *h != from);
                match after {
                    Some(h) => round.vote(from, h),
                    None => round.failed(from),
                }
                if let Some(st) = stale {
                    self.lose_lease(node, agent, st);
                }
            }
            _ => return,
        }
        self.progress(node, agent);
    }

    fn lose_lease(&mut self, node: u32, agent: u32, above: Ballot) {
        let leases = &mut self.nodes[node as usize].leases;
        if leases.get(&agent).is_some_and(|b| *b < above) {
            leases.remove(&agent);
        }
    }

    /// Moves the step on when its answers allow.
    fn progress(&mut self, node: u32, agent: u32) {
        let hosts = self.hosts[agent as usize].clone();
        let need = majority(hosts.len());
        let Some(step) = self.nodes[node as usize].steps.get_mut(&agent) else {
            return;
        };
        match &mut step.phase {
            Phase::Preparing {
                ballot,
                recovery,
                copies,
                ..
            } => match recovery.decision() {
                Recovering::Wait => {}
                Recovering::Lead { from, head } => {
                    let ballot = *ballot;
                    let copy = copies.get(&from).cloned();
                    let r = self.replica(node, agent);
                    match copy {
                        Some(c) if from != node => r.adopt(ballot, &c),
                        _ => {
                            let h = r.head();
                            r.standing.accept(ballot, h.seq, h.hash);
                        }
                    }
                    let head = Head {
                        accepted: ballot,
                        ..head
                    };
                    let copy = self.replica(node, agent).copy.clone();
                    for h in hosts.iter().filter(|h| **h != node) {
                        self.send(
                            node,
                            *h,
                            Msg::Sync {
                                agent,
                                ballot,
                                head,
                                copy: copy.clone(),
                            },
                        );
                    }
                    let step = self.nodes[node as usize]
                        .steps
                        .get_mut(&agent)
                        .expect("the step");
                    step.phase = Phase::Syncing {
                        ballot,
                        synced: 1,
                        answered: 0,
                    };
                    self.progress(node, agent);
                }
                Recovering::Superseded(b) => {
                    self.lose_lease(node, agent, b);
                    self.fail(node, agent);
                }
                Recovering::NoQuorum => self.fail(node, agent),
            },
            Phase::Syncing {
                ballot,
                synced,
                answered,
            } => {
                let ballot = *ballot;
                if *synced >= need {
                    self.out.takeovers += 1;
                    self.nodes[node as usize].leases.insert(agent, ballot);
                    self.step(node, agent, ballot);
                } else if *answered + 1 >= hosts.len() {
                    self.fail(node, agent);
                }
            }
            Phase::Stepping {
                ballot,
                seq,
                after,
                round,
                ..
            } => match round.decision() {
                Counted::Wait => {}
                Counted::Agreed { result, .. } => {
                    let (ballot, seq, after) = (*ballot, *seq, after.clone());
                    debug_assert_eq!(after.hash(), result);
                    let r = self.replica(node, agent);
                    r.copy = after;
                    r.standing.accept(ballot, seq, result);
                    self.reply(node, agent, Some(seq));
                }
                Counted::NoMajority => self.fail(node, agent),
            },
        }
    }

    /// With a lease: a retry already applied is answered from the copy,
    /// anything else is replicated as the next step.
    fn step(&mut self, node: u32, agent: u32, ballot: Ballot) {
        let hosts = self.hosts[agent as usize].clone();
        let id = self.nodes[node as usize].steps[&agent].id;
        let r = self.replica(node, agent);
        if let Some(i) = r.copy.ids.iter().position(|x| *x == id) {
            self.out.duplicates += 1;
            self.reply(node, agent, Some(i as u64 + 1));
            return;
        }
        let seq = r.head().seq + 1;
        let before = r.copy.hash();
        let copy = r.copy.clone();
        let mut after = copy.clone();
        after.push(id);
        let mut round = Round::new(hosts.len());
        round.vote(node, after.hash());
        for h in hosts.iter().filter(|h| **h != node) {
            self.send(
                node,
                *h,
                Msg::Replicate {
                    agent,
                    ballot,
                    seq,
                    before,
                    id,
                    copy: copy.clone(),
                },
            );
        }
        let token = self.next_token;
        self.next_token += 1;
        let step = self.nodes[node as usize]
            .steps
            .get_mut(&agent)
            .expect("the step");
        step.token = token;
        step.phase = Phase::Stepping {
            ballot,
            seq,
            after,
            round,
            pending: hosts.iter().copied().filter(|h| *h != node).collect(),
        };
        self.schedule(
            self.now + ANSWER_WAIT,
            Event::Timeout { node, agent, token },
        );
        self.progress(node, agent);
    }

    /// The answers a step waited for are not all in: the missing ones
    /// count as failed.
    fn timeout(&mut self, node: u32, agent: u32, token: u64) {
        let hosts = self.hosts[agent as usize].clone();
        let Some(step) = self.nodes[node as usize].steps.get_mut(&agent) else {
            return;
        };
        if step.token != token {
            return;
        }
        match &mut step.phase {
            Phase::Preparing {
                recovery, pending, ..
            } => {
                for h in pending.drain(..) {
                    recovery.failed(h);
                }
            }
            Phase::Syncing { answered, .. } => *answered = hosts.len(),
            Phase::Stepping { round, pending, .. } => {
                for h in pending.drain(..) {
                    round.failed(h);
                }
            }
        }
        self.progress(node, agent);
        // Still undecided: the step gives up.
        if self.nodes[node as usize]
            .steps
            .get(&agent)
            .is_some_and(|s| s.token == token)
        {
            self.fail(node, agent);
        }
    }

    fn fail(&mut self, node: u32, agent: u32) {
        self.out.failed_steps += 1;
        // A step that did not reach a majority may be held by some hosts:
        // its sequence number is never proposed again under this ballot.
        self.nodes[node as usize].leases.remove(&agent);
        self.reply(node, agent, None);
    }

    fn reply(&mut self, node: u32, agent: u32, seq: Option<u64>) {
        let Some(step) = self.nodes[node as usize].steps.remove(&agent) else {
            return;
        };
        self.send(
            node,
            step.client,
            Msg::Reply {
                agent,
                id: step.id,
                seq,
            },
        );
        self.release(node, agent);
    }

    // Faults.

    fn churn(&mut self) {
        let Some(c) = self.setup.churn.clone() else {
            return;
        };
        let down = c.down.as_micros() as u64;
        for node in 0..self.nodes.len() as u32 {
            if self.nodes[node as usize].up && chance(&mut self.rng, c.fraction) {
                self.out.crashes += 1;
                let n = &mut self.nodes[node as usize];
                n.up = false;
                n.leases.clear();
                n.steps.clear();
                n.waiting.clear();
                self.schedule(self.now + down, Event::Restart { node });
            }
        }
        self.schedule(self.now + c.every.as_micros() as u64, Event::Churn);
    }

    fn violation(&mut self, what: String) {
        self.out.violations += 1;
        self.out.first_violation.get_or_insert(what);
    }

    /// Every acknowledged message is at its place, once, in the copy any
    /// strict majority of its agent's hosts would recover.
    fn check(&mut self) {
        let mut acked: Vec<Vec<(u64, u64)>> = vec![Vec::new(); self.setup.agents];
        for m in &self.outgoing {
            if let Some(seq) = m.acked {
                acked[m.agent as usize].push((seq, m.id));
            }
        }
        for (agent, acked) in acked.iter().enumerate() {
            let hosts = self.hosts[agent].clone();
            let r = hosts.len();
            for set in (1u32..1 << r).filter(|s| s.count_ones() as usize == majority(r)) {
                let best = hosts
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| set & (1 << i) != 0)
                    .filter_map(|(_, h)| self.nodes[*h as usize].replicas.get(&(agent as u32)))
                    .max_by_key(|rep| (rep.head().accepted, rep.head().seq))
                    .map(|rep| rep.copy.clone())
                    .unwrap_or_else(Copy::genesis);
                for (seq, id) in acked {
                    if best.ids.get(*seq as usize - 1) != Some(id) {
                        self.violation(format!(
                            "agent {agent}: message {id:x} acknowledged at {seq} is not there in \
                             the copy hosts {set:b} recover"
                        ));
                    }
                }
                let mut once = best.ids.clone();
                once.sort_unstable();
                once.dedup();
                if once.len() != best.ids.len() {
                    self.violation(format!("agent {agent}: a message applied twice"));
                }
            }
        }
    }

    pub(crate) fn report(&self, wall: Duration) -> serde_json::Value {
        let o = &self.out;
        json!({
            "agents": self.setup.agents,
            "nodes": self.setup.nodes,
            "replicas": self.setup.replicas,
            "seed": self.setup.seed,
            "messages": { "sent": self.issued, "acknowledged": o.acked, "retries": o.retries, "duplicates_answered": o.duplicates },
            "latency_ms": {
                "p50": super::percentile(&o.latencies_ms, 0.5),
                "p99": super::percentile(&o.latencies_ms, 0.99),
            },
            "takeovers": o.takeovers,
            "failed_steps": o.failed_steps,
            "crashes": o.crashes,
            "safety": { "violations": o.violations, "first": o.first_violation },
            "traffic": { "messages": o.messages },
            "events": o.events,
            "sim_secs": o.sim_secs,
            "wall_secs": wall.as_secs_f64(),
            "trace": self.trace(),
        })
    }
}

/// Runs an agent simulation: the report, and what failed.
pub(crate) fn run(setup: AgentSetup) -> (serde_json::Value, Vec<String>) {
    let started = Instant::now();
    let wanted = setup.messages;
    let mut world = AgentWorld::new(setup);
    world.run();
    let mut failed = Vec::new();
    if world.out.violations > 0 {
        failed.push(format!(
            "safety: {} violations ({})",
            world.out.violations,
            world.out.first_violation.clone().unwrap_or_default()
        ));
    }
    if world.out.acked < wanted {
        failed.push(format!(
            "liveness: {} of {wanted} messages acknowledged in {:.0} simulated seconds",
            world.out.acked, world.out.sim_secs
        ));
    }
    let mut report = world.report(started.elapsed());
    report["passed"] = json!(failed.is_empty());
    report["failed"] = json!(failed);
    (report, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(seed: u64, churn: Option<&str>) -> AgentSetup {
        AgentSetup {
            nodes: 20,
            agents: 10,
            replicas: 3,
            messages: 400,
            rate: 20.0,
            seed,
            latency: Latency::parse("lognormal:20ms:0.8").unwrap(),
            loss: 0.02,
            churn: churn.map(|c| Churn::parse(c).unwrap()),
            max_time: Duration::from_secs(600),
        }
    }

    #[test]
    fn sequencers_failing_over_under_churn_lose_no_acknowledged_message() {
        for seed in 1..=10 {
            let (report, failed) = run(setup(seed, Some("0.2/1s,down=2s")));
            assert!(failed.is_empty(), "seed {seed}: {report}");
            assert!(report["takeovers"].as_u64().unwrap() > 10, "{report}");
            assert!(report["crashes"].as_u64().unwrap() > 10, "{report}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let (a, _) = run(setup(3, Some("0.1/1s")));
        let (b, _) = run(setup(3, Some("0.1/1s")));
        assert_eq!(a["trace"], b["trace"]);
        assert_eq!(a["messages"], b["messages"]);
    }

    #[test]
    fn a_sequencer_that_skips_the_majority_is_caught() {
        // The check is not vacuous: a copy that lost an acknowledged
        // message fails it.
        let mut world = AgentWorld::new(setup(1, None));
        world.run();
        assert_eq!(world.out.violations, 0);
        let agent = world.outgoing[0].agent;
        for h in world.hosts[agent as usize].clone() {
            let r = world.nodes[h as usize].replicas.get_mut(&agent).unwrap();
            r.copy = Copy::genesis();
        }
        world.check();
        assert!(world.out.violations > 0);
    }
}
