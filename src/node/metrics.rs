//! What a node counts, for `GET /metrics` (the Prometheus text format,
//! OpenMetrics flavour, from `prometheus-client`).
//!
//! Counters and histograms are updated where things happen (a call
//! answered, an agent step applied); gauges that describe the node's
//! state (chain height, peers, functions hosted, executor load) are read
//! when the endpoint is scraped. Labels stay few: a function's label is
//! the name it was called by once that name resolved (a name nobody
//! deployed is `unknown`, so unknown names cannot grow the label set),
//! an outcome is one of a fixed set. libp2p's own metrics (connections,
//! identify, Kademlia, ping round trips, relay, DCUtR, gossipsub) are
//! under `orb_libp2p_`, recorded by the swarm's event loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::Node;
use super::history::{History, Point};
use super::invoke::{InvokeError, Invoked};

/// The content type of what [`Metrics::encode`] writes.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    function: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HopLabels {
    hop: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    module: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NatLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScaleLabels {
    action: &'static str,
}

/// What the consensus driver counts: handed to it when the ledger starts
/// (the counters are shared handles).
#[derive(Clone)]
pub(crate) struct LedgerMetrics {
    /// Blocks committed here.
    pub(crate) committed: Counter,
    /// Time to finality of the blocks decided here.
    pub(crate) finality: Histogram,
    /// Snowball queries sent (one per peer asked).
    pub(crate) polls_sent: Counter,
    /// Queries of peers this node answered.
    pub(crate) polls_answered: Counter,
    /// Voters excluded for equivocating.
    pub(crate) equivocations: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    kind: &'static str,
}

/// Latency buckets: 50 µs to about 26 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 20))
}

