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
//! An agent module deployed with `--replicas R` has R hosts, and each of
//! its agents is replicated on all of them ([`replicas`]): one host
//! sequences its messages, each step counts once a strict majority of the
//! hosts applied it durably and agree on its result, and the next host
//! takes over when the sequencer is down.

pub(crate) mod http;
pub(crate) mod moves;
mod replicas;
pub(crate) use replicas::GRACE as VOTE_GRACE;
pub(crate) mod store;
pub(crate) mod topics;

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
use store::{
    AgentModule, AgentStore, Callee, Pending, Reminder, ReminderChange, Stand, StepEffects,
};

/// Largest state a step may leave.
pub(crate) const MAX_STATE: usize = 1 << 20;
/// Largest message.
pub(crate) const MAX_MESSAGE: usize = 1 << 20;
/// Largest reply.
pub(crate) const MAX_REPLY: usize = 1 << 20;
/// Messages waiting for one agent before more are answered busy, unless
/// the node is told otherwise.
pub(crate) const MAX_QUEUED: usize = 256;
/// Longest agent id.
const MAX_ID: usize = 64;
/// Messages one step may send to other agents.
pub(crate) const MAX_SENDS: usize = 64;
/// Reminders one agent may have set at once.
pub(crate) const MAX_REMINDERS: usize = 64;
/// Bytes of a reminder's name.
const MAX_REMINDER_NAME: usize = 128;

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
        if !plain(id, MAX_ID) {
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

/// Whether `s` is 1 to `max` of a-z, 0-9, '.', '_', '-' (an agent's id, a
/// topic's name).
pub(super) fn plain(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
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
    /// This node hosted the agent's module before its hosts moved.
    #[error("the agents of this module moved to other hosts")]
    Moved,
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
    /// Too few of the agent's hosts applied the step alike.
    #[error("no strict majority of the hosts of {agent} applied the message: {why}")]
    NoMajority { agent: String, why: String },
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
            AgentError::Moved => "moved",
            AgentError::NoModule(_) => "no_module",
            AgentError::TooLarge { .. } => "too_large",
            AgentError::Busy(_) => "busy",
            AgentError::Step { .. } => "step_failed",
            AgentError::NotAgent { .. } => "not_an_agent",
            AgentError::StateTooLarge { .. } => "state_too_large",
            AgentError::Unreachable { .. } => "unreachable",
            AgentError::NoMajority { .. } => "no_majority",
            AgentError::Remote { kind, .. } => kind,
            AgentError::Internal(_) => "internal",
        }
    }

    /// What a peer that forwarded the message is answered.
    fn response(&self) -> Response {
        match self {
            AgentError::Busy(_) => Response::Busy,
            AgentError::Moved => Response::NotHosted,
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
    /// How long a sequencer waits for the last hosts' votes once a
    /// majority agrees ([`NodeConfig::agent_vote_grace`](crate::NodeConfig)).
    pub(crate) vote_grace: std::time::Duration,
    /// Messages one agent may have waiting here
    /// ([`NodeConfig::agent_queue`](crate::NodeConfig)).
    queue: usize,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    durability: Durability,
    /// Woken when a step left messages for other agents.
    outbox: tokio::sync::Notify,
    /// Rung when a step with publications is durable here (woken: the
    /// topic streams this node serves).
    pub(crate) published: tokio::sync::Notify,
    /// Reads of a topic kept here that wait for a publication now.
    pub(crate) waiting: tokio::sync::Semaphore,
    /// Reads of a topic on another node that wait there now (each holds a
    /// place in that peer's request window).
    pub(crate) asking: tokio::sync::Semaphore,
    /// The replicated agents this node sequences, with its ballot.
    leases: Mutex<HashMap<String, orb_ledger::sequencer::Ballot>>,
    /// When this node last brought publications to the subscribers it is
    /// not the sequencer of (milliseconds since the Unix epoch).
    spares_followed: std::sync::atomic::AtomicU64,
}

/// A step run here, not yet written.
struct Executed {
    /// The agent: `module/id`.
    agent: String,
    after: AgentState,
    entry: AgentLogEntry,
    sends: Vec<Pending>,
    reminders: Vec<ReminderChange>,
    /// (topic name, message), in order.
    publications: Vec<(String, Vec<u8>)>,
    /// (topic, subscribed), in order.
    subscriptions: Vec<(String, bool)>,
    invoke: Invoke,
    fuel: u64,
}

impl Agents {
    pub(crate) fn new(store: AgentStore, vote_grace: std::time::Duration, queue: usize) -> Self {
        Self {
            store,
            vote_grace,
            queue,
            slots: Mutex::new(HashMap::new()),
            durability: Durability::default(),
            outbox: tokio::sync::Notify::new(),
            published: tokio::sync::Notify::new(),
            waiting: tokio::sync::Semaphore::new(topics::WAITING),
            asking: tokio::sync::Semaphore::new(topics::ASKING),
            leases: Mutex::new(HashMap::new()),
            spares_followed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Records a module deployed here as an agent module (its agents'
    /// initial state, hosts and the module it upgrades). A registration
    /// with a later host list (a move) ends this node's leases: the next
    /// message to each agent takes over under the new list.
    pub(crate) fn register(
        &self,
        function: FunctionId,
        module: &AgentModule,
    ) -> Result<(), AgentError> {
        let before = self.store.module(&function).map_err(AgentError::Internal)?;
        self.store
            .register(function, module)
            .map_err(AgentError::Internal)?;
        if before.is_some_and(|b| b.epoch != module.epoch) {
            self.leases
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        Ok(())
    }

    /// The registration of `function`, if it is an agent module deployed
    /// here.
    pub(crate) fn store_module(
        &self,
        function: &FunctionId,
    ) -> Result<Option<AgentModule>, AgentError> {
        self.store.module(function).map_err(AgentError::Internal)
    }

    /// Whether `function` is an agent module deployed here (not scaled
    /// out like a function: its hosts are fixed at deploy).
    pub(crate) fn is_module(&self, function: &FunctionId) -> bool {
        self.store.module(function).ok().flatten().is_some()
    }

    /// How many agents are kept here.
    pub(crate) fn count(&self) -> usize {
        self.store.count()
    }

    /// The agent modules registered here, with their host lists.
    pub(crate) fn modules(&self) -> Result<Vec<(FunctionId, AgentModule)>, AgentError> {
        self.store.modules().map_err(AgentError::Internal)
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
        if slot.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            slot.waiting.fetch_sub(1, Ordering::AcqRel);
            drop(slot);
            self.release(&name);
            return Err(AgentError::Busy(format!(
                "{} messages are waiting for {name}: try again in a moment",
                self.queue
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

    /// Which version of its module runs a step: the newest upgrade of the
    /// message's module registered here (an agent moves to an upgrade on
    /// its next step and never back; a message addressed to an old version
    /// runs on the newest).
    fn version(&self, node: &Node, function: Function) -> Result<Function, AgentError> {
        let mut newest = function.id();
        for _ in 0..64 {
            match self.store.upgrade_of(&newest) {
                Some(next) if node.host.function(&next).is_some() => newest = next,
                _ => break,
            }
        }
        if newest == function.id() {
            return Ok(function);
        }
        node.host
            .function(&newest)
            .ok_or_else(|| AgentError::Internal(format!("the upgrade {newest} is not hosted here")))
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
        let function = self.version(node, function)?;
        let id = function.id();
        // The hosts that apply it run the version chosen here.
        let moved;
        let message = if message.function == id {
            message
        } else {
            moved = AgentMessage {
                function: id,
                ..message.clone()
            };
            &moved
        };
        let Some(module) = self.store.module(&id).map_err(internal)? else {
            return Err(AgentError::NotAgent {
                module: agent.module.clone(),
                why: format!("{id} was not deployed here as an agent"),
            });
        };
        if module.hosts.len() > 1 {
            return replicas::lead(
                self,
                node,
                function,
                &module,
                agent,
                (sender, invoker),
                message,
            )
            .await;
        }
        if let Some(applied) = self.duplicate(node, name, &message.message_id).await? {
            return Ok(applied);
        }
        let before = self.current(name, id, &module)?;
        let executed = self
            .execute(
                node,
                function,
                agent,
                (sender, When::now(node)),
                message,
                &before,
            )
            .await?;
        self.commit(name, &executed, None).await?;
        Ok(Applied {
            seq: executed.after.seq,
            receipts: receipt(node, invoker, &executed).into_iter().collect(),
            reply: executed.entry.reply,
            duplicate: false,
            outvoted: Vec::new(),
            sequencer: node.peer_id.clone(),
        })
    }

    /// The reply a message applied before got, if it is among the kept
    /// ones.
    async fn duplicate(
        &self,
        node: &Node,
        name: &str,
        message_id: &[u8; 16],
    ) -> Result<Option<Applied>, AgentError> {
        let Some(entry) = self
            .store
            .seen(name, message_id)
            .map_err(AgentError::Internal)?
        else {
            return Ok(None);
        };
        // Its write may not have reached the disk (a sync that failed):
        // the retry's reply waits for a sync too.
        let written = self.durability.written.load(Ordering::Acquire);
        self.durability.wait(&self.store, written).await?;
        Ok(Some(Applied {
            seq: entry.seq,
            reply: entry.reply,
            duplicate: true,
            receipts: Vec::new(),
            outvoted: Vec::new(),
            sequencer: node.peer_id.clone(),
        }))
    }

    /// The state `agent` is at here (its module's initial state before its
    /// first message).
    fn current(
        &self,
        name: &str,
        id: FunctionId,
        module: &AgentModule,
    ) -> Result<AgentState, AgentError> {
        Ok(
            match self.store.state(name).map_err(AgentError::Internal)? {
                Some(s) => s,
                None => AgentState {
                    function: id,
                    seq: 0,
                    hash: *blake3::hash(&module.init).as_bytes(),
                    state: module.init.clone(),
                },
            },
        )
    }

    /// Runs the next step of `agent` on the state `before` at `time` (the
    /// step's time: milliseconds since the Unix epoch on its sequencer's
    /// clock), checking what it leaves; nothing is written.
    async fn execute(
        &self,
        node: &Node,
        function: Function,
        agent: &AgentName,
        (sender, when): (&str, When),
        message: &AgentMessage,
        before: &AgentState,
    ) -> Result<Executed, AgentError> {
        let name = agent.to_string();
        let id = function.id();
        let seq = before.seq + 1;
        let context = Context {
            agent: name.clone(),
            sender: sender.to_owned(),
            seq,
            message_id: message.message_id,
            answer: None,
            topic: None,
        };
        let input = match (&message.answer, &message.topic) {
            (None, Some(topic)) => StepInput::V3 {
                context,
                state: before.state.clone(),
                message: message.message.clone(),
                topic: topic.clone(),
            },
            (None, None) => StepInput::V1 {
                context,
                state: before.state.clone(),
                message: message.message.clone(),
            },
            (Some(a), _) => StepInput::V2 {
                context,
                state: before.state.clone(),
                message: message.message.clone(),
                answer: orb_guest::agent::Answer {
                    name: a.name.clone(),
                    ok: a.ok,
                },
            },
        };
        let invoke = Invoke {
            invocation: invocation_of(&name, &message.message_id),
            function: id,
            input: input.encode(),
            fuel: None,
            trace: None,
        };
        // Room on stdout for the largest state and reply, so that a state
        // over its limit is told as such.
        let limits = orb_functions::Limits {
            output_bytes: MAX_STATE + MAX_REPLY + 64,
            ..Default::default()
        };
        let called = node.host.call_with(function, &invoke, limits).await;
        node.ran.push(super::calls::record(
            &invoke,
            Some(name.to_string()),
            &called,
        ));
        let outcome = match called {
            Ok(o) => o,
            Err(FnError::Busy { .. }) => {
                return Err(AgentError::Busy(
                    "this node's executors are full: try again in a moment".into(),
                ));
            }
            Err(e) => {
                return Err(AgentError::Step {
                    agent: name,
                    kind: e.kind().to_owned(),
                    message: e.to_string(),
                });
            }
        };
        let (mut state, reply, sends, reminders, publications, subscriptions) =
            match StepOutput::decode(&outcome.output) {
                Ok(StepOutput::V1 { state, reply }) => {
                    (state, reply, Vec::new(), Vec::new(), Vec::new(), Vec::new())
                }
                Ok(StepOutput::V2 {
                    state,
                    reply,
                    sends,
                }) => (state, reply, sends, Vec::new(), Vec::new(), Vec::new()),
                Ok(StepOutput::V3 {
                    state,
                    reply,
                    sends,
                    reminders,
                }) => (state, reply, sends, reminders, Vec::new(), Vec::new()),
                Ok(StepOutput::V4 {
                    state,
                    reply,
                    sends,
                    reminders,
                    publications,
                    subscriptions,
                }) => (state, reply, sends, reminders, publications, subscriptions),
                Err(why) => {
                    return Err(AgentError::NotAgent {
                        module: agent.module.clone(),
                        why,
                    });
                }
            };
        if node.host.corrupts_outputs() {
            // A Byzantine test host: a state its peers will not agree on.
            state.extend_from_slice(b" ");
        }
        let sends = outgoing(&name, seq, sends)?;
        // Only a step that sets reminders, or applies one of its own (they
        // come from the agent itself), needs the ones set.
        let set = if reminders.is_empty() && message.from_agent.as_deref() != Some(name.as_str()) {
            Vec::new()
        } else {
            self.store
                .reminders_of(&name)
                .map_err(AgentError::Internal)?
        };
        let reminders = reminding(&name, (seq, when), message, &set, reminders)?;
        let publications = topics::publishing(&name, publications)?;
        let subscriptions = if subscriptions.is_empty() {
            Vec::new()
        } else {
            let subscribed = self
                .store
                .subscriptions_of(&name)
                .map_err(AgentError::Internal)?;
            topics::subscribing(&name, &subscribed, subscriptions)?
        };
        if state.len() > MAX_STATE {
            return Err(AgentError::StateTooLarge {
                agent: name,
                size: state.len(),
            });
        }
        if reply.len() > MAX_REPLY {
            return Err(AgentError::Step {
                agent: name,
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
            reply,
            function: id,
            before: before.hash,
            after: after.hash,
        };
        Ok(Executed {
            agent: name,
            after,
            entry,
            sends,
            reminders,
            publications,
            subscriptions,
            invoke,
            fuel: outcome.fuel,
        })
    }

    /// Writes a step and returns once it is durable (the output gate: the
    /// reply leaves only once the step is on disk). The write lands in
    /// sled's memory; the sync is what blocks, on a thread of its own.
    async fn commit(
        &self,
        name: &str,
        executed: &Executed,
        stand: Option<&Stand>,
    ) -> Result<(), AgentError> {
        self.store
            .write(
                name,
                &executed.after,
                &executed.entry,
                &StepEffects {
                    sends: &executed.sends,
                    reminders: &executed.reminders,
                    publications: &executed.publications,
                    subscriptions: &executed.subscriptions,
                },
                stand,
            )
            .map_err(AgentError::Internal)?;
        self.durable().await?;
        if !executed.sends.is_empty()
            || !executed.reminders.is_empty()
            || !executed.publications.is_empty()
            || !executed.subscriptions.is_empty()
        {
            self.outbox.notify_one();
        }
        if !executed.publications.is_empty() {
            self.published.notify_waiters();
        }
        Ok(())
    }

    /// A host learned that a majority has more of an agent's steps: their
    /// sends may leave and their publications be read.
    pub(super) fn released(&self) {
        self.outbox.notify_one();
        self.published.notify_waiters();
    }

    /// Returns once every write so far is durable.
    async fn durable(&self) -> Result<(), AgentError> {
        let mine = self.durability.written.fetch_add(1, Ordering::AcqRel) + 1;
        self.durability.wait(&self.store, mine).await
    }
}

/// On a ledger, this node's receipt of a step it ran, charging `invoker`
/// (paid like a call).
/// Its digests are the step's state hashes ([`orb_ledger::AgentStep`]),
/// so the chain can be checked against the agent's log.
fn receipt(node: &Node, invoker: Option<PublicKey>, executed: &Executed) -> Option<Receipt> {
    let (Some(ledger), Some(invoker)) = (&node.ledger, invoker) else {
        return None;
    };
    let e = &executed.entry;
    let step = orb_ledger::AgentStep {
        agent: &executed.agent,
        seq: e.seq,
        message_id: &e.message_id,
        message: &e.message,
        before: &e.before,
        after: &e.after,
        reply: &e.reply,
    };
    Some(ledger.sign_digests(
        invoker,
        &executed.invoke,
        (step.input(), step.output()),
        executed.fuel,
    ))
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

/// Checks the reminders a step sets or cancels against the ones `set`
/// before it, and gives each new one its due time and message id (both
/// derived from the step, so every host keeps the same reminder).
fn reminding(
    agent: &str,
    (seq, when): (u64, When),
    message: &AgentMessage,
    set: &[Reminder],
    ops: Vec<orb_guest::agent::ReminderOp>,
) -> Result<Vec<ReminderChange>, AgentError> {
    use orb_guest::agent::ReminderOp;
    let refuse = |message: String| AgentError::Step {
        agent: agent.to_owned(),
        kind: "bad_reminder".into(),
        message,
    };
    // The names set after the step: the one that brought this message is
    // spent.
    let mut names: Vec<String> = set
        .iter()
        .filter(|r| r.message_id != message.message_id)
        .map(|r| r.name.clone())
        .collect();
    let mut changes = Vec::with_capacity(ops.len() + 1);
    if let Some(spent) = set.iter().find(|r| r.message_id == message.message_id) {
        changes.push(ReminderChange::Cancel(spent.name.clone()));
    }
    for (i, op) in ops.into_iter().enumerate() {
        let name = match &op {
            ReminderOp::Set { name, .. }
            | ReminderOp::SetAfterBlocks { name, .. }
            | ReminderOp::Cancel { name }
            | ReminderOp::Call { name, .. }
            | ReminderOp::CallAfter { name, .. }
            | ReminderOp::Ask { name, .. } => name.clone(),
        };
        if name.is_empty() || name.len() > MAX_REMINDER_NAME {
            return Err(refuse(format!(
                "a reminder's name has 1 to {MAX_REMINDER_NAME} bytes, not {}",
                name.len()
            )));
        }
        // A call is kept as a reminder due at once whose message is the
        // call's input.
        let (name, after_ms, message, to, call, due_height) = match op {
            ReminderOp::Cancel { name } => {
                names.retain(|n| *n != name);
                changes.push(ReminderChange::Cancel(name));
                continue;
            }
            ReminderOp::Set {
                name,
                after_ms,
                message,
                to,
            } => (name, after_ms, message, to, None, 0),
            ReminderOp::SetAfterBlocks {
                name,
                blocks,
                message,
                to,
            } => {
                let Some(height) = when.height else {
                    return Err(refuse(format!(
                        "reminder {name:?} waits for blocks, and this network keeps no reward chain"
                    )));
                };
                // Past the height it was set at, so never 0 (no height).
                let due = height.saturating_add(blocks.max(1));
                (name, 0, message, to, None, due)
            }
            ReminderOp::Call {
                name,
                function,
                input,
            } => {
                orb_net::check_name(&function)
                    .map_err(|e| refuse(format!("call {name:?}: {e}")))?;
                (name, 0, input, None, Some(Callee::Function(function)), 0)
            }
            ReminderOp::CallAfter {
                name,
                after_ms,
                function,
                input,
            } => {
                orb_net::check_name(&function)
                    .map_err(|e| refuse(format!("call {name:?}: {e}")))?;
                let call = Some(Callee::Function(function));
                (name, after_ms, input, None, call, 0)
            }
            ReminderOp::Ask {
                name,
                agent: asked,
                message,
            } => {
                AgentName::parse(&asked).map_err(|e| refuse(format!("ask {name:?}: {e}")))?;
                (name, 0, message, None, Some(Callee::Agent(asked)), 0)
            }
        };
        if let Some(to) = &to {
            AgentName::parse(to).map_err(|e| refuse(format!("reminder {name:?}: {e}")))?;
        }
        if message.len() > MAX_MESSAGE {
            return Err(refuse(format!(
                "reminder {name:?} brings {} bytes, over the message limit of {MAX_MESSAGE}",
                message.len()
            )));
        }
        if !names.contains(&name) {
            if names.len() >= MAX_REMINDERS {
                return Err(refuse(format!(
                    "{agent} has {MAX_REMINDERS} reminders set, the limit: cancel one first"
                )));
            }
            names.push(name.clone());
        }
        let message_id = derive16(
            b"orb/agent-reminder/v1\0",
            &[
                agent.as_bytes(),
                &[0],
                &seq.to_be_bytes(),
                &(i as u32).to_be_bytes(),
            ],
        );
        changes.push(ReminderChange::Set(Reminder {
            agent: agent.to_owned(),
            name,
            set_at: seq,
            due: when.ms.saturating_add(after_ms),
            message_id,
            message,
            to,
            call,
            due_height,
        }));
    }
    Ok(changes)
}

/// When a step was put in its agent's order, on its sequencer: what the
/// reminders it sets are due after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct When {
    /// Milliseconds since the Unix epoch on the sequencer's clock.
    pub(super) ms: u64,
    /// The reward chain's height there (`None` without a chain).
    pub(super) height: Option<u64>,
}

impl When {
    /// Now, on this node.
    pub(super) fn now(node: &Node) -> Self {
        Self {
            ms: now_ms(),
            height: node.ledger.as_ref().map(|l| l.height()),
        }
    }
}

/// Whether this node brings `agent` what it is owed (the answers to its
/// calls, the publications it subscribed to): as its only host, or as
/// its sequencer.
pub(super) fn delivers_for(node: &Node, agent: &str) -> bool {
    // The lease is in memory; the host count takes reading the state.
    if node.agents.lease(agent).is_some() {
        return true;
    }
    let hosts = node
        .agents
        .store
        .state(agent)
        .ok()
        .flatten()
        .and_then(|s| node.agents.store.module(&s.function).ok().flatten())
        .map(|m| m.hosts.len())
        .unwrap_or(0);
    hosts <= 1
}

/// Milliseconds since the Unix epoch on this node's clock: the time a
/// step gets when this node puts it in its agent's order.
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
        for (key, seq, p) in pending {
            if held.contains(&p.from) {
                continue;
            }
            // A replicated sender's step may leave once a majority has it.
            if let Ok(Some(stand)) = node.agents.store.stand(&p.from)
                && seq > stand.committed
            {
                held.push(p.from);
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
            match send(
                &node,
                &to,
                p.message_id,
                p.message,
                (Some(&p.from), None, None),
            )
            .await
            {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        "busy" | "unreachable" | "internal" | "refused" | "no_majority"
                    ) =>
                {
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
        let wait = remind(&node).await;
        let _ = tokio::time::timeout(wait, node.agents.outbox.notified()).await;
    }
}

/// Brings every due reminder's message to its agent (each host of the
/// agent does; the message's id makes the agent apply it once), and
/// forgets the ones delivered. Returns how long until the next is due
/// (at most [`REDELIVER`]).
async fn remind(node: &Arc<Node>) -> std::time::Duration {
    let store = &node.agents.store;
    let reminders = match store.reminders(10_000) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("agent reminders: {e}");
            return REDELIVER;
        }
    };
    let mut wait = REDELIVER;
    for r in reminders {
        let now = now_ms();
        if r.due > now {
            wait = wait.min(std::time::Duration::from_millis(r.due - now));
            continue;
        }
        // After blocks: once this node's chain is that high.
        if r.due_height > 0
            && node
                .ledger
                .as_ref()
                .is_none_or(|l| l.height() < r.due_height)
        {
            continue;
        }
        // Set by a replicated step: it fires once a majority has the step.
        if let Ok(Some(stand)) = store.stand(&r.agent)
            && r.set_at > stand.committed
        {
            continue;
        }
        let Ok(to) = AgentName::parse(r.to.as_deref().unwrap_or(&r.agent)) else {
            let _ = store.spent(&r);
            continue;
        };
        let (message, answer) = match &r.call {
            None => (r.message.clone(), None),
            // One host makes the call: the agent's sequencer (or its
            // only host).
            Some(_) if !delivers_for(node, &r.agent) => continue,
            Some(callee) => match call(node, &r, callee).await {
                Some((output, ok)) => (
                    output,
                    Some(orb_net::Answer {
                        name: r.name.clone(),
                        ok,
                    }),
                ),
                None => continue,
            },
        };
        match send(
            node,
            &to,
            r.message_id,
            message,
            (Some(&r.agent), answer, None),
        )
        .await
        {
            Ok(applied) => {
                tracing::debug!(agent = %r.agent, reminder = %r.name, seq = applied.seq, "a reminder fired");
            }
            // A reminder's own agent is hosted here, so its module's name
            // not found yet (just after a restart) is found later.
            Err(e)
                if matches!(
                    e.kind(),
                    "busy" | "unreachable" | "internal" | "refused" | "no_majority"
                ) || (e.kind() == "no_module" && r.to.is_none()) =>
            {
                tracing::debug!(agent = %r.agent, reminder = %r.name, "to be tried again: {e}");
                continue;
            }
            Err(e) => {
                tracing::warn!(agent = %r.agent, reminder = %r.name, "a reminder's message was refused: {e}");
            }
        }
        if let Err(e) = store.spent(&r) {
            tracing::warn!("agent reminders: {e}");
        }
    }
    wait
}

/// Makes the call `r` keeps: a function under an invocation derived from
/// it (so it is settled once), or a message to an agent under an id
/// derived from it (so it is applied once, and asking again gets the
/// reply it got). The output or reply and whether it succeeded; `None`:
/// the agent asked cannot be reached now, ask again later.
async fn call(node: &Arc<Node>, r: &Reminder, callee: &store::Callee) -> Option<(Vec<u8>, bool)> {
    match callee {
        store::Callee::Function(function) => {
            let invocation = u128::from_be_bytes(r.message_id);
            let result =
                super::invoke::invoke_as(node, invocation, function, r.message.clone(), None, None)
                    .await;
            Some(match result {
                Ok(done) => (done.output, true),
                Err(e) => (e.to_string().into_bytes(), false),
            })
        }
        store::Callee::Agent(agent) => {
            let asked = match AgentName::parse(agent) {
                Ok(a) => a,
                Err(e) => return Some((e.to_string().into_bytes(), false)),
            };
            let id = derive16(b"orb/agent-ask/v1\0", &[&r.message_id]);
            let origin = (Some(r.agent.as_str()), None, None);
            match send(node, &asked, id, r.message.clone(), origin).await {
                Ok(applied) => Some((applied.reply, true)),
                Err(e)
                    if matches!(
                        e.kind(),
                        "busy" | "unreachable" | "internal" | "refused" | "no_majority"
                    ) =>
                {
                    tracing::debug!(agent = %r.agent, %asked, "to be asked again: {e}");
                    None
                }
                Err(e) => Some((e.to_string().into_bytes(), false)),
            }
        }
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

/// Whether `receipt` is what a host of the agent owes for the step of
/// `message`, charging `me`. The entry node does not know the state, so
/// the input and output digests are the hosts' word; with several hosts
/// the ledger pays the receipts a strict majority of them agree on.
fn receipt_checks(
    receipt: &Receipt,
    hosts: &[PeerId],
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
        || !hosts.iter().any(|h| key_of(h) == Some(b.executor))
    {
        return Err("it is not the receipt of this step by a host of it for this node".into());
    }
    Ok(())
}

/// Settles a step's receipts on this node's ledger (a retry has none).
async fn settle(node: &Node, applied: &Applied) {
    if let (Some(ledger), Some(first)) = (&node.ledger, applied.receipts.first()) {
        ledger
            .settle(first.body.invocation, applied.receipts.clone())
            .await;
    }
}

/// Where a message to an agent goes: this node (with the compiled module)
/// or a peer.
enum Host {
    Here(Function),
    Peer(PeerId),
}

/// Hosts one agent's messages are tried on, at most.
const TRIED_HOSTS: usize = 5;

/// The module behind `agent` and its hosts in the order its messages try
/// them: by the hash of the agent's name with each host's, so that every
/// node sends one agent's messages to the same host first and different
/// agents spread over the hosts.
async fn hosts_of(node: &Node, agent: &AgentName) -> Result<(FunctionId, Vec<Host>), AgentError> {
    let id = resolve_name(node, &agent.module).await?;
    let name = agent.to_string();
    let rank = |peer: &PeerId| {
        let mut h = blake3::Hasher::new();
        h.update(name.as_bytes());
        h.update(&peer.to_bytes());
        std::cmp::Reverse(*h.finalize().as_bytes())
    };
    // Providers found on the network, the first TRIED_HOSTS by rank.
    let ranked = |mut peers: Vec<PeerId>| -> Vec<Host> {
        peers.sort_by_key(rank);
        peers.truncate(TRIED_HOSTS);
        peers.into_iter().map(Host::Peer).collect()
    };
    if let Some(function) = node.host.function(&id) {
        let module = node
            .agents
            .store
            .module(&id)
            .map_err(AgentError::Internal)?;
        let Some(module) = module else {
            // Hosted here but not known here as an agent module (a host
            // joining in a move is asked to host it a moment before it
            // takes the host list): the agent's hosts elsewhere first.
            let found = providers(node, id).await.unwrap_or_default();
            let others = found.iter().map(|p| p.peer);
            let mut order = ranked(others.filter(|p| p.to_string() != node.peer_id).collect());
            order.push(Host::Here(function));
            return Ok((id, order));
        };
        let mut peers: Vec<PeerId> = module.hosts.iter().filter_map(|p| p.parse().ok()).collect();
        if peers.len() <= 1 {
            return Ok((id, vec![Host::Here(function)]));
        }
        peers.sort_by_key(rank);
        let order = peers
            .into_iter()
            .map(|p| {
                if p.to_string() == node.peer_id {
                    Host::Here(function.clone())
                } else {
                    Host::Peer(p)
                }
            })
            .collect();
        return Ok((id, order));
    }
    let found = providers(node, id).await?;
    let peers: Vec<PeerId> = found.iter().map(|p| p.peer).collect();
    if peers.is_empty() {
        // Hosts known, all left out for answering "busy" a moment ago:
        // busy (retry), not "no module" (a caller would give up).
        let resting = node.routing.resting(id);
        if resting > 0 {
            return Err(AgentError::Busy(format!(
                "the {resting} host(s) of {} were busy a moment ago: try again in a moment",
                agent.module
            )));
        }
        return Err(AgentError::NoModule(agent.module.clone()));
    }
    Ok((id, ranked(peers)))
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

/// Whether to try the agent's next host after this error: it is gone, or
/// it hosts the module without knowing it as an agent module (a host
/// joining in a move hosts the module a moment before it takes the host
/// list; when every host says so, that is the answer).
fn try_next(e: &AgentError) -> bool {
    match e {
        AgentError::Unreachable { .. } => true,
        AgentError::Remote { kind, .. } => kind == "not_an_agent",
        _ => false,
    }
}

/// Sends `message` (with its id) to `agent`, wherever it is hosted, and
/// counts it in the node's metrics.
pub(crate) async fn send(
    node: &Node,
    agent: &AgentName,
    message_id: [u8; 16],
    message: Vec<u8>,
    origin: (Option<&str>, Option<orb_net::Answer>, Option<String>),
) -> Result<Applied, AgentError> {
    let result = send_once(node, agent, message_id, message, origin).await;
    let (module, outcome) = match &result {
        Ok(a) if a.duplicate => (agent.module.as_str(), "duplicate"),
        Ok(_) => (agent.module.as_str(), "applied"),
        Err(e @ AgentError::NoModule(_)) => ("unknown", e.kind()),
        Err(e) => (agent.module.as_str(), e.kind()),
    };
    node.metrics.agent_step(module, outcome);
    result
}

async fn send_once(
    node: &Node,
    agent: &AgentName,
    message_id: [u8; 16],
    message: Vec<u8>,
    (from_agent, answer, topic): (Option<&str>, Option<orb_net::Answer>, Option<String>),
) -> Result<Applied, AgentError> {
    if message.len() > MAX_MESSAGE {
        return Err(AgentError::TooLarge {
            size: message.len(),
        });
    }
    let (function, order) = hosts_of(node, agent).await?;
    let message = AgentMessage {
        agent: agent.to_string(),
        function,
        message_id,
        message,
        from_agent: from_agent.map(str::to_owned),
        answer,
        topic,
    };
    let peers: Vec<PeerId> = order
        .iter()
        .filter_map(|h| match h {
            Host::Here(_) => node.peer_id.parse().ok(),
            Host::Peer(p) => Some(*p),
        })
        .collect();
    let mut last = None;
    for host in order {
        let result = match host {
            Host::Here(f) => {
                let me = node.ledger.as_ref().map(|l| l.me);
                let sender = from_agent.unwrap_or(&node.peer_id);
                node.agents
                    .apply(node, f, agent, sender, me, &message)
                    .await
            }
            Host::Peer(peer) => {
                match ask(node, peer, agent, &Request::Agent(message.clone())).await {
                    Ok(Response::Applied(applied)) => Ok(applied),
                    Ok(other) => Err(remote_error(agent, other)),
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(mut applied) => {
                if let Some(ledger) = &node.ledger {
                    applied.receipts.retain(|receipt| {
                        match receipt_checks(receipt, &peers, ledger.me, &message) {
                            Ok(()) => true,
                            Err(why) => {
                                let executor = receipt.body.executor;
                                tracing::warn!(agent = %agent, %executor, "agent step receipt refused: {why}");
                                if let Some(peer) = peers.iter().find(|p| key_of(p) == Some(executor)) {
                                    node.net.report(*peer, orb_net::Offence::Invalid);
                                }
                                false
                            }
                        }
                    });
                }
                settle(node, &applied).await;
                return Ok(applied);
            }
            Err(e) if try_next(&e) => {
                tracing::debug!(agent = %agent, "trying the agent's next host: {e}");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| AgentError::NoModule(agent.module.clone())))
}

/// Asks `agent`'s hosts in order until one answers `request`; `here`
/// answers when this node keeps the agent or hosts its module.
async fn read<T>(
    node: &Node,
    agent: &AgentName,
    request: Request,
    here: impl Fn() -> Result<T, String>,
    answered: impl Fn(Response) -> Result<T, AgentError>,
) -> Result<T, AgentError> {
    let name = agent.to_string();
    if node.agents.store.has(&name).map_err(AgentError::Internal)? {
        return here().map_err(AgentError::Internal);
    }
    let (_, order) = hosts_of(node, agent).await?;
    let mut last = None;
    for host in order {
        let peer = match host {
            Host::Here(_) => return here().map_err(AgentError::Internal),
            Host::Peer(p) => p,
        };
        match ask(node, peer, agent, &request).await {
            Ok(response) => return answered(response),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| AgentError::NoModule(agent.module.clone())))
}

/// Whether `peer` may bring `message` with the sender and topic it names:
/// a reminder (the agent to itself) and a publication on a topic the
/// agent subscribed to only from one of the agent's own hosts (they keep
/// its reminders and follow its topics), a message from another agent
/// only from one of that agent's hosts (they deliver its sends). Anyone
/// may send a message that names no agent.
async fn check_origin(node: &Node, peer: &PeerId, message: &AgentMessage) -> Result<(), String> {
    let Some(from) = message.from_agent.as_deref() else {
        return match message.topic {
            Some(_) => Err("a publication without its publisher".into()),
            None => Ok(()),
        };
    };
    let peer_text = peer.to_string();
    let hosts_here = |function: &FunctionId| {
        node.agents
            .store
            .module(function)
            .ok()
            .flatten()
            .is_some_and(|m| m.hosted_by(&peer_text))
    };
    if let Some(topic) = &message.topic {
        if topics::Topic::parse(topic).is_ok_and(|t| t.agent.to_string() == from) {
            if hosts_here(&message.function) {
                return Ok(());
            }
            return Err(format!(
                "{peer} is not a host of {}: only its hosts bring the publications it subscribed to",
                message.agent
            ));
        }
        return Err(format!("{topic:?} is not a topic of {from}"));
    }
    if from == message.agent {
        if hosts_here(&message.function) {
            return Ok(());
        }
        return Err(format!(
            "{peer} is not a host of {}: only its hosts bring its reminders",
            message.agent
        ));
    }
    let sender = AgentName::parse(from).map_err(|e| e.to_string())?;
    let id = resolve_name(node, &sender.module)
        .await
        .map_err(|e| format!("the sending agent {from}: {e}"))?;
    let hosts = match node.host.function(&id) {
        Some(_) => hosts_here(&id),
        None => providers(node, id)
            .await
            .map_err(|e| format!("the sending agent {from}: {e}"))?
            .iter()
            .any(|p| p.peer == *peer),
    };
    if hosts {
        Ok(())
    } else {
        Err(format!(
            "{peer} is not a host of {from}: only its hosts send its messages"
        ))
    }
}

/// `request` answered by one of `agent`'s hosts other than this node,
/// tried in order.
async fn ask_other_hosts(
    node: &Node,
    agent: &AgentName,
    request: &Request,
) -> Result<Response, AgentError> {
    let (_, order) = hosts_of(node, agent).await?;
    let mut last = None;
    for peer in order.into_iter().filter_map(|h| match h {
        Host::Peer(p) => Some(p),
        Host::Here(_) => None,
    }) {
        match ask(node, peer, agent, request).await {
            Ok(response) => return Ok(response),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| AgentError::NoModule(agent.module.clone())))
}

/// An agent's state, wherever it is hosted (`None`: no message reached it
/// yet).
pub(crate) async fn state(
    node: &Node,
    agent: &AgentName,
) -> Result<Option<AgentState>, AgentError> {
    let name = agent.to_string();
    read(
        node,
        agent,
        Request::AgentState {
            agent: name.clone(),
        },
        || node.agents.store.state(&name),
        |response| match response {
            Response::AgentState(s) => Ok(s),
            other => Err(remote_error(agent, other)),
        },
    )
    .await
}

/// An agent's applied messages from `from` on (one batch), wherever it is
/// hosted.
pub(crate) async fn log(
    node: &Node,
    agent: &AgentName,
    from: u64,
) -> Result<Vec<AgentLogEntry>, AgentError> {
    let name = agent.to_string();
    read(
        node,
        agent,
        Request::AgentLog {
            agent: name.clone(),
            from,
        },
        || node.agents.store.log(&name, from, AGENT_LOG_BATCH),
        |response| match response {
            Response::AgentLog(entries) => Ok(entries),
            other => Err(remote_error(agent, other)),
        },
    )
    .await
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
            if let Err(why) = check_origin(node, &peer, &message).await {
                return Response::Refused(why);
            }
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
        Request::AgentTopic {
            agent,
            topic,
            after,
            wait_ms,
        } => topics::answer(node, &agent, &topic, after, wait_ms).await,
        Request::AgentLog { agent, from } => {
            match node.agents.store.log(&agent, from, AGENT_LOG_BATCH) {
                Ok(entries) => Response::AgentLog(entries),
                Err(e) => AgentError::Internal(e).response(),
            }
        }
        request => replicas::answer(node, peer, request).await,
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

    /// A step put in order at `ms`, on a network without a chain.
    fn at(ms: u64) -> When {
        When { ms, height: None }
    }

    fn message(id: u8) -> AgentMessage {
        AgentMessage {
            agent: "auction/x".into(),
            function: FunctionId::of(b"m"),
            message_id: [id; 16],
            message: b"close".to_vec(),
            from_agent: None,
            answer: None,
            topic: None,
        }
    }

    fn set(name: &str, after_ms: u64) -> orb_guest::agent::ReminderOp {
        orb_guest::agent::ReminderOp::Set {
            name: name.into(),
            after_ms,
            message: b"close".to_vec(),
            to: None,
        }
    }

    #[test]
    fn reminders_are_due_after_the_step_and_the_same_on_every_host() {
        let ops = || vec![set("deadline", 4000), set("later", 9000)];
        let a = reminding("auction/x", (7, at(1_000)), &message(1), &[], ops()).unwrap();
        let b = reminding("auction/x", (7, at(1_000)), &message(1), &[], ops()).unwrap();
        assert_eq!(a, b);
        let ReminderChange::Set(first) = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!((first.due, first.set_at), (5_000, 7));
        let ReminderChange::Set(second) = &a[1] else {
            panic!("{a:?}")
        };
        assert_ne!(first.message_id, second.message_id);
        // Another step gives another id.
        let c = reminding("auction/x", (8, at(1_000)), &message(1), &[], ops()).unwrap();
        assert_ne!(a, c);
        // A call is due at once and names its function; a function name
        // that cannot be one is refused.
        let call = |function: &str| orb_guest::agent::ReminderOp::Call {
            name: "count".into(),
            function: function.into(),
            input: b"the cat".to_vec(),
        };
        let calls = reminding(
            "auction/x",
            (9, at(1_000)),
            &message(1),
            &[],
            vec![call("wordcount")],
        )
        .unwrap();
        let [ReminderChange::Set(r)] = calls.as_slice() else {
            panic!("{calls:?}")
        };
        assert_eq!(
            (r.due, &r.call, r.message.as_slice(), r.to.as_deref()),
            (
                1_000,
                &Some(Callee::Function("wordcount".into())),
                b"the cat".as_slice(),
                None
            )
        );
        // A scheduled call is due after its delay, and is a reminder of
        // its name (set again, it replaces the one set before).
        let later = |after_ms| orb_guest::agent::ReminderOp::CallAfter {
            name: "count".into(),
            after_ms,
            function: "wordcount".into(),
            input: b"the cat".to_vec(),
        };
        let set = reminding(
            "auction/x",
            (9, at(1_000)),
            &message(1),
            &[],
            vec![later(250)],
        )
        .unwrap();
        let [ReminderChange::Set(first)] = set.as_slice() else {
            panic!("{set:?}")
        };
        assert_eq!(
            (first.due, &first.call, first.message.as_slice()),
            (
                1_250,
                &Some(Callee::Function("wordcount".into())),
                b"the cat".as_slice()
            )
        );
        let again = reminding(
            "auction/x",
            (10, at(2_000)),
            &message(2),
            std::slice::from_ref(first),
            vec![later(250)],
        )
        .unwrap();
        let [ReminderChange::Set(second)] = again.as_slice() else {
            panic!("{again:?}")
        };
        assert_eq!((second.name.as_str(), second.due), ("count", 2_250));
        let bad = orb_guest::agent::ReminderOp::CallAfter {
            name: "count".into(),
            after_ms: 1,
            function: "Not A Name".into(),
            input: vec![],
        };
        assert!(reminding("auction/x", (9, at(1_000)), &message(1), &[], vec![bad]).is_err());
        // An ask is a call to an agent, whose name must be one.
        let ask = |agent: &str| orb_guest::agent::ReminderOp::Ask {
            name: "q".into(),
            agent: agent.into(),
            message: b"get".to_vec(),
        };
        let asks = reminding(
            "auction/x",
            (9, at(1_000)),
            &message(1),
            &[],
            vec![ask("counter/c")],
        )
        .unwrap();
        let [ReminderChange::Set(r)] = asks.as_slice() else {
            panic!("{asks:?}")
        };
        assert_eq!(
            (&r.call, r.due, r.to.as_deref()),
            (&Some(Callee::Agent("counter/c".into())), 1_000, None)
        );
        assert!(
            reminding(
                "auction/x",
                (9, at(1_000)),
                &message(1),
                &[],
                vec![ask("counter")]
            )
            .is_err()
        );
        let e = reminding(
            "auction/x",
            (9, at(1_000)),
            &message(1),
            &[],
            vec![call("Word Count")],
        )
        .unwrap_err();
        assert_eq!(e.kind(), "step_failed", "{e}");
    }

    #[test]
    fn a_reminder_after_blocks_waits_for_the_sequencers_height_plus_them_and_needs_a_chain() {
        let after = |blocks| orb_guest::agent::ReminderOp::SetAfterBlocks {
            name: "settle".into(),
            blocks,
            message: b"close".to_vec(),
            to: Some("counter/x".into()),
        };
        let when = When {
            ms: 1_000,
            height: Some(40),
        };
        // (blocks) → the height it is due at, due at once by the clock.
        for (blocks, due_height) in [(3, 43), (1, 41), (0, 41), (u64::MAX, u64::MAX)] {
            let changes = reminding(
                "auction/x",
                (9, when),
                &message(1),
                &[],
                vec![after(blocks)],
            )
            .unwrap();
            let [ReminderChange::Set(r)] = changes.as_slice() else {
                panic!("{changes:?}")
            };
            assert_eq!(
                (r.due_height, r.due, r.to.as_deref()),
                (due_height, 1_000, Some("counter/x")),
                "{blocks} blocks"
            );
        }
        // A timed reminder waits for no height.
        let timed = reminding("auction/x", (9, when), &message(1), &[], vec![set("t", 5)]).unwrap();
        let [ReminderChange::Set(r)] = timed.as_slice() else {
            panic!("{timed:?}")
        };
        assert_eq!((r.due_height, r.due), (0, 1_005));
        let e = reminding(
            "auction/x",
            (9, at(1_000)),
            &message(1),
            &[],
            vec![after(3)],
        )
        .unwrap_err();
        assert_eq!(e.kind(), "step_failed", "{e}");
        assert!(e.to_string().contains("(bad_reminder)"), "{e}");
        assert!(e.to_string().contains("no reward chain"), "{e}");
    }

    #[test]
    fn the_reminder_count_counts_replacements_once_and_the_spent_one_not_at_all() {
        let full: Vec<Reminder> = (0..MAX_REMINDERS)
            .map(|i| Reminder {
                agent: "auction/x".into(),
                name: format!("r{i}"),
                set_at: 1,
                due: 10,
                message_id: [i as u8; 16],
                message: Vec::new(),
                to: None,
                call: None,
                due_height: 0,
            })
            .collect();
        // Replacing one is fine; a new name is one too many.
        assert!(
            reminding(
                "auction/x",
                (2, at(0)),
                &message(200),
                &full,
                vec![set("r3", 1)]
            )
            .is_ok()
        );
        let e = reminding(
            "auction/x",
            (2, at(0)),
            &message(200),
            &full,
            vec![set("new", 1)],
        )
        .unwrap_err();
        assert!(e.to_string().contains("64 reminders"), "{e}");
        // Cancelling first makes room, and so does the reminder whose
        // message this step applies (it is spent).
        let cancel = orb_guest::agent::ReminderOp::Cancel { name: "r0".into() };
        assert!(
            reminding(
                "auction/x",
                (2, at(0)),
                &message(200),
                &full,
                vec![cancel, set("new", 1)]
            )
            .is_ok()
        );
        assert!(
            reminding(
                "auction/x",
                (2, at(0)),
                &message(5),
                &full,
                vec![set("new", 1)]
            )
            .is_ok()
        );
        for bad in [String::new(), "n".repeat(MAX_REMINDER_NAME + 1)] {
            let e = reminding(
                "auction/x",
                (2, at(0)),
                &message(1),
                &[],
                vec![set(&bad, 1)],
            )
            .unwrap_err();
            assert_eq!(e.kind(), "step_failed", "{e}");
        }
    }
}
