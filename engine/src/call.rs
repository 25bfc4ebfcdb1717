//! The `call` operator: runs a WebAssembly function on each record without
//! blocking the worker.
//!
//! Each record becomes a call on an [`Invoker`]: the local
//! [`orb_functions::Executor`]'s threads ([`call`]), or anything that
//! answers later through a callback, such as a function deployed on the
//! network and called through a node ([`call_with`]).
//! The operator keeps a capability for every call in flight and emits the
//! result at the record's timestamp when it comes back (the executor's
//! callback rings the operator's activator), so downstream frontiers wait for
//! exactly the calls that are still running. At most
//! [`CallConfig::max_in_flight`] calls per operator run at once (the seed
//! framework's "max concurrent async operations"); further records wait in
//! the operator, and the source's lag gate keeps that queue bounded. An
//! executor that answers `Saturated` is asked again a moment later. A guest
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
    /// Times the executor answered `Saturated`.
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

/// Output bytes and fuel, or the failure.
pub type CallResult = Result<(Vec<u8>, u64), CallFailure>;

/// Called exactly once with a call's result.
pub type OnDone = Box<dyn FnOnce(CallResult) + Send>;

/// The invoker cannot take another call now; the operator asks again a
/// moment later.
#[derive(Debug)]
pub struct Saturated;

/// What runs the calls of a `call` operator.
pub trait Invoker: Send + Sync + 'static {
    /// Starts one call of `input`. Returns at once: `done` receives the
    /// result (a failure too) later, from any thread. On `Err(Saturated)`
    /// `done` is dropped uncalled and the operator asks again.
    fn invoke(&self, input: Vec<u8>, done: OnDone) -> Result<(), Saturated>;
}

/// A function on this process's executor.
struct Local {
    executor: Arc<Executor>,
    function: Function,
    options: CallOptions,
}

impl Invoker for Local {
    fn invoke(&self, input: Vec<u8>, done: OnDone) -> Result<(), Saturated> {
        let mut opts = self.options.clone();
        opts.seed = Seed::derive(&[self.function.id().as_bytes().as_slice(), &input].concat());
        // `done` moves into the executor's callback; keep a way to report
        // a refusal that is not "busy" as the call's result.
        let done = Arc::new(std::sync::Mutex::new(Some(done)));
        let on_result = done.clone();
        let submitted = self
            .executor
            .submit(self.function.clone(), input, opts, move |r| {
                let done = on_result.lock().ok().and_then(|mut d| d.take());
                if let Some(done) = done {
                    done(
                        r.map(|o| (o.output, o.fuel))
                            .map_err(|e| CallFailure::from(&e)),
                    );
                }
            });
        match submitted {
            Ok(()) => Ok(()),
            Err(FnError::Busy { .. }) => Err(Saturated),
            Err(e) => {
                let done = done.lock().ok().and_then(|mut d| d.take());
                if let Some(done) = done {
                    done(Err(CallFailure::from(&e)));
                }
                Ok(())
            }
        }
    }
}

/// An [`Invoker`] running `function` on `executor` with `options` (the
/// seed is derived per input).
pub fn local_invoker(
    executor: Arc<Executor>,
    function: Function,
    options: CallOptions,
) -> Arc<dyn Invoker> {
    Arc::new(Local {
        executor,
        function,
        options,
    })
}

/// Runs `function` on `input(record)` for each record of `stream`, on
/// `executor`.
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
    let local = local_invoker(executor, function, config.options.clone());
    call_with(stream, local, config, input)
}

/// Runs `input(record)` through `invoker` for each record of `stream`.
pub fn call_with<'scope, T, F>(
    stream: Stream<'scope, u64, Vec<T>>,
    invoker: Arc<dyn Invoker>,
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
                    let (tx, bell, stats) =
                        (done_tx.clone(), activator.clone(), config.stats.clone());
                    let id = next_id;
                    stats.started();
                    let submitted = invoker.invoke(
                        bytes,
                        Box::new(move |r: CallResult| {
                            stats.finished(r.is_ok());
                            // The channel holds max_in_flight results: this never blocks.
                            let _ = tx.send((id, r));
                            let _ = bell.activate();
                        }),
                    );
                    match submitted {
                        Ok(()) => {
                            next_id += 1;
                            in_flight.insert(id, (cap, record));
                        }
                        Err(Saturated) => {
                            config.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
                            config.stats.busy.fetch_add(1, Ordering::Relaxed);
                            waiting.push_front((cap, record));
                            local.activate_after(Duration::from_millis(1));
                            break;
                        }
                    }
                }
            }
        },
    )
}
