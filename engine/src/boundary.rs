//! The boundary between the outside (threads, tokio tasks, files, later the
//! network) and the timely workers. Everything that enters a dataflow
//! crosses here, and only here:
//!
//! - **Bounded channels in.** A [`SourceHandle`] feeds an [`Inlet`] through a
//!   bounded MPMC channel (flume): a thread blocks in [`SourceHandle::send`],
//!   a tokio task awaits [`SourceHandle::send_async`], and
//!   [`SourceHandle::try_send`] answers [`Busy`] at once.
//! - **Activators wake workers.** Each worker's source operator registers a
//!   `SyncActivator`; a send rings them, so a parked worker wakes when data
//!   arrives and sleeps otherwise.
//! - **A probe for lag.** Each batch a source emits gets its own epoch. While
//!   the dataflow's probe lags more than [`Flow::max_lag`] epochs behind, the
//!   source stops pulling; the channel fills and producers wait or get `Busy`.
//!   Memory in flight stays bounded by `capacity + max_lag × batch` records
//!   per source, however fast the producer.
//!
//! Closing: when every `SourceHandle` is dropped, sources emit what is left
//! and drop their capabilities, so the dataflow drains and completes.
//! Cancelling (see [`Cancel`]) makes sources stop at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{ProbeHandle, Scope, Stream};
use timely::scheduling::SyncActivator;

/// The answer of [`SourceHandle::try_send`] when the channel is full: the
/// dataflow is lagging; the item comes back.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy<T>(pub T);

/// The sources of a closed (or cancelled) pipeline accept nothing more.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline's source is closed")]
pub struct Closed<T>(pub T);

/// Cancels a running pipeline: its sources stop pulling and close, its
/// operators drop what they hold, and the dataflow completes.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token that is not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every pipeline holding this token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether `cancel` was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// How sources pace themselves against the dataflow.
///
/// Put the probe where the work ends: on the last stream whose frontier
/// advances epoch by epoch. An operator that keeps its first capability
/// until the input is complete (an end-of-input aggregate) holds the probe
/// back and, with it, the source: probe before such an operator, or let it
/// downgrade its capability as its input frontier advances.
#[derive(Clone)]
pub struct Flow {
    /// The probe at the end of the dataflow.
    pub probe: ProbeHandle<u64>,
    /// Most epochs a source may run ahead of the probe.
    pub max_lag: u64,
    /// Most records a source emits in one epoch.
    pub batch: usize,
    /// Stops the sources early.
    pub cancel: Cancel,
}

impl Flow {
    /// A flow with a new probe; attach it at the end of the dataflow with
    /// `probe_with(&flow.probe)`.
    pub fn new(max_lag: u64, batch: usize) -> Self {
        Self {
            probe: ProbeHandle::new(),
            max_lag: max_lag.max(1),
            batch: batch.max(1),
            cancel: Cancel::new(),
        }
    }

    /// The same flow, stopped by `cancel`.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Whether a source at epoch `time` must wait for the dataflow.
    fn lagging(&self, time: u64) -> bool {
        time >= self.max_lag && self.probe.less_than(&(time - self.max_lag))
    }
}

#[derive(Default)]
struct Bell(Mutex<Vec<SyncActivator>>);

impl Bell {
    fn ring(&self) {
        for a in self.0.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            // A worker that has finished has nothing to wake.
            let _ = a.activate();
        }
    }

    fn register(&self, activator: SyncActivator) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(activator);
    }
}

/// Rings the bell when the last producer goes, so sources see the close.
struct Producers {
    bell: Arc<Bell>,
}

impl Drop for Producers {
    fn drop(&mut self) {
        self.bell.ring();
    }
}

/// The producer side: cheap to clone, usable from threads and tokio tasks.
pub struct SourceHandle<T> {
    tx: flume::Sender<T>,
    producers: Arc<Producers>,
}

impl<T> Clone for SourceHandle<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            producers: self.producers.clone(),
        }
    }
}

impl<T> SourceHandle<T> {
    /// Sends, blocking while the channel is full (the dataflow lags).
    pub fn send(&self, item: T) -> Result<(), Closed<T>> {
        self.tx.send(item).map_err(|e| Closed(e.into_inner()))?;
        self.producers.bell.ring();
        Ok(())
    }

    /// Sends, waiting asynchronously while the channel is full.
    pub async fn send_async(&self, item: T) -> Result<(), Closed<T>> {
        self.tx
            .send_async(item)
            .await
            .map_err(|e| Closed(e.into_inner()))?;
        self.producers.bell.ring();
        Ok(())
    }

    /// Sends without waiting: `Busy` when the channel is full.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        match self.tx.try_send(item) {
            Ok(()) => {
                self.producers.bell.ring();
                Ok(())
            }
            Err(flume::TrySendError::Full(item)) => Err(TrySendError::Busy(Busy(item))),
            Err(flume::TrySendError::Disconnected(item)) => Err(TrySendError::Closed(Closed(item))),
        }
    }

    /// Items waiting in the channel.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// A handle that does not keep the channel open: the dataflow sees the
    /// close when the last strong handle goes, whoever holds weak ones.
    pub fn downgrade(&self) -> WeakSourceHandle<T> {
        WeakSourceHandle {
            tx: self.tx.downgrade(),
            producers: Arc::downgrade(&self.producers),
        }
    }
}

