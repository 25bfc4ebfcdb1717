//! The wire protocol: what nodes ask each other on request streams
//! (`/orb/call/1`, see [`streams`](crate::streams)) and what they announce
//! on gossipsub (`orb/gossip/1`).
//!
//! Messages are postcard-encoded in a frame with a 4-byte big-endian length.
//! A frame longer than the configured limit is refused before anything is
//! allocated for it, and a frame that does not decode ends that stream
//! only (logged; the requests in flight on it fail and are rerouted).

use std::io;

use futures::{AsyncRead, AsyncReadExt};
use orb_functions::FunctionId;
use orb_ledger::sequencer::{Ballot, Head, Prepared};
use orb_ledger::{Block, Claim, Digest, PublicKey, Receipt, Settlement, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What one node asks another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Run a function the peer hosts.
    Invoke(Invoke),
    /// Send the module with this id (the asker checks its hash).
    FetchModule {
        /// The module wanted.
        function: FunctionId,
    },
    /// Host this function: fetch the module from the asker, verify, compile,
    /// announce as a provider. The peer may decline.
    Host {
        /// The function to host.
        function: FunctionId,
    },
    /// A Snowball query: which block does the peer prefer at `height`?
    Query(Query),
    /// Send the block (proposal or committed) with this hash.
    FetchBlock {
        /// The block hash.
        hash: Digest,
    },
    /// Send committed blocks from `from` on (at most a batch).
    Sync {
        /// The first height wanted.
        from: u64,
    },
    /// A message for an agent the peer hosts.
    Agent(AgentMessage),
    /// An agent's state, if the peer hosts it.
    AgentState {
        /// The agent: `module/id`.
        agent: String,
    },
    /// The messages an agent applied from sequence number `from` on (at
    /// most [`AGENT_LOG_BATCH`]).
    AgentLog {
        /// The agent: `module/id`.
        agent: String,
        /// The first sequence number wanted.
        from: u64,
    },
    /// Keep this agent module's registration: new agents start from
    /// `init` and are hosted by `hosts` (the peer already hosts the
    /// module).
    AgentModule {
        /// The module.
        function: FunctionId,
        /// The state a new agent starts from (empty: the module's default).
        init: Vec<u8>,
        /// Every agent of the module is hosted by these peers, in this
        /// order (a sequencer's ballot names its place here).
        hosts: Vec<String>,
        /// The agent module this one upgrades (`orb agent upgrade`): its
        /// agents move to this module, keeping their state.
        replaces: Option<FunctionId>,
        /// Which host list `hosts` is (one more at each `orb agent move`).
        epoch: u32,
        /// While the agents move to `hosts`: the list before; empty once
        /// they all moved. A peer in neither list no longer hosts them.
        previous: Vec<String>,
    },
    /// The names of the agents the peer keeps whose last step ran one of
    /// `functions` (an agent module and its upgrades).
    AgentNames {
        /// The modules.
        functions: Vec<FunctionId>,
    },
    /// A sequencer taking over an agent asks its hosts to promise `ballot`.
    AgentPrepare {
        /// The agent: `module/id`.
        agent: String,
        /// Its module.
        function: FunctionId,
        /// The ballot to promise.
        ballot: Ballot,
    },
    /// The sequencer asks a host to hold its head under `ballot` (catching
    /// up from the sequencer when its own differs).
    AgentSync {
        /// The agent: `module/id`.
        agent: String,
        /// Its module.
        function: FunctionId,
        /// The sequencer's ballot.
        ballot: Ballot,
        /// The sequencer's head.
        head: Head,
    },
    /// The sequencer asks a host to apply message number `seq`.
    AgentReplicate(Box<Replicate>),
    /// A host catching up asks for the agent's state and its log from
    /// `from` on.
    AgentCatchUp {
        /// The agent: `module/id`.
        agent: String,
        /// The first log entry wanted.
        from: u64,
    },
    /// Publications on an agent's topic after `after` (a publication's
    /// `(seq, index)`; `(0, 0)` for the first kept), at most
    /// [`TOPIC_BATCH`], in order.
    AgentTopic {
        /// The publishing agent: `module/id`.
        agent: String,
        /// The topic's name among the agent's.
        topic: String,
        /// The last publication already had.
        after: (u64, u32),
        /// With none after it yet, how long the peer may wait for one
        /// before answering (milliseconds; 0: answer at once).
        wait_ms: u32,
    },
    /// The calls of `function` the peer ran after its record number
    /// `after` (0: from the oldest kept), at most [`CALL_LOG_BATCH`].
    Calls {
        /// The function (or agent module).
        function: FunctionId,
        /// The last record already had.
        after: u64,
    },
}

