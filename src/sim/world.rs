//! The simulated world: N nodes, each the real consensus
//! [`Replica`](orb_ledger::consensus::Replica) and the real call
//! [`Agreement`](orb_ledger::Agreement) behind a thin driver, calls routed
//! by the node's routing rule ([`orb_engine::choose_providers`]) over the
//! load rows hosts report every second, a
//! discrete-event queue in simulated time, and a network that delays,
//! drops and partitions messages. Byzantine nodes run the same replica;
//! the world (the adversary) rewrites what they answer.
//!
//! Determinism: one seeded RNG draws every latency, loss and fault; events
//! at the same instant run in the order they were scheduled; nothing
//! iterates a hash map. The trace hash covers every event processed and
//! every commit, so two runs with one seed give one hash.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use orb_engine::{Provider, choose_providers};
use orb_ledger::consensus::{Commit, Config, Event, Gossip, Input, Message, Query, Replica};
use orb_ledger::{
    Agreement, Block, Claim, Decision, Digest, Genesis, Keypair, Outcome, PublicKey, Receipt,
    ReceiptBody, SettlementBody, State, Verifier, Vote, VoteBody,
};
use orb_net::PeerId;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use super::spec::{Churn, Latency, Partition, chance};

/// How a Byzantine voter answers polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Behaviour {
    /// Votes against the asker's preference (another candidate, or a
    /// block that does not exist).
    Against,
    /// Tells half the askers one block and half another.
    Split,
    /// Answers with two signed votes for different blocks.
    Equivocate,
    /// Never answers.
    Silent,
}

/// How long a host runs one call.
const EXECUTION: Duration = Duration::from_millis(100);
/// Calls a host runs at once (its routing row's capacity).
const HOST_CAPACITY: u32 = 4;
/// How often hosts announce their load, as a node does.
const LOAD_EVERY: Duration = Duration::from_secs(1);

const BEHAVIOURS: [Behaviour; 4] = [
    Behaviour::Against,
    Behaviour::Split,
    Behaviour::Equivocate,
    Behaviour::Silent,
];

/// What the world is asked to run.
#[derive(Clone, Debug)]
pub(crate) struct Setup {
    pub(crate) nodes: usize,
    pub(crate) byzantine: f64,
    /// One behaviour for every Byzantine voter, or None for all four in turn.
    pub(crate) behaviour: Option<Behaviour>,
    pub(crate) seed: u64,
    pub(crate) heights: u64,
    pub(crate) latency: Latency,
    pub(crate) loss: f64,
    pub(crate) partition: Option<Partition>,
    pub(crate) churn: Option<Churn>,
    pub(crate) genesis: Genesis,
    pub(crate) config: Config,
    pub(crate) calls_per_sec: f64,
    pub(crate) replicas: usize,
    pub(crate) hosts: usize,
    pub(crate) callers: usize,
    pub(crate) tick: Duration,
    /// Nodes outside the committee tick this many times less often.
    pub(crate) outsider_ticks: u32,
    pub(crate) max_time: Duration,
}

/// A message on the simulated wire.
#[derive(Clone, Debug)]
enum Wire {
    Gossip(Arc<Gossip>),
    /// One query shared by the k members asked.
    Query {
        id: u64,
        query: Arc<Query>,
    },
    Votes {
        round: u64,
        votes: Vec<Vote>,
    },
    Fetch {
        hash: Digest,
    },
    Block(Arc<Block>),
    Sync {
        from: u64,
    },
    Blocks(Vec<Arc<Block>>),
    Invoke {
        call: u64,
    },
    Result {
        call: u64,
        receipt: Box<Receipt>,
    },
}

impl Wire {
    fn tag(&self) -> u8 {
        match self {
            Wire::Gossip(_) => 0,
            Wire::Query { .. } => 1,
            Wire::Votes { .. } => 2,
            Wire::Fetch { .. } => 3,
            Wire::Block(_) => 4,
            Wire::Sync { .. } => 5,
            Wire::Blocks(_) => 6,
            Wire::Invoke { .. } => 7,
            Wire::Result { .. } => 8,
        }
    }
}

#[derive(Debug)]
enum Kind {
    Deliver {
        from: u32,
        to: u32,
        wire: Wire,
    },
    Tick,
    Call,
    CallTimeout {
        call: u64,
        host: u32,
    },
    Crash(u32),
    Restart(u32),
    Join(u32),
    Churn,
    /// A host finished running a call.
    Executed {
        host: u32,
        entry: u32,
        call: u64,
    },
    /// Hosts announce their load (the rows callers route by).
    LoadReport,
}