/// A [`SourceHandle`] that does not keep the channel open.
pub struct WeakSourceHandle<T> {
    tx: flume::WeakSender<T>,
    producers: std::sync::Weak<Producers>,
}

impl<T> Clone for WeakSourceHandle<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            producers: self.producers.clone(),
        }
    }
}

impl<T> WeakSourceHandle<T> {
    /// The handle, while some strong one is left.
    pub fn upgrade(&self) -> Option<SourceHandle<T>> {
        Some(SourceHandle {
            producers: self.producers.upgrade()?,
            tx: self.tx.upgrade()?,
        })
    }
}

/// Why [`SourceHandle::try_send`] did not send.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The channel is full.
    Busy(Busy<T>),
    /// The pipeline is gone.
    Closed(Closed<T>),
}

/// The dataflow side of a channel; clone it into every worker's closure.
pub struct Inlet<T> {
    rx: flume::Receiver<T>,
    bell: Arc<Bell>,
}

impl<T> Clone for Inlet<T> {
    fn clone(&self) -> Self {
        Self {
            rx: self.rx.clone(),
            bell: self.bell.clone(),
        }
    }
}

/// A bounded channel into a dataflow: `capacity` items at most wait in it.
pub fn channel<T>(capacity: usize) -> (SourceHandle<T>, Inlet<T>) {
    let (tx, rx) = flume::bounded(capacity.max(1));
    let bell = Arc::new(Bell::default());
    let producers = Arc::new(Producers { bell: bell.clone() });
    (SourceHandle { tx, producers }, Inlet { rx, bell })
}

/// What a source's pull found.
pub(crate) enum Pull {
    /// Emitted something, or may have more soon.
    Open,
    /// No more items will ever come.
    Done,
}

/// A source operator that emits a batch per epoch from `pull`, paced by `flow`.
pub(crate) fn gated_source<'scope, T, P>(
    scope: Scope<'scope, u64>,
    name: &str,
    flow: &Flow,
    on_start: impl FnOnce(SyncActivator),
    mut pull: P,
) -> Stream<'scope, u64, Vec<T>>
where
    T: timely::ExchangeData,
    P: FnMut(&mut Vec<T>, usize) -> Pull + 'static,
{
    let flow = flow.clone();
    source::<_, CapacityContainerBuilder<Vec<T>>, _, _>(scope, name, move |cap, info| {
        on_start(scope.worker().sync_activator_for(info.address.to_vec()));
        let activator = scope.activator_for(info.address.clone());
        let mut cap = Some(cap);
        let mut batch = Vec::new();
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            if flow.cancel.is_cancelled() {
                cap = None;
                return;
            }
            if flow.lagging(*c.time()) {
                // Backpressure: leave items where they are and look again soon.
                activator.activate_after(Duration::from_millis(1));
                return;
            }
            let state = pull(&mut batch, flow.batch);
            if !batch.is_empty() {
                output.session(&*c).give_iterator(batch.drain(..));
                let next = *c.time() + 1;
                c.downgrade(&next);
                activator.activate();
            }
            if let Pull::Done = state {
                cap = None;
            }
        }
    })
}

impl<T: timely::ExchangeData> Inlet<T> {
    /// A source operator fed by this channel. Every worker may build one from
    /// a clone of the same inlet; they share the items.
    pub fn into_stream<'scope>(
        self,
        scope: Scope<'scope, u64>,
        name: &str,
        flow: &Flow,
    ) -> Stream<'scope, u64, Vec<T>> {
        let bell = self.bell.clone();
        let rx = self.rx;
        gated_source(
            scope,
            name,
            flow,
            move |a| bell.register(a),
            move |batch, max| {
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(flume::TryRecvError::Empty) => return Pull::Open,
                        Err(flume::TryRecvError::Disconnected) => return Pull::Done,
                    }
                }
                Pull::Open
            },
        )
    }
}

/// A source operator over a bounded iterator (a file, a generated data set),
/// paced like a channel source; it closes when the iterator ends. Each
/// worker builds its own over its share of the data.
pub fn iter_source<'scope, T, I>(
    scope: Scope<'scope, u64>,
    name: &str,
    flow: &Flow,
    items: I,
) -> Stream<'scope, u64, Vec<T>>
where
    T: timely::ExchangeData,
    I: IntoIterator<Item = T>,
    I::IntoIter: 'static,
{
    let mut items = items.into_iter();
    gated_source(scope, name, flow, drop, move |batch, max| {
        batch.extend(items.by_ref().take(max));
        if batch.len() < max {
            Pull::Done
        } else {
            Pull::Open
        }
    })
}