/// A node's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    invocations: Family<CallLabels, Counter>,
    rerouted: Family<FunctionLabels, Counter>,
    invoke_seconds: Family<HopLabels, Histogram, fn() -> Histogram>,
    fuel: Counter,
    outvoted: Counter,
    agent_steps: Family<StepLabels, Counter>,
    chain_height: Gauge,
    peers: Family<PeerLabels, Gauge>,
    banned: Gauge,
    routing_table: Gauge,
    functions_hosted: Gauge,
    load: Gauge,
    capacity: Gauge,
    agents_kept: Gauge,
    ledger: LedgerMetrics,
    executor_running: Gauge,
    executor_queued: Gauge,
    mempool: Gauge,
    committee: Gauge,
    nat: Family<NatLabels, Gauge>,
    autoscale: Family<ScaleLabels, Counter>,
    /// Serialises encoding with the gauges' refresh.
    scrape: Mutex<()>,
    /// Calls by function (the name they were called by): answered, failed;
    /// the console's Functions table.
    by_function: Mutex<HashMap<String, (u64, u64)>>,
    /// The last minutes of calls by function, second by second.
    history: Mutex<History>,
    /// Second 0 of [`Metrics::second`].
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("orb");
        let invocations = Family::<CallLabels, Counter>::default();
        registry.register(
            "invocations",
            "Calls entering this node, by function and outcome (ok, a guest error's kind, busy, \
             no_provider, exhausted, disagreement, bad_target, no_credits, internal)",
            invocations.clone(),
        );
        let rerouted = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "invocations_rerouted",
            "Calls answered after a provider asked gave no answer (failed, busy or timed out) and another took its place",
            rerouted.clone(),
        );
        let invoke_seconds =
            Family::<HopLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register_with_unit(
            "invoke_duration",
            "Time of an answered call, by hop: resolve (name and schedule), network, execution, \
             total",
            Unit::Seconds,
            invoke_seconds.clone(),
        );
        let fuel = Counter::default();
        registry.register(
            "fuel_consumed",
            "Fuel of the answered calls entering this node",
            fuel.clone(),
        );
        let outvoted = Counter::default();
        registry.register(
            "replicas_outvoted",
            "Executors outvoted by the majority in calls entering this node",
            outvoted.clone(),
        );
        let agent_steps = Family::<StepLabels, Counter>::default();
        registry.register(
            "agent_steps",
            "Agent messages this node was sent, by module and outcome (applied, duplicate, or \
             the error's kind)",
            agent_steps.clone(),
        );
        let chain_height = Gauge::default();
        registry.register(
            "chain_height",
            "Height of this node's reward chain (0 without one)",
            chain_height.clone(),
        );
        let peers = Family::<PeerLabels, Gauge>::default();
        registry.register(
            "peers",
            "Peers connected now, by kind (supernode, relayed, direct; a supernode counts as one whichever way it is reached)",
            peers.clone(),
        );
        let banned = Gauge::default();
        registry.register("peers_banned", "Peers banned now", banned.clone());
        let routing_table = Gauge::default();
        registry.register(
            "routing_table_peers",
            "Peers in the Kademlia routing table",
            routing_table.clone(),
        );
        let functions_hosted = Gauge::default();
        registry.register(
            "functions_hosted",
            "Functions this node hosts",
            functions_hosted.clone(),
        );
        let load = Gauge::default();
        registry.register(
            "executor_calls_in_flight",
            "Calls queued or running on this node's executor (the load it reports)",
            load.clone(),
        );
        let capacity = Gauge::default();
        registry.register(
            "executor_capacity",
            "Calls of one function this node runs at once",
            capacity.clone(),
        );
        let agents_kept = Gauge::default();
        registry.register("agents", "Agents kept on this node", agents_kept.clone());
        let ledger = LedgerMetrics {
            committed: Counter::default(),
            finality: Histogram::new(exponential_buckets(1e-3, 2.0, 16)),
            polls_sent: Counter::default(),
            polls_answered: Counter::default(),
            equivocations: Counter::default(),
        };
        registry.register(
            "blocks_committed",
            "Reward blocks committed to this node's chain",
            ledger.committed.clone(),
        );
        registry.register_with_unit(
            "finality",
            "Time from a block's proposal to its finality, for the blocks decided here",
            Unit::Seconds,
            ledger.finality.clone(),
        );
        registry.register(
            "polls_sent",
            "Snowball queries this node sent (one per committee member asked)",
            ledger.polls_sent.clone(),
        );
        registry.register(
            "polls_answered",
            "Snowball queries of other members this node answered",
            ledger.polls_answered.clone(),
        );
        registry.register(
            "equivocators_excluded",
            "Voters excluded for signing two votes for one height and round",
            ledger.equivocations.clone(),
        );
        let executor_running = Gauge::default();
        registry.register(
            "executor_threads_busy",
            "Executor threads running a call now",
            executor_running.clone(),
        );
        let executor_queued = Gauge::default();
        registry.register(
            "executor_queue_depth",
            "Calls waiting for an executor thread",
            executor_queued.clone(),
        );
        let mempool = Gauge::default();
        registry.register(
            "mempool_settlements",
            "Settlements waiting for a block",
            mempool.clone(),
        );
        let committee = Gauge::default();
        registry.register(
            "committee_size",
            "Members of the consensus committee",
            committee.clone(),
        );
        let nat = Family::<NatLabels, Gauge>::default();
        registry.register(
            "nat_status",
            "AutoNAT's verdict on this node: 1 for the current status (public, private, unknown)",
            nat.clone(),
        );
        let autoscale = Family::<ScaleLabels, Counter>::default();
        registry.register(
            "autoscale_events",
            "Replicas this node took on because a function was busy (up), or retired when idle \
             (retire)",
            autoscale.clone(),
        );
        Self {
            registry,
            invocations,
            rerouted,
            invoke_seconds,
            fuel,
            outvoted,
            agent_steps,
            chain_height,
            peers,
            banned,
            routing_table,
            functions_hosted,
            load,
            capacity,
            agents_kept,
            ledger,
            executor_running,
            executor_queued,
            mempool,
            committee,
            nat,
            autoscale,
            scrape: Mutex::new(()),
            by_function: Mutex::default(),
            history: Mutex::default(),
            started: Instant::now(),
        }
    }
}

