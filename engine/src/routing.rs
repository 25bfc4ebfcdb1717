//! The routing table of a node: function id → providers, as a differential
//! arrangement inside the node dataflow.
//!
//! Everything the node learns about providers (gossip announcements, DHT
//! answers, its own deployments, a provider that failed) enters as
//! [`RoutingInput::Announce`] on one bounded channel; lookups enter the same
//! channel as [`RoutingInput::Resolve`], so one source and one epoch counter
//! order them. Inside the dataflow:
//!
//! - an `upsert` operator turns announcements into collection updates
//!   (retracting a provider's previous row) and, for the node's own rows,
//!   tells the DHT through the [`Net`] handle without ever awaiting
//!   (`provide_nowait`, retried on the next activation when the net's queue
//!   is full);
//! - a provider that answered "busy" ([`RoutingInput::Busy`]) has its rows
//!   re-emitted with the busy-until time the input carries, which later
//!   announcements keep;
//! - the updates are arranged by function id;
//! - each lookup becomes a one-epoch collection `(function, query)` (inserted
//!   at its epoch, retracted at the next) and is joined with the arrangement;
//! - a `gather` operator waits until the frontier passes the lookup's epoch
//!   and answers it with every provider present then (none is an answer
//!   too), ranked: least loaded first, then those holding the module;
//!   rows still busy at the time the lookup carries are left out.
//!
//! No operator reads a clock: time enters only on the records, a deadline
//! on each `Busy` and the time of asking on each `Resolve`, so the
//! dataflow's answers depend on its inputs alone. The [`Routing`] handle is
//! the driver that stamps them with the wall clock ([`Routing::busy`],
//! [`Routing::resolve`]); [`Routing::busy_until`] and
//! [`Routing::resolve_at`] take the time from the caller (tests drive time
//! with them, without sleeping).
//!
//! The answers go back to the asking task through a bounded rendezvous
//! channel per lookup. The dataflow runs on its own thread and ends when the
//! last [`Routing`] handle is dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use differential_dataflow::AsCollection;
use orb_functions::FunctionId;
use orb_net::{Net, PeerId};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Operator, Probe};

use crate::boundary::{Flow, SourceHandle, channel};
use crate::{EngineConfig, Error, Result};

/// What the node knows about one provider of one function.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Provider {
    /// Its peer id.
    pub peer: PeerId,
    /// Calls queued or running on it, as last announced.
    pub load: u32,
    /// Calls it runs at once (0 when unknown).
    pub capacity: u32,
    /// Whether it holds the compiled module (it announced it), as opposed to
    /// a DHT record that says only that it provides the function.
    pub cached: bool,
    /// It answered "busy": lookups skip it until this time (milliseconds
    /// since the Unix epoch; 0 when it never did).
    #[serde(default)]
    pub busy_until_ms: u64,
}

/// What enters the routing dataflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RoutingInput {
    /// `provider` now serves `function`, or no longer does (`None`).
    Announce {
        /// The function.
        function: FunctionId,
        /// The provider's peer id.
        peer: PeerId,
        /// Its row, or `None` to withdraw it.
        provider: Option<Provider>,
    },
    /// `peer` answered "busy": skip it in lookups asked before `until_ms`.
    Busy {
        /// The provider's peer id.
        peer: PeerId,
        /// Until when to skip it (milliseconds since the Unix epoch); a
        /// busy window is only ever extended.
        until_ms: u64,
    },
    /// Who provides `function`, as of `now_ms`?
    Resolve {
        /// Answers carry this id.
        query: u64,
        /// The function.
        function: FunctionId,
        /// The time of asking (milliseconds since the Unix epoch): providers
        /// busy until later are left out.
        now_ms: u64,
    },
    /// The whole table.
    List {
        /// Answers carry this id.
        query: u64,
    },
}

/// An answer of the dataflow.
enum Answer {
    Providers(Vec<Provider>),
    Table(Vec<(FunctionId, Provider)>),
}

type Pending = Arc<Mutex<HashMap<u64, flume::Sender<Answer>>>>;

/// One routing row: a function and one provider of it.
type Row = (FunctionId, Provider);

/// The rows per function as of the dataflow's last complete epoch.
type Cache = Arc<std::sync::RwLock<HashMap<FunctionId, Vec<Provider>>>>;

/// The handle to a node's routing dataflow; cheap to clone.
#[derive(Clone)]
pub struct Routing {
    input: SourceHandle<RoutingInput>,
    pending: Pending,
    next: Arc<AtomicU64>,
    cache: Cache,
}

