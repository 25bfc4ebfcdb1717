//! The event loop: the one task that owns the swarm.
//!
//! It `select!`s over swarm events and commands from [`Net`](crate::Net)
//! handles, keeps pending maps keyed by query or request id for the replies,
//! and decides the node's NAT role: an address confirmed by AutoNAT (or a
//! `--supernode` listen address) makes Kademlia a server and the relay
//! serve; a node AutoNAT finds private reserves a slot on a relay it knows,
//! and DCUtR upgrades the relayed connections it gets. It never blocks on
//! the node: requests go to the node with `try_send`, and a full queue is
//! answered "busy".

mod commands;
mod conduct;
mod dht;
mod nat;

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::identity::Keypair;
use libp2p::kad::{self, QueryId};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, autonat, gossipsub, identify, mdns, ping, relay};
use orb_functions::FunctionId;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::behaviour::{self, Behaviour, BehaviourEvent, GOSSIP_TOPIC, KAD_PROTOCOL, RELAY_HOP};
use crate::handle::{NatStatus, NetEvent, NetStatus, PeerInfo};
use crate::{
    Announcement, Conduct, ConductConfig, Error, Misbehaviour, NameRecord, NetConfig, Offence,
    PeerStore, Result, Screen,
};

type Reply<T> = oneshot::Sender<T>;

/// How long a node waits for AutoNAT before it reserves a relay anyway.
/// AutoNAT v2 only tests candidate addresses; behind a NAT that rewrites TCP
/// ports it may never get one to test, and the node would stay unreachable.
const RELAY_FALLBACK: std::time::Duration = std::time::Duration::from_secs(10);
/// A provider lookup in progress: where the answer goes and what was found so far.
type ProviderQuery = (Reply<Result<Vec<PeerId>>>, HashSet<PeerId>);

/// What a [`Net`](crate::Net) handle asks of the event loop.
pub(crate) enum Command {
    Status {
        reply: Reply<NetStatus>,
    },
    Peers {
        reply: Reply<Vec<PeerInfo>>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<Result<PeerId>>,
    },
    Provide {
        function: FunctionId,
        reply: Option<Reply<Result<()>>>,
    },
    StopProviding {
        function: FunctionId,
    },
    GetProviders {
        function: FunctionId,
        reply: Reply<Result<Vec<PeerId>>>,
    },
    PutName {
        record: NameRecord,
        reply: Reply<Result<()>>,
    },
    GetName {
        name: String,
        reply: Reply<Result<Option<NameRecord>>>,
    },
    Announce {
        announcement: Announcement,
    },
    AddAddresses {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    },
    Offence {
        peer: PeerId,
        offence: Offence,
    },
}

/// What identify told us about a peer.
#[derive(Default)]
struct Known {
    addrs: Vec<Multiaddr>,
    agent: String,
}

/// The task that owns the swarm. [`start`](crate::start) builds it; the
/// caller spawns [`EventLoop::run`] on a task it owns and awaits it after
/// dropping its [`Net`](crate::Net) handles.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    peers: PeerStore,
    supernode: bool,
    nat: NatStatus,
    known: HashMap<PeerId, Known>,
    /// Open connections per peer: (direct, relayed).
    connections: HashMap<PeerId, (usize, usize)>,
    /// The relayed connections per peer, closed once a direct one opens.
    relayed: HashMap<PeerId, Vec<libp2p::swarm::ConnectionId>>,
    /// Supernodes that offer a relay, with an address to reach them.
    relays: HashMap<PeerId, Multiaddr>,
    /// The last ping round trip to each connected peer.
    rtt: HashMap<PeerId, std::time::Duration>,
    /// The relay we listen through (reservation asked or held).
    reservation: Option<PeerId>,
    bootstrapped: bool,
    /// Peers found by mDNS and not expired: dialed on each tick while
    /// unconnected.
    lan: HashSet<PeerId>,
    /// Seconds ticked since start.
    ticks: u64,
    /// When the loop started: a node still unconfirmed after
    /// [`RELAY_FALLBACK`] looks for a relay even if AutoNAT has not spoken.
    started: std::time::Instant,
    pending_dial: HashMap<PeerId, Vec<Reply<Result<PeerId>>>>,
    pending_provide: HashMap<QueryId, Reply<Result<()>>>,
    pending_providers: HashMap<QueryId, ProviderQuery>,
    pending_put: HashMap<QueryId, Reply<Result<()>>>,
    pending_get: HashMap<QueryId, Reply<Result<Option<NameRecord>>>>,
    topic: gossipsub::IdentTopic,
    conduct: Conduct,
    conduct_config: ConductConfig,
    misbehave: Misbehaviour,
    screen: Screen,
    /// libp2p's own metrics (connections, identify, kad, ping, relay,
    /// dcutr, gossipsub), once [`EventLoop::measure`] gave a registry.
    metrics: Option<libp2p::metrics::Metrics>,
}

