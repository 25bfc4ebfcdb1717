//! Reward-block consensus as a stream operator.
//!
//! Everything consensus hears enters one bounded channel as a
//! [`ConsensusInput`]: committee claims, settlements, proposals, committed
//! blocks from peers, the signed votes answering this node's polls, peers'
//! queries, and a clock tick. A single `snowball` operator owns the
//! [`Replica`] (the per-height Snowball state, the King-of-the-Hill table,
//! the mempool and the chain) and turns the stream into [`Action`]s the
//! node carries out on the network. Each committed block's balance effects
//! leave the operator as a differential collection; a `reduce` sums them
//! per key into the live balances the node reads (there is no balance
//! table: the chain is the only source).
//!
//! Per height: committee members with settlements to include propose; after a short
//! gathering window each node prefers the candidate with the smallest
//! lottery ticket `blake3(prev ‖ proposer)`; then it polls k sampled
//! committee members (itself included) with signed-vote queries, feeds the
//! answers to its [`Snowball`], and on decision appends the block with the
//! β deciding polls as evidence. The append is durable (one sled batch,
//! flushed and fsync'd) before the block is announced.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use differential_dataflow::AsCollection;
use orb_ledger::{
    Block, Chain, Claim, Digest, Effects, Evidence, Keypair, Koth, Poll, PublicKey, Settlement,
    Snowball, Vote, VoteBody,
};
use orb_net::{Announcement, Query};
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Operator, Probe};

use crate::boundary::{Flow, SourceHandle, channel};
use crate::{EngineConfig, Error, Result};

/// What consensus hears.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum ConsensusInput {
    /// A committee claim (gossip).
    Claim(Claim),
    /// Settlements for the mempool; `local` ones were signed here (this
    /// node invoked) and are gossiped in batches by the operator.
    Settlements {
        /// The settlements.
        settlements: Vec<Settlement>,
        /// Signed by this node.
        local: bool,
    },
    /// A proposal for some height.
    Proposal(Box<Block>),
    /// A block a peer committed, with evidence.
    Committed {
        /// The block.
        block: Box<Block>,
        /// Who sent it.
        from: PublicKey,
    },
    /// The votes answering this node's poll `round`.
    Votes {
        /// Height polled.
        height: u64,
        /// Round polled.
        round: u64,
        /// Signed votes received (unchecked).
        votes: Vec<Vote>,
    },
    /// A peer's query, answered by [`Action::Answer`] with the same id.
    Query {
        /// Reply id.
        id: u64,
        /// The asker.
        from: PublicKey,
        /// The question.
        query: Query,
    },
    /// A peer wants a block by hash ([`Action::AnswerBlock`]).
    FetchBlock {
        /// Reply id.
        id: u64,
        /// The hash.
        hash: Digest,
    },
    /// Time passes.
    Tick,
}

/// What the node must do for consensus.
#[derive(Clone, Debug)]
pub enum Action {
    /// Ask `peers` for their vote; feed the answers back as
    /// [`ConsensusInput::Votes`] (with `own`, this node's vote, if any).
    Poll {
        /// The query.
        query: Query,
        /// Committee members to ask.
        peers: Vec<PublicKey>,
        /// This node's own vote when it sampled itself.
        own: Option<Vote>,
    },
    /// Answer query `id`.
    Answer {
        /// Reply id.
        id: u64,
        /// The vote, if this node has a preference.
        vote: Option<Vote>,
    },
    /// Answer block request `id`.
    AnswerBlock {
        /// Reply id.
        id: u64,
        /// The block.
        block: Option<Box<Block>>,
    },
    /// Gossip this.
    Announce(Announcement),
    /// Get the block `hash` from `peer` and feed it back as a proposal.
    Fetch {
        /// The block hash.
        hash: Digest,
        /// Who has it.
        peer: PublicKey,
    },
    /// Get committed blocks from `from` on from `peer`.
    Sync {
        /// First height wanted.
        from: u64,
        /// Who has them.
        peer: PublicKey,
    },
    /// A block was committed (durably) here.
    Committed {
        /// Its height.
        height: u64,
        /// Its hash.
        hash: Digest,
        /// Receipts in it.
        receipts: usize,
        /// From the first candidate seen to the commit, if this node saw one.
        finality: Option<Duration>,
        /// Decided here (false: taken from a peer with its evidence).
        decided_here: bool,
    },
}