/// Starts the routing dataflow on its own thread. `local` is this node's
/// peer id: rows for it are published to the DHT through `net`.
pub fn start_routing(net: Option<Net>, local: PeerId) -> Result<(Routing, JoinHandle<()>)> {
    let (input, inlet) = channel::<RoutingInput>(4096);
    let pending: Pending = Arc::default();
    let answers = pending.clone();
    let cache: Cache = Arc::default();
    let cache_rows = cache.clone();
    let thread = std::thread::Builder::new()
        .name("orb-routing".into())
        .spawn(move || {
            let config = EngineConfig {
                workers: 1,
                ..EngineConfig::default()
            };
            let run = crate::execute(&config, move |worker| {
                let flow = Flow::new(64, 1024);
                let (inlet, answers, net, local, cache_rows) = (
                    inlet.clone(),
                    answers.clone(),
                    net.clone(),
                    local,
                    cache_rows.clone(),
                );
                worker.dataflow::<u64, _, _>(|scope| {
                    let inputs = inlet.into_stream(scope, "routing-input", &flow);
                    let table_answers = answers.clone();
                    let updates = inputs
                        .clone()
                        .unary::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                            Exchange::new(|_: &RoutingInput| 0),
                            "upsert",
                            move |_, _| {
                                let mut rows: HashMap<(FunctionId, PeerId), Provider> =
                                    HashMap::new();
                                let mut to_publish: Vec<(FunctionId, bool)> = Vec::new();
                                move |input, output| {
                                    input.for_each(|cap, data| {
                                        let Some(&time) = cap.least() else { return };
                                        let mut session = output.session(&cap);
                                        for item in data.drain(..) {
                                            match item {
                                                RoutingInput::Announce {
                                                    function,
                                                    peer,
                                                    mut provider,
                                                } => {
                                                    let key = (function, peer);
                                                    // A fresh announcement does not
                                                    // lift a recent "busy".
                                                    if let (Some(new), Some(old)) =
                                                        (&mut provider, rows.get(&key))
                                                    {
                                                        new.busy_until_ms = new
                                                            .busy_until_ms
                                                            .max(old.busy_until_ms);
                                                    }
                                                    let old = match &provider {
                                                        Some(p) => rows.insert(key, p.clone()),
                                                        None => rows.remove(&key),
                                                    };
                                                    if old == provider {
                                                        continue;
                                                    }
                                                    if peer == local
                                                        && old.is_none() != provider.is_none()
                                                    {
                                                        to_publish
                                                            .push((function, provider.is_some()));
                                                    }
                                                    if let Some(old) = old {
                                                        session.give((
                                                            (function, old),
                                                            time,
                                                            -1isize,
                                                        ));
                                                    }
                                                    if let Some(new) = provider {
                                                        session.give((
                                                            (function, new),
                                                            time,
                                                            1isize,
                                                        ));
                                                    }
                                                }
                                                RoutingInput::List { query } => {
                                                    let mut table: Vec<(FunctionId, Provider)> =
                                                        rows.iter()
                                                            .map(|((f, _), p)| (*f, p.clone()))
                                                            .collect();
                                                    table.sort();
                                                    reply(
                                                        &table_answers,
                                                        query,
                                                        Answer::Table(table),
                                                    );
                                                }
                                                RoutingInput::Busy { peer, until_ms } => {
                                                    for ((function, p), row) in rows.iter_mut() {
                                                        if *p != peer
                                                            || row.busy_until_ms >= until_ms
                                                        {
                                                            continue;
                                                        }
                                                        let old = row.clone();
                                                        row.busy_until_ms = until_ms;
                                                        session.give((
                                                            (*function, old),
                                                            time,
                                                            -1isize,
                                                        ));
                                                        session.give((
                                                            (*function, row.clone()),
                                                            time,
                                                            1isize,
                                                        ));
                                                    }
                                                }
                                                RoutingInput::Resolve { .. } => {}
                                            }
                                        }
                                    });
                                    if let Some(net) = &net {
                                        to_publish.retain(|(function, hosting)| {
                                            let sent = if *hosting {
                                                net.provide_nowait(*function)
                                            } else {
                                                net.stop_providing_nowait(*function)
                                            };
                                            !sent
                                        });
                                    }
                                }
                            },
                        );
                    keep_cache(&updates, cache_rows);
                    let arranged = updates.as_collection().arrange_by_key();

                    // Each lookup lives for exactly one epoch.
                    let lookups = inputs.clone().flat_map(|item| match item {
                        RoutingInput::Resolve {
                            query,
                            function,
                            now_ms,
                        } => Some((query, function, now_ms)),
                        _ => None,
                    });
                    let queries = lookups
                        .clone()
                        .unary::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                            timely::dataflow::channels::pact::Pipeline,
                            "lookup-epoch",
                            |_, _| {
                                move |input, output| {
                                    input.for_each(|cap, data| {
                                        let Some(&time) = cap.least() else { return };
                                        let mut session = output.session(&cap);
                                        for (query, function, _) in data.drain(..) {
                                            session.give(((function, query), time, 1isize));
                                            session.give(((function, query), time + 1, -1isize));
                                        }
                                    });
                                }
                            },
                        )
                        .as_collection();
                    let matches = queries
                        .join_core(arranged, |_f: &FunctionId, q: &u64, p: &Provider| {
                            Some((*q, p.clone()))
                        })
                        .inner;

                    lookups
                        .binary_frontier::<_, CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
                            matches,
                            Exchange::new(|_: &(u64, FunctionId, u64)| 0),
                            Exchange::new(|_: &((u64, Provider), u64, isize)| 0),
                            "gather",
                            move |cap, _| {
                                drop(cap);
                                // Per epoch: each lookup's query id and time of asking.
                                let mut asked: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
                                let mut found: BTreeMap<u64, HashMap<(u64, Provider), isize>> =
                                    BTreeMap::new();
                                move |(lookups, lookups_frontier),
                                      (matches, matches_frontier),
                                      _out| {
                                    lookups.for_each(|cap, data| {
                                        let Some(&time) = cap.least() else { return };
                                        asked
                                            .entry(time)
                                            .or_default()
                                            .extend(data.drain(..).map(|(q, _, now)| (q, now)));
                                    });
                                    matches.for_each(|_, data| {
                                        for (row, time, diff) in data.drain(..) {
                                            *found
                                                .entry(time)
                                                .or_default()
                                                .entry(row)
                                                .or_default() += diff;
                                        }
                                    });
                                    // Answer every epoch that no input can still add to.
                                    while let Some((&time, _)) = asked.first_key_value() {
                                        if lookups_frontier.less_equal(&time)
                                            || matches_frontier.less_equal(&time)
                                        {
                                            break;
                                        }
                                        let queries = asked.remove(&time).unwrap_or_default();
                                        let at_time = found.remove(&time).unwrap_or_default();
                                        let mut per_query: HashMap<u64, Vec<Provider>> =
                                            HashMap::new();
                                        for ((q, provider), diff) in at_time {
                                            if diff > 0 {
                                                per_query.entry(q).or_default().push(provider);
                                            }
                                        }
                                        for (q, now) in queries {
                                            let providers =
                                                per_query.remove(&q).unwrap_or_default();
                                            let providers = choose_providers(providers, now, q);
                                            reply(&answers, q, Answer::Providers(providers));
                                        }
                                    }
                                    // Rows of epochs that are complete and unasked
                                    // (the retractions of answered lookups) are done with.
                                    found.retain(|t, _| {
                                        asked.contains_key(t)
                                            || lookups_frontier.less_equal(t)
                                            || matches_frontier.less_equal(t)
                                    });
                                }
                            },
                        )
                        .probe_with(&flow.probe);
                });
                crate::run_to_completion(worker);
            });
            if let Err(e) = run {
                tracing::error!("routing dataflow failed: {e}");
            }
        })
        .map_err(|e| Error::Thread(e.to_string()))?;
    Ok((
        Routing {
            input,
            pending,
            next: Arc::new(AtomicU64::new(1)),
            cache,
        },
        thread,
    ))
}

