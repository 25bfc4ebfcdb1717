//! Agents: named WebAssembly actors whose state lives on the network.
//!
//! An agent is `module/id`: the module is an agent module deployed under
//! a name (as a function is), the id any name its senders choose; one
//! module backs many agents (`counter/alice`, `counter/bob`), each
//! created by its first message. A message to an agent goes to the node
//! that hosts its module (this one, or the one the routing table names,
//! chosen by the agent's name among the module's providers); that node
//! applies the agent's messages one at a time in the order they arrive,
//! each exactly once: a message carries an id, and a retry with the same
//! id gets the reply the first one got (for the last
//! [`store::KEEP`] messages of each agent). A step runs the module on the
//! executor pool like a call ([`orb_guest::agent`] is the step's
//! envelope); its new state, log entry and id are fsync'd before the
//! reply leaves the node, so a reply a sender saw survives a SIGKILL or a
//! power cut of the host.
//!
//! One host per agent for now: its state is on that node's disk and the
//! agent is unavailable while the node is down.

pub(crate) mod http;
pub(crate) mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use orb_functions::{Error as FnError, Function, FunctionId};
use orb_guest::agent::{Context, StepInput, StepOutput};
use orb_ledger::{Digest, PublicKey, Receipt};
use orb_net::{
    AGENT_LOG_BATCH, AgentLogEntry, AgentMessage, AgentState, Applied, Invoke, PeerId, Request,
    Response,
};

use super::Node;
use super::host::Host as FunctionHost;
use super::invoke::{InvokeError, providers, resolve_name};
use super::ledger::key_of;
use store::{AgentStore, Pending};

/// Largest state a step may leave.
pub(crate) const MAX_STATE: usize = 1 << 20;
/// Largest message.
pub(crate) const MAX_MESSAGE: usize = 1 << 20;
/// Largest reply.
pub(crate) const MAX_REPLY: usize = 1 << 20;
/// Messages waiting for one agent before more are answered busy.
pub(crate) const MAX_QUEUED: usize = 256;
/// Longest agent id.
const MAX_ID: usize = 64;
/// Messages one step may send to other agents.
pub(crate) const MAX_SENDS: usize = 64;

/// An agent's address: `module/id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AgentName {
    pub(crate) module: String,
    pub(crate) id: String,
}

impl AgentName {
    /// Reads `module/id`: the module a function name, the id 1 to 64 of
    /// a-z, 0-9, '.', '_', '-'.
    pub(crate) fn parse(s: &str) -> Result<Self, AgentError> {
        let bad = |why: String| AgentError::BadName(format!("agent {s:?}: {why}"));
        let Some((module, id)) = s.split_once('/') else {
            return Err(bad(
                "an agent is addressed as MODULE/ID, e.g. counter/alice".into(),
            ));
        };
        orb_net::check_name(module).map_err(|e| bad(e.to_string()))?;
        if id.is_empty()
            || id.len() > MAX_ID
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(bad(format!(
                "the id must be 1 to {MAX_ID} of a-z, 0-9, '.', '_', '-'"
            )));
        }
        Ok(Self {
            module: module.to_owned(),
            id: id.to_owned(),
        })
    }
}

impl std::fmt::Display for AgentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.module, self.id)
    }
}

/// Why a message was not applied; in every case the agent's state is as
/// it was.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentError {
    #[error("{0}")]
    BadName(String),
    #[error("no agent module {0} on the network (deploy it with `orb agent deploy`)")]
    NoModule(String),
    #[error("the message is {size} bytes; an agent takes at most {MAX_MESSAGE}")]
    TooLarge { size: usize },
    #[error("busy: {0}")]
    Busy(String),
    #[error("the step of {agent} failed ({kind}): {message}; its state is unchanged")]
    Step {
        agent: String,
        kind: String,
        message: String,
    },
    #[error(
        "{module} is not an agent module: {why} (an agent is built with orb_guest::agent and \
         deployed with `orb agent deploy`)"
    )]
    NotAgent { module: String, why: String },
    #[error(
        "the step of {agent} left a state of {size} bytes, over the limit of {MAX_STATE}; its \
         state is unchanged"
    )]
    StateTooLarge { agent: String, size: usize },
    #[error("the node hosting {agent} did not answer: {why}")]
    Unreachable { agent: String, why: String },
    /// An error the hosting node reported, by kind.
    #[error("{message}")]
    Remote { kind: String, message: String },
    #[error("{0}")]
    Internal(String),
}