struct Item {
    at: u64,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// One simulated node: a replica (None while down) and what its driver
/// persisted.
struct Node {
    key: Keypair,
    replica: Option<Replica>,
    /// The driver's store: every block it persisted, in height order.
    store: Vec<Commit>,
    /// The node's own claim, persisted with its identity.
    claim: Option<Claim>,
    behaviour: Option<Behaviour>,
    /// Returns wrong outputs when it executes a call.
    lies: bool,
    /// Highest height it announced or reported durable.
    announced: u64,
    left: bool,
    /// Held a committee slot when last stepped (outsiders tick less often).
    member: bool,
    msgs: u64,
    bytes: u64,
}

struct Call {
    entry: u32,
    invocation: u128,
    agreement: Agreement<u32>,
    receipts: Vec<Receipt>,
    tried: Vec<u32>,
    expected: ReceiptBody,
}

/// What a run found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Outcomes {
    pub(crate) violations: u64,
    pub(crate) first_violation: Option<String>,
    pub(crate) heights: u64,
    pub(crate) lowest_height: u64,
    pub(crate) finality_polls: Vec<usize>,
    pub(crate) finality_secs: Vec<f64>,
    /// Candidates held per decision (by the deciding honest node).
    pub(crate) candidates: Vec<usize>,
    pub(crate) events: u64,
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) max_node_messages: u64,
    pub(crate) sim_secs: f64,
    pub(crate) calls: u64,
    pub(crate) calls_ok: u64,
    pub(crate) calls_wrong: u64,
    pub(crate) calls_failed: u64,
    pub(crate) equivocators_caught: usize,
    /// Equivocators the chain recorded (the highest live honest chain).
    pub(crate) equivocators_on_chain: usize,
    pub(crate) crashes: u64,
    pub(crate) lost_blocks: u64,
    /// Blocks a replica handed out to persist out of height order.
    pub(crate) out_of_order: u64,
    pub(crate) byzantine_by_kind: BTreeMap<String, usize>,
    pub(crate) lying_executors: usize,
    pub(crate) trace: String,
    /// Heights finalized while the partition held (by the larger side).
    pub(crate) partition_heights: Option<u64>,
    /// Simulated seconds after the heal until every node caught up.
    pub(crate) catch_up_secs: Option<f64>,
}