/// Call records a node sends at most in one answer.
pub const CALL_LOG_BATCH: usize = 256;

/// One call a node ran, as `orb logs` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Its number among the records of the node that ran it (from 1).
    pub seq: u64,
    /// When it ended (milliseconds since the Unix epoch).
    pub at_ms: u64,
    /// The invocation (agent steps: the message id).
    pub invocation: u128,
    /// The function (or agent module) that ran.
    pub function: FunctionId,
    /// The agent, for an agent step.
    pub agent: Option<String>,
    /// `ok`, or the error's kind (`busy` included).
    pub outcome: String,
    /// Fuel burnt.
    pub fuel: u64,
    /// Time on the executor (instantiation and run), microseconds.
    pub duration_us: u64,
    /// The end of what the guest wrote to stderr (or of the error).
    pub log: String,
}

/// One message replicated to an agent's hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicate {
    /// The sequencer's ballot.
    pub ballot: Ballot,
    /// The message's place in the agent's order.
    pub seq: u64,
    /// The hash of the state it applies to.
    pub before: [u8; 32],
    /// Messages of the agent the sequencer knows a majority holds.
    pub committed: u64,
    /// The message.
    pub message: AgentMessage,
    /// Who sent it, as the agent's context says.
    pub sender: String,
    /// The node that pays for the step, on a ledger.
    pub invoker: Option<PublicKey>,
    /// The step's time (milliseconds since the Unix epoch on the
    /// sequencer's clock): what reminders the step sets are due after.
    pub time: u64,
    /// The reward chain's height on the sequencer when it put the step in
    /// order (`None` without a chain): what reminders after blocks are
    /// due after.
    pub height: Option<u64>,
}

/// A host's vote on one step: the state it reached and the reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepVote {
    /// The step's place in the agent's order.
    pub seq: u64,
    /// The hash of the state after it.
    pub after: [u8; 32],
    /// The reply.
    pub reply: Vec<u8>,
    /// On a ledger, the host's receipt of the step (none when it voted
    /// from its log, having applied the step before).
    pub receipt: Option<Receipt>,
}

/// What an agent's host answers its sequencer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaAnswer {
    /// To a prepare.
    Prepared(Prepared),
    /// It holds the sequencer's head.
    Synced,
    /// It applied the step.
    Vote(Box<StepVote>),
    /// It could not apply the step (catching up failed, or the step did).
    NotApplied(String),
    /// It promised a higher ballot.
    Stale(Ballot),
}

/// Log entries one [`Request::AgentLog`] answers at most.
pub const AGENT_LOG_BATCH: usize = 1000;

/// A message to an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMessage {
    /// The agent: `module/id`.
    pub agent: String,
    /// The agent's module, as the sender resolved its name.
    pub function: FunctionId,
    /// Identifies the message: a retry carries the same id and is applied
    /// once.
    pub message_id: [u8; 16],
    /// The message.
    pub message: Vec<u8>,
    /// The agent that sent it, when one did (as the sending node says).
    pub from_agent: Option<String>,
    /// Set when the message is the answer to a call the agent made
    /// (`message` is then the function's output, or its error).
    pub answer: Option<Answer>,
    /// Set when the message is a publication on a topic the agent
    /// subscribed to: the topic, `module/id/topic` (the sender is its
    /// publisher).
    pub topic: Option<String>,
}

/// One publication on an agent's topic, as its hosts keep it: its place
/// is the step that published it and its index among that step's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The publishing step's sequence number.
    pub seq: u64,
    /// Its place among the step's publications on any topic.
    pub index: u32,
    /// The message.
    pub message: Vec<u8>,
}

/// What a host keeps of an agent besides its state and log, sent with a
/// catch-up so that the host catching up carries on its reminders and
/// subscriptions and serves its topics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSide {
    /// Its reminders, each encoded as the host keeps it.
    pub reminders: Vec<Vec<u8>>,
    /// The topics it subscribes to (`module/id/topic`).
    pub subscriptions: Vec<String>,
    /// Its publications from the first log entry sent on, in order:
    /// (topic, publication).
    pub publications: Vec<(String, Publication)>,
}

/// Publications one [`Request::AgentTopic`] answers at most.
pub const TOPIC_BATCH: usize = 256;

/// What an answer to an agent's call says besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The name the step gave the call.
    pub name: String,
    /// Whether the call succeeded (else the message is the error).
    pub ok: bool,
}

