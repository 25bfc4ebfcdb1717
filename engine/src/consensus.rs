//! The consensus driver inside the dataflow.
//!
//! Everything consensus hears enters one bounded channel as an
//! [`Input`]. A single `snowball` operator owns the pure
//! [`Replica`](orb_ledger::consensus::Replica) and drives it: it steps
//! each input with the driver's clock and hands the replica's messages to
//! the node at once (polls, answers and fetches claim nothing durable),
//! and the blocks the replica committed to a writer thread. The writer
//! makes them durable on the [`Chain`] (one fsync for all that wait) and
//! only then sends the gossip announcing them, logs their events and
//! tells the driver, which marks the height durable and emits the blocks'
//! balance effects as a differential collection; a `reduce` sums them per
//! key into the live balances the node reads (there is no balance table:
//! the chain is the only source). So the replica answers and polls for the
//! next height while the disk syncs the last. The rules themselves live
//! in `orb-ledger`; nothing here decides anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use differential_dataflow::AsCollection;
use orb_ledger::consensus::{Config, Event, Gossip, Input, Message, Replica};
use orb_ledger::{Chain, Keypair, PublicKey, Verifier};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Operator, Probe};

use crate::boundary::{Flow, SourceHandle, WeakSourceHandle, channel};
use crate::{EngineConfig, Error, Result};

/// What the node can read while consensus runs.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LedgerStatus {
    /// Committed height.
    pub height: u64,
    /// Its hash.
    pub head: String,
    /// Committee members (hex keys).
    pub committee: Vec<String>,
    /// Whether this node holds a slot.
    pub member: bool,
    /// Settlements waiting.
    pub mempool: usize,
    /// Finality of recent blocks decided or seen here, in microseconds.
    pub finality_us: Vec<u64>,
    /// For recent blocks decided here, the wait from the first candidate
    /// to this node's first poll, in microseconds.
    pub wait_us: Vec<u64>,
    /// How long this node's recent polls took from sent to closed, in
    /// microseconds.
    pub poll_us: Vec<u64>,
    /// Proposals this node made for a height while the one before it was
    /// still being decided (pipelining), since it started.
    pub pipelined: u64,
    /// Voters excluded for equivocating (hex keys).
    pub equivocators: Vec<String>,
    /// Why the ledger stopped writing, if it did (the node must be
    /// restarted: nothing is committed after a failed write).
    pub poisoned: Option<String>,
}

/// Live balances, from the dataflow's reduce.
pub type Balances = Arc<RwLock<HashMap<PublicKey, i64>>>;

/// The handle to a node's consensus dataflow.
#[derive(Clone)]
pub struct Consensus {
    input: SourceHandle<Input>,
    /// Live balances.
    pub balances: Balances,
    /// Status.
    pub status: Arc<RwLock<LedgerStatus>>,
    /// The chain (read it; only the dataflow appends).
    pub chain: Arc<Mutex<Chain>>,
}