impl Metrics {
    /// Where libp2p's own metrics go (they add `libp2p_` to the node's
    /// `orb_`).
    pub(crate) fn libp2p(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

/// The outcome label of a failed call.
fn outcome(e: &InvokeError) -> String {
    match e {
        InvokeError::Guest { kind, .. } => kind.clone(),
        InvokeError::NoProvider(_) => "no_provider".into(),
        InvokeError::BadTarget(_) => "bad_target".into(),
        InvokeError::Exhausted { .. } => "exhausted".into(),
        InvokeError::Disagreement { .. } => "disagreement".into(),
        InvokeError::Busy(_) => "busy".into(),
        InvokeError::Internal(_) => "internal".into(),
        InvokeError::NoCredits(_) => "no_credits".into(),
    }
}

fn seconds(us: u64) -> f64 {
    Duration::from_micros(us).as_secs_f64()
}

impl Metrics {
    /// Counts a call to `target` that ended as `result` after `total`.
    pub(crate) fn invoked(
        &self,
        target: &str,
        result: &Result<Invoked, InvokeError>,
        total: Duration,
    ) {
        let known = !matches!(
            result,
            Err(InvokeError::NoProvider(_) | InvokeError::BadTarget(_))
        );
        let function = if known { target } else { "unknown" }.to_owned();
        let outcome = match result {
            Ok(_) => "ok".to_owned(),
            Err(e) => outcome(e),
        };
        if known {
            self.history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(
                    &function,
                    self.second(),
                    result.as_ref().ok().map(|_| total.as_micros() as u64),
                );
            let mut by = self
                .by_function
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let counts = by.entry(function.clone()).or_default();
            if result.is_ok() {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
        self.invocations
            .get_or_create(&CallLabels {
                function: function.clone(),
                outcome,
            })
            .inc();
        if let Ok(done) = result {
            if done.rerouted > 0 {
                self.rerouted
                    .get_or_create(&FunctionLabels { function })
                    .inc();
            }
            self.fuel.inc_by(done.fuel);
            self.outvoted.inc_by(done.disputed.len() as u64);
            for (hop, us) in [
                ("resolve", done.resolve_us),
                ("network", done.network_us),
                ("execution", done.execution_us),
            ] {
                self.invoke_seconds
                    .get_or_create(&HopLabels { hop })
                    .observe(seconds(us));
            }
            self.invoke_seconds
                .get_or_create(&HopLabels { hop: "total" })
                .observe(total.as_secs_f64());
        }
    }

    /// Calls that entered this node, by the name they were called by:
    /// (answered, failed).
    pub(crate) fn calls_by_function(&self) -> HashMap<String, (u64, u64)> {
        self.by_function
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The consensus driver's counters.
    pub(crate) fn ledger(&self) -> LedgerMetrics {
        self.ledger.clone()
    }

    /// Counts a replica taken on (`up`) or retired (`retire`) by the
    /// auto-scaler.
    pub(crate) fn scaled(&self, action: &'static str) {
        self.autoscale.get_or_create(&ScaleLabels { action }).inc();
    }

    /// Seconds since the node started: the clock of [`Metrics::series`].
    pub(crate) fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Functions called in the last [`super::history::WINDOW`] seconds.
    pub(crate) fn recent_functions(&self) -> Vec<String> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .functions(self.second())
    }

    /// `function`'s calls second by second up to now.
    pub(crate) fn series(&self, function: &str) -> Vec<Point> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .series(function, self.second())
    }

    /// `function`'s calls over the last `seconds`: (answered, failed, p50
    /// µs, p99 µs).
    pub(crate) fn summary(&self, function: &str, seconds: u64) -> (u64, u64, u32, u32) {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .summary(function, self.second(), seconds)
    }

    /// Counts a call the gateway refused at its `--max-calls` limit as
    /// `busy`: under its name when the node knows the name, else under
    /// `unknown` (a refused call resolved nothing, and unknown names must
    /// not grow the label set).
    pub(crate) fn shed(&self, target: &str, known: bool) {
        let function = if known { target } else { "unknown" }.to_owned();
        self.invocations
            .get_or_create(&CallLabels {
                function,
                outcome: "busy".to_owned(),
            })
            .inc();
    }

    /// Counts a message to an agent of `module`: `outcome` is `applied`,
    /// `duplicate` or an error's kind.
    pub(crate) fn agent_step(&self, module: &str, outcome: &str) {
        self.agent_steps
            .get_or_create(&StepLabels {
                module: module.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The metrics now, in the text format.
    pub(crate) async fn encode(&self, node: &Arc<Node>) -> Result<String, std::fmt::Error> {
        let peers = node.net.peers().await.unwrap_or_default();
        let status = node.net.status().await.ok();
        let _scrape = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        // One kind per peer, as the console shows them: a supernode is
        // counted as such whether reached directly or not.
        for kind in ["supernode", "relayed", "direct"] {
            let n = peers
                .iter()
                .filter(|p| p.connected && p.kind() == kind)
                .count();
            self.peers.get_or_create(&PeerLabels { kind }).set(n as i64);
        }
        if let Some(status) = status {
            self.banned.set(status.banned as i64);
            self.routing_table.set(status.routing_table as i64);
            let now = format!("{:?}", status.nat).to_lowercase();
            for s in ["public", "private", "unknown"] {
                self.nat
                    .get_or_create(&NatLabels { status: s })
                    .set(i64::from(now == s));
            }
        }
        if let Some(ledger) = &node.ledger {
            let status = ledger.status();
            self.mempool.set(status.mempool as i64);
            self.committee.set(status.committee.len() as i64);
        }
        let (running, queued) = node.host.executor_load();
        self.executor_running.set(running as i64);
        self.executor_queued.set(queued as i64);
        self.chain_height
            .set(node.ledger.as_ref().map_or(0, |l| l.height()) as i64);
        self.functions_hosted.set(node.host.hosted().len() as i64);
        self.load.set(i64::from(node.host.load()));
        self.capacity.set(i64::from(node.host.capacity()));
        self.agents_kept.set(node.agents.count() as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
