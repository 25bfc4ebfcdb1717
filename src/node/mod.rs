//! `orb node`: one Orb node. This module assembles the layers and owns
//! their lifecycle:
//!
//! - the network (`orb-net`): swarm, DHT, gossip, relay, on a tokio runtime;
//! - the routing dataflow (`orb-engine`): function → providers, fed by
//!   announcements and DHT answers, on its own timely worker thread;
//! - hosting ([`host`]): the module store, the executor pool, answering
//!   peers' requests;
//! - load and scaling ([`scale`]): a load report every second on gossip;
//!   hosting replicas of busy functions, retiring idle ones;
//! - invoking ([`invoke`]): resolve a name, schedule R replicas, reroute
//!   around busy or failed providers, take the majority, settle the
//!   receipts;
//! - the HTTP API ([`api`]): the control API of the CLI and the public
//!   function endpoint `POST /fn/{name-or-id}`.
//!
//! Shutdown: Ctrl-C or SIGTERM stops the HTTP server, the node flushes its
//! sled database and returns; dropping the handles stops the event loop and
//! the routing dataflow.

mod api;
mod host;
mod invoke;
mod ledger;
mod scale;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use orb_engine::{Provider, Routing, start_routing};
use orb_functions::{Executor, ModuleStore, Runtime, RuntimeConfig};
use orb_net::{Multiaddr, Net, NetConfig, NetEvent, PeerStore, Response};

use crate::exit::CliError;

pub(crate) use host::Host;

/// `orb node` flags.
#[derive(Args, Debug)]
pub(crate) struct NodeArgs {
    /// Multiaddr to listen on (repeatable).
    #[arg(long, value_name = "MULTIADDR", default_values_t = default_listen())]
    listen: Vec<Multiaddr>,
    /// Peer to join through, `/ip4/…/tcp/…/p2p/<peer id>` (repeatable).
    /// Not needed after the first start: known peers are kept in the data dir.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// Address of the HTTP API (control API and `POST /fn/{name}`).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:7420")]
    api: SocketAddr,
    /// Treat the listen addresses as publicly reachable at once: serve the
    /// DHT and relay others without waiting for AutoNAT.
    #[arg(long)]
    supernode: bool,
    /// Find peers on the local network by mDNS.
    #[arg(long)]
    mdns: bool,
    /// Threads that run function calls (default: the number of cores).
    #[arg(long, value_name = "N")]
    executor_threads: Option<usize>,
    /// Calls that may wait for an executor thread before peers get "busy".
    #[arg(long, value_name = "N", default_value_t = 256)]
    executor_queue: usize,
    /// Join the reward ledger described by this genesis file (JSON, from
    /// `orb ledger genesis`). Not needed after the first start: the chain
    /// in DATA_DIR/ledger remembers it. Without a ledger, calls are free
    /// and earn nothing.
    #[arg(long, value_name = "FILE")]
    genesis: Option<PathBuf>,
    /// Least time between a committed block and this node's next proposal.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    block_interval_ms: u64,
    /// Executors each call entering this node runs on, unless the call
    /// asks otherwise (`?replicas=N`). A strict majority of equal results
    /// is the answer; executors that disagree are paid nothing.
    #[arg(long, value_name = "R", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    replicas: u32,
    /// Fraction of single-replica calls re-executed by a second provider
    /// after answering (sampled verification); a mismatch brings in a third
    /// and the executor outvoted is paid nothing.
    #[arg(long, value_name = "F", default_value_t = 0.05, value_parser = fraction)]
    verify_fraction: f64,
    /// Corrupt every output this node computes (and sign it so): a
    /// Byzantine executor, for tests and the demo.
    #[arg(long)]
    byzantine: bool,
    /// Auto-scaling: host a replica of a function whose hosts report
    /// being this busy on average (a fraction of their executor time),
    /// when this node has spare capacity.
    #[arg(long, value_name = "F", default_value_t = 0.7, value_parser = fraction)]
    scale_up_at: f64,
    /// Retire a replica auto-scaling took on after this long without calls.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    scale_idle_secs: u64,
    /// How long a provider that answered "busy" is left out of this
    /// node's scheduling.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    busy_window_ms: u64,
    /// Never host functions on this node's own initiative.
    #[arg(long)]
    no_autoscale: bool,
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("`{s}` is not a fraction between 0 and 1")),
    }
}

fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

pub(crate) const AFTER_HELP: &str = "\
The node prints its peer id, its listen addresses and the API address on
start, then serves until Ctrl-C. Its identity (identity.key), known peers,
hosted functions and names live in --data-dir, so a restart keeps the same
peer id and rejoins without --bootstrap.

Example: a supernode and a second node joining through it
  orb node --data-dir /tmp/a --supernode --listen /ip4/127.0.0.1/tcp/4001 --api 127.0.0.1:7420
  orb node --data-dir /tmp/b --api 127.0.0.1:7421 \\
      --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/<peer id printed by the first>";

