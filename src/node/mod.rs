//! One Orb node. This module assembles the layers and owns their
//! lifecycle:
//!
//! - the network (`orb-net`): swarm, DHT, gossip, relay; its event loop
//!   runs on a task the node owns ([`inbound`] reads what peers send);
//! - the routing dataflow (`orb-engine`): function → providers, fed by
//!   announcements and DHT answers, on its own timely worker thread;
//! - hosting ([`host`]): the module store, the executor pool, answering
//!   peers' requests;
//! - load and scaling ([`scale`]): a load report every second on gossip;
//!   hosting replicas of busy functions, retiring idle ones;
//! - invoking ([`invoke`]): resolve a name, schedule R replicas, reroute
//!   around busy or failed providers, take the majority, settle the
//!   receipts;
//! - the reward ledger ([`ledger`]): the consensus dataflow on its own
//!   thread, and the task that carries out its actions;
//! - the HTTP API ([`api`], served by [`http`]): the control API of the CLI
//!   and the public function endpoint `POST /fn/{name-or-id}`.
//!
//! Lifecycle ([`start`], [`handle`], [`tasks`]): [`Node::start`] opens the
//! data dir, starts the layers and hands back a [`NodeHandle`]. Every task
//! the node spawns is in its [`tasks::Tasks`] set, under one cancellation
//! token; the two dataflow threads and the network's event loop are joined
//! by [`NodeHandle::shutdown`], which cancels the tasks, lets calls in
//! flight finish (until [`NodeConfig::shutdown_grace`]), stops the
//! dataflows, closes the network and flushes sled. Nothing here prints:
//! `orb node` (the binary) reports what the handle says.

mod agents;
mod api;
mod byzantine;
mod calls;
mod config;
mod console;
mod error;
mod handle;
mod history;
mod host;
mod http;
mod inbound;
mod invoke;
mod journal;
mod ledger;
mod logs;
mod metrics;
mod names;
mod quota;
mod scale;
mod start;
mod tasks;
mod throttle;
mod token;
mod trace;

use std::sync::Arc;

use orb_engine::{Provider, Routing};
use orb_net::Net;

pub use byzantine::{Byzantine, Mode as ByzantineMode};
pub use config::NodeConfig;
pub use error::Error;
pub use handle::NodeHandle;
pub use invoke::{InvokeError, Invoked};
pub use quota::Limits as StoreLimits;
pub use token::{check as check_api_token, path as api_token_file};

use host::Host;
use tasks::Tasks;

/// A running node's shared state, held by its tasks. [`Node::start`]
/// starts one and hands back the [`NodeHandle`] that owns it.
pub struct Node {
    pub(crate) net: Net,
    pub(crate) routing: Routing,
    pub(crate) host: Host,
    pub(crate) names: names::NameCache,
    /// The agents hosted here.
    pub(crate) agents: agents::Agents,
    pub(crate) peer_id: String,
    pub(crate) ledger: Option<Arc<ledger::Ledger>>,
    /// Every task of the node (calls in flight, background loops).
    pub(crate) tasks: Arc<Tasks>,
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
    /// Slots for the gateway's calls in flight ([`NodeConfig::max_calls`]).
    pub(crate) calls: Arc<tokio::sync::Semaphore>,
    /// Their number.
    pub(crate) max_calls: usize,
    /// The token mutating API requests must carry; `None` when the API is
    /// on loopback ([`token`]).
    pub(crate) api_token: Option<String>,
    /// What `GET /metrics` reports.
    pub(crate) metrics: metrics::Metrics,
    /// The key deploys through the console are signed with: the data
    /// dir's `publisher.key`, the one `orb deploy` uses with the same
    /// data dir.
    pub(crate) publisher: orb_net::Keypair,
    /// The calls this node ran, for `orb logs`.
    pub(crate) ran: calls::CallLog,
    /// The web console's uploads and audit.
    pub(crate) console: console::ConsoleState,
}

impl Node {
    /// The names this node knows for the function `id` (hex): the ones it
    /// resolved and the ones kept with the functions it hosts (those
    /// survive a restart), sorted.
    pub(crate) fn names_of(&self, id: &str) -> Vec<String> {
        let mut names = self.names.names_of(id);
        if let Ok(function) = id.parse::<orb_functions::FunctionId>()
            && let Some(kept) = self.host.name_of(&function)
            && !names.contains(&kept)
        {
            names.push(kept);
            names.sort();
        }
        names
    }

    /// The peers connected now.
    pub(crate) async fn connected_peers(&self) -> Vec<String> {
        self.net
            .peers()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.connected)
            .map(|p| p.peer_id)
            .collect()
    }

    /// The peers connected now, in an order fixed by `function`, so that
    /// what is placed for different functions spreads over the network.
    pub(crate) async fn spread(&self, function: &orb_functions::FunctionId) -> Vec<String> {
        let mut peers = self.connected_peers().await;
        peers.sort_by_key(|peer| {
            *blake3::hash(&[function.as_bytes().as_slice(), peer.as_bytes()].concat()).as_bytes()
        });
        peers
    }
}

/// The routing row a node announces for itself.
pub(crate) fn own_row(node: &Node) -> Provider {
    Provider {
        peer: node.net.peer_id(),
        load: node.host.load(),
        capacity: node.host.capacity(),
        cached: true,
        busy_until_ms: 0,
    }
}
