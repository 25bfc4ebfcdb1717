//! The node's part in the reward ledger: it opens the chain in
//! `DATA_DIR/ledger`, runs the consensus dataflow (`orb-engine`), carries
//! out its actions on the network (polls by request-response, gossip,
//! block fetches and sync), signs a receipt for every call it executes and
//! a settlement for every call it makes, and refuses calls whose invoker
//! has no credits.
//!
//! Lifecycle: the dataflow runs on its own thread, whose handle
//! [`LedgerStart::start`] gives to the node to join. Two tasks in the
//! node's set feed and serve it: a ticker (every [`TICK`]) and the actor,
//! which takes the dataflow's actions from a bounded channel and runs at
//! most [`ACTIONS_IN_FLIGHT`] at once in a `JoinSet` of its own (a poll
//! waits for slow peers; answers must not wait behind it for long). The
//! dataflow never blocks on the actor: when the channel is full an action
//! is dropped, as a lost message would be (polls time out, peers ask
//! again), and an answer's parked channel is released. Both tasks stop at
//! the node's cancellation; the dataflow ends when the node drops its last
//! [`Consensus`] handle, after it has applied what was queued, and every
//! block it committed is already durable (the chain flushes each commit).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use orb_engine::{Consensus, start_consensus};
use orb_ledger::consensus::{
    Config as ConsensusConfig, Event, Gossip, Input as ConsensusInput, Message,
};
use orb_ledger::{
    Chain, Digest, Genesis, Keypair, PublicKey, Receipt, ReceiptBody, SettlementBody,
};
use orb_net::{Announcement, Invoke, Net, Offence, PeerId, Reply, Request, Response, Screen};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Error;
use super::byzantine::{self, Byzantine, Mode};
use super::journal::Journal;
use super::metrics::LedgerMetrics;
use super::tasks::Tasks;

/// Most blocks one sync answer carries.
const SYNC_BATCH: u64 = 64;

/// How often consensus is ticked (its timeouts and proposals run on ticks).
const TICK: Duration = Duration::from_millis(25);

/// How often the settlement journal forgets what blocks settled.
const SWEEP: Duration = Duration::from_secs(5);

/// Consensus actions waiting for the actor.
const ACTIONS_QUEUED: usize = 4096;

/// Consensus actions carried out at once.
const ACTIONS_IN_FLIGHT: usize = 512;

/// How often a Byzantine test node publishes a forged claim.
const FORGE_EVERY: Duration = Duration::from_millis(100);

/// Parked response channels of peers' ledger requests, by answer id.
type Pending = Arc<Mutex<HashMap<u64, Reply>>>;

/// A running node's ledger.
pub(crate) struct Ledger {
    pub(crate) consensus: Consensus,
    pub(crate) key: Keypair,
    pub(crate) me: PublicKey,
    /// Settlements signed and not yet seen committed.
    pub(crate) journal: Journal,
    pending: Pending,
    next: AtomicU64,
}

/// The ledger key of a peer.
pub(crate) fn key_of(peer: &PeerId) -> Option<PublicKey> {
    orb_net::identity::ed25519_public(peer).map(PublicKey)
}

fn peer_of(key: &PublicKey) -> Option<PeerId> {
    orb_net::identity::peer_of(key.0)
}

/// A chain opened, its consensus not started yet: everything that can
/// fail because of the caller's files fails before the node starts
/// anything.
pub(crate) struct LedgerStart {
    chain: Chain,
    key: Keypair,
    journal: Journal,
    /// The journal's settlements the chain does not hold: queued again.
    owed: Vec<orb_ledger::Settlement>,
}

