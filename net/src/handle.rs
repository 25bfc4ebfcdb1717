//! `Net`: the cloneable handle the rest of a node uses to talk to the
//! network, and [`start`], which builds the swarm and hands back its event
//! loop for the caller to run on a task it owns.
//!
//! Requests to peers go on request streams ([`crate::streams`]), off the
//! event loop. Every other async method sends a command to the event loop
//! over a bounded channel and awaits a oneshot reply. The `*_nowait` methods never wait
//! (dataflow operators call them): when the command queue is full they
//! return `false` and the caller retries on its next activation.
//! The event loop stops when the last `Net` is dropped.

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use orb_functions::FunctionId;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::event_loop::{Command, EventLoop};
use crate::streams::{Direct, Limits, Reply, Streams};
use crate::{Announcement, Error, NameRecord, NetConfig, PeerStore, Request, Response, Result};

/// Something the network tells the node.
#[derive(Debug)]
pub enum NetEvent {
    /// A peer asks something; answer with [`Reply::send`].
    Request {
        /// Who asks.
        peer: PeerId,
        /// What.
        request: Request,
        /// Where the answer goes.
        reply: Reply,
    },
    /// A peer announced something on gossipsub.
    Announcement {
        /// The signed source of the message.
        peer: PeerId,
        /// What it announced.
        announcement: Announcement,
    },
}

/// What AutoNAT concluded about this node's reachability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NatStatus {
    /// Not tested yet (no AutoNAT server among the peers).
    Unknown,
    /// An address of ours was dialed back: publicly reachable.
    Public,
    /// Dial-backs failed: behind a NAT or a firewall.
    Private,
}

/// A node's view of itself on the network.
#[derive(Clone, Debug, Serialize)]
pub struct NetStatus {
    /// Our peer id.
    pub peer_id: String,
    /// Addresses we listen on.
    pub listen: Vec<String>,
    /// Addresses confirmed reachable (or relayed addresses).
    pub external: Vec<String>,
    /// AutoNAT's verdict.
    pub nat: NatStatus,
    /// Publicly reachable: serves the DHT and relays for others.
    pub supernode: bool,
    /// Whether Kademlia runs in server mode.
    pub dht_server: bool,
    /// Relays we hold a reservation on.
    pub relays: Vec<String>,
    /// Peers connected now.
    pub connected: usize,
    /// Peers in the Kademlia routing table.
    pub routing_table: usize,
    /// Peers in the persistent peer store.
    pub known_peers: usize,
    /// Peers banned now for misbehaving.
    pub banned: usize,
}

/// A peer as this node knows it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: String,
    /// The addresses it listens on (from identify).
    pub addrs: Vec<String>,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Whether every open connection goes through a relay.
    pub relayed: bool,
    /// Its software, from identify.
    pub agent: String,
    /// Banned for misbehaving: its connections are refused.
    pub banned: bool,
    /// Its misbehaviour score (a ban is at 100; halves every minute).
    pub score: f64,
    /// It offers a relay (a supernode).
    pub supernode: bool,
    /// The last ping round trip to it, while connected, in microseconds.
    pub rtt_us: Option<u64>,
}

impl PeerInfo {
    /// Its kind, one per peer: `supernode` (whichever way it is reached),
    /// else `relayed` when every open connection goes through a relay,
    /// else `direct`.
    pub fn kind(&self) -> &'static str {
        match (self.supernode, self.relayed) {
            (true, _) => "supernode",
            (false, true) => "relayed",
            (false, false) => "direct",
        }
    }
}

/// The handle to a node's network: cheap to clone.
#[derive(Clone)]
pub struct Net {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
    streams: Arc<Streams>,
}

/// Builds the swarm, listens and dials the bootstrap and known peers (call
/// it inside a tokio runtime). Nothing happens on the network until the
/// returned [`EventLoop`] runs: spawn [`EventLoop::run`] on a task you own
/// (as rust-libp2p's `file-sharing` example does); it ends when the last
/// [`Net`] is dropped.
pub fn start(
    key: Keypair,
    config: &NetConfig,
    peers: PeerStore,
) -> Result<(Net, mpsc::Receiver<NetEvent>, EventLoop)> {
    start_with(key, config, peers, None)
}