impl AgentError {
    /// A stable name of the kind of error (the API's `kind`).
    pub(crate) fn kind(&self) -> &str {
        match self {
            AgentError::BadName(_) => "bad_name",
            AgentError::NoModule(_) => "no_module",
            AgentError::TooLarge { .. } => "too_large",
            AgentError::Busy(_) => "busy",
            AgentError::Step { .. } => "step_failed",
            AgentError::NotAgent { .. } => "not_an_agent",
            AgentError::StateTooLarge { .. } => "state_too_large",
            AgentError::Unreachable { .. } => "unreachable",
            AgentError::Remote { kind, .. } => kind,
            AgentError::Internal(_) => "internal",
        }
    }

    /// What a peer that forwarded the message is answered.
    fn response(&self) -> Response {
        match self {
            AgentError::Busy(_) => Response::Busy,
            e => Response::Failed {
                kind: e.kind().to_owned(),
                message: e.to_string(),
                fuel: None,
            },
        }
    }
}

impl From<InvokeError> for AgentError {
    fn from(e: InvokeError) -> Self {
        match e {
            InvokeError::NoProvider(m) => AgentError::NoModule(m),
            InvokeError::BadTarget(m) => AgentError::BadName(m),
            InvokeError::Busy(m) => AgentError::Busy(m),
            other => AgentError::Internal(other.to_string()),
        }
    }
}

/// One agent's turn: steps of one agent run one at a time.
#[derive(Default)]
struct Slot {
    turn: tokio::sync::Mutex<()>,
    waiting: AtomicUsize,
}

/// Group commit: steps write at once and then wait for a sync that
/// started after their write; one sync at a time, each covering every
/// write finished before it began.
#[derive(Default)]
struct Durability {
    /// Writes finished (each step's number is its place in this count).
    written: AtomicU64,
    /// The writes the last sync covered; held while a sync runs.
    synced: tokio::sync::Mutex<u64>,
}

impl Durability {
    /// Returns once write number `mine` is durable.
    async fn wait(&self, store: &AgentStore, mine: u64) -> Result<(), AgentError> {
        let mut synced = self.synced.lock().await;
        if *synced >= mine {
            return Ok(());
        }
        let covers = self.written.load(Ordering::Acquire);
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.sync())
            .await
            .map_err(|e| AgentError::Internal(format!("agent sync task: {e}")))?
            .map_err(AgentError::Internal)?;
        *synced = covers;
        Ok(())
    }
}

/// The agents this node hosts.
pub(crate) struct Agents {
    store: AgentStore,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    durability: Durability,
    /// Woken when a step left messages for other agents.
    outbox: tokio::sync::Notify,
}

impl Agents {
    pub(crate) fn new(store: AgentStore) -> Self {
        Self {
            store,
            slots: Mutex::new(HashMap::new()),
            durability: Durability::default(),
            outbox: tokio::sync::Notify::new(),
        }
    }

    /// Records a module deployed here as an agent module; its agents start
    /// from `init` (empty: the module's default state).
    pub(crate) fn register(&self, function: FunctionId, init: &[u8]) -> Result<(), AgentError> {
        self.store
            .register(function, init)
            .map_err(AgentError::Internal)
    }

    /// The agents kept here.
    pub(crate) fn list(&self, max: usize) -> Result<Vec<(String, AgentState)>, AgentError> {
        self.store.list(max).map_err(AgentError::Internal)
    }

    fn slot(&self, agent: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(agent.to_owned()).or_default().clone()
    }

    /// Forgets an agent's slot when nobody else holds it (slots are taken
    /// under the same lock, so nobody can be about to).
    fn release(&self, agent: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.get(agent).is_some_and(|s| Arc::strong_count(s) == 1) {
            slots.remove(agent);
        }
    }