impl Consensus {
    /// Feeds an input, waiting while the dataflow is behind.
    pub async fn send(&self, input: Input) -> Result<()> {
        self.input
            .send_async(input)
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Feeds an input unless the queue is full (false then).
    pub fn try_send(&self, input: Input) -> bool {
        self.input.try_send(input).is_ok()
    }

    /// A key's live balance.
    pub fn balance(&self, key: &PublicKey) -> i64 {
        self.balances
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

fn lock(chain: &Mutex<Chain>) -> std::sync::MutexGuard<'_, Chain> {
    chain.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts consensus on its own thread; `act` carries out the replica's
/// messages and `observe` sees each of its events (a block committed, a
/// voter excluded, a block refused) once it is logged; neither may block.
pub fn start_consensus(
    chain: Chain,
    key: Keypair,
    config: Config,
    act: impl Fn(Message) + Send + Sync + 'static,
    observe: impl Fn(&Event) + Send + Sync + 'static,
) -> Result<(Consensus, JoinHandle<()>)> {
    let (input, inlet) = channel::<Input>(8192);
    // Readers see the committed head at once, before the dataflow's first
    // activation publishes the rest.
    let status = Arc::new(RwLock::new(LedgerStatus {
        height: chain.height(),
        head: chain.head().to_hex(),
        ..LedgerStatus::default()
    }));
    let chain = Arc::new(Mutex::new(chain));
    let balances: Balances = Arc::default();
    let wake = input.downgrade();
    let handle = Consensus {
        input,
        balances: balances.clone(),
        status: status.clone(),
        chain: chain.clone(),
    };
    let act: Act = Arc::new(act);
    let observe: Observe = Arc::new(observe);
    let thread = std::thread::Builder::new()
        .name("orb-consensus".into())
        .spawn(move || {
            let engine = EngineConfig {
                workers: 1,
                ..EngineConfig::default()
            };
            let run = crate::execute(&engine, move |worker| {
                let flow = Flow::new(64, 1024);
                let (inlet, chain, key, config, act, observe, balances, status, wake) = (
                    inlet.clone(),
                    chain.clone(),
                    key.clone(),
                    config.clone(),
                    act.clone(),
                    observe.clone(),
                    balances.clone(),
                    status.clone(),
                    wake.clone(),
                );
                worker.dataflow::<u64, _, _>(|scope| {
                    let inputs = inlet.into_stream(scope, "consensus-input", &flow);
                    let effects = inputs.unary::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                        Pipeline,
                        "snowball",
                        move |_, _| {
                            let mut driver =
                                Driver::new(chain, key, config, status, wake, (act, observe));
                            move |input, output| {
                                input.for_each(|cap, data| {
                                    let Some(&time) = cap.least() else { return };
                                    let mut session = output.session(&cap);
                                    for (k, d) in driver.step(data.drain(..)) {
                                        session.give((k, time, clamp(d)));
                                    }
                                });
                            }
                        },
                    );
                    // The live balances: a sum per key over every committed
                    // block's effects.
                    effects
                        .as_collection()
                        .map(|k| (k, ()))
                        .reduce(|_k, input, output| {
                            let total: isize = input.iter().map(|(_, d)| *d).sum();
                            output.push((total as i64, 1isize));
                        })
                        .inspect(
                            move |((k, total), _t, diff): &((PublicKey, i64), u64, isize)| {
                                let mut b =
                                    balances.write().unwrap_or_else(PoisonError::into_inner);
                                if *diff > 0 {
                                    b.insert(*k, *total);
                                } else if b.get(k) == Some(total) {
                                    b.remove(k);
                                }
                            },
                        )
                        .inner
                        .probe_with(&flow.probe);
                });
                crate::run_to_completion(worker);
            });
            if let Err(e) = run {
                tracing::error!("consensus dataflow failed: {e}");
            }
        })
        .map_err(|e| Error::Thread(e.to_string()))?;
    Ok((handle, thread))
}

fn clamp(v: i128) -> isize {
    v.clamp(isize::MIN as i128, isize::MAX as i128) as isize
}

/// What the consensus thread hands the node: each message to carry out,
/// each event once it is logged.
type Act = Arc<dyn Fn(Message) + Send + Sync>;
type Observe = Arc<dyn Fn(&Event) + Send + Sync>;

/// Blocks committed in one step, and what waits for them to be durable.
struct Job {
    commits: Vec<orb_ledger::consensus::Commit>,
    /// The gossip announcing them.
    after: Vec<Message>,
    /// Their `Committed` events.
    events: Vec<Event>,
}

/// What the writer made durable, or why it stopped.
enum Done {
    Written {
        height: u64,
        effects: Vec<(PublicKey, i128)>,
    },
    Failed(String),
}

/// Blocks waiting for the writer, at most (the replica waits beyond).
const WRITES_QUEUED: usize = 64;

/// The thread that makes committed blocks durable, so that the replica
/// goes on answering and polling while the disk syncs. It writes jobs in
/// the order they come, all that are waiting in one durable write (a
/// group commit: one fsync), and only then sends their gossip, logs their
/// events and tells the driver the height (which wakes it with a tick).
/// After a failed write it writes nothing more and sends nothing.
fn start_writer(
    chain: Arc<Mutex<Chain>>,
    wake: WeakSourceHandle<Input>,
    act: Act,
    observe: Observe,
) -> Result<(flume::Sender<Job>, flume::Receiver<Done>, JoinHandle<()>)> {
    let (jobs, queued) = flume::bounded::<Job>(WRITES_QUEUED);
    let (done, finished) = flume::bounded::<Done>(WRITES_QUEUED);
    let thread = std::thread::Builder::new()
        .name("orb-ledger-writer".into())
        .spawn(move || {
            let mut failed = false;
            while let Ok(first) = queued.recv() {
                let mut batch = vec![first];
                batch.extend(queued.try_iter());
                if failed {
                    continue;
                }
                let written = {
                    let mut chain = lock(&chain);
                    let blocks: Vec<_> = batch
                        .iter()
                        .flat_map(|j| &j.commits)
                        .map(|c| (&*c.block, &c.effects))
                        .collect();
                    chain.commit_checked_all(&blocks).map(|()| chain.height())
                };
                let report = match written {
                    Ok(height) => {
                        let mut effects = Vec::new();
                        for job in batch {
                            for c in &job.commits {
                                effects.extend(c.effects.0.iter().map(|(k, d)| (*k, *d)));
                            }
                            for m in job.after {
                                act(m);
                            }
                            for e in &job.events {
                                log(e);
                                observe(e);
                            }
                        }
                        Done::Written { height, effects }
                    }
                    Err(e) => {
                        // Never announce what is not durable, never write
                        // past a failed write.
                        let heights: Vec<u64> = batch
                            .iter()
                            .flat_map(|j| &j.commits)
                            .map(|c| c.block.header.height)
                            .collect();
                        tracing::error!(?heights, "ledger write failed, consensus stops: {e}");
                        failed = true;
                        Done::Failed(e.to_string())
                    }
                };
                if done.send(report).is_err() {
                    return;
                }
                if let Some(wake) = wake.upgrade() {
                    // A full queue wakes the driver anyway.
                    let _ = wake.try_send(Input::Tick);
                }
            }
        })
        .map_err(|e| Error::Thread(e.to_string()))?;
    Ok((jobs, finished, thread))
}

/// The replica, its writer, and the clock.
struct Driver {
    replica: Replica,
    status: Arc<RwLock<LedgerStatus>>,
    started: Instant,
    /// Balance changes not yet given to the dataflow: the genesis and
    /// blocks committed before a restart, then each write's.
    pending: Vec<(PublicKey, i128)>,
    poisoned: Option<String>,
    act: Act,
    observe: Observe,
    /// Taken when the driver goes, so the writer drains and ends.
    jobs: Option<flume::Sender<Job>>,
    written: flume::Receiver<Done>,
    writer: Option<JoinHandle<()>>,
}

impl Driver {
    fn new(
        chain: Arc<Mutex<Chain>>,
        key: Keypair,
        config: Config,
        status: Arc<RwLock<LedgerStatus>>,
        wake: WeakSourceHandle<Input>,
        (act, observe): (Act, Observe),
    ) -> Self {
        let (replica, pending) = {
            let c = lock(&chain);
            let recent = (c.height().saturating_sub(15).max(1)..=c.height())
                .filter_map(|h| c.block(h).ok().flatten().map(Arc::new))
                .collect();
            let replica = Replica::new(
                c.genesis().clone(),
                c.state().clone(),
                recent,
                key,
                config,
                Arc::new(Verifier::cached(1 << 20)),
                std::time::Duration::ZERO,
            );
            let pending = c
                .genesis()
                .balances
                .iter()
                .map(|(k, b)| (*k, i128::from(*b)))
                .chain(
                    (1..=c.height())
                        .filter_map(|h| orb_ledger::stored_effects(c.store(), h).ok().flatten())
                        .flat_map(|e| e.0),
                )
                .collect();
            (replica, pending)
        };
        let (jobs, written, writer, poisoned) =
            match start_writer(chain, wake, act.clone(), observe.clone()) {
                Ok((jobs, written, writer)) => (Some(jobs), written, Some(writer), None),
                Err(e) => {
                    tracing::error!("the ledger writer did not start, consensus stops: {e}");
                    (None, flume::bounded(1).1, None, Some(e.to_string()))
                }
            };
        Self {
            replica,
            status,
            started: Instant::now(),
            pending,
            poisoned,
            act,
            observe,
            jobs,
            written,
            writer,
        }
    }

    /// Takes in what the writer made durable.
    fn collect(&mut self) {
        for done in self.written.try_iter() {
            match done {
                Done::Written { height, effects } => {
                    self.replica.advance(height);
                    self.pending.extend(effects);
                }
                Done::Failed(e) => self.poisoned = Some(e),
            }
        }
    }

    /// Steps the inputs, hands committed blocks to the writer, sends what
    /// claims nothing durable; the balance changes to emit.
    fn step(&mut self, inputs: impl Iterator<Item = Input>) -> Vec<(PublicKey, i128)> {
        self.collect();
        if self.poisoned.is_some() {
            self.publish();
            return std::mem::take(&mut self.pending);
        }
        let now = self.started.elapsed();
        for input in inputs {
            self.replica.step(input, now);
        }
        let ready = self.replica.ready();
        // Polls, answers and fetches go out now; the announcement of a
        // committed block and its event wait for its write.
        let (after, now_sent): (Vec<_>, Vec<_>) = ready
            .messages
            .into_iter()
            .partition(|m| matches!(m, Message::Gossip(Gossip::Committed(_))));
        for m in now_sent {
            (self.act)(m);
        }
        let (events, now_seen): (Vec<_>, Vec<_>) = ready
            .events
            .into_iter()
            .partition(|e| matches!(e, Event::Committed { .. }));
        for e in &now_seen {
            log(e);
            (self.observe)(e);
        }
        if !ready.persist.is_empty() {
            let job = Job {
                commits: ready.persist,
                after,
                events,
            };
            // A full queue holds the replica back until the disk catches up.
            if self.jobs.as_ref().is_none_or(|j| j.send(job).is_err()) {
                self.poisoned = Some("the ledger writer stopped".into());
            }
        }
        self.publish();
        std::mem::take(&mut self.pending)
    }

    fn publish(&self) {
        let r = &self.replica;
        let mut s = self.status.write().unwrap_or_else(PoisonError::into_inner);
        s.height = r.durable();
        s.head = r
            .hash_at(r.durable())
            .unwrap_or_else(|| r.genesis().id())
            .to_hex();
        s.committee = r.committee().iter().map(PublicKey::to_hex).collect();
        s.member = r.is_member();
        s.mempool = r.mempool_len();
        s.finality_us = r.finality_us();
        s.wait_us = r.wait_us();
        s.poll_us = r.poll_us();
        s.pipelined = r.pipelined();
        s.equivocators = r.equivocators().iter().map(PublicKey::to_hex).collect();
        s.poisoned.clone_from(&self.poisoned);
    }
}

impl Drop for Driver {
    /// Every block handed to the writer is written before the consensus
    /// thread ends.
    fn drop(&mut self) {
        self.jobs = None;
        // What it reports now is not needed, but it must not wait to say it.
        while self.written.recv().is_ok() {}
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the ledger writer panicked");
        }
    }
}

fn log(event: &Event) {
    match event {
        Event::Committed {
            height,
            hash,
            receipts,
            finality,
            polls,
            candidates,
            decided_here,
        } => tracing::info!(
            height, %hash, receipts, polls, candidates, decided_here,
            finality_ms = finality.map(|f| f.as_secs_f64() * 1e3),
            "block committed"
        ),
        Event::Equivocation { voter } => {
            tracing::warn!(%voter, "equivocating voter excluded");
        }
        Event::Refused { height, reason } => tracing::debug!(height, "block refused: {reason}"),
    }
}