impl LedgerStart {
    /// Opens the chain; `None` when the node has no genesis (neither
    /// `genesis` nor a chain from an earlier start).
    pub(crate) fn open(
        data_dir: &Path,
        genesis: Option<&Path>,
        secret: Option<[u8; 32]>,
        db: &sled::Db,
    ) -> Result<Option<Self>, Error> {
        let dir = data_dir.join("ledger");
        let genesis = match genesis {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Ledger(format!("cannot read genesis {}: {e}", path.display()))
                })?;
                let g: Genesis = serde_json::from_str(&text).map_err(|e| {
                    Error::Ledger(format!("genesis {} is not valid: {e}", path.display()))
                })?;
                g.validate()
                    .map_err(|e| Error::Ledger(format!("genesis {}: {e}", path.display())))?;
                Some(g)
            }
            None if dir.join("db").exists() => None,
            None => return Ok(None),
        };
        let chain = Chain::open_dir(&dir, genesis).map_err(|e| Error::Ledger(e.to_string()))?;
        if let Some(h) = chain.dropped_torn() {
            warn!(
                height = h,
                "the ledger's last block was torn (a write that never finished, so never acknowledged): dropped; it is fetched again from peers"
            );
        }
        info!(chain = %chain.id(), height = chain.height(), "ledger opened");
        let secret = secret.ok_or_else(|| Error::Ledger("the node key is not Ed25519".into()))?;
        let key = Keypair::from_secret(secret);
        let journal = Journal::open(db)
            .map_err(|e| Error::Ledger(format!("cannot open the settlement journal: {e}")))?;
        let me = key.public();
        let (owed, unreadable) =
            journal.sweep(&me, |ids| Journal::settled_in(chain.state(), &me, ids));
        for e in &unreadable {
            warn!("settlement journal: {e}");
        }
        if !owed.is_empty() {
            info!(
                settlements = owed.len(),
                "queueing again the settlements of calls answered before a stop"
            );
        }
        Ok(Some(Self {
            chain,
            key,
            journal,
            owed,
        }))
    }

    /// The checks of ledger announcements the network runs before it
    /// forwards them: a committee claim must have the work it claims on
    /// this chain, equivocation evidence must be two conflicting signed
    /// votes on it (the rules consensus applies to them, run early so the
    /// author is scored and nothing forged is passed on). One network
    /// carries one chain: another chain's claims fail here.
    pub(crate) fn screen(&self) -> Screen {
        let chain = self.chain.id();
        let difficulty = self.chain.genesis().difficulty;
        let verifier = orb_ledger::Verifier::uncached();
        Screen::new(move |a| match a {
            Announcement::Claim(c) => c.is_valid(&chain, difficulty),
            Announcement::Equivocation(pair) => {
                pair.0.body.chain == chain && pair.0.equivocates(&pair.1, &verifier)
            }
            _ => true,
        })
    }

    /// Starts consensus on its thread, and its ticker and actor in
    /// `tasks`; the thread's handle is the caller's to join. A node with
    /// `byzantine` voting modes answers queries with their lies.
    pub(crate) fn start(
        self,
        net: Net,
        config: ConsensusConfig,
        tasks: &Tasks,
        byzantine: &Byzantine,
        metrics: LedgerMetrics,
    ) -> Result<(Arc<Ledger>, JoinHandle<()>), Error> {
        let Self {
            chain,
            key,
            journal,
            owed,
        } = self;
        let me = key.public();
        let pending: Pending = Arc::default();
        let (actions, queued) = mpsc::channel(ACTIONS_QUEUED);
        let parked = pending.clone();
        let (liar, signer) = (byzantine.clone(), key.clone());
        let (chain_id, difficulty) = (chain.id(), chain.genesis().difficulty);
        let (counted, observed) = (metrics.clone(), metrics);
        let (consensus, thread) = start_consensus(
            chain,
            key.clone(),
            config,
            move |action: Message| {
                // An answer goes to the asker's stream from the consensus
                // thread itself; the rest is carried out by the actor.
                let action = match action {
                    Message::Answer { id, vote } => {
                        counted.polls_answered.inc();
                        if let Some(reply) = take(&parked, id) {
                            reply.send(byzantine::vote_answer(&liar, &signer, vote));
                        }
                        return;
                    }
                    Message::AnswerBlock { id, block } => {
                        if let Some(reply) = take(&parked, id) {
                            reply.send(Response::Block(block.map(|b| Box::new((*b).clone()))));
                        }
                        return;
                    }
                    Message::Query { query, peers } => {
                        counted.polls_sent.inc_by(peers.len() as u64);
                        Message::Query { query, peers }
                    }
                    other => other,
                };
                if let Err(e) = actions.try_send(action) {
                    let full = matches!(e, mpsc::error::TrySendError::Full(_));
                    let action = e.into_inner();
                    debug!(full, "consensus action dropped: {}", kind(&action));
                }
            },
            move |event: &Event| match event {
                Event::Committed { finality, .. } => {
                    observed.committed.inc();
                    if let Some(f) = finality {
                        observed.finality.observe(f.as_secs_f64());
                    }
                }
                Event::Equivocation { .. } => {
                    observed.equivocations.inc();
                }
                Event::Refused { .. } => {}
            },
        )?;
        let ticker = consensus.clone();
        tasks.spawn_until_cancelled(async move {
            let mut every = tokio::time::interval(TICK);
            loop {
                every.tick().await;
                if ticker.send(ConsensusInput::Tick).await.is_err() {
                    break;
                }
            }
        });
        // Forgets, now and then, what committed blocks settled.
        let (sweeper, swept) = (consensus.clone(), journal.clone());
        tasks.spawn_until_cancelled(async move {
            let mut every = tokio::time::interval(SWEEP);
            loop {
                every.tick().await;
                let _ = swept.sweep(&me, |ids| {
                    let chain = sweeper.chain.lock().unwrap_or_else(PoisonError::into_inner);
                    Journal::settled_in(chain.state(), &me, ids)
                });
            }
        });
        if !owed.is_empty() {
            let again = consensus.clone();
            tasks.spawn_until_cancelled(async move {
                let _ = again
                    .send(ConsensusInput::Settlements {
                        settlements: owed,
                        local: true,
                    })
                    .await;
            });
        }
        if byzantine.has(Mode::ForgedClaims) {
            let forger = net.clone();
            tasks.spawn_until_cancelled(async move {
                let mut every = tokio::time::interval(FORGE_EVERY);
                loop {
                    every.tick().await;
                    let claim = byzantine::forged_claim(&chain_id, difficulty);
                    let _ = forger.announce(Announcement::Claim(claim)).await;
                }
            });
        }
        let actor = Actor {
            net,
            consensus: consensus.clone(),
        };
        tasks.spawn(act_until_cancelled(actor, queued, tasks.token().clone()));
        let ledger = Arc::new(Ledger {
            consensus,
            key,
            me,
            journal,
            pending,
            next: AtomicU64::new(1),
        });
        Ok((ledger, thread))
    }
}