/// An agent applied a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The message's place in the agent's order.
    pub seq: u64,
    /// The agent's reply.
    pub reply: Vec<u8>,
    /// Whether it had been applied before (this was a retry: the reply is
    /// the one it gave then).
    pub duplicate: bool,
    /// On a ledger, the hosts' signed receipts of the step, charging the
    /// node the message came from (none for a retry: the first was paid).
    pub receipts: Vec<Receipt>,
    /// The hosts whose result the others outvoted (peer ids).
    pub outvoted: Vec<String>,
    /// The host that sequenced it (peer id).
    pub sequencer: String,
}

/// An agent's state after its last applied message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The module that ran the last step.
    pub function: FunctionId,
    /// Messages applied.
    pub seq: u64,
    /// The state (what the agent keeps: JSON for agents built with
    /// `orb_guest::agent`).
    pub state: Vec<u8>,
    /// Its blake3 hash.
    pub hash: [u8; 32],
}

/// One applied message in an agent's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLogEntry {
    /// Its place in the agent's order.
    pub seq: u64,
    /// The message's id.
    pub message_id: [u8; 16],
    /// Who sent it (the peer id of the node it entered the network at).
    pub sender: String,
    /// The message.
    pub message: Vec<u8>,
    /// The reply.
    pub reply: Vec<u8>,
    /// The module that ran the step.
    pub function: FunctionId,
    /// The state's hash before and after the step.
    pub before: [u8; 32],
    /// See `before`.
    pub after: [u8; 32],
}

impl Request {
    /// Whether it is about agents.
    pub fn is_agent(&self) -> bool {
        matches!(
            self,
            Request::Agent(_)
                | Request::AgentState { .. }
                | Request::AgentLog { .. }
                | Request::AgentTopic { .. }
                | Request::AgentModule { .. }
                | Request::AgentNames { .. }
                | Request::AgentPrepare { .. }
                | Request::AgentSync { .. }
                | Request::AgentReplicate(_)
                | Request::AgentCatchUp { .. }
        )
    }

    /// Whether the ledger answers it (queries, blocks, sync).
    pub fn is_ledger(&self) -> bool {
        matches!(
            self,
            Request::Query(_) | Request::FetchBlock { .. } | Request::Sync { .. }
        )
    }
}

/// A Snowball query (one poll's question to one committee member).
pub use orb_ledger::consensus::Query;

/// One call of a function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoke {
    /// Identifies the call end to end (retries keep it).
    pub invocation: u128,
    /// The function.
    pub function: FunctionId,
    /// Its input (stdin).
    pub input: Vec<u8>,
    /// A fuel limit lower than the executor's default, if any.
    pub fuel: Option<u64>,
    /// The span that sent the call, when the sending node exports traces,
    /// so that the executor's spans join the same trace. It must stay the
    /// last field (see [`TraceContext`]): one byte when there is none.
    #[serde(deserialize_with = "trailer")]
    pub trace: Option<TraceContext>,
}

/// Where a call sits in a distributed trace: the sending span's W3C trace
/// context (`traceparent`'s fields, as bytes).
///
/// It travels as the last field of an [`Invoke`], which is the last thing
/// in its frame, and that makes it compatible both ways without a new
/// protocol version: a node that predates it stops reading before it
/// (postcard leaves the rest of a frame unread), and a frame without it,
/// or with a kind of context this node does not know (a later variant),
/// reads as `None`. A new kind of context is a new variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraceContext {
    /// W3C Trace Context, `traceparent` version 00.
    W3c {
        /// The trace id (never all zeros).
        trace_id: [u8; 16],
        /// The id of the span that sent the call (never all zeros).
        parent_id: [u8; 8],
        /// The trace flags (bit 0: sampled).
        flags: u8,
    },
}

/// Reads [`Invoke::trace`]: a frame that ends before it, or holds what
/// does not decode as a context, has none. Only sound for the last field
/// of a frame (what follows a failed read is never looked at).
fn trailer<'de, D>(deserializer: D) -> Result<Option<TraceContext>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<TraceContext>::deserialize(deserializer).unwrap_or(None))
}

