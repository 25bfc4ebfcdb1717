//! `Executor`: a bounded pool of OS threads that run calls.
//!
//! WASI preview 1's sync path blocks, so calls never run inside a tokio task
//! or on a timely worker: they are submitted here. The queue is bounded;
//! when it is full a submission gets [`Error::Busy`] at once, so a caller can
//! reroute instead of waiting without bound. Dropping the executor closes the
//! queue, lets the threads finish what was queued, and joins them.

use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};

use crate::{CallOptions, Error, Function, Outcome, Result, Runtime};

type Job = Box<dyn FnOnce(&Runtime) + Send>;

/// A bounded pool of threads running calls on one [`Runtime`].
pub struct Executor {
    queue: Option<Sender<Job>>,
    capacity: usize,
    threads: Vec<JoinHandle<()>>,
}

impl Executor {
    /// Starts `threads` threads (at least one) behind a queue of `capacity` calls.
    pub fn new(runtime: Runtime, threads: usize, capacity: usize) -> Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(capacity);
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let runtime = runtime.clone();
            let handle = std::thread::Builder::new()
                .name(format!("orb-exec-{i}"))
                .spawn(move || {
                    for job in rx {
                        job(&runtime);
                    }
                })
                .map_err(|e| Error::Runtime(format!("cannot start executor thread: {e}")))?;
            handles.push(handle);
        }
        Ok(Self {
            queue: Some(tx),
            capacity,
            threads: handles,
        })
    }

    /// An executor sized by the runtime's configuration.
    pub fn for_runtime(runtime: Runtime) -> Result<Self> {
        let (threads, capacity) = (
            runtime.config().executor_threads,
            runtime.config().executor_queue,
        );
        Self::new(runtime, threads, capacity)
    }

    /// Queues a call; `done` runs on an executor thread with its result.
    /// Returns [`Error::Busy`] at once when the queue is full.
    pub fn submit(
        &self,
        function: Function,
        input: Vec<u8>,
        opts: CallOptions,
        done: impl FnOnce(Result<Outcome>) + Send + 'static,
    ) -> Result<()> {
        let job: Job = Box::new(move |runtime| done(runtime.call(&function, &input, &opts)));
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| Error::Runtime("executor is shut down".into()))?;
        queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Error::Busy {
                capacity: self.capacity,
            },
            TrySendError::Disconnected(_) => Error::Runtime("executor is shut down".into()),
        })
    }

    /// Queues a call and waits for its result.
    pub fn call(&self, function: &Function, input: Vec<u8>, opts: CallOptions) -> Result<Outcome> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.submit(function.clone(), input, opts, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv()
            .map_err(|_| Error::Runtime("executor thread ended without a result".into()))?
    }

    /// Calls waiting in the queue right now.
    pub fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        drop(self.queue.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
