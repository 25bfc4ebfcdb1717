//! [`Node::start`]: from a [`NodeConfig`] to a running node.
//!
//! The order is chosen so that whatever can fail because of the caller
//! (settings, files, addresses) fails before anything runs: the data dir,
//! the identity, the database, the API's listener, the runtime, the
//! executor pool, the module store and the chain are opened first; then the
//! network, the routing and consensus dataflows and the node's tasks start.
//! A failure after that stops what started (the same path as
//! [`NodeHandle::shutdown`]) before it is returned.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use orb_engine::start_routing;
use orb_functions::{Executor, ModuleStore, Runtime, RuntimeConfig, Shares};
use orb_net::{Multiaddr, NetConfig, PeerStore, Request};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::handle::{NodeHandle, Stop};
use super::host::{self, Host, HostLimits};
use super::ledger::LedgerStart;
use super::tasks::Tasks;
use super::{Error, Node, NodeConfig, agents, http, inbound, invoke, names, scale, token};

/// How long the network may take to report its listen addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

impl Node {
    /// Starts a node: opens `config.data_dir`, joins the network, starts
    /// the routing and consensus dataflows, hosts again what it hosted
    /// before a restart, and serves the HTTP API and peers' requests. Call
    /// it inside a tokio runtime (multi-threaded: calls wait on the
    /// executor threads); the node's tasks run on that runtime until
    /// [`NodeHandle::shutdown`].
    pub async fn start(config: NodeConfig) -> Result<NodeHandle, Error> {
        config.check()?;
        raise_open_files_limit();
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| Error::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let key = orb_net::identity::load_or_create(&data_dir.join("identity.key"))?;
        let publisher = orb_net::identity::load_or_create(&data_dir.join("publisher.key"))?;
        let db_path = data_dir.join("node.db");
        let db = open_db(&db_path).await?;
        let peers = PeerStore::open(&db)?;
        let listener = tokio::net::TcpListener::bind(config.api)
            .await
            .map_err(|source| Error::Api {
                addr: config.api,
                source,
            })?;
        let api_addr = listener.local_addr().map_err(|source| Error::Api {
            addr: config.api,
            source,
        })?;

        let token = match &config.api_token {
            Some(chosen) => chosen.clone(),
            None => token::load_or_create(&data_dir).map_err(|source| Error::DataDir {
                path: token::path(&data_dir),
                source,
            })?,
        };
        let api_token = (!api_addr.ip().is_loopback()).then_some(token);
        if api_token.is_some() {
            info!(
                api = %api_addr,
                "the API is reachable beyond loopback: deploys, audits and moves need its token"
            );
        }
        let threads = config
            .executor_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let shares = Shares {
            threads: config.executor_pool.unwrap_or(threads * 4),
            per_function: threads,
            queue: config.executor_queue,
            queue_per_function: config.executor_queue.div_ceil(4),
        };
        let defaults = RuntimeConfig::default();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = Runtime::new(RuntimeConfig {
            // Every thread of the pool can hold a live instance.
            pool_instances: defaults.pool_instances.max(shares.threads as u32),
            long_call_slots: config
                .long_calls
                .unwrap_or_else(|| cores.saturating_sub(1).max(1)),
            ..defaults
        })?;
        let executor = Executor::with_shares(runtime.clone(), shares)?;
        let store = ModuleStore::open(data_dir.join("functions"))?;
        let host = Host::new(
            runtime,
            executor,
            store,
            &db,
            config.byzantine.clone(),
            HostLimits {
                capacity: threads as u32,
                fuel_per_invoker: config.fuel_per_invoker,
                store: config.store_limits,
            },
        )
        .map_err(|source| Error::Database {
            path: db_path.clone(),
            source,
        })?;
        let secret = orb_net::identity::ed25519_secret(&key);
        let ledger = LedgerStart::open(&data_dir, config.genesis.as_deref(), secret, &db)?;
        let agents = agents::Agents::new(
            agents::store::AgentStore::open(&db, &db_path).map_err(|source| Error::Database {
                path: db_path.clone(),
                source,
            })?,
            config.agent_vote_grace,
            config.agent_queue.max(1),
        );

        // From here on things run: a failure stops them before returning.
        let net_config = NetConfig {
            listen: config.listen.clone(),
            bootstrap: config.bootstrap.clone(),
            supernode: config.supernode,
            mdns: config.mdns,
            misbehave: config.byzantine.network(),
            screen: ledger.as_ref().map(LedgerStart::screen).unwrap_or_default(),
            // A module is fetched whole in one response: a node that takes
            // modules larger than the default answer size takes answers
            // that large too.
            max_response_bytes: NetConfig::default()
                .max_response_bytes
                .max(super::api::body_limit(config.store_limits.max_module)),
            ..NetConfig::default()
        };
        let mut metrics = super::metrics::Metrics::default();
        let (net, events, event_loop) =
            orb_net::start_measured(key, &net_config, peers, metrics.libp2p())
                .map_err(Error::Listen)?;
        let peer_id = net.peer_id();
        let tasks = Arc::new(Tasks::new(CancellationToken::new()));
        let mut stop = Stop {
            tasks: tasks.clone(),
            grace: config.shutdown_grace,
            net_task: tokio::spawn(event_loop.run()),
            threads: Vec::new(),
            db,
            db_path,
        };
        let routing = match start_routing(Some(net.clone()), peer_id) {
            Ok((routing, thread)) => {
                stop.threads.push(("routing", thread));
                routing
            }
            Err(e) => return Err(stop.failed(e.into(), (net, host, ledger)).await),
        };
        let consensus = orb_ledger::consensus::Config {
            block_interval: config.block_interval,
            ..Default::default()
        };
        let ledger = match ledger.map(|l| {
            l.start(
                net.clone(),
                consensus,
                &tasks,
                &config.byzantine,
                metrics.ledger(),
            )
        }) {
            None => None,
            Some(Ok((ledger, thread))) => {
                stop.threads.push(("consensus", thread));
                Some(ledger)
            }
            Some(Err(e)) => return Err(stop.failed(e, (net, host, routing)).await),
        };
        if config.byzantine.any() {
            warn!(modes = %config.byzantine, "--byzantine: this node misbehaves on purpose");
        }
        let node = Arc::new(Node {
            net: net.clone(),
            routing,
            host,
            names: names::NameCache::default(),
            agents,
            peer_id: peer_id.to_string(),
            ledger,
            tasks: tasks.clone(),
            replicas: config.replicas as usize,
            verify_fraction: config.verify_fraction,
            busy_window_ms: config.busy_window.as_millis() as u64,
            disputes: invoke::Disputes::default(),
            scaler: scale::Scaler::default(),
            calls: Arc::new(tokio::sync::Semaphore::new(config.max_calls)),
            max_calls: config.max_calls,
            api_token,
            metrics,
            publisher,
            console: Default::default(),
            ran: Default::default(),
        });
        let status = match net.wait_for(LISTEN_TIMEOUT, |s| !s.listen.is_empty()).await {
            Ok(status) => status,
            Err(e) => return Err(stop.failed(e.into(), node).await),
        };
        let listen: Vec<Multiaddr> = status
            .listen
            .iter()
            .filter_map(|a| format!("{a}/p2p/{peer_id}").parse().ok())
            .collect();

        // Functions hosted before a restart are hosted again.
        node.host.restore(&node).await;

        // A peer's call goes to the executor, and its Snowball query to
        // consensus, from where it is read; the rest of its requests come
        // through `inbound`.
        let direct = Arc::downgrade(&node);
        net.answer_directly(Arc::new(move |peer, request, reply| {
            match (direct.upgrade(), request) {
                (Some(node), Request::Invoke(invoke)) if !node.tasks.token().is_cancelled() => {
                    host::answer_invoke_now(&node, peer, invoke, reply);
                    None
                }
                // A Snowball query goes straight to consensus.
                (Some(node), Request::Query(query)) if node.ledger.is_some() => {
                    if let Some(ledger) = &node.ledger {
                        ledger.answer_query_now(peer, query, reply);
                    }
                    None
                }
                (_, request) => Some((request, reply)),
            }
        }));
        tasks.spawn(inbound::serve(
            node.clone(),
            events,
            config.max_inbound_requests,
        ));
        tasks.spawn_until_cancelled(host::republish_forever(node.clone()));
        tasks.spawn_until_cancelled(agents::deliver_forever(node.clone()));
        tasks.spawn_until_cancelled(agents::topics::follow_forever(node.clone()));
        if let Some(timeout) = config.agent_host_timeout {
            tasks.spawn_until_cancelled(agents::moves::watch_forever(node.clone(), timeout));
        }
        if node.host.is_slow() {
            let slow = node.clone();
            tasks.spawn_until_cancelled(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_millis(50));
                loop {
                    every.tick().await;
                    slow.host.send_late();
                }
            });
        }
        let scale = scale::ScaleConfig {
            up_at_permille: config
                .autoscale
                .then_some((config.scale_up_at * 1000.0) as u32),
            idle: config.scale_idle,
        };
        tasks.spawn(scale::run_until_cancelled(node.clone(), scale));
        tasks.spawn(http::serve(
            node.clone(),
            listener,
            http::Limits {
                header_timeout: config.header_timeout,
                per_client: config.max_client_connections,
            },
        ));
        Ok(NodeHandle::new(node, stop, api_addr, listen))
    }
}

/// Opens the node's database. A database this process closed a moment ago
/// (a node stopped and started again in one process) may still be locked by
/// sled's background threads: the lock is retried briefly, as the chain's
/// store does.
async fn open_db(path: &Path) -> Result<sled::Db, Error> {
    let mut tries = 0;
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && tries < 20 =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => {
                return other.map_err(|source| Error::Database {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// Raises the soft limit on open files to the hard one: every peer
/// connection, API connection, sled file and module is a descriptor, and
/// the common default soft limit of 1,024 is below what the API alone may
/// hold (`http::MAX_CONNECTIONS`). Said in the log either way.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(
                from = soft,
                to = hard,
                "open files limit raised to the hard limit"
            ),
            Err(e) => warn!(soft, hard, "cannot raise the open files limit: {e}"),
        },
        Ok((soft, _)) => tracing::info!(limit = soft, "open files limit"),
        Err(e) => warn!("cannot read the open files limit: {e}"),
    }
}
