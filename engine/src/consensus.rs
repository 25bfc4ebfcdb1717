//! The consensus driver inside the dataflow.
//!
//! Everything consensus hears enters one bounded channel as an
//! [`Input`]. A single `snowball` operator owns the pure
//! [`Replica`](orb_ledger::consensus::Replica) and drives it: it steps
//! each input with the driver's clock, persists the blocks the replica
//! hands out (one durable commit each on the [`Chain`], before anything
//! that announces them is sent), and hands the replica's messages to the
//! node: polls, answers and fetches at once, before the write (they claim
//! nothing durable, and peers waiting on them need not wait for this
//! node's fsync), the gossip of committed blocks only once they are
//! durable. Each committed block's balance effects leave the operator as a
//! differential collection; a `reduce` sums them per key into the live
//! balances the node reads (there is no balance table: the chain is the
//! only source). The rules themselves live in `orb-ledger`; nothing here
//! decides anything.

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

use crate::boundary::{Flow, SourceHandle, channel};
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
    let handle = Consensus {
        input,
        balances: balances.clone(),
        status: status.clone(),
        chain: chain.clone(),
    };
    let act = Arc::new(act);
    let observe = Arc::new(observe);
    let thread = std::thread::Builder::new()
        .name("orb-consensus".into())
        .spawn(move || {
            let engine = EngineConfig {
                workers: 1,
                ..EngineConfig::default()
            };
            let run = crate::execute(&engine, move |worker| {
                let flow = Flow::new(64, 1024);
                let (inlet, chain, key, config, act, observe, balances, status) = (
                    inlet.clone(),
                    chain.clone(),
                    key.clone(),
                    config.clone(),
                    act.clone(),
                    observe.clone(),
                    balances.clone(),
                    status.clone(),
                );
                worker.dataflow::<u64, _, _>(|scope| {
                    let inputs = inlet.into_stream(scope, "consensus-input", &flow);
                    let effects = inputs.unary::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                        Pipeline,
                        "snowball",
                        move |_, _| {
                            let mut driver = Driver::new(chain, key, config, status);
                            move |input, output| {
                                input.for_each(|cap, data| {
                                    let Some(&time) = cap.least() else { return };
                                    let mut session = output.session(&cap);
                                    for (k, d) in driver.step(data.drain(..), &*act, &*observe) {
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

/// The replica, the chain it persists to, and the clock.
struct Driver {
    replica: Replica,
    chain: Arc<Mutex<Chain>>,
    status: Arc<RwLock<LedgerStatus>>,
    started: Instant,
    /// Balance changes not yet given to the dataflow: the genesis and
    /// blocks committed before a restart, then each commit's.
    pending: Vec<(PublicKey, i128)>,
    poisoned: Option<String>,
}

impl Driver {
    fn new(
        chain: Arc<Mutex<Chain>>,
        key: Keypair,
        config: Config,
        status: Arc<RwLock<LedgerStatus>>,
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
        Self {
            replica,
            chain,
            status,
            started: Instant::now(),
            pending,
            poisoned: None,
        }
    }

    /// Steps the inputs, persists, sends; the balance changes to emit.
    fn step(
        &mut self,
        inputs: impl Iterator<Item = Input>,
        act: &dyn Fn(Message),
        observe: &dyn Fn(&Event),
    ) -> Vec<(PublicKey, i128)> {
        if self.poisoned.is_some() {
            return std::mem::take(&mut self.pending);
        }
        let now = self.started.elapsed();
        for input in inputs {
            self.replica.step(input, now);
        }
        let ready = self.replica.ready();
        // What claims no durability goes out now, ahead of the fsync.
        let (after_write, now_sent): (Vec<_>, Vec<_>) = ready
            .messages
            .into_iter()
            .partition(|m| matches!(m, Message::Gossip(Gossip::Committed(_))));
        for m in now_sent {
            act(m);
        }
        {
            let mut chain = lock(&self.chain);
            // Every block of this step in one durable write (one fsync).
            let blocks: Vec<_> = ready
                .persist
                .iter()
                .map(|c| (&*c.block, &c.effects))
                .collect();
            match chain.commit_checked_all(&blocks) {
                Ok(()) => {
                    for commit in &ready.persist {
                        self.pending
                            .extend(commit.effects.0.iter().map(|(k, d)| (*k, *d)));
                    }
                }
                Err(e) => {
                    // Never announce what is not durable, never write past
                    // a failed write.
                    tracing::error!(
                        heights = ?ready.persist.iter().map(|c| c.block.header.height).collect::<Vec<_>>(),
                        "ledger write failed, consensus stops: {e}"
                    );
                    self.poisoned = Some(e.to_string());
                }
            }
            self.replica.advance(chain.height());
        }
        if self.poisoned.is_none() {
            for m in after_write {
                act(m);
            }
        }
        for e in ready.events {
            log(&e);
            observe(&e);
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
        s.pipelined = r.pipelined();
        s.equivocators = r.equivocators().iter().map(PublicKey::to_hex).collect();
        s.poisoned.clone_from(&self.poisoned);
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