impl Ledger {
    fn park(&self, channel: Reply) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, channel);
        id
    }

    /// Hands a peer's query to consensus from where it was read, without
    /// waiting: the consensus thread answers it. A query from a peer whose
    /// id holds no Ed25519 key is not asked by any member and is refused;
    /// one that finds consensus's queue full is answered "busy" (no vote).
    pub(crate) fn answer_query_now(&self, peer: PeerId, query: orb_net::Query, reply: Reply) {
        let Some(from) = key_of(&peer) else {
            reply.send(Response::Refused("no ledger key in that peer id".into()));
            return;
        };
        let id = self.park(reply);
        if !self
            .consensus
            .try_send(ConsensusInput::Query { id, from, query })
            && let Some(reply) = take(&self.pending, id)
        {
            reply.send(Response::Busy);
        }
    }

    /// Handles a ledger request from `peer`; gives the channel back when
    /// the request is not the ledger's.
    pub(crate) async fn request(&self, peer: PeerId, request: Request, channel: Reply) {
        match request {
            Request::Query(query) => {
                let Some(from) = key_of(&peer) else { return };
                let id = self.park(channel);
                let _ = self
                    .consensus
                    .send(ConsensusInput::Query { id, from, query })
                    .await;
            }
            Request::FetchBlock { hash } => {
                let id = self.park(channel);
                let _ = self
                    .consensus
                    .send(ConsensusInput::FetchBlock { id, hash })
                    .await;
            }
            Request::Sync { from } => {
                let blocks = {
                    let chain = self
                        .consensus
                        .chain
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    (from..=chain.height().min(from.saturating_add(SYNC_BATCH - 1)))
                        .map_while(|h| chain.block(h).ok().flatten())
                        .collect()
                };
                channel.send(Response::Blocks(blocks));
            }
            _ => {
                channel.send(Response::Refused("not a ledger request".into()));
            }
        }
    }

    /// Feeds a ledger announcement into consensus.
    pub(crate) async fn learn(&self, peer: PeerId, announcement: Announcement) {
        let input = match announcement {
            Announcement::Claim(c) => ConsensusInput::Claim(c),
            Announcement::Settlements(settlements) => ConsensusInput::Settlements {
                settlements,
                local: false,
            },
            Announcement::Proposal(b) => ConsensusInput::Proposal(Arc::from(b)),
            Announcement::Committed(block) => {
                let Some(from) = key_of(&peer) else { return };
                ConsensusInput::Committed {
                    block: Arc::from(block),
                    from,
                }
            }
            Announcement::Equivocation(pair) => ConsensusInput::Equivocation(pair),
            Announcement::Provider { .. } | Announcement::Load(_) => return,
        };
        let _ = self.consensus.send(input).await;
    }

    /// The height of the chain this node has committed.
    pub(crate) fn height(&self) -> u64 {
        self.consensus
            .status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .height
    }

    /// What the consensus driver last published: height, head, committee,
    /// mempool, recent finality.
    pub(crate) fn status(&self) -> orb_engine::LedgerStatus {
        self.consensus
            .status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether `invoker` may be charged for a call (it has credits).
    pub(crate) fn can_pay(&self, invoker: &PublicKey) -> bool {
        self.consensus.balance(invoker) > 0
    }

    /// Signs the receipt of a call this node executed for `invoker`.
    pub(crate) fn sign_receipt(
        &self,
        invoker: PublicKey,
        invoke: &Invoke,
        output: &[u8],
        fuel: u64,
    ) -> Receipt {
        self.sign_digests(
            invoker,
            invoke,
            (
                Digest(*blake3::hash(&invoke.input).as_bytes()),
                Digest(*blake3::hash(output).as_bytes()),
            ),
            fuel,
        )
    }

    /// [`Self::sign_receipt`] stating `(input, output)` digests of the
    /// node's choosing (an agent step states its state hashes).
    pub(crate) fn sign_digests(
        &self,
        invoker: PublicKey,
        invoke: &Invoke,
        (input, output): (Digest, Digest),
        fuel: u64,
    ) -> Receipt {
        ReceiptBody {
            invocation: invoke.invocation,
            function: Digest(*invoke.function.as_bytes()),
            input,
            output,
            fuel,
            executor: self.me,
            invoker,
        }
        .sign(&self.key)
    }

    /// Signs the settlement of a call this node made (every receipt its
    /// replicas returned), writes it to the journal, and queues it for the
    /// next block, waiting while consensus's queue is full (backpressure on
    /// the calls, never a lost settlement).
    pub(crate) async fn settle(&self, invocation: u128, receipts: Vec<Receipt>) {
        if receipts.is_empty() {
            return;
        }
        let settlement = SettlementBody {
            invocation,
            invoker: self.me,
            receipts,
        }
        .sign(&self.key);
        if let Err(e) = self.journal.keep(&settlement).await {
            warn!("settlement of {invocation:032x} not written to the journal: {e}");
        }
        let sent = self
            .consensus
            .send(ConsensusInput::Settlements {
                settlements: vec![settlement],
                local: true,
            })
            .await;
        if sent.is_err() {
            warn!("consensus stopped: settlement of {invocation:032x} not queued");
        }
    }
}

