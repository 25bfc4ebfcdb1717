//! The node's part in the reward ledger: it opens the chain in
//! `DATA_DIR/ledger`, runs the consensus dataflow (`orb-engine`), carries
//! out its actions on the network (polls by request-response, gossip,
//! block fetches and sync), signs a receipt for every call it executes and
//! a settlement for every call it makes, and refuses calls whose invoker
//! has no credits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use orb_engine::{Consensus, start_consensus};
use orb_ledger::consensus::{Config as ConsensusConfig, Gossip, Input as ConsensusInput, Message};
use orb_ledger::{
    Chain, Digest, Genesis, Keypair, PublicKey, Receipt, ReceiptBody, SettlementBody,
};
use orb_net::{Announcement, Invoke, Net, PeerId, Request, Response, ResponseChannel};
use tracing::{debug, info, warn};

use crate::exit::CliError;

/// Most blocks one sync answer carries.
const SYNC_BATCH: u64 = 64;

/// A running node's ledger.
pub(crate) struct Ledger {
    pub(crate) consensus: Consensus,
    pub(crate) key: Keypair,
    pub(crate) me: PublicKey,
    pending: Arc<Mutex<HashMap<u64, ResponseChannel<Response>>>>,
    next: AtomicU64,
}

/// The ledger key of a peer.
pub(crate) fn key_of(peer: &PeerId) -> Option<PublicKey> {
    orb_net::identity::ed25519_public(peer).map(PublicKey)
}

fn peer_of(key: &PublicKey) -> Option<PeerId> {
    orb_net::identity::peer_of(key.0)
}

impl Ledger {
    /// Opens the chain and starts consensus; `None` when the node has no
    /// genesis (neither `--genesis` nor a chain from an earlier start).
    pub(crate) fn start(
        data_dir: &Path,
        genesis: Option<&Path>,
        secret: Option<[u8; 32]>,
        net: Net,
        config: ConsensusConfig,
    ) -> Result<Option<Arc<Self>>, CliError> {
        let dir = data_dir.join("ledger");
        let genesis = match genesis {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CliError::usage(anyhow::anyhow!(
                        "cannot read genesis {}: {e}",
                        path.display()
                    ))
                })?;
                let g: Genesis = serde_json::from_str(&text).map_err(|e| {
                    CliError::usage(anyhow::anyhow!(
                        "genesis {} is not valid: {e}",
                        path.display()
                    ))
                })?;
                g.validate().map_err(|e| {
                    CliError::usage(anyhow::anyhow!("genesis {}: {e}", path.display()))
                })?;
                Some(g)
            }
            None if dir.join("db").exists() => None,
            None => return Ok(None),
        };
        let chain =
            Chain::open_dir(&dir, genesis).map_err(|e| CliError::usage(anyhow::anyhow!(e)))?;
        info!(chain = %chain.id(), height = chain.height(), "ledger opened");
        let secret = secret
            .ok_or_else(|| CliError::usage(anyhow::anyhow!("the node key is not Ed25519")))?;
        let key = Keypair::from_secret(secret);
        let me = key.public();
        let slot: Arc<OnceLock<Consensus>> = Arc::default();
        let pending: Arc<Mutex<HashMap<u64, ResponseChannel<Response>>>> = Arc::default();
        let runtime = tokio::runtime::Handle::current();
        let actor = Actor {
            net,
            slot: slot.clone(),
            pending: pending.clone(),
        };
        let (consensus, _thread) =
            start_consensus(chain, key.clone(), config, move |action: Message| {
                let actor = actor.clone();
                runtime.spawn(async move { actor.act(action).await });
            })?;
        let _ = slot.set(consensus.clone());
        let ticker = consensus.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(25));
            loop {
                every.tick().await;
                if ticker.send(ConsensusInput::Tick).await.is_err() {
                    break;
                }
            }
        });
        Ok(Some(Arc::new(Self {
            consensus,
            key,
            me,
            pending,
            next: AtomicU64::new(1),
        })))
    }

    fn park(&self, channel: ResponseChannel<Response>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, channel);
        id
    }

    /// Handles a ledger request from `peer`; gives the channel back when
    /// the request is not the ledger's.
    pub(crate) async fn request(
        &self,
        net: &Net,
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
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
                let _ = net.respond(channel, Response::Blocks(blocks)).await;
            }
            _ => {
                let _ = net
                    .respond(channel, Response::Refused("not a ledger request".into()))
                    .await;
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
        ReceiptBody {
            invocation: invoke.invocation,
            function: Digest(*invoke.function.as_bytes()),
            input: Digest(*blake3::hash(&invoke.input).as_bytes()),
            output: Digest(*blake3::hash(output).as_bytes()),
            fuel,
            executor: self.me,
            invoker,
        }
        .sign(&self.key)
    }

    /// Signs the settlement of a call this node made (every receipt its
    /// replicas returned) and queues it for the next block, waiting while
    /// consensus's queue is full (backpressure on the calls, never a lost
    /// settlement).
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

/// Carries out consensus actions.
#[derive(Clone)]
struct Actor {
    net: Net,
    slot: Arc<OnceLock<Consensus>>,
    pending: Arc<Mutex<HashMap<u64, ResponseChannel<Response>>>>,
}

impl Actor {
    fn take(&self, id: u64) -> Option<ResponseChannel<Response>> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
    }

    async fn feed(&self, input: ConsensusInput) {
        if let Some(c) = self.slot.get() {
            let _ = c.send(input).await;
        }
    }

    async fn ask(&self, key: &PublicKey, request: Request) -> Option<Response> {
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
                let asks = peers.into_iter().map(|p| {
                    let query = query.clone();
                    async move {
                        let votes = match self.ask(&p, Request::Query(query)).await {
                            Some(Response::Vote(vote)) => vote.into_iter().collect(),
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
            Message::Answer { id, vote } => {
                if let Some(ch) = self.take(id) {
                    let _ = self.net.respond(ch, Response::Vote(vote)).await;
                }
            }
            Message::AnswerBlock { id, block } => {
                if let Some(ch) = self.take(id) {
                    let block = block.map(|b| Box::new((*b).clone()));
                    let _ = self.net.respond(ch, Response::Block(block)).await;
                }
            }
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
                if let Some(Response::Block(Some(b))) =
                    self.ask(&peer, Request::FetchBlock { hash }).await
                    && b.hash() == hash
                {
                    self.feed(ConsensusInput::Proposal(Arc::from(b))).await;
                }
            }
            Message::Sync { from, peer } => {
                if let Some(Response::Blocks(blocks)) =
                    self.ask(&peer, Request::Sync { from }).await
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
