//! `orb node`: the command line of the node library ([`orb::Node`]). Its
//! flags map onto [`NodeConfig`]; it starts the node, prints where it
//! listens, serves until Ctrl-C or SIGTERM, then shuts the node down (calls
//! in flight finish, the ledger and the database are flushed) and exits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use orb::{Multiaddr, Node, NodeConfig};

use crate::exit::CliError;

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
    /// Calls of one function that run at once, and the capacity this node
    /// announces (default: the number of cores).
    #[arg(long, value_name = "N")]
    executor_threads: Option<usize>,
    /// Threads that run function calls, all functions together (default:
    /// 4 × --executor-threads). Functions take turns for free threads, so
    /// one function's long calls cannot hold every thread.
    #[arg(long, value_name = "N")]
    executor_pool: Option<usize>,
    /// Calls that may run longer than 10 ms at once (default: the cores
    /// less one, at least 1); the others wait, paused, for their turn, so
    /// a core stays free for short calls beside calls that loop.
    #[arg(long, value_name = "N")]
    long_calls: Option<usize>,
    /// Calls that may wait for an executor thread before peers get "busy";
    /// one function may fill a quarter of it.
    #[arg(long, value_name = "N", default_value_t = 256)]
    executor_queue: usize,
    /// Fuel one peer's calls may burn here per second, on average (the
    /// default is two calls at the default fuel limit); past it the peer's
    /// calls are answered "busy" and go to other providers until its debt
    /// is repaid. 0: no budget. Calls entering through this node's own
    /// gateway are not counted.
    #[arg(long, value_name = "FUEL", default_value_t = 4_000_000_000)]
    fuel_per_invoker: u64,
    /// Largest module this node stores (a deploy through its API, or a
    /// peer asking it to host one); e.g. 8MiB, 500kB, 1000000. The API and
    /// the network carry at most 16MiB.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = size)]
    max_module_bytes: u64,
    /// Disk one publisher may fill here with modules and their compiled
    /// code (the publisher of a deploy is its name record's key; of a
    /// peer's request to host, that peer); past it the next module is
    /// refused.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = size)]
    publisher_quota_bytes: u64,
    /// Disk all stored modules and their compiled code may fill here;
    /// past it new modules are refused (auto-scaling included).
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = size)]
    store_quota_bytes: u64,
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
    /// Misbehave on purpose, for tests and the demo: wrong-output (the
    /// default of a bare --byzantine: corrupt every output and sign it so),
    /// wrong-receipt, silent, slow, flood-gossip, malformed-gossip,
    /// bad-frames, equivocate, unknown-votes, forged-claims; several
    /// separated by commas. Honest nodes outvote, exclude, reroute around
    /// and ban such a node.
    #[arg(long, value_name = "MODES", value_enum, num_args = 0..=1, value_delimiter = ',',
          default_missing_value = "wrong-output")]
    byzantine: Vec<orb::ByzantineMode>,
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
    /// Move the agents off one of their hosts this node has not been
    /// connected to for this long, to another node, as `orb agent move`
    /// does (the first connected host in the module's list does it);
    /// 0: only by hand.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    agent_host_timeout_secs: u64,
    /// How long an agent's sequencer waits for its last hosts' votes once
    /// a majority agrees; a host slower than this is neither paid nor named
    /// outvoted for that step.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    agent_vote_grace_ms: u64,
    /// Messages one agent may have waiting on this node for their turn;
    /// past this a message is answered busy (HTTP 503; `orb agent send`
    /// sends it again a moment later) rather than queued without bound.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    agent_queue: u64,
    /// Calls `POST /fn/{name}` runs at once; past this a call is answered
    /// 503 with Retry-After at once (load shedding) instead of waiting.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_calls: u64,
    /// An API client must send a request's headers within this long, or
    /// its connection is closed.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: u64,
    /// API connections one client address may hold at once; more are
    /// closed as they arrive.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    max_client_connections: u64,
    /// Never host functions on this node's own initiative.
    #[arg(long)]
    no_autoscale: bool,
    /// The token deploys, audits and moves must carry (`Authorization:
    /// Bearer TOKEN`) when --api is beyond loopback; at least 16 visible
    /// ASCII characters. Default: one generated on first start, printed
    /// then and kept in DATA_DIR/api.token (mode 0600).
    #[arg(long, env = "ORB_API_TOKEN", value_name = "TOKEN", hide_env_values = true, value_parser = api_token)]
    api_token: Option<String>,
}