    /// Applies `message` from `sender` to `agent`, whose module `function`
    /// this node hosts.
    async fn apply(
        &self,
        node: &Node,
        function: Function,
        agent: &AgentName,
        sender: &str,
        invoker: Option<PublicKey>,
        message: &AgentMessage,
    ) -> Result<Applied, AgentError> {
        let name = agent.to_string();
        let slot = self.slot(&name);
        if slot.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED {
            slot.waiting.fetch_sub(1, Ordering::AcqRel);
            drop(slot);
            self.release(&name);
            return Err(AgentError::Busy(format!(
                "{MAX_QUEUED} messages are waiting for {name}: try again in a moment"
            )));
        }
        let result = {
            let _turn = slot.turn.lock().await;
            slot.waiting.fetch_sub(1, Ordering::AcqRel);
            self.step(node, function, agent, &name, (sender, invoker), message)
                .await
        };
        drop(slot);
        self.release(&name);
        result
    }

    /// One step, in the agent's turn.
    async fn step(
        &self,
        node: &Node,
        function: Function,
        agent: &AgentName,
        name: &str,
        (sender, invoker): (&str, Option<PublicKey>),
        message: &AgentMessage,
    ) -> Result<Applied, AgentError> {
        let internal = AgentError::Internal;
        if let Some(entry) = self
            .store
            .seen(name, &message.message_id)
            .map_err(internal)?
        {
            // Its write may not have reached the disk (a sync that failed):
            // the retry's reply waits for a sync too.
            let written = self.durability.written.load(Ordering::Acquire);
            self.durability.wait(&self.store, written).await?;
            return Ok(Applied {
                seq: entry.seq,
                reply: entry.reply,
                duplicate: true,
                receipt: None,
            });
        }
        let id = function.id();
        let before = match self.store.state(name).map_err(internal)? {
            Some(s) => s,
            None => {
                let Some(init) = self.store.init(&id).map_err(internal)? else {
                    return Err(AgentError::NotAgent {
                        module: agent.module.clone(),
                        why: format!("{id} was not deployed here as an agent"),
                    });
                };
                AgentState {
                    function: id,
                    seq: 0,
                    hash: *blake3::hash(&init).as_bytes(),
                    state: init,
                }
            }
        };
        let seq = before.seq + 1;
        let input = StepInput::V1 {
            context: Context {
                agent: name.to_owned(),
                sender: sender.to_owned(),
                seq,
                message_id: message.message_id,
            },
            state: before.state.clone(),
            message: message.message.clone(),
        };
        let invoke = Invoke {
            invocation: invocation_of(name, &message.message_id),
            function: id,
            input: input.encode(),
            fuel: None,
        };
        // Room on stdout for the largest state and reply, so that a state
        // over its limit is told as such.
        let limits = orb_functions::Limits {
            output_bytes: MAX_STATE + MAX_REPLY + 64,
            ..Default::default()
        };
        let outcome = match node.host.call_with(function, &invoke, limits).await {
            Ok(o) => o,
            Err(FnError::Busy { .. }) => {
                return Err(AgentError::Busy(
                    "this node's executors are full: try again in a moment".into(),
                ));
            }
            Err(e) => {
                return Err(AgentError::Step {
                    agent: name.to_owned(),
                    kind: e.kind().to_owned(),
                    message: e.to_string(),
                });
            }
        };
        let (state, reply, sends) = match StepOutput::decode(&outcome.output) {
            Ok(StepOutput::V1 { state, reply }) => (state, reply, Vec::new()),
            Ok(StepOutput::V2 {
                state,
                reply,
                sends,
            }) => (state, reply, sends),
            Err(why) => {
                return Err(AgentError::NotAgent {
                    module: agent.module.clone(),
                    why,
                });
            }
        };
        let sends = outgoing(name, seq, sends)?;
        if state.len() > MAX_STATE {
            return Err(AgentError::StateTooLarge {
                agent: name.to_owned(),
                size: state.len(),
            });
        }
        if reply.len() > MAX_REPLY {
            return Err(AgentError::Step {
                agent: name.to_owned(),
                kind: "reply_too_large".into(),
                message: format!(
                    "a reply of {} bytes, over the limit of {MAX_REPLY}",
                    reply.len()
                ),
            });
        }
        let after = AgentState {
            function: id,
            seq,
            hash: *blake3::hash(&state).as_bytes(),
            state,
        };
        let entry = AgentLogEntry {
            seq,
            message_id: message.message_id,
            sender: sender.to_owned(),
            message: message.message.clone(),
            reply: reply.clone(),
            function: id,
            before: before.hash,
            after: after.hash,
        };
        // The output gate: the reply leaves only once the step is on disk.
        // The write lands in sled's memory (no I/O to wait for); the sync
        // is what blocks, on a thread of its own.
        self.store
            .write(name, &after, &entry, &sends)
            .map_err(AgentError::Internal)?;
        let mine = self.durability.written.fetch_add(1, Ordering::AcqRel) + 1;
        self.durability.wait(&self.store, mine).await?;
        if !sends.is_empty() {
            self.outbox.notify_one();
        }
        // Paid like a call: the receipt charges the node the message came
        // from, which settles it.
        let receipt = match (&node.ledger, invoker) {
            (Some(ledger), Some(invoker)) => {
                Some(ledger.sign_receipt(invoker, &invoke, &outcome.output, outcome.fuel))
            }
            _ => None,
        };
        Ok(Applied {
            seq,
            reply,
            duplicate: false,
            receipt,
        })
    }
}

