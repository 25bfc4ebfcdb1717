//! Persistent streams: a stream written to sled under monotonically
//! increasing indexes, which a later pipeline replays from any index and
//! follows as new items arrive. Streams are ephemeral unless persisted.
//!
//! Durability: an item is durable once [`Log::flush`] returns (the
//! [`persist`] operator flushes each time its input frontier advances, so
//! every completed epoch is on disk). A crash can lose appends that were
//! not flushed; it never reorders or tears them (sled's log is ordered and
//! checksummed). Indexes are big-endian u64 keys, so sled's order is
//! index order.

use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Scope;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;

use crate::boundary::{Pull, gated_source};
use crate::{Error, Flow, Result};

/// An append-only log of `T` in a sled tree; cheap to clone.
pub struct Log<T> {
    name: String,
    tree: sled::Tree,
    next: Arc<Mutex<u64>>,
    item: PhantomData<fn() -> T>,
}

impl<T> Clone for Log<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            tree: self.tree.clone(),
            next: self.next.clone(),
            item: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Log<T> {
    /// Opens (creating if needed) the stream `name` in `db`.
    pub fn open(db: &sled::Db, name: &str) -> Result<Self> {
        let storage = |source| Error::Storage {
            name: name.to_owned(),
            source,
        };
        let tree = db.open_tree(format!("stream/{name}")).map_err(storage)?;
        let next = match tree.last().map_err(storage)? {
            Some((key, _)) => index_of(&key).map_or(0, |i| i + 1),
            None => 0,
        };
        Ok(Self {
            name: name.to_owned(),
            tree,
            next: Arc::new(Mutex::new(next)),
            item: PhantomData,
        })
    }

    fn storage(&self) -> impl FnOnce(sled::Error) -> Error + '_ {
        move |source| Error::Storage {
            name: self.name.clone(),
            source,
        }
    }

    /// Appends items; returns the index of the first. Durable after [`Log::flush`].
    pub fn append<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<u64>
    where
        T: 'a,
    {
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = *next;
        let mut batch = sled::Batch::default();
        let mut index = first;
        for item in items {
            let bytes = postcard::to_stdvec(item).map_err(|e| Error::Corrupt {
                name: self.name.clone(),
                index,
                reason: format!("cannot encode: {e}"),
            })?;
            batch.insert(&index.to_be_bytes(), bytes);
            index += 1;
        }
        self.tree.apply_batch(batch).map_err(self.storage())?;
        *next = index;
        Ok(first)
    }

    /// Makes every append so far durable.
    pub fn flush(&self) -> Result<()> {
        self.tree.flush().map(drop).map_err(self.storage())
    }

    /// The index the next append gets (the number of items ever appended).
    pub fn len(&self) -> u64 {
        *self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether nothing was ever appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `max` items from `index` on.
    pub fn read(&self, index: u64, max: usize) -> Result<Vec<(u64, T)>> {
        let mut out = Vec::new();
        let range = (Bound::Included(index.to_be_bytes()), Bound::Unbounded);
        for entry in self.tree.range(range).take(max) {
            let (key, value) = entry.map_err(self.storage())?;
            let i = index_of(&key).ok_or_else(|| Error::Corrupt {
                name: self.name.clone(),
                index,
                reason: "key is not an 8-byte index".into(),
            })?;
            let item = postcard::from_bytes(&value).map_err(|e| Error::Corrupt {
                name: self.name.clone(),
                index: i,
                reason: e.to_string(),
            })?;
            out.push((i, item));
        }
        Ok(out)
    }
}

fn index_of(key: &[u8]) -> Option<u64> {
    key.try_into().ok().map(u64::from_be_bytes)
}

impl<T> Log<T>
where
    T: Serialize + DeserializeOwned + timely::ExchangeData,
{
    /// A source replaying `(index, item)` from `from` on, paced by `flow`.
    /// With `follow`, it then waits for new appends until `flow` is
    /// cancelled; without, it closes once it has caught up.
    pub fn replay<'scope>(
        &self,
        scope: Scope<'scope, u64>,
        from: u64,
        follow: bool,
        flow: &Flow,
    ) -> Stream<'scope, u64, Vec<(u64, T)>> {
        let log = self.clone();
        let mut cursor = from;
        let cancel = flow.cancel.clone();
        let watched = self.tree.clone();
        let on_start = move |activator: timely::scheduling::SyncActivator| {
            if !follow {
                return;
            }
            // Appends ring the replaying operator; the thread ends with the pipeline.
            let mut subscriber = watched.watch_prefix(Vec::<u8>::new());
            let _ = std::thread::Builder::new()
                .name("orb-replay".into())
                .spawn(move || {
                    while !cancel.is_cancelled() {
                        match subscriber.next_timeout(Duration::from_millis(50)) {
                            Ok(_) => {
                                if activator.activate().is_err() {
                                    return;
                                }
                            }
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                                if activator.activate().is_err() {
                                    return;
                                }
                            }
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    let _ = activator.activate();
                });
        };
        gated_source(
            scope,
            &format!("replay {}", self.name),
            flow,
            on_start,
            move |batch, max| match log.read(cursor, max) {
                Ok(items) => {
                    if let Some((last, _)) = items.last() {
                        cursor = last + 1;
                    }
                    let caught_up = items.len() < max;
                    batch.extend(items);
                    if caught_up && !follow {
                        Pull::Done
                    } else {
                        Pull::Open
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "replay stopped");
                    Pull::Done
                }
            },
        )
    }
}

/// Appends every record of `stream` to `log` and passes it on; each time the
/// input frontier advances, the log is flushed, so completed epochs are durable.
pub fn persist<'scope, T>(
    stream: Stream<'scope, u64, Vec<T>>,
    log: Log<T>,
) -> Stream<'scope, u64, Vec<T>>
where
    T: Serialize + DeserializeOwned + timely::ExchangeData,
{
    let mut flushed_to = Vec::<u64>::new();
    stream.unary_frontier::<CapacityContainerBuilder<Vec<T>>, _, _, _>(
        Pipeline,
        "Persist",
        move |_, _| {
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    if let Err(e) = log.append(data.iter()) {
                        // fail-stop: a stream that promised persistence must not go on without it.
                        panic!("persist: {e}");
                    }
                    output.session(&cap).give_iterator(data.drain(..));
                });
                let now = frontier.frontier().to_vec();
                if now != flushed_to {
                    if let Err(e) = log.flush() {
                        panic!("persist: {e}");
                    }
                    flushed_to = now;
                }
            }
        },
    )
}