fn api_token(s: &str) -> Result<String, String> {
    orb::check_api_token(s).map(|()| s.to_owned())
}

/// A size in bytes: a number, with or without a unit (`8MiB`, `500 kB`).
fn size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{s}` is not a size such as 8MiB or 1000000: {e}"))
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

impl NodeArgs {
    /// The node's configuration, its state in `data_dir`.
    fn config(self, data_dir: &Path) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.to_path_buf(),
            listen: self.listen,
            bootstrap: self.bootstrap,
            api: self.api,
            supernode: self.supernode,
            mdns: self.mdns,
            executor_threads: self.executor_threads,
            executor_pool: self.executor_pool,
            long_calls: self.long_calls,
            executor_queue: self.executor_queue,
            fuel_per_invoker: self.fuel_per_invoker,
            store_limits: orb::StoreLimits {
                max_module: self.max_module_bytes,
                per_publisher: self.publisher_quota_bytes,
                total: self.store_quota_bytes,
            },
            genesis: self.genesis,
            block_interval: Duration::from_millis(self.block_interval_ms),
            replicas: self.replicas,
            verify_fraction: self.verify_fraction,
            byzantine: orb::Byzantine::new(self.byzantine),
            autoscale: !self.no_autoscale,
            scale_up_at: self.scale_up_at,
            scale_idle: Duration::from_secs(self.scale_idle_secs),
            busy_window: Duration::from_millis(self.busy_window_ms),
            agent_host_timeout: (self.agent_host_timeout_secs > 0)
                .then(|| Duration::from_secs(self.agent_host_timeout_secs)),
            agent_vote_grace: Duration::from_millis(self.agent_vote_grace_ms),
            agent_queue: usize::try_from(self.agent_queue).unwrap_or(usize::MAX),
            max_calls: self.max_calls as usize,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            max_client_connections: self.max_client_connections as usize,
            api_token: self.api_token,
            ..NodeConfig::new(data_dir)
        }
    }
}

pub(crate) fn run(args: NodeArgs, data_dir: &Path) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args.config(data_dir)))
}

async fn serve(config: NodeConfig) -> Result<(), CliError> {
    let chosen_token = config.api_token.is_some();
    let token_file = orb::api_token_file(&config.data_dir);
    let node = Node::start(config).await?;
    let peer_id = node.peer_id();
    outln!("peer id: {peer_id}");
    for addr in node.listen_addrs() {
        outln!("listening: {addr}");
    }
    if let Some(token) = node.api_token().filter(|_| !chosen_token) {
        // Beyond loopback a deploy, an audit or a move needs it; the
        // operator who did not choose one learns it here.
        outln!("api token: {token} (kept in {})", token_file.display());
    }
    outln!("api: http://{}", node.api_addr());
    shutdown_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await?;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeArgs,
    }

    #[test]
    fn no_flags_give_the_library_defaults() {
        let dir = Path::new("/tmp/orb-node");
        let args = Cli::try_parse_from(["orb"]).expect("no flags").node;
        assert_eq!(args.config(dir), NodeConfig::new(dir));
    }

    #[test]
    fn flags_map_onto_the_config() {
        let cli = Cli::try_parse_from([
            "orb",
            "--api",
            "127.0.0.1:0",
            "--replicas",
            "3",
            "--no-autoscale",
            "--block-interval-ms",
            "40",
            "--busy-window-ms",
            "7",
        ])
        .expect("flags");
        let config = cli.node.config(Path::new("/d"));
        assert_eq!(config.api, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
        assert_eq!(config.replicas, 3);
        assert!(!config.autoscale);
        assert_eq!(config.block_interval, Duration::from_millis(40));
        assert_eq!(config.busy_window, Duration::from_millis(7));
    }
}