/// Carries out the dataflow's actions until `cancel`: at most
/// [`ACTIONS_IN_FLIGHT`] at once, each a task in a set this task owns and
/// joins (aborting those still running) before it returns.
async fn act_until_cancelled(
    actor: Actor,
    mut queued: mpsc::Receiver<Message>,
    cancel: CancellationToken,
) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!("a consensus action panicked: {e}");
                }
            }
            action = queued.recv(), if running.len() < ACTIONS_IN_FLIGHT => {
                let Some(action) = action else { break };
                let actor = actor.clone();
                running.spawn(async move { actor.act(action).await });
            }
        }
    }
    running.shutdown().await;
}

/// What an action is, for logs.
fn kind(action: &Message) -> &'static str {
    match action {
        Message::Query { .. } => "query",
        Message::Answer { .. } => "answer",
        Message::AnswerBlock { .. } => "block answer",
        Message::Gossip(_) => "gossip",
        Message::Fetch { .. } => "fetch",
        Message::Sync { .. } => "sync",
    }
}

fn take(pending: &Pending, id: u64) -> Option<Reply> {
    pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id)
}

/// Carries out consensus actions.
#[derive(Clone)]
struct Actor {
    net: Net,
    consensus: Consensus,
}

impl Actor {
    async fn feed(&self, input: ConsensusInput) {
        let _ = self.consensus.send(input).await;
    }

