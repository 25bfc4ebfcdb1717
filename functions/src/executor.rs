//! `Executor`: a bounded pool of OS threads that run calls, shared fairly
//! among functions.
//!
//! WASI preview 1's sync path blocks, so calls never run inside a tokio task
//! or on a timely worker: they are submitted here. Each function has its own
//! queue; free threads take calls from the functions in turn (round robin),
//! and no function runs more than its share of threads at once or queues
//! more than its share of the queue ([`Shares`]). So a function whose calls
//! loop until their fuel runs out holds at most its share of threads, and a
//! short call of another function finds a thread at once: the operating
//! system time-slices the cores between them instead of the short call
//! waiting behind every long one.
//!
//! The queues are bounded: when a function's share (or the whole queue) is
//! full a submission gets [`Error::Busy`] at once, so a caller can reroute
//! instead of waiting without bound. Dropping the executor stops taking
//! calls, lets the threads finish what was queued, and joins them.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::{CallOptions, Error, Function, FunctionId, Outcome, Result, Runtime};

type Job = Box<dyn FnOnce(&Runtime) + Send>;

/// How an executor shares its threads and its queue among functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shares {
    /// OS threads in the pool (at least one).
    pub threads: usize,
    /// Most calls of one function running at once (at least one).
    pub per_function: usize,
    /// Most calls waiting for a thread, all functions together.
    pub queue: usize,
    /// Most calls of one function waiting for a thread.
    pub queue_per_function: usize,
}

impl Shares {
    /// Any function may use every thread and the whole queue; functions
    /// still take turns for free threads.
    pub fn shared(threads: usize, queue: usize) -> Self {
        Self {
            threads,
            per_function: threads,
            queue,
            queue_per_function: queue,
        }
    }

    /// One function may run `per_function` calls at once (the cores it may
    /// keep busy) and queue a quarter of `queue`; the pool has four times
    /// `per_function` threads, so three functions at their share leave
    /// threads free for every other one.
    pub fn fair(per_function: usize, queue: usize) -> Self {
        let per_function = per_function.max(1);
        Self {
            threads: per_function * 4,
            per_function,
            queue,
            queue_per_function: queue.div_ceil(4),
        }
    }
}

/// A bounded pool of threads running calls on one [`Runtime`].
pub struct Executor {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    shares: Shares,
    state: Mutex<State>,
    /// One per thread, signalled to wake that thread: when a call it can
    /// start is queued, or the pool closes.
    wakes: Vec<Condvar>,
}

#[derive(Default)]
struct State {
    lanes: HashMap<FunctionId, Lane>,
    /// Functions with calls waiting, in the order they get their next turn.
    turns: VecDeque<FunctionId>,
    queued: usize,
    running: usize,
    closed: bool,
    /// The threads waiting for a call. The lowest-numbered one is woken
    /// first, so the threads a light load needs stay the same few (their
    /// caches warm) and the rest sleep.
    idle: BTreeSet<usize>,
}

/// One function's calls: waiting, and how many are running.
#[derive(Default)]
struct Lane {
    waiting: VecDeque<Job>,
    running: usize,
}

impl State {
    /// The next call a free thread may run: the first function in turn
    /// below its share of threads, which then goes to the back of the line.
    fn next(&mut self, per_function: usize) -> Option<(FunctionId, Job)> {
        for _ in 0..self.turns.len() {
            let id = self.turns.pop_front()?;
            let Some(lane) = self.lanes.get_mut(&id) else {
                continue;
            };
            if lane.running >= per_function {
                self.turns.push_back(id);
                continue;
            }
            let Some(job) = lane.waiting.pop_front() else {
                continue;
            };
            lane.running += 1;
            self.running += 1;
            self.queued -= 1;
            if !lane.waiting.is_empty() {
                self.turns.push_back(id);
            }
            return Some((id, job));
        }
        None
    }

    /// Whether a call waits that a free thread could start now (its
    /// function below its share).
    fn startable(&self, per_function: usize) -> bool {
        self.turns.iter().any(|id| {
            self.lanes
                .get(id)
                .is_some_and(|l| l.running < per_function && !l.waiting.is_empty())
        })
    }

