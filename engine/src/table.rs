//! Live tables: differential collections arranged by key, with the
//! operations a continuous query needs.
//!
//! A table is fed by upserts and deletes ([`LiveTable`], outside the
//! dataflow) and appears inside the dataflow as an arrangement
//! ([`TableStreams`]): streams are joined against it, changes of a key
//! range are pushed to subscribers as they become final, and the worker can
//! look keys up in its shard of the trace. Every `advance_to` also advances
//! the trace's compaction, so history is folded and memory stays bounded by
//! the table's current size, not by the number of updates it ever saw.
//!
//! Later layers keep the routing table (function → providers) and balances
//! as such tables.

use std::collections::HashMap;
use std::hash::Hash;
use std::ops::RangeBounds;

use differential_dataflow::VecCollection;
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::TraceReader;
use differential_dataflow::trace::cursor::{Cursor, cursor_list};
use differential_dataflow::trace::implementations::ValSpine;
use serde::{Deserialize, Serialize};
use timely::dataflow::Scope;
use timely::progress::frontier::{Antichain, AntichainRef};

/// The trace of a table: key → value at u64 times.
pub type TableTrace<K, V> = TraceAgent<ValSpine<K, V, u64, isize>>;

/// What a table key may be.
pub trait Key: timely::ExchangeData + differential_dataflow::ExchangeData + Hash + Ord {}
impl<T: timely::ExchangeData + differential_dataflow::ExchangeData + Hash + Ord> Key for T {}

/// A `(key, value)` with its `(time, diff)` history, as read from a trace.
pub type Entry<K, V> = ((K, V), Vec<(u64, isize)>);

/// One change of a table, as a subscriber sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change<K, V> {
    /// The key.
    pub key: K,
    /// The value added (`diff > 0`) or removed (`diff < 0`).
    pub value: V,
    /// The epoch of the change.
    pub time: u64,
    /// +1 for an insert, -1 for a removal.
    pub diff: isize,
}

/// The writing and reading side of a table, held by the worker.
///
/// Upserts for one key must come through the same `LiveTable` (usually the
/// worker with index 0), since it remembers the value it must retract.
pub struct LiveTable<K: Key, V: Key> {
    input: InputSession<u64, (K, V), isize>,
    current: HashMap<K, V>,
    trace: TableTrace<K, V>,
}

/// The table inside the dataflow.
pub struct TableStreams<'scope, K: Key, V: Key> {
    /// The table arranged by key: join streams against it with `join_core`.
    pub arranged: Arranged<'scope, TableTrace<K, V>>,
    /// Every change of the table, as a collection.
    pub changes: VecCollection<'scope, u64, (K, V), isize>,
}

/// Creates a table in `scope`.
pub fn table<'scope, K: Key, V: Key>(
    scope: Scope<'scope, u64>,
) -> (LiveTable<K, V>, TableStreams<'scope, K, V>) {
    let (input, changes) = scope.new_collection::<(K, V), isize>();
    let arranged = changes.clone().arrange_by_key();
    let trace = arranged.trace.clone();
    (
        LiveTable {
            input,
            current: HashMap::new(),
            trace,
        },
        TableStreams { arranged, changes },
    )
}

impl<K: Key, V: Key> LiveTable<K, V> {
    /// Sets `key` to `value` (replacing what it held) at the current epoch.
    pub fn upsert(&mut self, key: K, value: V) {
        if let Some(old) = self.current.insert(key.clone(), value.clone()) {
            if old == value {
                return;
            }
            self.input.remove((key.clone(), old));
        }
        self.input.insert((key, value));
    }

    /// Removes `key` at the current epoch.
    pub fn delete(&mut self, key: &K) {
        if let Some(old) = self.current.remove(key) {
            self.input.remove((key.clone(), old));
        }
    }

    /// The current epoch.
    pub fn time(&self) -> u64 {
        *self.input.time()
    }

    /// Moves to epoch `time`: earlier changes become final, and history
    /// before `time` is compacted away (reads see the table as of now).
    pub fn advance_to(&mut self, time: u64) {
        self.input.advance_to(time);
        self.input.flush();
        self.trace
            .set_logical_compaction(AntichainRef::new(&[time]));
        self.trace
            .set_physical_compaction(AntichainRef::new(&[time]));
    }

    /// The values of `key` in this worker's shard, as of everything the
    /// trace holds. Keys are sharded by hash across workers: with several
    /// workers, look a key up inside the dataflow (join a query collection
    /// against [`TableStreams::arranged`]) or on the worker that owns it.
    pub fn lookup(&mut self, key: &K) -> Vec<V> {
        let mut found = Vec::new();
        let mut upper = Antichain::new();
        self.trace.read_upper(&mut upper);
        let Some(batches) = self.trace.batches_through(upper.borrow()) else {
            return found;
        };
        let (mut cursor, storage) = cursor_list(batches);
        cursor.seek_key(&storage, key);
        if cursor.get_key(&storage) == Some(key) {
            while let Some(value) = cursor.get_val(&storage) {
                let mut count = 0isize;
                cursor.map_times(&storage, |_time, diff| count += *diff);
                if count > 0 {
                    found.push(value.clone());
                }
                cursor.step_val(&storage);
            }
        }
        found
    }

    /// Every `(key, value)` of this worker's shard with its `(time, diff)` history.
    pub fn entries(&mut self) -> Vec<Entry<K, V>> {
        let mut upper = Antichain::new();
        self.trace.read_upper(&mut upper);
        let Some(batches) = self.trace.batches_through(upper.borrow()) else {
            return Vec::new();
        };
        let (mut cursor, storage) = cursor_list(batches);
        cursor.to_vec(&storage, |k| k.clone(), |v| v.clone())
    }
}

impl<'scope, K: Key, V: Key> TableStreams<'scope, K, V> {
    /// Joins a keyed collection against the table: each `(key, x)` meets the
    /// key's current value, and is updated when that value changes.
    pub fn join<X: Key>(
        &self,
        keyed: VecCollection<'scope, u64, (K, X), isize>,
    ) -> VecCollection<'scope, u64, (K, X, V), isize> {
        keyed
            .join_core(self.arranged.clone(), |k: &K, x: &X, v: &V| {
                Some((k.clone(), x.clone(), v.clone()))
            })
            .consolidate()
    }

    /// Sends every change of a key in `range` to `subscriber`, in epoch
    /// order of completion. A slow subscriber slows the dataflow (the send
    /// waits); no change is dropped.
    pub fn subscribe<R>(&self, range: R, subscriber: flume::Sender<Change<K, V>>)
    where
        R: RangeBounds<K> + 'static,
    {
        self.changes
            .clone()
            .filter(move |(k, _)| range.contains(k))
            .consolidate()
            .inspect(move |((key, value), time, diff)| {
                let _ = subscriber.send(Change {
                    key: key.clone(),
                    value: value.clone(),
                    time: *time,
                    diff: *diff,
                });
            });
    }
}