/// What a node answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The call ran.
    Output {
        /// What the guest wrote to stdout.
        output: Vec<u8>,
        /// Fuel consumed.
        fuel: u64,
        /// Instantiation plus execution, in microseconds.
        execution_us: u64,
        /// The executor's signed receipt (nodes on a ledger).
        receipt: Option<Receipt>,
    },
    /// The guest failed (trap, exit, out of fuel, limit).
    Failed {
        /// `orb_functions::Error::kind`.
        kind: String,
        /// What happened.
        message: String,
        /// Fuel used until the failure, when known.
        fuel: Option<u64>,
    },
    /// The executor's queue is full: ask another provider.
    Busy,
    /// This node does not host that function (any more).
    NotHosted,
    /// The module asked for.
    Module(Vec<u8>),
    /// The answer to [`Request::Host`].
    Hosting {
        /// Whether the node now hosts the function.
        accepted: bool,
        /// Why not, when it declined.
        reason: String,
    },
    /// The request was refused (bad module, bad id).
    Refused(String),
    /// The answer to a query: a signed vote, or none yet.
    Vote(Option<Vote>),
    /// The block asked for, if known.
    Block(Option<Box<Block>>),
    /// Committed blocks, in height order.
    Blocks(Vec<Block>),
    /// More than one vote for one query: never sent by an honest node (two
    /// naming different blocks are an equivocation; a Byzantine test node
    /// sends them).
    Votes(Vec<Vote>),
    /// The agent applied the message.
    Applied(Applied),
    /// An agent's state (`None`: no message reached it here yet).
    AgentState(Option<AgentState>),
    /// Entries of an agent's log, in order.
    AgentLog(Vec<AgentLogEntry>),
    /// An agent host's answer to its sequencer.
    Replica(ReplicaAnswer),
    /// An agent's state and the log entries asked for, up to it.
    AgentCatchUp {
        /// The state (`None`: no message reached the agent here).
        state: Option<AgentState>,
        /// Log entries from the asked one to the state's, in order (at
        /// most [`AGENT_LOG_BATCH`]: the latest ones).
        entries: Vec<AgentLogEntry>,
        /// Its reminders, subscriptions and recent publications.
        side: AgentSide,
    },
    /// Publications on an agent's topic, in order.
    AgentTopic(Vec<Publication>),
    /// Names of agents.
    AgentNames(Vec<String>),
    /// Call records, oldest first, and the last record number the node
    /// has given (what to ask `after` next).
    Calls {
        /// The records.
        records: Vec<CallRecord>,
        /// The node's latest record number.
        last: u64,
    },
}

/// What a node tells everyone on gossipsub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Announcement {
    /// The sender hosts `function` (or stopped, when `hosting` is false).
    Provider {
        /// The function.
        function: FunctionId,
        /// Whether the sender hosts it now.
        hosting: bool,
        /// Calls queued or running on the sender.
        load: u32,
        /// Calls the sender runs at once.
        capacity: u32,
        /// Addresses the sender can be reached on.
        addrs: Vec<String>,
    },
    /// The sender's load, every second while it hosts functions: what the
    /// scheduler ranks by and what auto-scaling reacts to.
    Load(Load),
    /// A King-of-the-Hill claim on a committee slot.
    Claim(Claim),
    /// Settlements (each one invocation's receipts, signed by its
    /// invoker) for the mempool.
    Settlements(Vec<Settlement>),
    /// A block proposed for the next height (no evidence yet).
    Proposal(Box<Block>),
    /// A block the sender committed, with its finality evidence.
    Committed(Box<Block>),
    /// Two conflicting signed votes of one voter (it is excluded).
    Equivocation(Box<(Vote, Vote)>),
}

impl Announcement {
    /// Encodes for gossipsub.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes a gossip message (`None` if malformed).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// A node's load report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    /// Calls it runs at once.
    pub capacity: u32,
    /// Calls queued or running now.
    pub in_flight: u32,
    /// Share of its executor capacity used in the last window, in ‰.
    pub busy_permille: u32,
    /// Per hosted function, the last window.
    pub functions: Vec<FunctionLoad>,
}

/// One function's share of a node's last load window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionLoad {
    /// The function.
    pub function: FunctionId,
    /// Calls that ended in the window.
    pub calls: u32,
    /// Share of the node's executor capacity its calls used, in ‰.
    pub busy_permille: u32,
}

/// Why a frame was refused (the inner error of the `InvalidData` I/O error
/// [`read_frame_into`] returns).
#[derive(Debug, thiserror::Error)]
pub enum BadFrame {
    /// Its length is over the limit (nothing was read or allocated for it).
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The length it claims.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Its bytes do not decode.
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl BadFrame {
    /// The frame error inside an I/O error, if that is what it is.
    pub fn of(e: &io::Error) -> Option<&BadFrame> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<BadFrame>())
    }
}