/// The simulated network and its nodes.
pub(crate) struct World {
    setup: Setup,
    nodes: Vec<Node>,
    index: HashMap<PublicKey, u32>,
    queue: BinaryHeap<Reverse<Item>>,
    now: u64,
    seq: u64,
    rng: rand::rngs::StdRng,
    verifier: Arc<Verifier>,
    asks: HashMap<u64, (u32, u64)>,
    next_id: u64,
    calls: HashMap<u64, Call>,
    next_call: u64,
    hosts: Vec<u32>,
    /// The routing rows callers know, one per host (its load as last
    /// reported), and which host each row's peer is.
    rows: Vec<Provider>,
    row_host: HashMap<PeerId, u32>,
    /// Calls each node is running.
    running: Vec<u32>,
    callers: Vec<u32>,
    /// The side a node is on while a partition holds (false: the rest).
    cut: Vec<bool>,
    partitioned: bool,
    /// The first hash committed at each height by an honest node.
    decided: BTreeMap<u64, Digest>,
    trace: blake3::Hasher,
    ticks: u64,
    heal_at: Option<u64>,
    pub(crate) out: Outcomes,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

impl World {
    pub(crate) fn new(setup: Setup) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(setup.seed);
        let n = setup.nodes;
        let keys: Vec<Keypair> = (0..n)
            .map(|_| {
                let mut secret = [0u8; 32];
                rng.fill(&mut secret);
                Keypair::from_secret(secret)
            })
            .collect();
        // Roles by a seeded shuffle: the Byzantine nodes, the hosts, the
        // funded callers.
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut rng);
        let byzantine = (setup.byzantine * n as f64).round() as usize;
        let mut behaviour = vec![None; n];
        for (i, idx) in order.iter().take(byzantine).enumerate() {
            behaviour[*idx as usize] =
                Some(setup.behaviour.unwrap_or(BEHAVIOURS[i % BEHAVIOURS.len()]));
        }
        let mut hosts: Vec<u32> = order.clone();
        hosts.shuffle(&mut rng);
        hosts.truncate(setup.hosts.min(n).max(setup.replicas.min(n)));
        let mut callers: Vec<u32> = order
            .iter()
            .copied()
            .filter(|i| behaviour[*i as usize].is_none())
            .collect();
        callers.shuffle(&mut rng);
        callers.truncate(setup.callers.min(callers.len()));
        let mut genesis = setup.genesis.clone();
        genesis.balances = callers
            .iter()
            .map(|c| (keys[*c as usize].public(), 1_000_000_000))
            .collect();
        genesis.balances.sort();
        let setup = Setup { genesis, ..setup };
        let lies: Vec<bool> = (0..n)
            .map(|i| behaviour[i].is_some() && hosts.contains(&(i as u32)))
            .collect();
        let verifier = Arc::new(Verifier::cached(1 << 22));
        let mut cut = vec![false; n];
        if let Some(p) = &setup.partition {
            let k = (p.fraction * n as f64).round() as usize;
            for i in order.iter().rev().take(k) {
                cut[*i as usize] = true;
            }
        }
        let mut out = Outcomes::default();
        for b in behaviour.iter().flatten() {
            *out.byzantine_by_kind
                .entry(format!("{b:?}").to_lowercase())
                .or_default() += 1;
        }
        out.lying_executors = lies.iter().filter(|l| **l).count();
        let nodes = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| Node {
                key,
                replica: None,
                store: Vec::new(),
                claim: None,
                behaviour: behaviour[i],
                lies: lies[i],
                announced: 0,
                left: false,
                member: false,
                msgs: 0,
                bytes: 0,
            })
            .collect();
        let mut world = Self {
            index: HashMap::new(),
            nodes,
            queue: BinaryHeap::new(),
            now: 0,
            seq: 0,
            rng,
            verifier,
            asks: HashMap::new(),
            next_id: 0,
            calls: HashMap::new(),
            next_call: 0,
            rows: Vec::new(),
            row_host: HashMap::new(),
            running: vec![0; n],
            hosts,
            callers,
            cut,
            partitioned: false,
            decided: BTreeMap::new(),
            trace: blake3::Hasher::new(),
            ticks: 0,
            heal_at: None,
            out,
            setup,
        };
        world.index = world
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.key.public(), i as u32))
            .collect();
        for &h in &world.hosts {
            // The peer id a real node with this key has.
            let peer = orb_net::identity::peer_of(world.nodes[h as usize].key.public().0)
                .expect("an ed25519 key is a peer id");
            world.row_host.insert(peer, h);
            world.rows.push(Provider {
                peer,
                load: 0,
                capacity: HOST_CAPACITY,
                cached: true,
                busy_until_ms: 0,
            });
        }
        let late = world.setup.churn.as_ref().map_or(0.0, |c| c.late);
        for i in 0..n as u32 {
            if chance(&mut world.rng, late) {
                let at = world.setup.churn.as_ref().map_or(0, |c| us(c.every));
                world.schedule(at, Kind::Join(i));
            } else {
                world.start(i);
            }
        }
        world.schedule(0, Kind::Tick);
        world.schedule(0, Kind::LoadReport);
        if world.setup.calls_per_sec > 0.0 && !world.callers.is_empty() {
            world.schedule(us(Duration::from_millis(500)), Kind::Call);
        }
        if let Some(c) = &world.setup.churn {
            world.schedule(us(c.every), Kind::Churn);
        }
        world
    }

    fn schedule(&mut self, at: u64, kind: Kind) {
        self.seq += 1;
        self.queue.push(Reverse(Item {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn start(&mut self, i: u32) {
        let node = &self.nodes[i as usize];
        let mut state = State::genesis(&self.setup.genesis);
        for c in &node.store {
            state.apply(&c.block, &c.effects);
        }
        let recent = node
            .store
            .iter()
            .rev()
            .take(16)
            .rev()
            .map(|c| c.block.clone())
            .collect();
        let mut replica = Replica::new(
            self.setup.genesis.clone(),
            state,
            recent,
            node.key.clone(),
            self.setup.config.clone(),
            self.verifier.clone(),
            Duration::from_micros(self.now),
        );
        if replica.height() < node.announced {
            self.out.lost_blocks += node.announced - replica.height();
        }
        if let Some(c) = node.claim {
            replica.step(Input::Claim(c), Duration::from_micros(self.now));
        }
        self.nodes[i as usize].replica = Some(replica);
    }

    fn link_open(&self, from: u32, to: u32) -> bool {
        !self.partitioned || self.cut[from as usize] == self.cut[to as usize]
    }

    /// Sends `wire`; false when it is lost on the way.
    fn send(&mut self, from: u32, to: u32, wire: Wire, size: usize) -> bool {
        let n = &mut self.nodes[from as usize];
        n.msgs += 1;
        n.bytes += size as u64;
        self.out.messages += 1;
        self.out.bytes += size as u64;
        if !self.link_open(from, to) || chance(&mut self.rng, self.setup.loss) {
            return false;
        }
        let link = u64::from(from).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(to);
        let delay = us(self.setup.latency.sample(link, &mut self.rng));
        self.schedule(self.now + delay.max(1), Kind::Deliver { from, to, wire });
        true
    }

    fn gossip(&mut self, from: u32, g: Gossip) {
        let size = gossip_size(&g);
        // Settlements matter only to proposers: they go to the committee
        // the sender knows (a topic only members subscribe to), not to all.
        let to: Vec<u32> = match &g {
            Gossip::Settlements(_) => self.nodes[from as usize]
                .replica
                .as_ref()
                .map(|r| {
                    r.committee()
                        .iter()
                        .filter_map(|k| self.index.get(k).copied())
                        .collect()
                })
                .unwrap_or_default(),
            _ => (0..self.nodes.len() as u32).collect(),
        };
        let g = Arc::new(g);
        for to in to {
            if to != from {
                self.send(from, to, Wire::Gossip(g.clone()), size);
            }
        }
    }

    /// Runs until every live honest node reached the target height, or
    /// the time limit.
    pub(crate) fn run(&mut self) {
        let limit = us(self.setup.max_time);
        while let Some(Reverse(item)) = self.queue.pop() {
            if item.at > limit {
                break;
            }
            self.now = item.at;
            self.out.events += 1;
            self.trace_event(&item);
            match item.kind {
                Kind::Deliver { from, to, wire } => self.deliver(from, to, wire),
                Kind::Tick => {
                    self.tick();
                    if self.done() {
                        break;
                    }
                    self.schedule(self.now + us(self.setup.tick), Kind::Tick);
                }
                Kind::Call => self.call(),
                Kind::Executed { host, entry, call } => {
                    self.running[host as usize] -= 1;
                    if self.nodes[host as usize].replica.is_some() {
                        self.execute(host, entry, call);
                    }
                }
                Kind::LoadReport => {
                    for row in &mut self.rows {
                        row.load = self.running[self.row_host[&row.peer] as usize];
                    }
                    self.schedule(self.now + us(LOAD_EVERY), Kind::LoadReport);
                }
                Kind::CallTimeout { call, host } => self.call_timeout(call, host),
                Kind::Crash(i) => {
                    self.nodes[i as usize].replica = None;
                    self.out.crashes += 1;
                }
                Kind::Restart(i) | Kind::Join(i) => {
                    if !self.nodes[i as usize].left {
                        self.start(i);
                    }
                }
                Kind::Churn => self.churn(),
            }
            self.partition_clock();
        }
        self.out.sim_secs = self.now as f64 / 1e6;
        self.out.trace = self.trace.finalize().to_hex().to_string();
        let live = self.live_honest();
        self.out.heights = live.iter().map(|i| self.height(*i)).max().unwrap_or(0);
        self.out.lowest_height = live.iter().map(|i| self.height(*i)).min().unwrap_or(0);
        self.out.max_node_messages = self.nodes.iter().map(|n| n.msgs).max().unwrap_or(0);
        self.out.equivocators_caught = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(|r| r.equivocators().len())
            .max()
            .unwrap_or(0);
        self.out.equivocators_on_chain = live
            .iter()
            .filter_map(|i| self.nodes[*i as usize].replica.as_ref())
            .max_by_key(|r| r.height())
            .map_or(0, |r| r.state().excluded().len());
    }

    fn trace_event(&mut self, item: &Item) {
        let (tag, a, b) = match &item.kind {
            Kind::Deliver { from, to, wire } => (10 + wire.tag(), *from, *to),
            Kind::Tick => (1, 0, 0),
            Kind::Call => (2, 0, 0),
            Kind::CallTimeout { host, .. } => (3, *host, 0),
            Kind::Crash(i) => (4, *i, 0),
            Kind::Restart(i) => (5, *i, 0),
            Kind::Join(i) => (6, *i, 0),
            Kind::Executed { host, .. } => (8, *host, 0),
            Kind::LoadReport => (9, 0, 0),
            Kind::Churn => (7, 0, 0),
        };
        let mut rec = [0u8; 17];
        rec[..8].copy_from_slice(&item.at.to_le_bytes());
        rec[8] = tag;
        rec[9..13].copy_from_slice(&a.to_le_bytes());
        rec[13..].copy_from_slice(&b.to_le_bytes());
        self.trace.update(&rec);
    }

    fn height(&self, i: u32) -> u64 {
        self.nodes[i as usize].store.len() as u64
    }

    fn live_honest(&self) -> Vec<u32> {
        (0..self.nodes.len() as u32)
            .filter(|i| {
                let n = &self.nodes[*i as usize];
                n.behaviour.is_none() && n.replica.is_some() && !n.left
            })
            .collect()
    }

    fn done(&self) -> bool {
        // Finish only after the faults are over.
        if self.partitioned {
            return false;
        }
        let target = self.setup.heights;
        let live = self.live_honest();
        !live.is_empty() && live.iter().all(|i| self.height(*i) >= target)
    }

    fn partition_clock(&mut self) {
        let Some(p) = self.setup.partition.clone() else {
            return;
        };
        let (start, end) = (us(p.start), us(p.start + p.length));
        if !self.partitioned && self.heal_at.is_none() && self.now >= start && self.now < end {
            self.partitioned = true;
            self.out.partition_heights = Some(self.out_max_height());
        } else if self.partitioned && self.now >= end {
            self.partitioned = false;
            let before = self.out.partition_heights.unwrap_or(0);
            self.out.partition_heights = Some(self.out_max_height() - before);
            self.heal_at = Some(self.now);
        }
        if let Some(heal) = self.heal_at
            && self.out.catch_up_secs.is_none()
        {
            let live = self.live_honest();
            let top = live.iter().map(|i| self.height(*i)).max().unwrap_or(0);
            if live.iter().all(|i| self.height(*i) == top) {
                self.out.catch_up_secs = Some((self.now - heal) as f64 / 1e6);
            }
        }
    }

    fn out_max_height(&self) -> u64 {
        (0..self.nodes.len() as u32)
            .map(|i| self.height(i))
            .max()
            .unwrap_or(0)
    }

    fn tick(&mut self) {
        self.ticks += 1;
        let every = u64::from(self.setup.outsider_ticks.max(1));
        let now = Duration::from_micros(self.now);
        for i in 0..self.nodes.len() as u32 {
            let n = &mut self.nodes[i as usize];
            if !n.member && !(u64::from(i) + self.ticks).is_multiple_of(every) {
                continue;
            }
            let Some(r) = n.replica.as_mut() else {
                continue;
            };
            r.step(Input::Tick, now);
            self.drain(i);
        }
    }

    fn churn(&mut self) {
        let Some(c) = self.setup.churn.clone() else {
            return;
        };
        let n = self.nodes.len() as u32;
        for i in 0..n {
            if self.nodes[i as usize].replica.is_none() || self.nodes[i as usize].left {
                continue;
            }
            if self.ticks > 0 && chance(&mut self.rng, c.leave) && self.out.crashes == 0 {
                self.nodes[i as usize].left = true;
                self.nodes[i as usize].replica = None;
                continue;
            }
            if chance(&mut self.rng, c.fraction) {
                let down = us(c.down);
                let jitter = self.rng.random_range(0..us(c.every) / 2 + 1);
                self.schedule(self.now + jitter, Kind::Crash(i));
                self.schedule(self.now + jitter + down, Kind::Restart(i));
            }
        }
        self.schedule(self.now + us(c.every), Kind::Churn);
    }

    /// Carries out what node `i`'s replica made ready: persist, then send.
    fn drain(&mut self, i: u32) {
        let Some(r) = self.nodes[i as usize].replica.as_mut() else {
            return;
        };
        let ready = r.ready();
        let me = r.key();
        let member = r.is_member();
        let node = &mut self.nodes[i as usize];
        node.member = member;
        let honest = node.behaviour.is_none();
        for c in ready.persist {
            let h = c.block.header.height;
            if h != node.store.len() as u64 + 1 {
                // A replica must hand out blocks in height order: one
                // that did not is a failure of the run, and the block is
                // not stored (a real chain refuses it too).
                self.out.out_of_order += 1;
                continue;
            }
            let hash = c.block.hash();
            node.store.push(c);
            self.trace.update(&i.to_le_bytes());
            self.trace.update(&h.to_le_bytes());
            self.trace.update(&hash.0);
            if honest {
                match self.decided.get(&h) {
                    None => {
                        self.decided.insert(h, hash);
                    }
                    Some(first) if *first != hash => {
                        self.out.violations += 1;
                        self.out.first_violation.get_or_insert_with(|| {
                            format!(
                                "height {h}: node {i} committed {hash}, another honest node {first}"
                            )
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        let durable = node.store.len() as u64;
        node.announced = node.announced.max(durable);
        if let Some(r) = node.replica.as_mut() {
            r.advance(durable);
        }
        for e in ready.events {
            if let Event::Committed {
                finality: Some(f),
                polls,
                candidates,
                decided_here: true,
                ..
            } = e
                && honest
            {
                self.out.finality_polls.push(polls);
                self.out.finality_secs.push(f.as_secs_f64());
                self.out.candidates.push(candidates);
            }
        }
        for m in ready.messages {
            self.message(i, me, m);
        }
    }

    fn message(&mut self, i: u32, me: PublicKey, m: Message) {
        match m {
            Message::Query { query, peers } => {
                let size = orb_ledger::encode(&query).len() + 8;
                let query = Arc::new(query);
                for p in peers {
                    let Some(&to) = self.index.get(&p) else {
                        continue;
                    };
                    self.next_id += 1;
                    self.asks.insert(self.next_id, (i, query.round));
                    let wire = Wire::Query {
                        id: self.next_id,
                        query: query.clone(),
                    };
                    if !self.send(i, to, wire, size) {
                        // Lost: nobody will answer it.
                        self.asks.remove(&self.next_id);
                    }
                }
            }
            Message::Answer { id, vote } => {
                let Some((asker, round)) = self.asks.remove(&id) else {
                    return;
                };
                let votes = self.adversary(i, asker, vote);
                let Some(votes) = votes else { return };
                let size = votes
                    .iter()
                    .map(|v| orb_ledger::encode(v).len())
                    .sum::<usize>()
                    + 8;
                self.send(i, asker, Wire::Votes { round, votes }, size);
            }
            Message::AnswerBlock { .. } => {}
            Message::Gossip(g) => {
                if let Gossip::Claim(c) = &g
                    && c.key == me
                {
                    self.nodes[i as usize].claim = Some(*c);
                }
                self.gossip(i, g);
            }
            Message::Fetch { hash, peer } => {
                if let Some(&to) = self.index.get(&peer) {
                    self.send(i, to, Wire::Fetch { hash }, 40);
                }
            }
            Message::Sync { from, peer } => {
                if let Some(&to) = self.index.get(&peer) {
                    self.send(i, to, Wire::Sync { from }, 16);
                }
            }
        }
    }

    /// What a node's answer becomes: unchanged for honest nodes; for a
    /// Byzantine one, what its behaviour says (None: nothing is sent).
    fn adversary(&mut self, i: u32, asker: u32, vote: Option<Vote>) -> Option<Vec<Vote>> {
        let node = &self.nodes[i as usize];
        let Some(b) = node.behaviour else {
            return Some(vote.into_iter().collect());
        };
        let vote = vote?;
        let other = |v: &Vote| -> Digest {
            let candidates = node
                .replica
                .as_ref()
                .map(|r| r.candidates())
                .unwrap_or_default();
            candidates
                .into_iter()
                .find(|c| *c != v.body.block)
                .unwrap_or_else(|| Digest::of(b"orb/sim/fake", &v.body.block.0))
        };
        let resign = |block: Digest| -> Vote {
            VoteBody {
                block,
                ..vote.body.clone()
            }
            .sign(&node.key)
        };
        match b {
            Behaviour::Silent => None,
            Behaviour::Against => Some(vec![resign(other(&vote))]),
            Behaviour::Split => {
                let block = if asker.is_multiple_of(2) {
                    vote.body.block
                } else {
                    other(&vote)
                };
                Some(vec![resign(block)])
            }
            Behaviour::Equivocate => {
                let second = resign(other(&vote));
                Some(vec![vote, second])
            }
        }
    }

    fn deliver(&mut self, from: u32, to: u32, wire: Wire) {
        if self.nodes[to as usize].replica.is_none() {
            if let Wire::Query { id, .. } = wire {
                self.asks.remove(&id);
            }
            return;
        }
        let now = Duration::from_micros(self.now);
        let from_key = self.nodes[from as usize].key.public();
        let input = match wire {
            Wire::Gossip(g) => g.to_input(from_key),
            Wire::Query { id, query } => Input::Query {
                id,
                from: from_key,
                query: Arc::unwrap_or_clone(query),
            },
            Wire::Votes { round, votes } => Input::Votes {
                from: from_key,
                round,
                votes,
            },
            Wire::Fetch { hash } => {
                let block = self.nodes[to as usize]
                    .replica
                    .as_ref()
                    .and_then(|r| r.candidate(&hash));
                if let Some(b) = block {
                    let size = orb_ledger::encode(&*b).len();
                    self.send(to, from, Wire::Block(b), size);
                }
                return;
            }
            Wire::Block(b) => Input::Proposal(b),
            Wire::Sync { from: h } => {
                let store = &self.nodes[to as usize].store;
                let blocks: Vec<Arc<Block>> = store
                    .iter()
                    .skip(h.saturating_sub(1) as usize)
                    .take(64)
                    .map(|c| c.block.clone())
                    .collect();
                if !blocks.is_empty() {
                    let size = blocks.iter().map(|b| block_size(b)).sum();
                    self.send(to, from, Wire::Blocks(blocks), size);
                }
                return;
            }
            Wire::Blocks(blocks) => {
                for b in blocks {
                    if let Some(r) = self.nodes[to as usize].replica.as_mut() {
                        r.step(
                            Input::Committed {
                                block: b,
                                from: from_key,
                            },
                            now,
                        );
                    }
                    self.drain(to);
                }
                return;
            }
            Wire::Invoke { call } => {
                self.running[to as usize] += 1;
                self.schedule(
                    self.now + us(EXECUTION),
                    Kind::Executed {
                        host: to,
                        entry: from,
                        call,
                    },
                );
                return;
            }
            Wire::Result { call, receipt } => {
                self.answered(call, from, *receipt);
                return;
            }
        };
        if let Some(r) = self.nodes[to as usize].replica.as_mut() {
            r.step(input, now);
        }
        self.drain(to);
    }

    // ---- calls ---------------------------------------------------------------

    fn call(&mut self) {
        let gap = -(1.0 - self.rng.random::<f64>()).ln() / self.setup.calls_per_sec;
        self.schedule(
            self.now + us(Duration::from_secs_f64(gap)).max(1),
            Kind::Call,
        );
        let entry = self.callers[self.rng.random_range(0..self.callers.len())];
        if self.nodes[entry as usize].replica.is_none() {
            return;
        }
        self.next_call += 1;
        let id = self.next_call;
        let invocation = u128::from(id) | (u128::from(self.setup.seed) << 64);
        let input = Digest::of(b"orb/sim/input", &id.to_le_bytes());
        let expected = ReceiptBody {
            invocation,
            function: Digest::of(b"orb/sim/function", b"echo"),
            input,
            output: honest_output(&input),
            fuel: 1_000,
            executor: PublicKey([0; 32]),
            invoker: self.nodes[entry as usize].key.public(),
        };
        self.calls.insert(
            id,
            Call {
                entry,
                invocation,
                agreement: Agreement::new(self.setup.replicas, self.setup.replicas + 2),
                receipts: Vec::new(),
                tried: Vec::new(),
                expected,
            },
        );
        self.out.calls += 1;
        self.advance_call(id);
    }

    /// Does what the call's agreement says next.
    fn advance_call(&mut self, id: u64) {
        loop {
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            match call.agreement.decision() {
                Decision::Wait => return,
                Decision::AskAnother(n) => {
                    // The node's routing rule over the rows as last
                    // reported: the best providers not tried yet.
                    let ranked = choose_providers(self.rows.clone(), self.now / 1000, id);
                    let mut untried = ranked
                        .iter()
                        .map(|p| self.row_host[&p.peer])
                        .filter(|h| !call.tried.contains(h))
                        .collect::<Vec<u32>>()
                        .into_iter();
                    let mut asked = Vec::new();
                    for _ in 0..n {
                        let Some(host) = untried.next() else {
                            call.agreement.exhausted();
                            break;
                        };
                        call.tried.push(host);
                        call.agreement.asked();
                        asked.push(host);
                    }
                    let entry = call.entry;
                    for host in asked {
                        self.send(entry, host, Wire::Invoke { call: id }, 64);
                        self.schedule(self.now + 2_000_000, Kind::CallTimeout { call: id, host });
                    }
                }
                Decision::Majority { result, .. } => {
                    let Some(call) = self.calls.remove(&id) else {
                        return;
                    };
                    let right = Outcome::Output {
                        hash: call.expected.output,
                        fuel: call.expected.fuel,
                    };
                    if result == right {
                        self.out.calls_ok += 1;
                    } else {
                        self.out.calls_wrong += 1;
                    }
                    self.settle(call);
                    return;
                }
                Decision::NoMajority => {
                    self.calls.remove(&id);
                    self.out.calls_failed += 1;
                    return;
                }
            }
        }
    }

    fn execute(&mut self, host: u32, entry: u32, call: u64) {
        let Some(c) = self.calls.get(&call) else {
            // The entry gave up; a real executor would still run it.
            return;
        };
        let node = &self.nodes[host as usize];
        let mut body = c.expected.clone();
        body.executor = node.key.public();
        if node.lies {
            // Each liar lies its own way: executors that agree on one lie
            // win any call where they hold a majority of the replicas.
            let mut m = body.output.0.to_vec();
            m.extend_from_slice(&body.executor.0);
            body.output = Digest::of(b"orb/sim/lie", &m);
        }
        let receipt = body.sign(&node.key);
        let size = orb_ledger::encode(&receipt).len() + 64;
        self.send(
            host,
            entry,
            Wire::Result {
                call,
                receipt: Box::new(receipt),
            },
            size,
        );
    }

    fn answered(&mut self, id: u64, host: u32, receipt: Receipt) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut want = call.expected.clone();
        want.executor = self.nodes[host as usize].key.public();
        want.output = receipt.body.output;
        if orb_ledger::check_receipt(Some(&receipt), &want).is_err() {
            call.agreement.rerouted();
        } else if call.agreement.answered(
            host,
            Outcome::Output {
                hash: receipt.body.output,
                fuel: receipt.body.fuel,
            },
        ) {
            call.receipts.push(receipt);
        }
        self.advance_call(id);
    }

    fn call_timeout(&mut self, id: u64, host: u32) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.agreement.answers().iter().any(|(h, _)| *h == host) {
            return;
        }
        call.agreement.rerouted();
        self.advance_call(id);
    }

    fn settle(&mut self, call: Call) {
        let entry = call.entry as usize;
        let key = &self.nodes[entry].key;
        let settlement = SettlementBody {
            invocation: call.invocation,
            invoker: key.public(),
            receipts: call.receipts,
        }
        .sign(key);
        let Some(r) = self.nodes[entry].replica.as_mut() else {
            return;
        };
        r.step(
            Input::Settlements {
                settlements: vec![settlement],
                local: true,
            },
            Duration::from_micros(self.now),
        );
        self.drain(call.entry);
    }

    // ---- after the run --------------------------------------------------------

    /// The persisted chains of up to `n` live honest nodes, spread over
    /// the index range.
    pub(crate) fn sample_chains(&self, n: usize) -> Vec<(u32, Vec<Commit>)> {
        let live = self.live_honest();
        let step = (live.len() / n.max(1)).max(1);
        live.iter()
            .step_by(step)
            .take(n)
            .map(|i| (*i, self.nodes[*i as usize].store.clone()))
            .collect()
    }

    /// Keys of executors that return wrong outputs.
    pub(crate) fn liars(&self) -> Vec<PublicKey> {
        self.nodes
            .iter()
            .filter(|n| n.lies)
            .map(|n| n.key.public())
            .collect()
    }

    /// The genesis the run used.
    pub(crate) fn genesis(&self) -> &Genesis {
        &self.setup.genesis
    }

    /// Every live honest node's height.
    pub(crate) fn heights(&self) -> Vec<u64> {
        self.live_honest().iter().map(|i| self.height(*i)).collect()
    }

    /// Proposals made for a height while the one before it was being
    /// decided, by the replicas up now (since their last start).
    pub(crate) fn pipelined(&self) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(Replica::pipelined)
            .sum()
    }
}

/// What an honest executor outputs for `input` (the simulated function).
fn honest_output(input: &Digest) -> Digest {
    Digest::of(b"orb/sim/output", &input.0)
}

/// Encoded sizes, as the wire would carry them.
fn block_size(b: &Block) -> usize {
    orb_ledger::encode(b).len()
}

fn gossip_size(g: &Gossip) -> usize {
    match g {
        Gossip::Claim(c) => orb_ledger::encode(c).len(),
        Gossip::Settlements(s) => orb_ledger::encode(s).len(),
        Gossip::Proposal(b) | Gossip::Committed(b) => block_size(b),
        Gossip::Equivocation(p) => orb_ledger::encode(&**p).len(),
    }
}
