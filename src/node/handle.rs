//! [`NodeHandle`]: what [`Node::start`](super::Node::start) hands back —
//! the node's addresses, calls into it, and [`NodeHandle::shutdown`], the
//! one way a node stops cleanly.
//!
//! Shutdown, in order:
//!
//! 1. cancel: the API stops accepting connections, the inbound task stops
//!    taking peers' requests, the background loops (re-announcing, load
//!    reports and scaling, the consensus ticker and actor) stop;
//! 2. drain: calls in flight (HTTP requests, peers' requests, sampled
//!    verifications) finish, until [`NodeConfig::shutdown_grace`]; those
//!    left are aborted. When this step ends, no task of the node runs;
//! 3. the dataflows: the node's state is dropped — its last handles to the
//!    routing and consensus dataflows, the executor pool (whose threads are
//!    joined), the module store. Each dataflow applies what was queued,
//!    completes, and its thread is joined. Committed blocks were durable
//!    already (every commit is flushed and fsynced); settlements not yet in
//!    a block are in memory only and are lost, as in any restart;
//! 4. the network: its event loop ends with the last `Net` handle and is
//!    awaited (aborted past [`NET_STOP`]);
//! 5. `node.db` is flushed and closed, releasing its lock: another node may
//!    start on the data dir.
//!
//! Dropping a handle without `shutdown` cancels the node's tasks, but
//! nothing waits for them, the threads or the network: the data dir may
//! stay locked for a moment.
//!
//! [`NodeConfig::shutdown_grace`]: super::NodeConfig::shutdown_grace

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orb_functions::FunctionId;
use orb_net::{Multiaddr, PeerId};
use tokio::time::Instant;
use tokio_util::sync::DropGuard;
use tracing::{debug, error, warn};

use super::host::{By, InstallError};
use super::invoke::{InvokeError, Invoked, invoke};
use super::tasks::Tasks;
use super::{Error, Node};

/// How long the network's event loop may take to end once the node let go
/// of it.
const NET_STOP: Duration = Duration::from_secs(5);

/// A running node. Stop it with [`NodeHandle::shutdown`].
pub struct NodeHandle {
    node: Arc<Node>,
    stop: Stop,
    api_addr: SocketAddr,
    listen: Vec<Multiaddr>,
    cancel_on_drop: DropGuard,
}

impl NodeHandle {
    pub(crate) fn new(
        node: Arc<Node>,
        stop: Stop,
        api_addr: SocketAddr,
        listen: Vec<Multiaddr>,
    ) -> Self {
        let cancel_on_drop = stop.tasks.token().clone().drop_guard();
        Self {
            node,
            stop,
            api_addr,
            listen,
            cancel_on_drop,
        }
    }

    /// The node's peer id (from `identity.key` in its data dir: the same
    /// across restarts).
    pub fn peer_id(&self) -> PeerId {
        self.node.net.peer_id()
    }

    /// Where the HTTP API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The token the API's mutating endpoints ask for: `Some` only when
    /// the API is bound beyond loopback ([`NodeConfig::api_token`], else
    /// the one generated in `DATA_DIR/api.token`).
    ///
    /// [`NodeConfig::api_token`]: super::NodeConfig::api_token
    pub fn api_token(&self) -> Option<&str> {
        self.node.api_token.as_deref()
    }