/// Checks what a step sends and gives each message its id (derived from
/// the step, so that a redelivery is applied once).
fn outgoing(
    from: &str,
    seq: u64,
    sends: Vec<orb_guest::agent::Outgoing>,
) -> Result<Vec<Pending>, AgentError> {
    let refuse = |message: String| AgentError::Step {
        agent: from.to_owned(),
        kind: "bad_send".into(),
        message,
    };
    if sends.len() > MAX_SENDS {
        return Err(refuse(format!(
            "{} messages sent in one step, over the limit of {MAX_SENDS}",
            sends.len()
        )));
    }
    sends
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            AgentName::parse(&s.to).map_err(|e| refuse(e.to_string()))?;
            if s.message.len() > MAX_MESSAGE {
                return Err(refuse(format!(
                    "a message of {} bytes to {}, over the limit of {MAX_MESSAGE}",
                    s.message.len(),
                    s.to
                )));
            }
            let message_id = derive16(
                b"orb/agent-send/v1\0",
                &[
                    from.as_bytes(),
                    &[0],
                    &seq.to_be_bytes(),
                    &(i as u32).to_be_bytes(),
                ],
            );
            Ok(Pending {
                from: from.to_owned(),
                to: s.to,
                message_id,
                message: s.message,
            })
        })
        .collect()
}

/// How long a message that could not be delivered waits before the next
/// try (and how often the outbox is looked at without a wake-up).
const REDELIVER: std::time::Duration = std::time::Duration::from_millis(500);

/// Delivers what steps sent to other agents, until the node stops: each
/// message with its id, so that the receiver applies it once however
/// often it is delivered; forgotten once the receiver applied it or
/// refused it for good (a failed step, an unknown module: logged).
/// Messages of one sender go in order: after one that must be tried
/// again, the sender's later ones wait.
pub(crate) async fn deliver_forever(node: Arc<Node>) {
    loop {
        let pending = match node.agents.store.pending(1000) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("agent outbox: {e}");
                Vec::new()
            }
        };
        let mut held: Vec<String> = Vec::new();
        for (key, p) in pending {
            if held.contains(&p.from) {
                continue;
            }
            let to = match AgentName::parse(&p.to) {
                Ok(to) => to,
                Err(e) => {
                    tracing::warn!(from = %p.from, "dropped a message to {}: {e}", p.to);
                    let _ = node.agents.store.delivered(&key);
                    continue;
                }
            };
            match send(&node, &to, p.message_id, p.message, Some(&p.from)).await {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), "busy" | "unreachable" | "internal" | "refused") => {
                    tracing::debug!(from = %p.from, to = %p.to, "to be tried again: {e}");
                    held.push(p.from);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(from = %p.from, to = %p.to, "a sent message was refused: {e}");
                }
            }
            if let Err(e) = node.agents.store.delivered(&key) {
                tracing::warn!("agent outbox: {e}");
            }
        }
        let _ = tokio::time::timeout(REDELIVER, node.agents.outbox.notified()).await;
    }
}

/// The first 16 bytes of blake3 over `tag` and `parts`.
fn derive16(tag: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(tag);
    for p in parts {
        h.update(p);
    }
    let mut first = [0u8; 16];
    first.copy_from_slice(&h.finalize().as_bytes()[..16]);
    first
}

/// The invocation a step is settled as: its own namespace, so that no
/// message id can collide with a call's invocation or another agent's.
fn invocation_of(agent: &str, message_id: &[u8; 16]) -> u128 {
    u128::from_be_bytes(derive16(
        b"orb/agent-step/v1\0",
        &[agent.as_bytes(), &[0], message_id],
    ))
}