    fn report(&self, key: &PublicKey, offence: Offence) {
        if let Some(peer) = peer_of(key) {
            self.net.report(peer, offence);
        }
    }

    async fn ask(&self, key: &PublicKey, request: &Request) -> Option<Response> {
        let peer = peer_of(key)?;
        match tokio::time::timeout(Duration::from_secs(2), self.net.request(peer, request)).await {
            Ok(Ok(r)) => Some(r),
            Ok(Err(e)) => {
                debug!(%peer, "ledger request failed: {e}");
                None
            }
            Err(_) => None,
        }
    }

    async fn act(&self, action: Message) {
        match action {
            Message::Query { query, peers } => {
                // Each answer goes back as it arrives: the replica closes
                // the poll as soon as its outcome is settled. A peer that
                // fails or times out sends nothing (the poll's timeout
                // counts it as silent).
                let round = query.round;
                let request = Request::Query(query);
                let asks = peers.into_iter().map(|p| {
                    let request = &request;
                    async move {
                        let votes = match self.ask(&p, request).await {
                            Some(Response::Vote(vote)) => vote.into_iter().collect(),
                            Some(Response::Votes(mut votes)) => {
                                // An honest voter sends one vote: two
                                // naming different blocks are an
                                // equivocation (consensus checks the
                                // signatures and excludes the voter).
                                votes.truncate(2);
                                if votes.iter().any(|v| v.body.block != votes[0].body.block) {
                                    self.report(&p, Offence::Equivocated);
                                }
                                votes
                            }
                            Some(_) => Vec::new(),
                            None => return,
                        };
                        self.feed(ConsensusInput::Votes {
                            from: p,
                            round,
                            votes,
                        })
                        .await;
                    }
                });
                futures::future::join_all(asks).await;
            }
            // Sent on the consensus thread (see `LedgerStart::start`).
            Message::Answer { .. } | Message::AnswerBlock { .. } => {}
            Message::Gossip(g) => {
                let a = match g {
                    Gossip::Claim(c) => Announcement::Claim(c),
                    Gossip::Settlements(s) => Announcement::Settlements(s),
                    Gossip::Proposal(b) => Announcement::Proposal(Box::new((*b).clone())),
                    Gossip::Committed(b) => Announcement::Committed(Box::new((*b).clone())),
                    Gossip::Equivocation(pair) => Announcement::Equivocation(pair),
                };
                if let Err(e) = self.net.announce(a).await {
                    debug!("announce: {e}");
                }
            }
            Message::Fetch { hash, peer } => {
                // Asked of a peer that voted for it, proposed it or polled
                // with it: one that answers without it named a block it
                // does not have.
                match self.ask(&peer, &Request::FetchBlock { hash }).await {
                    Some(Response::Block(Some(b))) if b.hash() == hash => {
                        self.feed(ConsensusInput::Proposal(Arc::from(b))).await;
                    }
                    Some(Response::Block(_)) => self.report(&peer, Offence::UnknownBlock),
                    _ => {}
                }
            }
            Message::Sync { from, peer } => {
                if let Some(Response::Blocks(blocks)) =
                    self.ask(&peer, &Request::Sync { from }).await
                {
                    debug!(from, n = blocks.len(), "sync");
                    for b in blocks {
                        self.feed(ConsensusInput::Committed {
                            block: Arc::new(b),
                            from: peer,
                        })
                        .await;
                    }
                }
            }
        }
    }
}