/// Timing of consensus.
#[derive(Clone, Debug)]
pub struct ConsensusConfig {
    /// At least this long between a commit and this node's next proposal.
    pub block_interval: Duration,
    /// How long to gather candidates before picking a preference.
    pub gather: Duration,
    /// A poll unanswered for this long is abandoned.
    pub poll_timeout: Duration,
    /// How long each proposer waits for the ones ranked before it.
    pub proposer_step: Duration,
    /// Most settlements waiting in the mempool.
    pub max_mempool: usize,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        Self {
            block_interval: Duration::from_millis(500),
            gather: Duration::from_millis(100),
            poll_timeout: Duration::from_secs(2),
            proposer_step: Duration::from_millis(400),
            max_mempool: 200_000,
        }
    }
}

/// What the node can read while consensus runs.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LedgerStatus {
    /// Committed height.
    pub height: u64,
    /// Its hash.
    pub head: String,
    /// Committee members (hex keys).
    pub committee: Vec<String>,
    /// Whether this node holds a slot.
    pub member: bool,
    /// Settlements waiting.
    pub mempool: usize,
    /// Finality of recent blocks decided or seen here, in microseconds.
    pub finality_us: Vec<u64>,
}

/// Live balances, from the dataflow's reduce.
pub type Balances = Arc<RwLock<HashMap<PublicKey, i64>>>;

/// The handle to a node's consensus dataflow.
#[derive(Clone)]
pub struct Consensus {
    input: SourceHandle<ConsensusInput>,
    /// Live balances.
    pub balances: Balances,
    /// Status.
    pub status: Arc<RwLock<LedgerStatus>>,
    /// The chain (read it; only the dataflow appends).
    pub chain: Arc<Mutex<Chain>>,
}