/// Keeps `cache` equal to the rows `updates` add up to, as of the last
/// epoch no update can still arrive for: what [`Routing::cached`] answers
/// from without entering the dataflow.
fn keep_cache(updates: &timely::dataflow::Stream<'_, u64, Vec<(Row, u64, isize)>>, cache: Cache) {
    updates
        .clone()
        .sink(timely::dataflow::channels::pact::Pipeline, "route-cache", {
            let mut waiting: BTreeMap<u64, Vec<(Row, isize)>> = BTreeMap::new();
            let mut rows: HashMap<FunctionId, HashMap<Provider, isize>> = HashMap::new();
            move |(input, frontier)| {
                input.for_each(|_, data| {
                    for (row, time, diff) in data.drain(..) {
                        waiting.entry(time).or_default().push((row, diff));
                    }
                });
                let mut changed = Vec::new();
                while let Some((&time, _)) = waiting.first_key_value() {
                    if frontier.less_equal(&time) {
                        break;
                    }
                    for ((function, provider), diff) in waiting.remove(&time).unwrap_or_default() {
                        let of = rows.entry(function).or_default();
                        let count = of.entry(provider.clone()).or_default();
                        *count += diff;
                        if *count == 0 {
                            of.remove(&provider);
                        }
                        changed.push(function);
                    }
                }
                if changed.is_empty() {
                    return;
                }
                let mut cache = cache.write().unwrap_or_else(PoisonError::into_inner);
                for function in changed {
                    match rows.get(&function) {
                        Some(of) if !of.is_empty() => {
                            cache.insert(function, of.keys().cloned().collect());
                        }
                        _ => {
                            rows.remove(&function);
                            cache.remove(&function);
                        }
                    }
                }
            }
        });
}

