//! The `call` operator: runs a WebAssembly function on each record without
//! blocking the worker.
//!
//! Each record becomes a call on the [`orb_functions::Executor`]'s threads.
//! The operator keeps a capability for every call in flight and emits the
//! result at the record's timestamp when it comes back (the executor's
//! callback rings the operator's activator), so downstream frontiers wait for
//! exactly the calls that are still running. At most
//! [`CallConfig::max_in_flight`] calls per operator run at once (the seed
//! framework's "max concurrent async operations"); further records wait in
//! the operator, and the source's lag gate keeps that queue bounded. An
//! executor that answers `Busy` is asked again a moment later. A guest
//! failure becomes an error record, never a failed pipeline.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use orb_functions::{CallOptions, Error as FnError, Executor, Function, Seed};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;

use crate::Cancel;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, Operator};

/// How a `call` operator runs.
#[derive(Clone)]
pub struct CallConfig {
    /// Most calls in flight per operator (per worker).
    pub max_in_flight: usize,
    /// Limits of each call; the seed is derived per record.
    pub options: CallOptions,
    /// Counters shared with the caller.
    pub stats: Arc<CallStats>,
    /// When cancelled, waiting records are dropped and results still in
    /// flight are discarded as they return; nothing new is submitted.
    pub cancel: Cancel,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 8,
            options: CallOptions::default(),
            stats: Arc::default(),
            cancel: Cancel::new(),
        }
    }
}

/// What a `call` operator did; read it while or after the pipeline runs.
#[derive(Debug, Default)]
pub struct CallStats {
    in_flight: AtomicUsize,
    /// Highest number of calls in flight at once, over all operators sharing these stats.
    pub peak_in_flight: AtomicUsize,
    /// Calls that returned output.
    pub succeeded: AtomicU64,
    /// Calls whose guest failed.
    pub failed: AtomicU64,
    /// Times the executor answered `Busy`.
    pub busy: AtomicU64,
}

impl CallStats {
    fn started(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::AcqRel);
    }

    fn finished(&self, ok: bool) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let counter = if ok { &self.succeeded } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A guest's failure, as a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFailure {
    /// The kind of error (`out_of_fuel`, `trap`, `exit`, ...).
    pub kind: String,
    /// What happened, in words.
    pub message: String,
    /// Fuel the guest used before it failed (none when it never ran).
    pub fuel: Option<u64>,
}

impl From<&FnError> for CallFailure {
    fn from(e: &FnError) -> Self {
        Self {
            kind: e.kind().to_owned(),
            message: e.to_string(),
            fuel: e.fuel(),
        }
    }
}

/// A record and what the function made of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Called<T> {
    /// The record the call was for.
    pub record: T,
    /// The output bytes and fuel, or the failure.
    pub result: Result<(Vec<u8>, u64), CallFailure>,
}

type Done = (u64, Result<(Vec<u8>, u64), CallFailure>);

/// Runs `function` on `input(record)` for each record of `stream`.
pub fn call<'scope, T, F>(
    stream: Stream<'scope, u64, Vec<T>>,
    executor: Arc<Executor>,
    function: Function,
    config: CallConfig,
    input: F,
) -> Stream<'scope, u64, Vec<Called<T>>>
where
    T: timely::ExchangeData,
    F: Fn(&T) -> Vec<u8> + 'static,
{
    let scope = stream.scope();
    let max_in_flight = config.max_in_flight.max(1);
    stream.unary_frontier::<CapacityContainerBuilder<Vec<Called<T>>>, _, _, _>(
        Pipeline,
        "Call",
        move |initial, info| {
            // Times come from the records; holding the initial capability would stall the output.
            drop(initial);
            let activator = scope.worker().sync_activator_for(info.address.to_vec());
            let local = scope.activator_for(info.address.clone());
            let (done_tx, done_rx) = flume::bounded::<Done>(max_in_flight);
            let mut waiting: VecDeque<(Capability<u64>, T)> = VecDeque::new();
            let mut in_flight: HashMap<u64, (Capability<u64>, T)> = HashMap::new();
            let mut next_id = 0u64;
            let fn_id = function.id();
            move |(records, _frontier), output| {
                if config.cancel.is_cancelled() {
                    // Release every capability we can; the executor's
                    // callbacks wake us for the calls still running.
                    records.for_each(|_, data| data.clear());
                    waiting.clear();
                    while let Ok((id, _)) = done_rx.try_recv() {
                        in_flight.remove(&id);
                    }
                    return;
                }
                records.for_each(|cap, data| {
                    // Vec streams carry one time per message.
                    if let Some(cap) = cap.retain_least(0) {
                        waiting.extend(data.drain(..).map(|record| (cap.clone(), record)));
                    }
                });
                while let Ok((id, result)) = done_rx.try_recv() {
                    if let Some((cap, record)) = in_flight.remove(&id) {
                        output.session(&cap).give(Called { record, result });
                    }
                }
                while in_flight.len() < max_in_flight {
                    let Some((cap, record)) = waiting.pop_front() else {
                        break;
                    };
                    let bytes = input(&record);
                    let mut opts = config.options.clone();
                    opts.seed = Seed::derive(&[fn_id.as_bytes().as_slice(), &bytes].concat());
                    let (tx, bell, stats) =
                        (done_tx.clone(), activator.clone(), config.stats.clone());
                    let id = next_id;
                    stats.started();
                    let submitted = executor.submit(function.clone(), bytes, opts, move |r| {
                        stats.finished(r.is_ok());
                        let r = r
                            .map(|o| (o.output, o.fuel))
                            .map_err(|e| CallFailure::from(&e));
                        // The channel holds max_in_flight results: this never blocks.
                        let _ = tx.send((id, r));
                        let _ = bell.activate();
                    });
                    match submitted {
                        Ok(()) => {
                            next_id += 1;
                            in_flight.insert(id, (cap, record));
                        }
                        Err(FnError::Busy { .. }) => {
                            config.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
                            config.stats.busy.fetch_add(1, Ordering::Relaxed);
                            waiting.push_front((cap, record));
                            local.activate_after(Duration::from_millis(1));
                            break;
                        }
                        Err(e) => {
                            config.stats.finished(false);
                            output.session(&cap).give(Called {
                                record,
                                result: Err(CallFailure::from(&e)),
                            });
                        }
                    }
                }
            }
        },
    )
}
