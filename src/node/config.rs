//! [`NodeConfig`]: everything a node is started with. `orb node`'s flags
//! map onto its fields one to one (the binary's `serve` module); a library
//! user starts from [`NodeConfig::new`] and changes what it needs.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use orb_net::Multiaddr;

use super::Error;

/// How to start a node ([`Node::start`](super::Node::start)). The defaults
/// ([`NodeConfig::new`]) are those of `orb node` without flags.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// Where the node keeps its state: its identity (`identity.key`), known
    /// peers, hosted functions and names (`node.db`), the module store
    /// (`functions/`) and the reward chain (`ledger/`). Created if missing;
    /// one node at a time may use it (sled locks it until shutdown).
    pub data_dir: PathBuf,
    /// Multiaddrs to listen on. Default: TCP and QUIC on every interface,
    /// ports chosen by the system.
    pub listen: Vec<Multiaddr>,
    /// Peers to join through, `/ip4/…/tcp/…/p2p/<peer id>`. Not needed after
    /// the first start: known peers are kept in the data dir.
    pub bootstrap: Vec<Multiaddr>,
    /// Address of the HTTP API (control API and `POST /fn/{name}`); port 0
    /// picks a free one ([`NodeHandle::api_addr`](super::NodeHandle::api_addr)
    /// says which). Default: `127.0.0.1:7420`.
    pub api: SocketAddr,
    /// Treat the listen addresses as publicly reachable at once: serve the
    /// DHT and relay others without waiting for AutoNAT.
    pub supernode: bool,
    /// Find peers on the local network by mDNS.
    pub mdns: bool,
    /// Calls of one function that run at once, and the capacity this node
    /// announces; `None`: the number of cores.
    pub executor_threads: Option<usize>,
    /// Threads that run function calls, all functions together; `None`:
    /// four times `executor_threads`, so a few functions running long calls
    /// at their share leave threads free for the others.
    pub executor_pool: Option<usize>,
    /// Calls that may run longer than 10 ms at once; the others wait,
    /// paused, for a slot, so a core stays free for short calls. `None`:
    /// one less than the cores (at least one).
    pub long_calls: Option<usize>,
    /// Fuel one peer's calls may burn on this node per second (on average:
    /// a call may overdraw, and the peer's next calls are answered "busy"
    /// until the debt is repaid); 0: no budget. Default: 4,000,000,000
    /// (two calls at the default fuel limit per second).
    pub fuel_per_invoker: u64,
    /// What this node stores for others at most: each module, per
    /// publisher, in all (modules and their compiled code).
    pub store_limits: super::StoreLimits,
    /// Calls that may wait for an executor thread before peers get "busy";
    /// one function may fill a quarter of it. Default: 256.
    pub executor_queue: usize,
    /// Join the reward ledger described by this genesis file (JSON, from
    /// `orb ledger genesis`). Not needed after the first start: the chain
    /// in `data_dir/ledger` remembers it. Without a ledger, calls are free
    /// and earn nothing.
    pub genesis: Option<PathBuf>,
    /// Least time between a committed block and this node's next proposal.
    /// Default: 500 ms.
    pub block_interval: Duration,
    /// Executors each call entering this node runs on, unless the call asks
    /// otherwise; 1 to 16. A strict majority of equal results is the answer.
    /// Default: 1.
    pub replicas: u32,
    /// Fraction of single-replica calls re-executed by a second provider
    /// after answering (sampled verification), 0 to 1. Default: 0.05.
    pub verify_fraction: f64,
    /// Misbehave on purpose, in these ways (tests and the demo); none by
    /// default.
    pub byzantine: super::Byzantine,
    /// Host replicas of busy functions on this node's own initiative.
    /// Default: true.
    pub autoscale: bool,
    /// Auto-scaling takes a function on when its hosts report being this
    /// busy on average (a fraction of their executor time, 0 to 1).
    /// Default: 0.7.
    pub scale_up_at: f64,
    /// A replica auto-scaling took on retires after this long without
    /// calls. Default: 30 s.
    pub scale_idle: Duration,
    /// How long a provider that answered "busy" is left out of this node's
    /// scheduling. Default: 1 s.
    pub busy_window: Duration,
    /// Move the agents off a host of theirs this node has not been
    /// connected to for this long, to another node (what `orb agent move`
    /// does; the first connected host of the module's list does it);
    /// `None`: only by hand. Default: 10 minutes.
    pub agent_host_timeout: Option<Duration>,
    /// How long an agent's sequencer waits for its last hosts' votes once
    /// a majority agrees: a host slower than this is neither paid nor
    /// named outvoted for that step. Default: 100 ms.
    pub agent_vote_grace: Duration,
    /// Messages one agent may have waiting here for their turn; past this
    /// a message is answered "busy" (HTTP 503), nothing is queued without
    /// bound. Default: 256.
    pub agent_queue: usize,
    /// Peers' requests handled at once; beyond this a peer is answered
    /// "busy" and moves on to another provider. Default: 1024.
    pub max_inbound_requests: usize,
    /// Calls the HTTP gateway (`POST /fn/{name}`) runs at once; beyond
    /// this a call is answered 503 at once, with `Retry-After`, instead of
    /// waiting behind the others (load shedding). Default: 1024.
    pub max_calls: usize,
    /// An API client must send a request's headers within this long, or
    /// its connection is closed (a slow or stalled client does not hold a
    /// connection slot). Default: 10 s.
    pub header_timeout: Duration,
    /// API connections one client address may hold at once; more are
    /// closed as they arrive (one client cannot take every slot).
    /// Default: 256.
    pub max_client_connections: usize,
    /// The token the control API's mutating endpoints ask for when the API
    /// is bound beyond loopback (`Authorization: Bearer TOKEN`). `None`:
    /// the node generates one on first start and keeps it, readable by its
    /// owner only, in `DATA_DIR/api.token`. Default: `None`.
    pub api_token: Option<String>,
    /// How long [`NodeHandle::shutdown`](super::NodeHandle::shutdown) lets
    /// calls in flight finish before it aborts them. Default: 10 s.
    pub shutdown_grace: Duration,
}