/// Everything a node's tasks share.
pub(crate) struct Node {
    pub(crate) net: Net,
    pub(crate) routing: Routing,
    pub(crate) host: Host,
    pub(crate) names: invoke::NameCache,
    pub(crate) peer_id: String,
    pub(crate) ledger: Option<Arc<ledger::Ledger>>,
    /// Default executors per call.
    pub(crate) replicas: usize,
    /// Fraction of single-replica calls verified by a second executor.
    pub(crate) verify_fraction: f64,
    /// How long a busy provider is skipped.
    pub(crate) busy_window_ms: u64,
    /// Executors this node caught disagreeing with a majority.
    pub(crate) disputes: invoke::Disputes,
    /// Others' load reports, for auto-scaling.
    pub(crate) scaler: scale::Scaler,
}

pub(crate) fn run(args: NodeArgs, data_dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, data_dir.to_path_buf()))
}

async fn serve(args: NodeArgs, data_dir: PathBuf) -> Result<(), CliError> {
    let key = orb_net::identity::load_or_create(&data_dir.join("identity.key"))?;
    let db = sled::open(data_dir.join("node.db"))
        .with_context(|| format!("cannot open {}", data_dir.join("node.db").display()))?;
    let peers = PeerStore::open(&db)?;
    let config = NetConfig {
        listen: args.listen.clone(),
        bootstrap: args.bootstrap.clone(),
        supernode: args.supernode,
        mdns: args.mdns,
        ..NetConfig::default()
    };
    let secret = orb_net::identity::ed25519_secret(&key);
    let (net, mut events, event_loop) =
        orb_net::start(key, &config, peers).map_err(CliError::usage)?;
    tokio::spawn(event_loop.run());
    let peer_id = net.peer_id().to_string();
    let consensus = orb_ledger::consensus::Config {
        block_interval: Duration::from_millis(args.block_interval_ms),
        ..Default::default()
    };
    let ledger = ledger::Ledger::start(
        &data_dir,
        args.genesis.as_deref(),
        secret,
        net.clone(),
        consensus,
    )?;
    let (routing, routing_thread) = start_routing(Some(net.clone()), peer_id.clone())?;

    let threads = args
        .executor_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let executor = Executor::new(runtime.clone(), threads, args.executor_queue)?;
    let store = ModuleStore::open(data_dir.join("functions"))?;
    let host = Host::new(
        runtime,
        executor,
        store,
        &db,
        threads as u32,
        args.byzantine,
    )?;
    if args.byzantine {
        tracing::warn!("--byzantine: this node corrupts every output it computes");
    }
    let node = Arc::new(Node {
        net: net.clone(),
        routing,
        host,
        names: invoke::NameCache::default(),
        peer_id: peer_id.clone(),
        ledger,
        replicas: args.replicas as usize,
        verify_fraction: args.verify_fraction,
        busy_window_ms: args.busy_window_ms,
        disputes: invoke::Disputes::default(),
        scaler: scale::Scaler::default(),
    });

    let listener = tokio::net::TcpListener::bind(args.api)
        .await
        .with_context(|| format!("cannot serve the API on {}", args.api))
        .map_err(CliError::usage)?;
    let api_addr = listener.local_addr().context("API address")?;

    outln!("peer id: {peer_id}");
    let status = net
        .wait_for(Duration::from_secs(5), |s| !s.listen.is_empty())
        .await?;
    for addr in &status.listen {
        outln!("listening: {addr}/p2p/{peer_id}");
    }
    outln!("api: http://{api_addr}");

    // Functions hosted before a restart are hosted again.
    node.host.restore(&node).await;

    let events_node = node.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Request {
                    peer,
                    request,
                    channel,
                } => {
                    let node = events_node.clone();
                    tokio::spawn(async move {
                        if request.is_ledger() {
                            match &node.ledger {
                                Some(l) => l.request(&node.net, peer, request, channel).await,
                                None => {
                                    let no = Response::Refused("this node keeps no ledger".into());
                                    let _ = node.net.respond(channel, no).await;
                                }
                            }
                            return;
                        }
                        let response = node.host.answer(&node, peer, request).await;
                        let _ = node.net.respond(channel, response).await;
                    });
                }
                NetEvent::Announcement { peer, announcement } => {
                    host::learn(&events_node, peer, announcement).await;
                }
            }
        }
    });
    let republish_node = node.clone();
    tokio::spawn(async move { host::republish_forever(republish_node).await });
    let scale = scale::ScaleConfig {
        up_at_permille: (!args.no_autoscale).then_some((args.scale_up_at * 1000.0) as u32),
        idle: Duration::from_secs(args.scale_idle_secs),
    };
    tokio::spawn(scale::run_forever(node.clone(), scale));

    let app = api::router(node.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the API server failed")?;

    tracing::info!("shutting down");
    db.flush().context("cannot flush the node database")?;
    drop(node);
    drop(net);
    // The routing dataflow ends when its last handle is gone; the spawned
    // tasks holding handles end with the runtime.
    drop(routing_thread);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The routing row a node announces for itself.
pub(crate) fn own_row(node: &Node) -> Provider {
    Provider {
        peer: node.peer_id.clone(),
        load: node.host.load(),
        capacity: node.host.capacity(),
        cached: true,
        busy_until_ms: 0,
    }
}