/// Wall-clock milliseconds since the Unix epoch: the handle stamps inputs
/// with it; the dataflow never calls it.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The routing rule, as a pure function (the dataflow answers every lookup
/// with it; the simulator routes with it): the providers a lookup asked at
/// `now_ms` may use, best first. Rows busy until later are left out; the
/// rest are ranked least loaded (relative to capacity) first, then those
/// holding the module first; equals are ordered by a hash of `salt` (the
/// lookup's id) and the peer, so that lookups made between two load reports
/// spread over equally loaded providers instead of all taking the same one.
pub fn choose_providers(providers: Vec<Provider>, now_ms: u64, salt: u64) -> Vec<Provider> {
    let mut keyed: Vec<(u64, Provider)> = providers
        .into_iter()
        .filter(|p| p.busy_until_ms <= now_ms)
        .map(|p| (spread(salt, &p.peer), p))
        .collect();
    keyed.sort_by(|(ha, a), (hb, b)| {
        let la = a.load as u64 * (b.capacity.max(1) as u64);
        let lb = b.load as u64 * (a.capacity.max(1) as u64);
        la.cmp(&lb)
            .then(b.cached.cmp(&a.cached))
            .then(ha.cmp(hb))
            .then(a.peer.cmp(&b.peer))
    });
    keyed.into_iter().map(|(_, p)| p).collect()
}

/// A per-lookup order among equals (not a security boundary: a provider
/// gains nothing by choosing its peer id, every lookup has another salt).
fn spread(salt: u64, peer: &PeerId) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    salt.hash(&mut h);
    peer.hash(&mut h);
    h.finish()
}

fn reply(pending: &Pending, query: u64, answer: Answer) {
    let waiter = pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&query);
    if let Some(waiter) = waiter {
        // The asker may have given up; nothing to do then.
        let _ = waiter.try_send(answer);
    }
}

impl Routing {
    /// Records that `peer` provides `function` (or no longer does: `None`).
    /// Waits only while the dataflow's input queue is full.
    pub async fn announce(
        &self,
        function: FunctionId,
        peer: PeerId,
        provider: Option<Provider>,
    ) -> Result<()> {
        self.input
            .send_async(RoutingInput::Announce {
                function,
                peer,
                provider,
            })
            .await
            .map_err(|_| Error::Stopped)
    }