    fn finished(&mut self, id: FunctionId) {
        if let Some(lane) = self.lanes.get_mut(&id) {
            lane.running -= 1;
            self.running -= 1;
            if lane.running == 0 && lane.waiting.is_empty() {
                self.lanes.remove(&id);
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the lowest-numbered idle thread, if one is idle. (Waking the
    /// one that went idle last rotated through every thread under a steady
    /// load: a thread woken for a call another took first goes back on
    /// top.)
    fn wake_one(&self, state: &mut State) {
        if let Some(thread) = state.idle.pop_first() {
            self.wakes[thread].notify_one();
        }
    }

    fn wake_all(&self) {
        for wake in &self.wakes {
            wake.notify_all();
        }
    }

    /// Thread `me`: takes calls in turn until the pool is closed and empty.
    fn work(&self, me: usize, runtime: &Runtime) {
        let mut state = self.lock();
        loop {
            if let Some((id, job)) = state.next(self.shares.per_function) {
                drop(state);
                job(runtime);
                state = self.lock();
                state.finished(id);
                // This thread takes the next call itself; another is woken
                // only for a second call that can start now (a wake-up for
                // nothing, say for a call still over its function's share,
                // costs two thread switches).
                if state.queued > 1 && state.startable(self.shares.per_function) {
                    self.wake_one(&mut state);
                }
                continue;
            }
            if state.closed && state.queued == 0 {
                // The others may be waiting for the call this one ran.
                self.wake_all();
                return;
            }
            state.idle.insert(me);
            state = self.wakes[me]
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            // Woken by a call (which took it off the list) or by nothing.
            state.idle.remove(&me);
        }
    }
}

impl Executor {
    /// Starts `threads` threads (at least one) behind a queue of `capacity`
    /// calls, any function using all of them ([`Shares::shared`]).
    pub fn new(runtime: Runtime, threads: usize, capacity: usize) -> Result<Self> {
        Self::with_shares(runtime, Shares::shared(threads, capacity))
    }

    /// Starts a pool that shares its threads and queue as `shares` says.
    pub fn with_shares(runtime: Runtime, shares: Shares) -> Result<Self> {
        let shares = Shares {
            threads: shares.threads.max(1),
            per_function: shares.per_function.clamp(1, shares.threads.max(1)),
            queue: shares.queue,
            queue_per_function: shares.queue_per_function.min(shares.queue),
        };
        let shared = Arc::new(Shared {
            shares,
            state: Mutex::new(State::default()),
            wakes: (0..shares.threads).map(|_| Condvar::new()).collect(),
        });
        let mut executor = Self {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        for i in 0..shares.threads {
            let (shared, runtime) = (shared.clone(), runtime.clone());
            let handle = std::thread::Builder::new()
                .name(format!("orb-exec-{i}"))
                .spawn(move || shared.work(i, &runtime))
                .map_err(|e| Error::Runtime(format!("cannot start executor thread: {e}")))?;
            // Pushed at once: a failure below still joins what started.
            executor.threads.push(handle);
        }
        Ok(executor)
    }

    /// An executor sized by the runtime's configuration.
    pub fn for_runtime(runtime: Runtime) -> Result<Self> {
        let (threads, capacity) = (
            runtime.config().executor_threads,
            runtime.config().executor_queue,
        );
        Self::new(runtime, threads, capacity)
    }

    /// How this pool shares its threads and queue.
    pub fn shares(&self) -> Shares {
        self.shared.shares
    }

    /// Queues a call; `done` runs on an executor thread with its result.
    /// Returns [`Error::Busy`] at once when the function's share of the
    /// queue, or the whole queue, is full and no thread can take it now.
    pub fn submit(
        &self,
        function: Function,
        input: Vec<u8>,
        opts: CallOptions,
        done: impl FnOnce(Result<Outcome>) + Send + 'static,
    ) -> Result<()> {
        let shares = self.shared.shares;
        let id = function.id();
        let mut state = self.shared.lock();
        if state.closed {
            return Err(Error::Runtime("executor is shut down".into()));
        }
        let (running, waiting) = state
            .lanes
            .get(&id)
            .map_or((0, 0), |l| (l.running, l.waiting.len()));
        // A thread is free for it now, or it waits within the shares.
        let free = shares.threads.saturating_sub(state.running + state.queued);
        let starts_now = free > 0 && running + waiting < shares.per_function;
        if !starts_now {
            if waiting >= shares.queue_per_function {
                return Err(Error::Busy {
                    capacity: shares.queue_per_function,
                });
            }
            if state.queued >= shares.queue {
                return Err(Error::Busy {
                    capacity: shares.queue,
                });
            }
        }
        let can_start = state.running < shares.threads && running + waiting < shares.per_function;
        let job: Job = Box::new(move |runtime| done(runtime.call(&function, &input, &opts)));
        let lane = state.lanes.entry(id).or_default();
        lane.waiting.push_back(job);
        if lane.waiting.len() == 1 {
            state.turns.push_back(id);
        }
        state.queued += 1;
        // A call that must wait for its function's share (or for a thread)
        // is taken by a thread that finishes a call; one that can start now
        // wakes an idle thread.
        if can_start {
            self.shared.wake_one(&mut state);
        }
        Ok(())
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

    /// Calls waiting for a thread right now.
    pub fn queued(&self) -> usize {
        self.shared.lock().queued
    }

    /// Calls running right now.
    pub fn running(&self) -> usize {
        self.shared.lock().running
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
