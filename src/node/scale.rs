//! Load reports and auto-scaling (the ORB report's scale-up).
//!
//! Every second a node that hosts functions closes its load window and
//! announces it on gossip ([`Load`]): its capacity, calls in flight, and
//! per hosted function the calls that ended and the share of the node's
//! executor capacity they used. Receivers refresh the provider's rows in
//! the routing dataflow (the scheduler ranks by load) and keep the latest
//! report per (function, host).
//!
//! Scale-up: a node that does not host a function, and whose own executors
//! were less than half busy, watches the function's hosts. When their
//! average busy share passes `--scale-up-at` in two reports in a row, the
//! node waits a random 0–1.5 s (so that not every spare node jumps at
//! once), and if no new host appeared meanwhile it fetches the module from
//! the busiest host (checked against its hash), compiles and hosts it, and
//! announces itself: callers' schedulers see a new, idle provider.
//!
//! Retirement: a replica taken on by scaling (never a deployed one) that
//! had no call for `--scale-idle-secs` stops being hosted; peers and the
//! DHT are told, and calls in flight elsewhere reroute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use orb_functions::FunctionId;
use orb_net::{Announcement, FunctionLoad, Load, PeerId};
use tracing::{debug, info, warn};

use super::Node;

/// How often load is reported and scaling decided.
const WINDOW: Duration = Duration::from_secs(1);

/// Reports older than this are ignored.
const STALE: Duration = Duration::from_secs(3);

/// A node below this busy share (‰) has spare capacity.
const SPARE_BELOW: u32 = 500;

/// Least time between two scale-ups of one function by one node.
const COOLDOWN: Duration = Duration::from_secs(10);

/// Auto-scaling settings (`orb node` flags).
#[derive(Clone, Debug)]
pub(crate) struct ScaleConfig {
    /// Take a function on when its hosts are this busy on average (‰);
    /// `None`: never.
    pub(crate) up_at_permille: Option<u32>,
    /// Retire an auto-scaled replica after this long without calls.
    pub(crate) idle: Duration,
}

/// A function that looked hot: since when, and with how many hosts.
struct Hot {
    reports: u32,
    hosts: usize,
    fire_at: Option<Instant>,
}

/// What a node knows of others' load.
#[derive(Default)]
pub(crate) struct Scaler {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Per function, per host: the host's last report on it.
    reports: HashMap<FunctionId, HashMap<PeerId, (FunctionLoad, Instant)>>,
    hot: HashMap<FunctionId, Hot>,
    last_scale: HashMap<FunctionId, Instant>,
}

impl Scaler {
    /// A peer's load report: refreshes its routing rows and the reports.
    pub(crate) async fn learn(&self, node: &Node, peer: PeerId, load: Load) {
        let now = Instant::now();
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            for f in &load.functions {
                state
                    .reports
                    .entry(f.function)
                    .or_default()
                    .insert(peer, (f.clone(), now));
            }
        }
        for f in &load.functions {
            let row = orb_engine::Provider {
                peer,
                load: load.in_flight,
                capacity: load.capacity,
                cached: true,
                busy_until_ms: 0,
            };
            if let Err(e) = node.routing.announce(f.function, peer, Some(row)).await {
                warn!("routing: {e}");
            }
        }
    }

    /// A peer stopped hosting `function`.
    pub(crate) fn forget(&self, function: FunctionId, peer: &PeerId) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hosts) = state.reports.get_mut(&function) {
            hosts.remove(peer);
        }
    }

    /// Functions this node should take on now: hot for two reports in a
    /// row, the random delay passed, no new host meanwhile. Each comes
    /// with the busiest host to fetch the module from.
    fn due(&self, node: &Node, own_busy: u32, up_at: u32) -> Vec<(FunctionId, PeerId)> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State {
            reports,
            hot,
            last_scale,
        } = &mut *state;
        let mut due = Vec::new();
        for (function, hosts) in reports.iter_mut() {
            hosts.retain(|_, (_, at)| now - *at < STALE);
            let busiest = hosts
                .iter()
                .max_by_key(|(_, (f, _))| f.busy_permille)
                .map(|(p, _)| *p);
            let average = if hosts.is_empty() {
                0
            } else {
                hosts.values().map(|(f, _)| f.busy_permille).sum::<u32>() / hosts.len() as u32
            };
            let cooling = last_scale
                .get(function)
                .is_some_and(|t| now - *t < COOLDOWN);
            if node.host.hosts(function) || own_busy >= SPARE_BELOW || average < up_at || cooling {
                hot.remove(function);
                continue;
            }
            let h = hot.entry(*function).or_insert(Hot {
                reports: 0,
                hosts: hosts.len(),
                fire_at: None,
            });
            if hosts.len() > h.hosts {
                // Someone else took it on: judge again from here.
                hot.remove(function);
                continue;
            }
            h.reports += 1;
            if h.reports < 2 {
                continue;
            }
            let fire_at = *h
                .fire_at
                .get_or_insert_with(|| now + Duration::from_millis(rand::random::<u64>() % 1500));
            if now >= fire_at
                && let Some(peer) = busiest
            {
                hot.remove(function);
                last_scale.insert(*function, now);
                due.push((*function, peer));
            }
        }
        due
    }
}

/// Reports load and scales every [`WINDOW`] until the node is cancelled. A
/// round that started finishes (a scale-up may be compiling a module), so
/// the cancellation is only watched between rounds.
pub(crate) async fn run_until_cancelled(node: Arc<Node>, config: ScaleConfig) {
    let mut every = tokio::time::interval(WINDOW);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let cancel = node.tasks.token().clone();
    while cancel.run_until_cancelled(every.tick()).await.is_some() {
        let mut load = node.host.take_window(last.elapsed());
        // Agent modules keep the hosts they were deployed on.
        load.functions
            .retain(|f| !node.agents.is_module(&f.function));
        last = Instant::now();
        if !load.functions.is_empty() {
            let _ = node.net.announce(Announcement::Load(load.clone())).await;
        }
        let Some(up_at) = config.up_at_permille else {
            continue;
        };
        for (function, from) in node.scaler.due(&node, load.busy_permille, up_at) {
            scale_up(&node, function, from).await;
        }
        for function in node.host.scaled() {
            if node.host.idle_for(&function) >= config.idle {
                node.host.retire(&node, function).await;
                node.metrics.scaled("retire");
            }
        }
    }
}

async fn scale_up(node: &Node, function: FunctionId, from: PeerId) {
    match super::host::fetch_module(node, from, function).await {
        Ok(bytes) => match node
            .host
            .install(node, &bytes, super::host::By::Scaling)
            .await
        {
            Ok(_) => {
                node.metrics.scaled("up");
                info!(%function, %from, "scaled up: hosting a replica of a busy function");
            }
            Err(e) => warn!(%function, "scale-up: cannot host: {e}"),
        },
        Err(e) => debug!(%function, %from, "scale-up: cannot fetch the module: {e}"),
    }
}
