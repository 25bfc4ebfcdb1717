//! `orb-net`: Orb's network layer on libp2p.
//!
//! One event-loop task owns the libp2p [`Swarm`](libp2p::Swarm) (TCP and
//! QUIC, Noise, yamux; identify, ping, Kademlia, request streams,
//! gossipsub, relay server and client, DCUtR, AutoNAT v2, mDNS) and drives
//! it with `tokio::select!` over swarm events and a bounded command channel.
//! The rest of the node holds a [`Net`] handle: cheap to clone, every call a
//! command with a oneshot reply, plus non-blocking `*_nowait` calls for
//! dataflow operators that must never await. What the network tells the
//! node (requests from peers, announcements) arrives as [`NetEvent`]s on a
//! bounded channel; when the node cannot keep up, a peer's request is
//! answered "busy" at once instead of queueing without bound.
//!
//! - [`identity`]: the node's persistent Ed25519 key;
//! - [`PeerStore`]: known peers and addresses in sled, so a restarted node
//!   rejoins without its bootstrap list;
//! - [`Request`], [`Response`], [`Announcement`]: the wire protocol, with
//!   size-limited framing (a peer cannot make us allocate more than the
//!   limit, and a malformed frame is dropped and logged);
//! - [`Conduct`]: per-peer scores, announcement rate limits and bans: a
//!   peer that sends what does not decode, floods, or is caught lying is
//!   disconnected and refused for a while, and said once in the log;
//! - [`NameRecord`]: a function name signed by its publisher, kept in the DHT;
//! - NAT: a node whose address AutoNAT confirms (or that is started as a
//!   supernode) serves the DHT and relays; a private node reserves a relay
//!   slot on a supernode and lets DCUtR upgrade relayed connections.
//!
//! It depends on `orb-functions` (for [`FunctionId`](orb_functions::FunctionId)),
//! never on `orb-engine` or the binary.

mod behaviour;
mod conduct;
mod config;
mod error;
mod event_loop;
mod handle;
pub mod identity;
mod names;
mod peerstore;
mod protocol;
mod streams;

pub use conduct::{Conduct, ConductConfig, Offence, Verdict};
pub use config::{Misbehaviour, NetConfig, Screen};
pub use error::{Error, Result};
pub use event_loop::EventLoop;
pub use handle::{NatStatus, Net, NetEvent, NetStatus, PeerInfo, start, start_measured};
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};
pub use names::{MAX_NAME, NameRecord, check_name};
pub use peerstore::PeerStore;
pub use protocol::{
    AGENT_LOG_BATCH, AgentLogEntry, AgentMessage, AgentSide, AgentState, Announcement, Answer,
    Applied, BadFrame, CALL_LOG_BATCH, CallRecord, FunctionLoad, Invoke, Load, Publication, Query,
    ReplicaAnswer, Replicate, Request, Response, StepVote, TOPIC_BATCH, TraceContext, encode_frame,
    read_frame_into,
};
pub use streams::{Direct, Reply};