/// Reads one frame (a 4-byte big-endian length, then postcard) into `buf`
/// and decodes it. A length over `max` is refused before anything is
/// allocated for it; a frame that does not decode is an error. (The wire
/// format of the request streams: public for the fuzz targets.)
pub async fn read_frame_into<T, M>(io: &mut T, buf: &mut Vec<u8>, max: usize) -> io::Result<M>
where
    T: AsyncRead + Unpin,
    M: DeserializeOwned,
{
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            BadFrame::TooLarge { len, max },
        ));
    }
    buf.resize(len, 0);
    io.read_exact(buf).await?;
    postcard::from_bytes(buf).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            BadFrame::Malformed(e.to_string()),
        )
    })
}

/// Encodes `message` as one frame; refuses one whose body is over `max`.
pub fn encode_frame<M: Serialize>(message: &M, max: usize) -> io::Result<Vec<u8>> {
    let mut frame = postcard::to_extend(message, vec![0u8; 4])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let len = frame.len() - 4;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {len} bytes exceeds the limit of {max}"),
        ));
    }
    let prefix = u32::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
    frame[..4].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn requests_round_trip() {
        let req = Request::Invoke(Invoke {
            invocation: 7,
            function: FunctionId::of(b"m"),
            input: b"hi".to_vec(),
            fuel: Some(10),
            trace: Some(TraceContext::W3c {
                trace_id: [1; 16],
                parent_id: [2; 8],
                flags: 1,
            }),
        });
        let frame = encode_frame(&(3u64, &req), 1024).unwrap();
        let mut buf = Vec::new();
        let back: (u64, Request) =
            block_on(read_frame_into(&mut frame.as_slice(), &mut buf, 1024)).unwrap();
        assert_eq!(back, (3, req));
    }

    /// `Invoke` as nodes before trace contexts had it.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum OldRequest {
        Invoke(OldInvoke),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OldInvoke {
        invocation: u128,
        function: FunctionId,
        input: Vec<u8>,
        fuel: Option<u64>,
    }

    fn decode<M: DeserializeOwned>(frame: &[u8]) -> M {
        let mut buf = Vec::new();
        block_on(read_frame_into(&mut &frame[..], &mut buf, 1024)).unwrap()
    }

    #[test]
    fn a_trace_context_is_compatible_with_nodes_before_it_both_ways() {
        let function = FunctionId::of(b"m");
        let old = OldRequest::Invoke(OldInvoke {
            invocation: 7,
            function,
            input: b"hi".to_vec(),
            fuel: None,
        });
        let new = Request::Invoke(Invoke {
            invocation: 7,
            function,
            input: b"hi".to_vec(),
            fuel: None,
            trace: Some(TraceContext::W3c {
                trace_id: [0xab; 16],
                parent_id: [0xcd; 8],
                flags: 1,
            }),
        });
        // An old node's call reads here as one without a trace.
        let back: (u64, Request) = decode(&encode_frame(&(1u64, &old), 1024).unwrap());
        let Request::Invoke(invoke) = back.1 else {
            panic!("not an invoke: {back:?}");
        };
        assert_eq!((invoke.invocation, invoke.trace), (7, None));
        // Our call reads on an old node as the same call.
        let back: (u64, OldRequest) = decode(&encode_frame(&(1u64, &new), 1024).unwrap());
        assert_eq!(back, (1, old));
        // A kind of context this node does not know (variant 1) is none.
        let mut frame = encode_frame(&(1u64, &new), 1024).unwrap();
        let at = frame.len() - (1 + 16 + 8 + 1);
        assert_eq!(frame[at], 0, "the variant of W3c");
        frame[at] = 1;
        let back: (u64, Request) = decode(&frame);
        assert!(matches!(
            back.1,
            Request::Invoke(Invoke { trace: None, .. })
        ));
    }

    #[test]
    fn an_oversized_frame_is_refused_before_allocating() {
        let mut frame = u32::MAX.to_be_bytes().to_vec();
        frame.extend_from_slice(b"tiny");
        let mut buf = Vec::new();
        let err = block_on(read_frame_into::<_, Request>(
            &mut frame.as_slice(),
            &mut buf,
            1024,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        assert_eq!(buf.capacity(), 0);
    }

    #[test]
    fn a_malformed_frame_is_an_error_not_a_panic() {
        let mut frame = 3u32.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0xff, 0xff, 0xff]);
        let mut buf = Vec::new();
        let err = block_on(read_frame_into::<_, Request>(
            &mut frame.as_slice(),
            &mut buf,
            1024,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("malformed"), "{err}");
        let big = Response::Module(vec![0; 2048]);
        assert!(encode_frame(&(1u64, &big), 1024).is_err());
    }
}