impl EventLoop {
    pub(crate) fn new(
        key: Keypair,
        config: &NetConfig,
        peers: PeerStore,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
        mut registry: Option<&mut prometheus_client::registry::Registry>,
    ) -> Result<Self> {
        let local = key.public().to_peer_id();
        let mut swarm = behaviour::build(key, config, registry.as_deref_mut())?;
        let metrics = registry.map(libp2p::metrics::Metrics::new);
        for addr in &config.listen {
            swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        }
        let topic = gossipsub::IdentTopic::new(GOSSIP_TOPIC);
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| Error::Start(e.to_string()))?;
        let mut dialed = HashSet::new();
        for addr in &config.bootstrap {
            match peer_of(addr) {
                Some(peer) if peer != local => {
                    dialed.insert(peer);
                    swarm.add_peer_address(peer, addr.clone());
                    if let Err(e) = swarm.dial(addr.clone()) {
                        warn!(%addr, "cannot dial bootstrap peer: {e}");
                    }
                }
                Some(_) => {}
                None => {
                    return Err(Error::Dial {
                        addr: addr.to_string(),
                        reason: "a bootstrap address must end with /p2p/<peer id>".into(),
                    });
                }
            }
        }
        for (peer, addrs) in peers.all() {
            if peer == local || dialed.contains(&peer) {
                continue;
            }
            for addr in &addrs {
                swarm.add_peer_address(peer, addr.clone());
            }
            if let Err(e) = swarm.dial(peer) {
                debug!(%peer, "cannot dial known peer: {e}");
            }
        }
        Ok(Self {
            swarm,
            commands,
            events,
            peers,
            supernode: config.supernode,
            nat: if config.supernode {
                NatStatus::Public
            } else {
                NatStatus::Unknown
            },
            known: HashMap::new(),
            connections: HashMap::new(),
            relayed: HashMap::new(),
            relays: HashMap::new(),
            rtt: HashMap::new(),
            reservation: None,
            bootstrapped: false,
            lan: HashSet::new(),
            ticks: 0,
            started: std::time::Instant::now(),
            pending_dial: HashMap::new(),
            pending_provide: HashMap::new(),
            pending_providers: HashMap::new(),
            pending_put: HashMap::new(),
            pending_get: HashMap::new(),
            topic,
            conduct: Conduct::new(config.conduct),
            conduct_config: config.conduct,
            misbehave: config.misbehave,
            screen: config.screen.clone(),
            metrics,
        })
    }

    /// Opens and accepts the request streams ([`crate::streams`]).
    pub(crate) fn stream_control(&self) -> libp2p_stream::Control {
        self.swarm.behaviour().stream.new_control()
    }

    /// Drives the swarm; returns when every [`Net`](crate::Net) handle is
    /// dropped (the swarm, its connections and the peer store go with it).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm(event),
                _ = tick.tick() => self.on_tick(),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
            }
        }
    }

    pub(super) fn is_public(&self) -> bool {
        self.swarm.external_addresses().any(|a| !is_relayed(a))
    }

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(m) = &self.metrics {
            use libp2p::metrics::Recorder as _;
            m.record(&event);
            if let SwarmEvent::Behaviour(b) = &event {
                match b {
                    BehaviourEvent::Identify(e) => m.record(e),
                    BehaviourEvent::Kad(e) => m.record(e),
                    BehaviourEvent::Ping(e) => m.record(e),
                    BehaviourEvent::Relay(e) => m.record(e),
                    BehaviourEvent::Dcutr(e) => m.record(e),
                    BehaviourEvent::Gossipsub(e) => m.record(e),
                    _ => {}
                }
            }
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if is_relayed(&address) {
                    // Our relayed address is how others reach us: advertise it.
                    self.swarm.add_external_address(address);
                } else if self.supernode && !is_unspecified(&address) {
                    self.swarm.add_external_address(address);
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "external address confirmed");
                if !is_relayed(&address) {
                    self.nat = NatStatus::Public;
                    // Reachable: serve the DHT (also after a relay fallback),
                    // and look for peers now that they can add us.
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .set_mode(Some(kad::Mode::Server));
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                self.republish();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                let relayed = endpoint.is_relayed();
                let entry = self.connections.entry(peer_id).or_default();
                if relayed {
                    entry.1 += 1;
                    self.relayed.entry(peer_id).or_default().push(connection_id);
                    if entry.0 > 0 {
                        // A direct connection exists already: keep using it.
                        self.swarm.close_connection(connection_id);
                    }
                } else {
                    entry.0 += 1;
                    // Requests spread over every open connection, and a
                    // circuit is limited (120 s, 128 KiB): once a direct
                    // connection exists (DCUtR or a dial), drop the relayed ones.
                    for id in self.relayed.remove(&peer_id).unwrap_or_default() {
                        self.swarm.close_connection(id);
                    }
                }
                debug!(peer = %peer_id, relayed, addr = %endpoint.get_remote_address(), "connected");
                if let ConnectedPoint::Dialer { .. } = endpoint
                    && let Some(replies) = self.pending_dial.remove(&peer_id)
                {
                    for reply in replies {
                        let _ = reply.send(Ok(peer_id));
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                if let Some(ids) = self.relayed.get_mut(&peer_id) {
                    ids.retain(|id| *id != connection_id);
                }
                if let Some(entry) = self.connections.get_mut(&peer_id) {
                    if endpoint.is_relayed() {
                        entry.1 = entry.1.saturating_sub(1);
                    } else {
                        entry.0 = entry.0.saturating_sub(1);
                    }
                    if *entry == (0, 0) {
                        self.connections.remove(&peer_id);
                        self.rtt.remove(&peer_id);
                    }
                }
                if self.reservation == Some(peer_id) && !self.connections.contains_key(&peer_id) {
                    self.reservation = None;
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                debug!(%peer, "dial failed: {error}");
                if let Some(replies) = self.pending_dial.remove(&peer) {
                    for reply in replies {
                        let _ = reply.send(Err(Error::Dial {
                            addr: peer.to_string(),
                            reason: error.to_string(),
                        }));
                    }
                }
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                if addresses.iter().any(is_relayed) || reason.is_err() {
                    info!(?addresses, ?reason, "listener closed");
                }
                if addresses.iter().any(is_relayed) {
                    self.reservation = None;
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let listen: Vec<Multiaddr> = info
                    .listen_addrs
                    .iter()
                    .filter(|a| !is_unspecified(a))
                    .cloned()
                    .collect();
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in listen.iter().filter(|a| !is_relayed(a)) {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, addr.clone());
                    }
                    if !self.bootstrapped {
                        self.bootstrapped = self.swarm.behaviour_mut().kad.bootstrap().is_ok();
                    }
                }
                if info.protocols.contains(&RELAY_HOP)
                    && let Some(addr) = listen.iter().find(|a| !is_relayed(a))
                {
                    self.relays.insert(peer_id, addr.clone());
                    self.maybe_reserve();
                }
                if let Err(e) = self.peers.record(&peer_id, &listen) {
                    warn!("cannot record peer {peer_id}: {e}");
                }
                self.known.insert(
                    peer_id,
                    Known {
                        addrs: listen,
                        agent: info.agent_version,
                    },
                );
            }
            BehaviourEvent::Kad(event) => self.on_kad(event),
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let local = *self.swarm.local_peer_id();
                for (peer, addr) in found {
                    debug!(%peer, %addr, "mDNS discovered");
                    self.swarm.add_peer_address(peer, addr);
                    self.lan.insert(peer);
                    // Both sides discover each other in the same instant;
                    // were both to dial, their TCP connects could meet as
                    // one simultaneous open and fail the Noise handshake
                    // on both. The smaller id dials now, the other on the
                    // next tick if still unconnected (see `redial_lan`).
                    if local < peer && !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(peer);
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(gone)) => {
                for (peer, _) in gone {
                    self.lan.remove(&peer);
                }
            }
            BehaviourEvent::AutonatClient(autonat::v2::client::Event {
                tested_addr,
                server,
                result,
                ..
            }) => match result {
                Ok(()) => {
                    info!(%tested_addr, %server, "AutoNAT: reachable");
                    self.nat = NatStatus::Public;
                }
                Err(e) => {
                    info!(%tested_addr, %server, "AutoNAT: not reachable ({e})");
                    if !self.is_public() {
                        self.nat = NatStatus::Private;
                        self.maybe_reserve();
                    }
                }
            },
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                ..
            }) => info!(relay = %relay_peer_id, "relay reservation accepted"),
            BehaviourEvent::Relay(event) => debug!(?event, "relay"),
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                self.rtt.insert(peer, rtt);
            }
            BehaviourEvent::Dcutr(event) => match event.result {
                Ok(_) => info!(peer = %event.remote_peer_id, "hole punched: direct connection"),
                Err(e) => info!(peer = %event.remote_peer_id, "hole punching failed: {e}"),
            },
            _ => {}
        }
    }
}

/// The peer id an address ends with, if any.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