    /// The addresses the node listened on at start, each ending with
    /// `/p2p/<peer id>`: what another node bootstraps from.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen
    }

    /// Hosts `module` on this node, as a deployment does but without a
    /// name: stored, compiled, announced to peers and the DHT, hosted again
    /// after a restart. Returns its id (the blake3 hash of the bytes).
    pub async fn host(&self, module: &[u8]) -> Result<FunctionId, Error> {
        let me = self.node.net.peer_id();
        match self
            .node
            .host
            .install(&self.node, module, By::Publisher(&me))
            .await
        {
            Ok(id) => Ok(id),
            Err(InstallError::Function(e)) => Err(Error::Functions(e)),
            Err(e) => Err(Error::Refused(e.to_string())),
        }
    }

    /// Calls `target` (a name or a function id in hex) with `input`,
    /// anywhere on the network, on the node's default number of replicas,
    /// as `POST /fn/{target}` does.
    pub async fn invoke(&self, target: &str, input: Vec<u8>) -> Result<Invoked, InvokeError> {
        invoke(&self.node, target, input, None, None).await
    }

    /// Stops the node: cancels its tasks, lets calls in flight finish (until
    /// the grace period), stops and joins the dataflows and the network, and
    /// flushes and closes its database. When it returns Ok, nothing of the
    /// node runs and its data dir is free.
    pub async fn shutdown(self) -> Result<(), Error> {
        let NodeHandle {
            node,
            stop,
            cancel_on_drop,
            ..
        } = self;
        drop(cancel_on_drop.disarm());
        stop.drain().await;
        match Arc::into_inner(node) {
            Some(node) => stop.finish(node).await,
            None => {
                // Every task has ended, so nothing should hold the state;
                // joining the threads now could wait forever.
                stop.abandon().await;
                Err(Error::Shutdown(
                    "the node's state is still held: its dataflows and network \
                     stop when it is let go"
                        .into(),
                ))
            }
        }
    }
}

/// What stopping a node takes, gathered as it starts.
pub(crate) struct Stop {
    pub(crate) tasks: Arc<Tasks>,
    pub(crate) grace: Duration,
    pub(crate) net_task: tokio::task::JoinHandle<()>,
    /// The dataflow threads, by name.
    pub(crate) threads: Vec<(&'static str, std::thread::JoinHandle<()>)>,
    pub(crate) db: sled::Db,
    pub(crate) db_path: PathBuf,
}

impl Stop {
    /// Steps 1 and 2: cancel, and wait for the tasks until the grace
    /// period ends.
    async fn drain(&self) {
        self.tasks.cancel();
        let aborted = self.tasks.join(Instant::now() + self.grace).await;
        debug!(aborted, "shutdown: the node's tasks have ended");
        if aborted > 0 {
            warn!(
                aborted,
                "tasks still running after the {:?} grace period were aborted", self.grace
            );
        }
    }

    /// Steps 3 to 5, once the tasks are joined: drops `held` (the node's
    /// state, the last handles to its dataflows and network), joins the
    /// threads and the network, flushes the database.
    async fn finish(self, held: impl Send + 'static) -> Result<(), Error> {
        let Stop {
            threads,
            mut net_task,
            db,
            db_path,
            ..
        } = self;
        let mut problems = Vec::new();
        // Dropping the executor joins its threads and the dataflows end
        // on their own threads: off the async workers.
        let joined = tokio::task::spawn_blocking(move || {
            drop(held);
            threads
                .into_iter()
                .filter_map(|(name, thread)| thread.join().is_err().then_some(name))
                .collect::<Vec<_>>()
        })
        .await;
        debug!("shutdown: the dataflows have ended");
        match joined {
            Ok(panicked) => {
                for name in panicked {
                    error!("the {name} dataflow thread panicked");
                    problems.push(format!("the {name} dataflow panicked"));
                }
            }
            Err(e) => problems.push(format!("stopping the dataflows failed: {e}")),
        }
        if tokio::time::timeout(NET_STOP, &mut net_task).await.is_err() {
            warn!("the network did not stop in {NET_STOP:?}: aborted");
            net_task.abort();
            let _ = net_task.await;
        }
        debug!("shutdown: the network has stopped");
        flush(&db, &db_path).await?;
        drop(db);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Shutdown(problems.join("; ")))
        }
    }

    /// Flushes the database when the rest cannot be stopped.
    async fn abandon(self) {
        if let Err(e) = flush(&self.db, &self.db_path).await {
            error!("{e}");
        }
    }

    /// Stops what a start that failed had started; gives back its error.
    pub(crate) async fn failed(self, error: Error, held: impl Send + 'static) -> Error {
        self.drain().await;
        if let Err(e) = self.finish(held).await {
            warn!("stopping after a failed start: {e}");
        }
        error
    }
}

async fn flush(db: &sled::Db, path: &std::path::Path) -> Result<(), Error> {
    db.flush_async()
        .await
        .map(drop)
        .map_err(|source| Error::Database {
            path: path.to_path_buf(),
            source,
        })
}
