//! [`Tasks`]: every tokio task a node spawns, in one `JoinSet` the node
//! owns, under one cancellation token.
//!
//! Two kinds of task go in:
//!
//! - work that must finish once started (a peer's request, an HTTP
//!   connection, a sampled verification) is spawned with [`Tasks::spawn`]
//!   and watches the token only where it takes new work;
//! - background loops (re-announcing, the consensus ticker) are spawned
//!   with [`Tasks::spawn_until_cancelled`] and dropped at the cancellation.
//!
//! [`Tasks::join`] is the drain: it waits for every task until a deadline,
//! then aborts those left and waits for them to end, so that when it
//! returns no task of the node is running and none holds its state. A task
//! that ends is reaped on the next spawn; a panic is logged, never lost.
//! Nothing here spawns a detached task.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// The tasks of one node.
pub(crate) struct Tasks {
    set: Mutex<JoinSet<()>>,
    cancel: CancellationToken,
}

impl Tasks {
    /// An empty set; cancelling `cancel` stops what it runs.
    pub(crate) fn new(cancel: CancellationToken) -> Self {
        Self {
            set: Mutex::new(JoinSet::new()),
            cancel,
        }
    }

    /// The token the node's tasks watch.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Tells every task to stop taking work.
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
    }

    fn lock(&self) -> MutexGuard<'_, JoinSet<()>> {
        self.set.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns a task that runs to its end; [`Tasks::join`] waits for it
    /// until its deadline. Must be called inside the node's runtime.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut set = self.lock();
        while let Some(done) = set.try_join_next() {
            report(done);
        }
        set.spawn(task);
    }

    /// Spawns a background loop, dropped when the node is cancelled.
    pub(crate) fn spawn_until_cancelled<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.spawn(async move {
            cancel.run_until_cancelled(task).await;
        });
    }

    /// Waits for every task, those spawned meanwhile too, until `deadline`;
    /// then aborts the rest and waits for them to end. Returns how many
    /// were aborted.
    pub(crate) async fn join(&self, deadline: Instant) -> usize {
        let mut aborted = 0;
        loop {
            // Taken out so that tasks still running can spawn (into the
            // fresh set, joined on the next round) while we wait.
            let mut set = std::mem::take(&mut *self.lock());
            if set.is_empty() {
                return aborted;
            }
            loop {
                match tokio::time::timeout_at(deadline, set.join_next()).await {
                    Ok(Some(done)) => report(done),
                    Ok(None) => break,
                    Err(_) => {
                        aborted += set.len();
                        set.abort_all();
                        while let Some(done) = set.join_next().await {
                            report(done);
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// Logs a task that panicked (an aborted one ended as asked).
fn report(done: Result<(), JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        error!("a node task panicked: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn join_waits_for_work_and_aborts_what_outlives_the_deadline() {
        let tasks = Arc::new(Tasks::new(CancellationToken::new()));
        let done = Arc::new(AtomicUsize::new(0));
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let d = done.clone();
        tasks.spawn(async move {
            let _ = finished.await;
            d.fetch_add(1, Ordering::SeqCst);
        });
        // A loop that only ends when cancelled.
        tasks.spawn_until_cancelled(std::future::pending());
        // A task that never ends: aborted at the deadline.
        tasks.spawn(std::future::pending());
        // Work spawned by a task while the set drains is joined too.
        let (t, d) = (tasks.clone(), done.clone());
        tasks.spawn(async move {
            t.spawn(async move {
                d.fetch_add(1, Ordering::SeqCst);
            });
            let _ = finish.send(());
        });
        tasks.cancel();
        let aborted = tasks
            .join(Instant::now() + Duration::from_millis(200))
            .await;
        assert_eq!(aborted, 1);
        assert_eq!(done.load(Ordering::SeqCst), 2);
        assert!(tasks.lock().is_empty());
    }
}