/// [`start`], recording libp2p's metrics (connections, identify, Kademlia,
/// ping, relay, DCUtR, gossipsub, and the bytes in and out of each
/// transport) in `registry`.
pub fn start_measured(
    key: Keypair,
    config: &NetConfig,
    peers: PeerStore,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<(Net, mpsc::Receiver<NetEvent>, EventLoop)> {
    start_with(key, config, peers, Some(registry))
}

fn start_with(
    key: Keypair,
    config: &NetConfig,
    peers: PeerStore,
    registry: Option<&mut prometheus_client::registry::Registry>,
) -> Result<(Net, mpsc::Receiver<NetEvent>, EventLoop)> {
    let peer_id = key.public().to_peer_id();
    let (tx, rx) = mpsc::channel(256);
    let (events_tx, events_rx) = mpsc::channel(config.event_queue.max(1));
    let event_loop = EventLoop::new(key, config, peers, rx, events_tx.clone(), registry)?;
    let limits = Limits {
        window: config.stream_window.max(1),
        max_request: config.max_request_bytes,
        max_response: config.max_response_bytes,
        timeout: config.request_timeout,
        bad_frames: config.misbehave.bad_frames,
    };
    let streams = Streams::start(event_loop.stream_control(), limits, events_tx, tx.clone())?;
    Ok((
        Net {
            tx,
            peer_id,
            streams,
        },
        events_rx,
        event_loop,
    ))
}

impl Net {
    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(command(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Our status.
    pub async fn status(&self) -> Result<NetStatus> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// The peers we know, connected or not.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Dials `addr` (which must end in `/p2p/<peer id>`) and waits for the connection.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Tells the network that `peer` committed `offence` (an invalid
    /// signed object, a wrong receipt, a request left unanswered...): its
    /// score goes up, and past the limit it is banned. Never waits; `false`
    /// when the command queue is full.
    pub fn report(&self, peer: PeerId, offence: crate::Offence) -> bool {
        self.tx.try_send(Command::Offence { peer, offence }).is_ok()
    }

    /// Sends `request` to `peer` (dialing it if needed) on our request
    /// stream to it and waits for the answer. Fails at once with
    /// [`Error::WindowFull`] when as many requests as the window allows are
    /// already in flight to that peer.
    pub async fn request(&self, peer: PeerId, request: &Request) -> Result<Response> {
        self.streams.request(peer, request).await
    }

    /// Lets `direct` answer peers' requests as they are read, before they
    /// become [`NetEvent::Request`]s (see [`Direct`]).
    pub fn answer_directly(&self, direct: Arc<Direct>) {
        self.streams.answer_directly(direct);
    }

    /// Publishes a provider record for `function` in the DHT and waits until
    /// it is sent to the closest peers.
    pub async fn provide(&self, function: FunctionId) -> Result<()> {
        self.ask(|reply| Command::Provide {
            function,
            reply: Some(reply),
        })
        .await?
    }

    /// Publishes a provider record without waiting; `false` when the
    /// command queue is full (try again later).
    pub fn provide_nowait(&self, function: FunctionId) -> bool {
        self.tx
            .try_send(Command::Provide {
                function,
                reply: None,
            })
            .is_ok()
    }

    /// Withdraws our provider record for `function` without waiting.
    pub fn stop_providing_nowait(&self, function: FunctionId) -> bool {
        self.tx
            .try_send(Command::StopProviding { function })
            .is_ok()
    }

    /// Asks the DHT who provides `function`.
    pub async fn providers(&self, function: FunctionId) -> Result<Vec<PeerId>> {
        self.ask(|reply| Command::GetProviders { function, reply })
            .await?
    }

    /// Stores a (signed) name record in the DHT.
    pub async fn put_name(&self, record: NameRecord) -> Result<()> {
        self.ask(|reply| Command::PutName { record, reply }).await?
    }

    /// Looks a name up in the DHT: the first record whose signature verifies.
    pub async fn get_name(&self, name: &str) -> Result<Option<NameRecord>> {
        let name = name.to_owned();
        self.ask(|reply| Command::GetName { name, reply }).await?
    }

    /// Tells every peer something on gossipsub (waits only for the queue).
    pub async fn announce(&self, announcement: Announcement) -> Result<()> {
        self.tx
            .send(Command::Announce { announcement })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Remembers addresses of `peer` (learned from an announcement).
    pub fn add_addresses_nowait(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> bool {
        self.tx
            .try_send(Command::AddAddresses { peer, addrs })
            .is_ok()
    }

    /// Waits until `check` holds for our status, or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        check: impl Fn(&NetStatus) -> bool,
    ) -> Result<NetStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status().await?;
            if check(&status) || tokio::time::Instant::now() >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