    async fn ask(&self, make: impl FnOnce(u64) -> RoutingInput) -> Result<Answer> {
        let query = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = flume::bounded(1);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(query, tx);
        if self.input.send_async(make(query)).await.is_err() {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&query);
            return Err(Error::Stopped);
        }
        rx.recv_async().await.map_err(|_| Error::Stopped)
    }

    /// Skips `peer` in lookups for `for_ms` from now (it answered "busy").
    pub async fn busy(&self, peer: PeerId, for_ms: u64) -> Result<()> {
        self.busy_until(peer, now_ms().saturating_add(for_ms)).await
    }

    /// Skips `peer` in lookups asked before `until_ms` (milliseconds since
    /// the Unix epoch).
    pub async fn busy_until(&self, peer: PeerId, until_ms: u64) -> Result<()> {
        self.input
            .send_async(RoutingInput::Busy { peer, until_ms })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// The providers of `function` known now, best first, without those
    /// that answered "busy" recently.
    pub async fn resolve(&self, function: FunctionId) -> Result<Vec<Provider>> {
        self.resolve_at(function, now_ms()).await
    }

    /// The providers of `function` known now, best first, without those
    /// busy until after `now_ms` (milliseconds since the Unix epoch).
    pub async fn resolve_at(&self, function: FunctionId, now_ms: u64) -> Result<Vec<Provider>> {
        match self
            .ask(|query| RoutingInput::Resolve {
                query,
                function,
                now_ms,
            })
            .await?
        {
            Answer::Providers(p) => Ok(p),
            Answer::Table(_) => Err(Error::Stopped),
        }
    }

    /// The providers of `function` as the dataflow last settled them,
    /// ranked as a lookup at `now_ms` would rank them, without entering
    /// the dataflow (`None` when it knows none). Unlike
    /// [`Routing::resolve_at`] it is not ordered after announcements still
    /// in the input queue: the hot path of a call uses it, and asks the
    /// dataflow when it has nothing.
    pub fn cached_at(&self, function: FunctionId, now_ms: u64) -> Option<Vec<Provider>> {
        let rows = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&function)?
            .clone();
        let salt = self.next.fetch_add(1, Ordering::Relaxed);
        Some(choose_providers(rows, now_ms, salt))
    }

    /// [`Routing::cached_at`] now.
    pub fn cached(&self, function: FunctionId) -> Option<Vec<Provider>> {
        self.cached_at(function, now_ms())
    }

    /// Providers of `function` known but left out now, busy until later.
    pub fn resting(&self, function: FunctionId) -> usize {
        let now = now_ms();
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&function)
            .map_or(0, |rows| {
                rows.iter().filter(|p| p.busy_until_ms > now).count()
            })
    }

    /// Every `(function, provider)` row.
    pub async fn table(&self) -> Result<Vec<(FunctionId, Provider)>> {
        match self.ask(|query| RoutingInput::List { query }).await? {
            Answer::Table(t) => Ok(t),
            Answer::Providers(_) => Err(Error::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer id that reads back as `name` ([`name`]).
    fn peer(name: &str) -> PeerId {
        let mut bytes = vec![0, name.len() as u8];
        bytes.extend(name.as_bytes());
        PeerId::from_bytes(&bytes).unwrap()
    }

    /// The name [`peer`] made `peer` from.
    fn name(peer: &PeerId) -> String {
        String::from_utf8(peer.to_bytes()[2..].to_vec()).unwrap()
    }

    fn provider(name: &str, load: u32) -> Provider {
        Provider {
            peer: peer(name),
            load,
            capacity: 4,
            cached: true,
            busy_until_ms: 0,
        }
    }

    /// Waits (10 s at most) until `check` holds.
    fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "{what}: not reached");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn the_cache_follows_the_table_without_entering_the_dataflow() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (routing, thread) = start_routing(None, peer("me")).unwrap();
        let f = FunctionId::of(b"f");
        assert_eq!(routing.cached_at(f, 0), None);
        rt.block_on(async {
            routing
                .announce(f, peer("a"), Some(provider("a", 3)))
                .await
                .unwrap();
            routing
                .announce(f, peer("b"), Some(provider("b", 1)))
                .await
                .unwrap();
        });
        eventually("both rows, least loaded first", || {
            routing.cached_at(f, 0) == Some(vec![provider("b", 1), provider("a", 3)])
        });
        rt.block_on(routing.busy_until(peer("b"), 1_300)).unwrap();
        eventually("b busy until 1300", || {
            routing
                .cached_at(f, 1_000)
                .is_some_and(|p| p.len() == 1 && p[0].peer == peer("a"))
        });
        assert_eq!(routing.cached_at(f, 1_300).map(|p| p.len()), Some(2));
        rt.block_on(async {
            routing.announce(f, peer("a"), None).await.unwrap();
            routing.announce(f, peer("b"), None).await.unwrap();
        });
        eventually("no rows", || routing.cached_at(f, 0).is_none());
        drop(routing);
        thread.join().unwrap();
    }

    #[test]
    fn lookups_see_the_table_as_of_their_epoch() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (routing, thread) = start_routing(None, peer("me")).unwrap();
        let f = FunctionId::of(b"f");
        let g = FunctionId::of(b"g");
        rt.block_on(async {
            assert!(routing.resolve(f).await.unwrap().is_empty());
            routing
                .announce(f, peer("a"), Some(provider("a", 3)))
                .await
                .unwrap();
            routing
                .announce(f, peer("b"), Some(provider("b", 1)))
                .await
                .unwrap();
            routing
                .announce(g, peer("a"), Some(provider("a", 0)))
                .await
                .unwrap();
            let found = routing.resolve(f).await.unwrap();
            assert_eq!(found, vec![provider("b", 1), provider("a", 3)]);
            // An update replaces the row; a withdrawal removes it.
            routing
                .announce(f, peer("a"), Some(provider("a", 0)))
                .await
                .unwrap();
            routing.announce(f, peer("b"), None).await.unwrap();
            assert_eq!(routing.resolve(f).await.unwrap(), vec![provider("a", 0)]);
            assert_eq!(routing.table().await.unwrap().len(), 2);
            // A busy provider is skipped until its window passes, even
            // when it announces itself again meanwhile; time is the one
            // the inputs carry.
            routing
                .announce(f, peer("c"), Some(provider("c", 9)))
                .await
                .unwrap();
            routing.busy_until(peer("a"), 1_300).await.unwrap();
            routing
                .announce(f, peer("a"), Some(provider("a", 0)))
                .await
                .unwrap();
            let peers = |found: Vec<Provider>| -> Vec<String> {
                found.iter().map(|p| name(&p.peer)).collect()
            };
            assert_eq!(peers(routing.resolve_at(f, 1_000).await.unwrap()), ["c"]);
            assert_eq!(peers(routing.resolve_at(f, 1_299).await.unwrap()), ["c"]);
            // An earlier deadline does not shorten the window.
            routing.busy_until(peer("a"), 1_100).await.unwrap();
            assert_eq!(peers(routing.resolve_at(f, 1_299).await.unwrap()), ["c"]);
            assert_eq!(
                peers(routing.resolve_at(f, 1_300).await.unwrap()),
                ["a", "c"]
            );
            // A lookup asked earlier still sees the window, whatever came after.
            assert_eq!(peers(routing.resolve_at(f, 1_200).await.unwrap()), ["c"]);
            // The handle stamps with the wall clock: a window from now hides
            // the provider from a lookup asked now.
            routing.busy(peer("c"), 60_000).await.unwrap();
            assert_eq!(peers(routing.resolve(f).await.unwrap()), ["a"]);
        });
        drop(routing);
        thread.join().unwrap();
    }

    #[test]
    fn the_rule_ranks_by_load_then_module_and_spreads_equals_over_lookups() {
        let row = |name: &str, load, capacity, cached, busy_until_ms| Provider {
            peer: peer(name),
            load,
            capacity,
            cached,
            busy_until_ms,
        };
        let peers =
            |found: Vec<Provider>| -> Vec<String> { found.iter().map(|p| name(&p.peer)).collect() };
        // (rows) → order, for any salt.
        let table: &[(Vec<Provider>, &[&str])] = &[
            (
                vec![row("a", 3, 4, true, 0), row("b", 1, 4, true, 0)],
                &["b", "a"],
            ),
            // Relative to capacity: 2 of 8 beats 1 of 2.
            (
                vec![row("a", 1, 2, true, 0), row("b", 2, 8, true, 0)],
                &["b", "a"],
            ),
            // Equal load: the one holding the module first.
            (
                vec![row("a", 0, 4, false, 0), row("b", 0, 4, true, 0)],
                &["b", "a"],
            ),
            // Busy until after the lookup: left out.
            (
                vec![row("a", 0, 4, true, 2_000), row("b", 5, 4, true, 0)],
                &["b"],
            ),
        ];
        for (rows, want) in table {
            for salt in 0..8 {
                assert_eq!(peers(choose_providers(rows.clone(), 1_000, salt)), *want);
            }
        }
        // Equals: each lookup has its own order, and over many lookups each
        // provider comes first about as often.
        let rows: Vec<Provider> = (0..4)
            .map(|i| row(&format!("p{i}"), 0, 4, true, 0))
            .collect();
        let mut first = BTreeMap::<String, u32>::new();
        for salt in 0..4000 {
            let order = peers(choose_providers(rows.clone(), 0, salt));
            assert_eq!(order, peers(choose_providers(rows.clone(), 0, salt)));
            *first.entry(order[0].clone()).or_default() += 1;
        }
        assert_eq!(first.len(), 4);
        assert!(first.values().all(|n| (800..1200).contains(n)), "{first:?}");
    }
}