impl NodeConfig {
    /// The defaults of `orb node`, with its state in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: default_listen(),
            bootstrap: Vec::new(),
            api: SocketAddr::from((Ipv4Addr::LOCALHOST, 7420)),
            supernode: false,
            mdns: false,
            executor_threads: None,
            executor_pool: None,
            long_calls: None,
            executor_queue: 256,
            fuel_per_invoker: 4_000_000_000,
            store_limits: super::StoreLimits::default(),
            genesis: None,
            block_interval: Duration::from_millis(500),
            replicas: 1,
            verify_fraction: 0.05,
            byzantine: super::Byzantine::default(),
            autoscale: true,
            scale_up_at: 0.7,
            scale_idle: Duration::from_secs(30),
            busy_window: Duration::from_millis(1000),
            agent_host_timeout: Some(Duration::from_secs(600)),
            agent_vote_grace: super::agents::VOTE_GRACE,
            agent_queue: super::agents::MAX_QUEUED,
            max_inbound_requests: 1024,
            max_calls: 1024,
            header_timeout: Duration::from_secs(10),
            max_client_connections: 256,
            api_token: None,
            shutdown_grace: Duration::from_secs(10),
        }
    }

    /// Refuses settings out of range (the CLI's parser checks them too).
    pub(crate) fn check(&self) -> Result<(), Error> {
        let fraction = |name: &str, f: f64| {
            if (0.0..=1.0).contains(&f) {
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "{name} must be a fraction between 0 and 1, not {f}"
                )))
            }
        };
        if !(1..=16).contains(&self.replicas) {
            return Err(Error::Config(format!(
                "replicas must be between 1 and 16, not {}",
                self.replicas
            )));
        }
        fraction("verify_fraction", self.verify_fraction)?;
        fraction("scale_up_at", self.scale_up_at)?;
        if self.header_timeout.is_zero() {
            return Err(Error::Config("header_timeout must be above zero".into()));
        }
        if self.max_client_connections == 0 {
            return Err(Error::Config(
                "max_client_connections must be at least 1".into(),
            ));
        }
        if let Some(token) = &self.api_token {
            super::token::check(token).map_err(Error::Config)?;
        }
        if self.max_calls == 0 {
            return Err(Error::Config("max_calls must be at least 1".into()));
        }
        if self.max_inbound_requests == 0 {
            return Err(Error::Config(
                "max_inbound_requests must be at least 1".into(),
            ));
        }
        if self.executor_threads == Some(0) {
            return Err(Error::Config("executor_threads must be at least 1".into()));
        }
        if self.long_calls == Some(0) {
            return Err(Error::Config("long_calls must be at least 1".into()));
        }
        if self.executor_pool == Some(0) {
            return Err(Error::Config("executor_pool must be at least 1".into()));
        }
        Ok(())
    }
}

/// TCP and QUIC on every interface, on ports the system picks.
fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_the_checks_and_bad_settings_do_not() {
        let config = NodeConfig::new("/tmp/x");
        assert_eq!(config.listen.len(), 2);
        config.check().expect("defaults are valid");
        for bad in [
            NodeConfig {
                replicas: 0,
                ..config.clone()
            },
            NodeConfig {
                replicas: 17,
                ..config.clone()
            },
            NodeConfig {
                verify_fraction: 1.5,
                ..config.clone()
            },
            NodeConfig {
                scale_up_at: -0.1,
                ..config.clone()
            },
            NodeConfig {
                max_inbound_requests: 0,
                ..config.clone()
            },
        ] {
            assert!(matches!(bad.check(), Err(Error::Config(_))), "{bad:?}");
        }
    }
}
