//! `orb-engine`: reactive pipelines on timely and differential dataflow.
//!
//! Pipeline authors build timely dataflows with a few Orb pieces, and can
//! always drop down to plain timely or differential in the same scope:
//!
//! - [`boundary`]: sources fed from outside the workers through bounded
//!   channels ([`channel`], [`SourceHandle`]) or bounded iterators
//!   ([`iter_source`]), woken by activators and paced by a probe ([`Flow`])
//!   so that a fast producer meets backpressure instead of filling memory;
//! - [`call()`]: runs a WebAssembly function on each record on the executor
//!   pool, never blocking a worker, with a bound on calls in flight;
//! - [`weighted`], [`records`]: a stream becomes a differential collection
//!   (tables, joins, reductions) at the times its records travel with;
//! - [`table()`]: live tables, arranged by key, to join streams against,
//!   look keys up in and subscribe to, with compaction advanced as time
//!   moves so history stays bounded;
//! - [`Log`], [`persist`]: persistent streams in sled, replayed from any
//!   index and followed as they grow (streams are ephemeral otherwise);
//! - [`execute`]: runs a pipeline on `-w N` workers, or in timely's cluster
//!   mode across processes, and waits until every dataflow completes.
//!
//! - [`start_routing`]: the node's routing table (function → providers)
//!   as an arrangement, fed by announcements and answering lookups.
//!
//! The node dataflow is built from the same pieces.
//!
//! ```
//! use orb_engine::{EngineConfig, Flow, InspectRecords, execute, iter_source};
//! use timely::dataflow::operators::Probe;
//! use timely::dataflow::operators::vec::{Filter, Map};
//!
//! let results = execute(&EngineConfig::default(), |worker| {
//!     let flow = Flow::new(4, 64);
//!     let seen = std::rc::Rc::new(std::cell::Cell::new(0u64));
//!     let s = seen.clone();
//!     worker.dataflow::<u64, _, _>(|scope| {
//!         iter_source(scope, "numbers", &flow, 0..1000u64)
//!             .filter(|x| x % 3 == 0)
//!             .map(|x| x * 2u64)
//!             .inspect_records(move |_| s.set(s.get() + 1))
//!             .probe_with(&flow.probe);
//!     });
//!     orb_engine::run_to_completion(worker);
//!     seen.get()
//! })
//! .unwrap();
//! assert_eq!(results, vec![334]);
//! ```

pub mod boundary;
mod call;
mod collection;
mod config;
mod consensus;
mod error;
mod inspect;
mod persist;
mod routing;
mod table;

pub use boundary::{
    Busy, Cancel, Closed, Flow, Inlet, SourceHandle, TrySendError, channel, iter_source,
};
pub use call::{
    CallConfig, CallFailure, CallResult, CallStats, Called, Invoker, OnDone, Saturated, call,
    call_with, local_invoker,
};
pub use collection::{records, weighted};
pub use config::EngineConfig;
pub use consensus::{Balances, Consensus, LedgerStatus, start_consensus};
pub use error::{Error, Result};
pub use inspect::InspectRecords;
pub use persist::{Log, persist};
pub use routing::{Provider, Routing, RoutingInput, choose_providers, start_routing};
pub use table::{Change, Entry, Key, LiveTable, TableStreams, TableTrace, table};

/// Runs `pipeline` on every worker and returns each worker's result (this
/// process's workers only, in index order). Returns when every dataflow has
/// completed, on every worker of every process.
pub fn execute<T, F>(config: &EngineConfig, pipeline: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(&mut timely::worker::Worker) -> T + Send + Sync + 'static,
{
    let guards = timely::execute(config.timely()?, pipeline).map_err(Error::Start)?;
    guards
        .join()
        .into_iter()
        .map(|r| r.map_err(Error::Worker))
        .collect()
}

/// Steps `worker` until its dataflows complete, parking while idle.
pub fn run_to_completion(worker: &mut timely::worker::Worker) {
    while worker.has_dataflows() {
        worker.step_or_park(None);
    }
}