/// Whether `receipt` is what the host `peer` owes for the step of
/// `message`, charging `me`. The entry node does not know the state, so
/// the input and output digests are the host's word (as for a call with
/// one replica).
fn receipt_checks(
    receipt: &Receipt,
    peer: &PeerId,
    me: PublicKey,
    message: &AgentMessage,
) -> Result<(), String> {
    let b = &receipt.body;
    let expected_invocation = invocation_of(&message.agent, &message.message_id);
    if !receipt.verify() {
        return Err("its signature does not verify".into());
    }
    if b.invocation != expected_invocation
        || b.function != Digest(*message.function.as_bytes())
        || b.invoker != me
        || Some(b.executor) != key_of(peer)
    {
        return Err("it is not the receipt of this step by this host for this node".into());
    }
    Ok(())
}

/// Settles a step's receipt on this node's ledger (a retry has none).
async fn settle(node: &Node, applied: &Applied) {
    if let (Some(ledger), Some(receipt)) = (&node.ledger, &applied.receipt) {
        ledger
            .settle(receipt.body.invocation, vec![receipt.clone()])
            .await;
    }
}

/// The module behind `agent` and the node to send its messages to: this
/// one (with the compiled module) or a peer.
enum Host {
    Here(Function),
    Peer(PeerId),
}

async fn host_of(node: &Node, agent: &AgentName) -> Result<(FunctionId, Host), AgentError> {
    let id = resolve_name(node, &agent.module).await?;
    if let Some(function) = node.host.function(&id) {
        return Ok((id, Host::Here(function)));
    }
    let found = providers(node, id).await?;
    // The same agent goes to the same provider from every node: the one
    // whose hash with the agent's name is highest.
    let name = agent.to_string();
    let chosen = found
        .iter()
        .filter_map(|p| p.peer.parse::<PeerId>().ok())
        .max_by_key(|peer| {
            let mut h = blake3::Hasher::new();
            h.update(name.as_bytes());
            h.update(&peer.to_bytes());
            *h.finalize().as_bytes()
        })
        .ok_or_else(|| AgentError::NoModule(agent.module.clone()))?;
    Ok((id, Host::Peer(chosen)))
}

/// Asks `peer`, the host of `agent`; no answer is `Unreachable`.
async fn ask(
    node: &Node,
    peer: PeerId,
    agent: &AgentName,
    request: &Request,
) -> Result<Response, AgentError> {
    node.net
        .request(peer, request)
        .await
        .map_err(|e| AgentError::Unreachable {
            agent: agent.to_string(),
            why: e.to_string(),
        })
}

/// Where `agent`'s state is to be read: here (`None`) when this node keeps
/// it or hosts its module, else the host.
async fn holder(node: &Node, agent: &AgentName) -> Result<Option<PeerId>, AgentError> {
    if node
        .agents
        .store
        .has(&agent.to_string())
        .map_err(AgentError::Internal)?
    {
        return Ok(None);
    }
    match host_of(node, agent).await? {
        (_, Host::Here(_)) => Ok(None),
        (_, Host::Peer(peer)) => Ok(Some(peer)),
    }
}

/// What a peer answered about an agent, as this node's error.
fn remote_error(agent: &AgentName, response: Response) -> AgentError {
    match response {
        Response::Failed { kind, message, .. } => AgentError::Remote { kind, message },
        Response::Busy => AgentError::Busy(format!("the node hosting {agent} is busy")),
        Response::NotHosted => AgentError::Unreachable {
            agent: agent.to_string(),
            why: "it no longer hosts the module".into(),
        },
        Response::Refused(why) => AgentError::Remote {
            kind: "refused".into(),
            message: why,
        },
        other => AgentError::Internal(format!("unexpected answer about {agent}: {other:?}")),
    }
}