impl Consensus {
    /// Feeds an input, waiting while the dataflow is behind.
    pub async fn send(&self, input: ConsensusInput) -> Result<()> {
        self.input
            .send_async(input)
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Feeds an input unless the queue is full (false then).
    pub fn try_send(&self, input: ConsensusInput) -> bool {
        self.input.try_send(input).is_ok()
    }

    /// A key's live balance.
    pub fn balance(&self, key: &PublicKey) -> i64 {
        self.balances
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

/// Starts consensus on its own thread; `act` carries out actions (it must
/// not block).
pub fn start_consensus(
    chain: Chain,
    key: Keypair,
    config: ConsensusConfig,
    act: impl Fn(Action) + Send + Sync + 'static,
) -> Result<(Consensus, JoinHandle<()>)> {
    let (input, inlet) = channel::<ConsensusInput>(8192);
    // Readers see the committed head at once, before the dataflow's first
    // activation publishes the rest.
    let status = Arc::new(RwLock::new(LedgerStatus {
        height: chain.height(),
        head: chain.head().to_hex(),
        ..LedgerStatus::default()
    }));
    let chain = Arc::new(Mutex::new(chain));
    let balances: Balances = Arc::default();
    let handle = Consensus {
        input,
        balances: balances.clone(),
        status: status.clone(),
        chain: chain.clone(),
    };
    let act = Arc::new(act);
    let thread = std::thread::Builder::new()
        .name("orb-consensus".into())
        .spawn(move || {
            let engine = EngineConfig {
                workers: 1,
                ..EngineConfig::default()
            };
            let run = crate::execute(&engine, move |worker| {
                let flow = Flow::new(64, 1024);
                let (inlet, chain, key, config, act, balances, status) = (
                    inlet.clone(),
                    chain.clone(),
                    key.clone(),
                    config.clone(),
                    act.clone(),
                    balances.clone(),
                    status.clone(),
                );
                worker.dataflow::<u64, _, _>(|scope| {
                    let inputs = inlet.into_stream(scope, "consensus-input", &flow);
                    let effects = inputs.unary::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                        Pipeline,
                        "snowball",
                        move |_, _| {
                            let mut replica = Replica::new(chain, key, config, status);
                            let mut genesis_given = false;
                            move |input, output| {
                                input.for_each(|cap, data| {
                                    let Some(&time) = cap.least() else { return };
                                    let mut session = output.session(&cap);
                                    if !genesis_given {
                                        genesis_given = true;
                                        for (k, b) in replica.genesis_balances() {
                                            session.give((k, time, clamp(b)));
                                        }
                                    }
                                    let mut actions = Vec::new();
                                    for item in data.drain(..) {
                                        let mut committed = Vec::new();
                                        replica.handle(
                                            item,
                                            Instant::now(),
                                            &mut actions,
                                            &mut committed,
                                        );
                                        for effects in committed {
                                            for (k, d) in effects.0 {
                                                session.give((k, time, clamp(d)));
                                            }
                                        }
                                    }
                                    for a in actions {
                                        act(a);
                                    }
                                    replica.publish_status();
                                });
                            }
                        },
                    );
                    // The live balances: a sum per key over every committed
                    // block's effects.
                    effects
                        .as_collection()
                        .map(|k| (k, ()))
                        .reduce(|_k, input, output| {
                            let total: isize = input.iter().map(|(_, d)| *d).sum();
                            output.push((total as i64, 1isize));
                        })
                        .inspect(
                            move |((k, total), _t, diff): &((PublicKey, i64), u64, isize)| {
                                let mut b =
                                    balances.write().unwrap_or_else(PoisonError::into_inner);
                                if *diff > 0 {
                                    b.insert(*k, *total);
                                } else if b.get(k) == Some(total) {
                                    b.remove(k);
                                }
                            },
                        )
                        .inner
                        .probe_with(&flow.probe);
                });
                crate::run_to_completion(worker);
            });
            if let Err(e) = run {
                tracing::error!("consensus dataflow failed: {e}");
            }
        })
        .map_err(|e| Error::Thread(e.to_string()))?;
    Ok((handle, thread))
}

fn clamp(v: i128) -> isize {
    v.clamp(isize::MIN as i128, isize::MAX as i128) as isize
}

/// One height being decided.
struct Round {
    height: u64,
    candidates: HashMap<Digest, Block>,
    first_seen: Option<Instant>,
    proposed: bool,
    snowball: Option<Snowball<Digest>>,
    outstanding: Option<(u64, Instant)>,
    streak: Vec<Poll>,
    fetching: HashMap<Digest, Instant>,
    /// When this node first had receipts to propose at this height.
    ready: Option<Instant>,
}

impl Round {
    /// Whether to ask for `hash` now: not asked yet, or asked over a
    /// second ago (the answer may have been lost or refused).
    fn may_fetch(&mut self, hash: Digest, now: Instant) -> bool {
        match self.fetching.get(&hash) {
            Some(t) if now - *t < Duration::from_secs(1) => false,
            _ => {
                self.fetching.insert(hash, now);
                true
            }
        }
    }

    fn new(height: u64) -> Self {
        Self {
            height,
            candidates: HashMap::new(),
            first_seen: None,
            proposed: false,
            snowball: None,
            outstanding: None,
            streak: Vec::new(),
            fetching: HashMap::new(),
            ready: None,
        }
    }
}

/// A node's consensus state: chain, committee table, mempool, current height.
pub struct Replica {
    chain: Arc<Mutex<Chain>>,
    key: Keypair,
    me: PublicKey,
    config: ConsensusConfig,
    id: Digest,
    params: orb_ledger::Params,
    slots: u32,
    koth: Koth,
    mempool: BTreeMap<Digest, Settlement>,
    outbox: Vec<Settlement>,
    round: Round,
    future: Vec<Block>,
    next_poll: u64,
    rng: rand::rngs::StdRng,
    last_commit: Instant,
    last_claim: Option<Instant>,
    nonce: u64,
    behind: Option<PublicKey>,
    last_sync: Option<Instant>,
    finality: Vec<u64>,
    status: Arc<RwLock<LedgerStatus>>,
}

fn lock(chain: &Mutex<Chain>) -> std::sync::MutexGuard<'_, Chain> {
    chain.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Replica {
    fn new(
        chain: Arc<Mutex<Chain>>,
        key: Keypair,
        config: ConsensusConfig,
        status: Arc<RwLock<LedgerStatus>>,
    ) -> Self {
        let (id, genesis, height) = {
            let c = lock(&chain);
            (c.id(), c.genesis().clone(), c.height())
        };
        let me = key.public();
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&Digest::of(b"orb/sample", &me.0).0);
        Self {
            chain,
            me,
            key,
            config,
            id,
            params: genesis.snowball,
            slots: genesis.slots,
            koth: Koth::new(id, genesis.slots, genesis.difficulty),
            mempool: BTreeMap::new(),
            outbox: Vec::new(),
            round: Round::new(height + 1),
            future: Vec::new(),
            next_poll: 1,
            rng: rand::rngs::StdRng::from_seed(seed),
            last_commit: Instant::now(),
            last_claim: None,
            nonce: 0,
            behind: None,
            last_sync: None,
            finality: Vec::new(),
            status,
        }
    }

    fn genesis_balances(&self) -> Vec<(PublicKey, i128)> {
        let c = lock(&self.chain);
        c.genesis()
            .balances
            .iter()
            .map(|(k, b)| (*k, i128::from(*b)))
            .chain(
                // Blocks committed before a restart.
                (1..=c.height())
                    .filter_map(|h| orb_ledger::stored_effects(c.store(), h).ok().flatten())
                    .flat_map(|e| e.0),
            )
            .collect()
    }

    fn publish_status(&self) {
        let c = lock(&self.chain);
        let mut s = self.status.write().unwrap_or_else(PoisonError::into_inner);
        s.height = c.height();
        s.head = c.head().to_hex();
        s.committee = self.koth.members().iter().map(PublicKey::to_hex).collect();
        s.member = self.koth.holds(&self.me).is_some();
        s.mempool = self.mempool.len();
        s.finality_us.clone_from(&self.finality);
    }

    /// Handles one input; appends actions and the effects of commits.
    pub fn handle(
        &mut self,
        input: ConsensusInput,
        now: Instant,
        actions: &mut Vec<Action>,
        committed: &mut Vec<Effects>,
    ) {
        match input {
            ConsensusInput::Claim(c) => {
                let _ = self.koth.try_insert(c);
            }
            ConsensusInput::Settlements { settlements, local } => {
                let c = lock(&self.chain);
                for s in settlements {
                    if self.mempool.len() >= self.config.max_mempool {
                        break;
                    }
                    let settled = c.state().is_settled(&s.body.invoker, s.body.invocation);
                    if settled || s.check().is_err() || !s.verify() {
                        continue;
                    }
                    if local {
                        self.outbox.push(s.clone());
                    }
                    self.mempool.insert(s.id(), s);
                }
            }
            ConsensusInput::Proposal(block) => self.on_proposal(*block, now),
            ConsensusInput::Committed { block, from } => {
                let height = block.header.height;
                if height == self.round.height {
                    self.commit(*block, now, false, actions, committed);
                } else if height > self.round.height {
                    self.behind = Some(from);
                }
            }
            ConsensusInput::Votes {
                height,
                round,
                votes,
            } => self.on_votes(height, round, votes, now, actions, committed),
            ConsensusInput::Query { id, from, query } => {
                let vote = self.answer(&query, from, actions);
                actions.push(Action::Answer { id, vote });
            }
            ConsensusInput::FetchBlock { id, hash } => {
                let block = self.round.candidates.get(&hash).cloned().or_else(|| {
                    let c = lock(&self.chain);
                    (1..=c.height())
                        .rev()
                        .take(16)
                        .find_map(|h| c.block(h).ok().flatten().filter(|b| b.hash() == hash))
                });
                actions.push(Action::AnswerBlock {
                    id,
                    block: block.map(Box::new),
                });
            }
            ConsensusInput::Tick => self.tick(now, actions, committed),
        }
    }

    fn on_proposal(&mut self, block: Block, now: Instant) {
        let h = block.header.height;
        if h > self.round.height {
            if h == self.round.height + 1 && self.future.len() < 64 {
                self.future.push(block);
            }
            return;
        }
        if h < self.round.height || self.round.candidates.contains_key(&block.hash()) {
            return;
        }
        let checked = lock(&self.chain).check_proposal(&block);
        match checked {
            Ok(_) => {
                self.round.first_seen.get_or_insert(now);
                self.round.fetching.remove(&block.hash());
                self.round.candidates.insert(block.hash(), block);
            }
            Err(e) => tracing::debug!(height = h, "proposal refused: {e}"),
        }
    }

    fn vote(&self, height: u64, round: u64, block: Digest) -> Vote {
        VoteBody {
            chain: self.id,
            height,
            round,
            block,
            voter: self.me,
        }
        .sign(&self.key)
    }

    fn answer(&mut self, q: &Query, from: PublicKey, actions: &mut Vec<Action>) -> Option<Vote> {
        if q.chain != self.id || self.koth.holds(&self.me).is_none() {
            return None;
        }
        if q.height < self.round.height {
            let block = lock(&self.chain).block(q.height).ok().flatten()?;
            return Some(self.vote(q.height, q.round, block.hash()));
        }
        if q.height > self.round.height {
            self.behind = Some(from);
            return None;
        }
        if self.round.snowball.is_none() {
            if self.round.candidates.contains_key(&q.block) {
                // Adopt the first value queried with.
                self.round.snowball = Some(Snowball::new(self.params, q.block));
            } else {
                if self.round.may_fetch(q.block, Instant::now()) {
                    actions.push(Action::Fetch {
                        hash: q.block,
                        peer: from,
                    });
                }
                return None;
            }
        }
        let pref = *self.round.snowball.as_ref()?.preference();
        Some(self.vote(q.height, q.round, pref))
    }

    fn on_votes(
        &mut self,
        height: u64,
        round: u64,
        votes: Vec<Vote>,
        now: Instant,
        actions: &mut Vec<Action>,
        committed: &mut Vec<Effects>,
    ) {
        if height != self.round.height || self.round.outstanding.map(|(r, _)| r) != Some(round) {
            return;
        }
        self.round.outstanding = None;
        let members: HashSet<PublicKey> = self.koth.members().into_iter().collect();
        let mut voters = HashSet::new();
        let valid: Vec<Vote> = votes
            .into_iter()
            .filter(|v| {
                let b = &v.body;
                b.chain == self.id
                    && b.height == height
                    && b.round == round
                    && members.contains(&b.voter)
                    && voters.insert(b.voter)
                    && v.verify()
            })
            .collect();
        let answers: Vec<Digest> = valid.iter().map(|v| v.body.block).collect();
        tracing::debug!(
            height,
            round,
            answers = answers.len(),
            distinct = answers.iter().collect::<HashSet<_>>().len(),
            streak = self.round.streak.len(),
            "poll answered"
        );
        let Some(sb) = self.round.snowball.as_mut() else {
            return;
        };
        sb.record_poll(&answers);
        let mut counts: HashMap<Digest, usize> = HashMap::new();
        for a in &answers {
            *counts.entry(*a).or_default() += 1;
        }
        let top = counts.clone().into_iter().max_by_key(|(_, n)| *n);
        // A split no sample can break (no value reached α_preference):
        // lean every node the same way, toward the candidate with the
        // smallest lottery ticket among the answers and this node's own
        // preference. Snowball alone has no tie-break; deciding still
        // takes β consecutive polls of α_confidence signed votes.
        if top.is_none_or(|(_, n)| n < self.params.alpha_preference()) && sb.decided().is_none() {
            let prev = lock(&self.chain).head();
            let best = counts
                .keys()
                .chain(std::iter::once(sb.preference()))
                .filter(|h| self.round.candidates.contains_key(*h))
                .min_by_key(|h| {
                    let b = &self.round.candidates[*h];
                    Self::ticket(&prev, &b.header.proposer.key)
                })
                .copied();
            if let Some(best) = best
                && best != *sb.preference()
            {
                *sb = Snowball::new(self.params, best);
            }
        }
        match top {
            Some((value, n)) if n >= self.params.alpha_confidence() => {
                if self
                    .round
                    .streak
                    .first()
                    .is_some_and(|p| p.votes[0].body.block != value)
                {
                    self.round.streak.clear();
                }
                self.round.streak.push(Poll {
                    round,
                    votes: valid
                        .into_iter()
                        .filter(|v| v.body.block == value)
                        .collect(),
                });
            }
            _ => self.round.streak.clear(),
        }
        self.try_decide(now, actions, committed);
    }

    fn try_decide(
        &mut self,
        now: Instant,
        actions: &mut Vec<Action>,
        committed: &mut Vec<Effects>,
    ) {
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
        if streak.len() < beta || streak[0].votes[0].body.block != decided {
            return; // Keep polling for evidence.
        }
        let voter = streak
            .last()
            .and_then(|p| p.votes.first())
            .map(|v| v.body.voter);
        let Some(mut block) = self.round.candidates.get(&decided).cloned() else {
            if let Some(peer) = voter
                && self.round.may_fetch(decided, now)
            {
                actions.push(Action::Fetch {
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
                if let Some(c) = self.koth.holds(&v.body.voter)
                    && !claims.contains(&c)
                {
                    claims.push(c);
                }
            }
        }
        block.evidence = Evidence { claims, polls };
        self.commit(block, now, true, actions, committed);
    }

    fn commit(
        &mut self,
        block: Block,
        now: Instant,
        decided_here: bool,
        actions: &mut Vec<Action>,
        committed: &mut Vec<Effects>,
    ) {
        let hash = block.hash();
        let height = block.header.height;
        let appended = lock(&self.chain).append(block.clone());
        match appended {
            Ok(effects) => {
                {
                    let c = lock(&self.chain);
                    // Included, or another settlement of an invocation
                    // that is settled now (never paid twice).
                    self.mempool
                        .retain(|_, s| !c.state().is_settled(&s.body.invoker, s.body.invocation));
                }
                let finality = self.round.first_seen.map(|t| now - t);
                if let Some(f) = finality {
                    self.finality.push(f.as_micros() as u64);
                    if self.finality.len() > 1000 {
                        self.finality.remove(0);
                    }
                }
                actions.push(Action::Committed {
                    height,
                    hash,
                    receipts: block.receipt_count(),
                    finality,
                    decided_here,
                });
                if decided_here {
                    actions.push(Action::Announce(Announcement::Committed(Box::new(block))));
                }
                committed.push(effects);
                self.round = Round::new(height + 1);
                self.last_commit = now;
                for b in std::mem::take(&mut self.future) {
                    self.on_proposal(b, now);
                }
            }
            Err(e) => {
                tracing::warn!(height, "block not committed: {e}");
                if decided_here {
                    self.round.streak.clear();
                }
            }
        }
    }

    fn tick(&mut self, now: Instant, actions: &mut Vec<Action>, committed: &mut Vec<Effects>) {
        self.mine(now, actions);
        if !self.outbox.is_empty() {
            actions.push(Action::Announce(Announcement::Settlements(std::mem::take(
                &mut self.outbox,
            ))));
        }
        if let Some(peer) = self.behind.take()
            && self
                .last_sync
                .is_none_or(|t| now - t > Duration::from_millis(500))
        {
            self.last_sync = Some(now);
            actions.push(Action::Sync {
                from: self.round.height,
                peer,
            });
        }
        self.propose(now, actions);
        let r = &mut self.round;
        if r.snowball.is_none() && r.first_seen.is_some_and(|t| now - t >= self.config.gather) {
            let prev = lock(&self.chain).head();
            let pick = r
                .candidates
                .values()
                .min_by_key(|b| Self::ticket(&prev, &b.header.proposer.key))
                .map(Block::hash);
            if let Some(pick) = pick {
                r.snowball = Some(Snowball::new(self.params, pick));
            }
        }
        if r.outstanding
            .is_some_and(|(_, t)| now - t > self.config.poll_timeout)
        {
            r.outstanding = None;
            r.streak.clear();
        }
        self.try_decide(now, actions, committed);
        self.poll(now, actions);
    }

    fn mine(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if let Some(mine) = self.koth.holds(&self.me) {
            if self
                .last_claim
                .is_none_or(|t| now - t > Duration::from_secs(3))
            {
                self.last_claim = Some(now);
                actions.push(Action::Announce(Announcement::Claim(mine)));
            }
            return;
        }
        // Prefer an empty slot; take a held one only when all are full.
        let full = self.koth.filled() >= self.slots as usize;
        for _ in 0..8 {
            let Some(c) = self.koth.mine(self.me, self.nonce, 1 << 12) else {
                self.nonce += 1 << 12;
                continue;
            };
            self.nonce = c.nonce + 1;
            let empty = !self
                .koth
                .claims()
                .iter()
                .any(|h| h.slot(&self.id, self.slots) == c.slot(&self.id, self.slots));
            if empty || full {
                if self.koth.try_insert(c).is_ok() {
                    self.last_claim = Some(now);
                    actions.push(Action::Announce(Announcement::Claim(c)));
                }
                return;
            }
        }
    }

    /// The lottery ticket of `proposer` after `prev`: smaller wins.
    fn ticket(prev: &Digest, proposer: &PublicKey) -> Digest {
        let mut m = prev.0.to_vec();
        m.extend_from_slice(&proposer.0);
        Digest::of(b"orb/lottery/1\0", &m)
    }

    fn propose(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(claim) = self.koth.holds(&self.me) else {
            return;
        };
        if self.round.proposed || self.mempool.is_empty() {
            return;
        }
        // Committee members propose in lottery order: the first at once,
        // the next only when nothing was proposed one step later, and so
        // on, so a height normally has one candidate.
        let prev = lock(&self.chain).head();
        let rank = self
            .koth
            .members()
            .iter()
            .filter(|m| Self::ticket(&prev, m) < Self::ticket(&prev, &self.me))
            .count() as u32;
        // Ranks count from when this node had something to propose, so
        // that receipts arriving everywhere at once do not make every
        // member propose at once.
        let ready = *self.round.ready.get_or_insert(now);
        let due = (self.last_commit + self.config.block_interval).max(ready)
            + self.config.proposer_step * rank;
        if now < due || (rank > 0 && !self.round.candidates.is_empty()) {
            return;
        }
        let c = lock(&self.chain);
        let genesis = c.genesis().clone();
        // Take settlements in order while the invokers can pay, one per
        // invocation.
        let mut settlements = Vec::new();
        let mut receipts = 0;
        let mut spent: HashMap<PublicKey, i128> = HashMap::new();
        let mut taken = HashSet::new();
        for s in self.mempool.values() {
            let n = s.body.receipts.len();
            if receipts + n > genesis.max_receipts as usize {
                break;
            }
            if !taken.insert((s.body.invoker, s.body.invocation)) {
                continue;
            }
            let cost = s.cost(genesis.price) as i128;
            let paid = spent.entry(s.body.invoker).or_default();
            if c.balance(&s.body.invoker) as i128 - *paid >= cost {
                *paid += cost;
                receipts += n;
                settlements.push(s.clone());
            }
        }
        if settlements.is_empty() {
            return;
        }
        let block = Block::propose(
            &self.key,
            self.id,
            self.round.height,
            c.head(),
            claim,
            settlements,
        );
        drop(c);
        self.round.proposed = true;
        actions.push(Action::Announce(Announcement::Proposal(Box::new(
            block.clone(),
        ))));
        self.on_proposal(block, now);
    }

    fn poll(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let r = &self.round;
        if r.outstanding.is_some() {
            return;
        }
        let Some(sb) = &r.snowball else { return };
        let value = *sb.decided().unwrap_or(sb.preference());
        let members = self.koth.members();
        if members.len() < self.params.alpha_confidence() {
            return;
        }
        let peers: Vec<PublicKey> = members
            .sample(&mut self.rng, self.params.k().min(members.len()))
            .copied()
            .collect();
        let round = self.next_poll;
        self.next_poll += 1;
        let height = r.height;
        let own = peers
            .contains(&self.me)
            .then(|| self.vote(height, round, value));
        self.round.outstanding = Some((round, now));
        actions.push(Action::Poll {
            query: Query {
                chain: self.id,
                height,
                round,
                block: value,
            },
            peers: peers.into_iter().filter(|p| *p != self.me).collect(),
            own,
        });
    }
}
