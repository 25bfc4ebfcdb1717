//! `InspectRecords`: timely's `inspect` for `Vec` streams, callable as a method.
//!
//! timely's `Inspect::inspect` carries a higher-ranked bound
//! (`for<'a> &'a C: IntoIterator`) that rustc tries to prove before it has
//! matched the container type. With wasmtime's regalloc2 in the dependency
//! graph (its `&UnsafeSendSync<T>: IntoIterator` impl recurses), that search
//! overflows (E0275) at every `stream.inspect(..)` call. Naming the
//! container up front, as this trait does, sidesteps it.

use timely::dataflow::operators::Inspect;
use timely::dataflow::{Stream, StreamVec};
use timely::progress::Timestamp;

/// Runs a closure on each record of a `Vec` stream, passing the stream on.
pub trait InspectRecords<D> {
    /// Calls `f` on every record.
    fn inspect_records(self, f: impl FnMut(&D) + 'static) -> Self;
}

impl<T: Timestamp, D: 'static> InspectRecords<D> for StreamVec<'_, T, D> {
    fn inspect_records(self, f: impl FnMut(&D) + 'static) -> Self {
        <Stream<'_, T, Vec<D>> as Inspect<T, Vec<D>>>::inspect(self, f)
    }
}