/// Sends `message` (with its id) to `agent`, wherever it is hosted.
pub(crate) async fn send(
    node: &Node,
    agent: &AgentName,
    message_id: [u8; 16],
    message: Vec<u8>,
    from_agent: Option<&str>,
) -> Result<Applied, AgentError> {
    if message.len() > MAX_MESSAGE {
        return Err(AgentError::TooLarge {
            size: message.len(),
        });
    }
    let (function, host) = host_of(node, agent).await?;
    let message = AgentMessage {
        agent: agent.to_string(),
        function,
        message_id,
        message,
        from_agent: from_agent.map(str::to_owned),
    };
    let applied = match host {
        Host::Here(f) => {
            let me = node.ledger.as_ref().map(|l| l.me);
            let sender = from_agent.unwrap_or(&node.peer_id);
            node.agents
                .apply(node, f, agent, sender, me, &message)
                .await?
        }
        Host::Peer(peer) => match ask(node, peer, agent, &Request::Agent(message.clone())).await? {
            Response::Applied(mut applied) => {
                if let (Some(ledger), Some(receipt)) = (&node.ledger, &applied.receipt)
                    && let Err(why) = receipt_checks(receipt, &peer, ledger.me, &message)
                {
                    tracing::warn!(%peer, agent = %agent, "agent step receipt refused: {why}");
                    node.net.report(peer, orb_net::Offence::Invalid);
                    applied.receipt = None;
                }
                applied
            }
            other => return Err(remote_error(agent, other)),
        },
    };
    settle(node, &applied).await;
    Ok(applied)
}

/// An agent's state, wherever it is hosted (`None`: no message reached it
/// yet).
pub(crate) async fn state(
    node: &Node,
    agent: &AgentName,
) -> Result<Option<AgentState>, AgentError> {
    let name = agent.to_string();
    let Some(peer) = holder(node, agent).await? else {
        return node.agents.store.state(&name).map_err(AgentError::Internal);
    };
    match ask(node, peer, agent, &Request::AgentState { agent: name }).await? {
        Response::AgentState(s) => Ok(s),
        other => Err(remote_error(agent, other)),
    }
}

/// An agent's applied messages from `from` on (one batch), wherever it is
/// hosted.
pub(crate) async fn log(
    node: &Node,
    agent: &AgentName,
    from: u64,
) -> Result<Vec<AgentLogEntry>, AgentError> {
    let name = agent.to_string();
    let Some(peer) = holder(node, agent).await? else {
        return node
            .agents
            .store
            .log(&name, from, AGENT_LOG_BATCH)
            .map_err(AgentError::Internal);
    };
    match ask(node, peer, agent, &Request::AgentLog { agent: name, from }).await? {
        Response::AgentLog(entries) => Ok(entries),
        other => Err(remote_error(agent, other)),
    }
}

/// Answers a peer's agent request.
pub(crate) async fn answer(node: &Node, peer: PeerId, request: Request) -> Response {
    match request {
        Request::Agent(message) => {
            let agent = match AgentName::parse(&message.agent) {
                Ok(a) => a,
                Err(e) => return e.response(),
            };
            let Some(function) = node.host.function(&message.function) else {
                return Response::NotHosted;
            };
            let invoker = match FunctionHost::invoker(node, &peer) {
                Ok(invoker) => invoker,
                Err(why) => return Response::Refused(why),
            };
            let sender = message
                .from_agent
                .clone()
                .unwrap_or_else(|| peer.to_string());
            match node
                .agents
                .apply(node, function, &agent, &sender, invoker, &message)
                .await
            {
                Ok(applied) => Response::Applied(applied),
                Err(e) => e.response(),
            }
        }
        Request::AgentState { agent } => match node.agents.store.state(&agent) {
            Ok(s) => Response::AgentState(s),
            Err(e) => AgentError::Internal(e).response(),
        },
        Request::AgentLog { agent, from } => {
            match node.agents.store.log(&agent, from, AGENT_LOG_BATCH) {
                Ok(entries) => Response::AgentLog(entries),
                Err(e) => AgentError::Internal(e).response(),
            }
        }
        _ => Response::Refused("not an agent request".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_are_module_slash_id() {
        let a = AgentName::parse("counter/alice").unwrap();
        assert_eq!((a.module.as_str(), a.id.as_str()), ("counter", "alice"));
        assert_eq!(a.to_string(), "counter/alice");
        for bad in [
            "counter",
            "counter/",
            "/alice",
            "counter/Alice",
            "counter/a/b",
            "Counter/a",
        ] {
            let e = AgentName::parse(bad).unwrap_err();
            assert_eq!(e.kind(), "bad_name", "{bad}: {e}");
        }
        assert!(AgentName::parse(&format!("c/{}", "x".repeat(65))).is_err());
    }
}
