//! The composed libp2p behaviour of a node and the swarm that runs it.
//!
//! Every node carries the relay server: it serves only once the node has a
//! confirmed external address (libp2p's relay advertises its hop protocol
//! then), which is exactly when the node counts as a supernode. Kademlia
//! starts in automatic mode for the same reason: client until an address is
//! confirmed, server after.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::swarm::{NetworkBehaviour, behaviour::toggle::Toggle};
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, allow_block_list, autonat, dcutr, gossipsub, identify,
    mdns, noise, peer_store, ping, relay, tcp, yamux,
};

use crate::{Error, NetConfig, Result};

/// How often mDNS asks the LAN who is there.
const MDNS_QUERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The Kademlia protocol of the Orb DHT (separate from the public IPFS DHT).
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/orb/kad/1.0.0");
/// The relay hop protocol a supernode advertises.
pub(crate) const RELAY_HOP: StreamProtocol = StreamProtocol::new("/libp2p/circuit/relay/0.2.0/hop");
/// The gossipsub topic of announcements (providers, claims, receipts,
/// blocks).
pub(crate) const GOSSIP_TOPIC: &str = "orb/gossip/1";

/// All protocols of a node.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Banned peers ([`crate::Conduct`]): their connections are refused.
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    /// The request streams ([`crate::streams`]).
    pub(crate) stream: libp2p_stream::Behaviour,
    /// The addresses a dial by peer id uses (those we were told of, and
    /// those we connected on), kept when a dial fails: a peer that restarts
    /// on its address is dialed there again.
    pub(crate) addresses: peer_store::Behaviour<peer_store::memory_store::MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) relay: relay::Behaviour,
    pub(crate) dcutr: dcutr::Behaviour,
    pub(crate) autonat_client: autonat::v2::client::Behaviour,
    pub(crate) autonat_server: autonat::v2::server::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds the swarm: TCP and QUIC, Noise, yamux, relay transport; with
/// `registry`, the bytes each transport carries are counted there
/// (libp2p's bandwidth metrics).
pub(crate) fn build(
    key: Keypair,
    config: &NetConfig,
    registry: Option<&mut prometheus_client::registry::Registry>,
) -> Result<Swarm<Behaviour>> {
    let start = |e: &dyn std::fmt::Display| Error::Start(e.to_string());
    let config = config.clone();
    let builder = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| start(&e))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| start(&e))?;
    let idle = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(120));
    let swarm = match registry {
        Some(registry) => builder
            .with_bandwidth_metrics(registry)
            .with_behaviour(|key, relay_client| behaviour(key, relay_client, &config))
            .map_err(|e| start(&e))?
            .with_swarm_config(idle)
            .build(),
        None => builder
            .with_behaviour(|key, relay_client| behaviour(key, relay_client, &config))
            .map_err(|e| start(&e))?
            .with_swarm_config(idle)
            .build(),
    };
    Ok(swarm)
}

/// The node's behaviours.
fn behaviour(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    config: &NetConfig,
) -> Result<Behaviour, BoxError> {
    let peer_id = key.public().to_peer_id();
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_query_timeout(Duration::from_secs(20));
    // Announcements are checked before they are forwarded: one that
    // does not decode, or is over its author's rate, is rejected
    // (and costs its sender gossipsub score) instead of spreading.
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(500))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(4 << 20)
        .build()?;
    let mut gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )?;
    // Gossipsub's peer scores count what a peer forwards that fails
    // validation (P4). Not the delivery-rate penalties (P3, P3b: a
    // quiet network delivers little) nor one IP for many peers (P6:
    // a test network or a data centre is many nodes on one address).
    let mut score = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..gossipsub::PeerScoreParams::default()
    };
    score.topics.insert(
        gossipsub::IdentTopic::new(GOSSIP_TOPIC).hash(),
        gossipsub::TopicScoreParams {
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            invalid_message_deliveries_weight: -100.0,
            invalid_message_deliveries_decay: 0.5,
            ..gossipsub::TopicScoreParams::default()
        },
    );
    gossipsub.with_peer_score(score, gossipsub::PeerScoreThresholds::default())?;
    Ok(Behaviour {
        blocked: allow_block_list::Behaviour::default(),
        identify: identify::Behaviour::new(
            identify::Config::new("/orb/id/1.0.0".into(), key.public())
                .with_agent_version(format!("orb/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(10))),
        kad: kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config),
        stream: libp2p_stream::Behaviour::new(),
        addresses: peer_store::Behaviour::new(peer_store::memory_store::MemoryStore::new(
            peer_store::memory_store::Config::default().set_remove_addr_on_dial_error(false),
        )),
        gossipsub,
        relay_client,
        relay: relay::Behaviour::new(peer_id, relay::Config::default()),
        dcutr: dcutr::Behaviour::new(peer_id),
        autonat_client: autonat::v2::client::Behaviour::new(
            rand::make_rng::<rand::rngs::StdRng>(),
            autonat::v2::client::Config::default().with_probe_interval(config.autonat_interval),
        ),
        autonat_server: autonat::v2::server::Behaviour::default(),
        mdns: if config.mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config {
                    // The default (5 min) leaves a peer whose first
                    // query went out before the other side had
                    // joined the multicast group unfound for minutes.
                    query_interval: MDNS_QUERY_INTERVAL,
                    ..mdns::Config::default()
                },
                peer_id,
            )?)
            .into()
        } else {
            None.into()
        },
    })
}
