//! Hosting: the functions this node serves, and its answers to peers.
//!
//! A hosted function's module is in the module store (verified by hash on
//! every read), compiled once, and listed in the `hosted` sled tree so a
//! restart hosts it again — unless auto-scaling took it on
//! ([`super::scale`]): such replicas are not kept across restarts and
//! retire when idle. Every call's execution time is added to its
//! function's load window, which the node announces every second. Calls go to the bounded executor pool: a full
//! pool answers "busy" so the caller moves on to another provider.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use orb_functions::{
    CallOptions, Error as FnError, Executor, FuelBudget, Function, FunctionId, Limits, ModuleStore,
    Outcome, Runtime, Seed,
};
use orb_ledger::PublicKey;
use orb_net::{
    Announcement, FunctionLoad, Invoke, Load, NameRecord, PeerId, Reply, Request, Response,
};
use tracing::{Instrument as _, Span, debug, field, info, info_span, warn};

use super::byzantine::{Byzantine, Mode};
use super::quota::{Limits as StoreLimits, Quota, Refusal};
use super::throttle::PerKey;
use super::{Node, own_row};

/// How often a node re-announces what it hosts (load changes, new peers).
const REANNOUNCE: Duration = Duration::from_secs(10);

/// What a Byzantine node (`--byzantine`) appends to every output.
const CORRUPTION: &[u8] = b" [corrupted by a byzantine executor]";

/// How late a slow Byzantine test node answers.
const SLOW: Duration = Duration::from_secs(3);
/// Replies a silent Byzantine test node holds at most.
const HELD: usize = 4_096;

/// How long an install waits for the compiler before it is refused "busy"
/// (one module compiles at a time: a flood of modules costs one core).
const COMPILE_WAIT: Duration = Duration::from_secs(30);

/// Who asks a node to store and host a module.
#[derive(Clone, Copy, Debug)]
pub(crate) enum By<'a> {
    /// A publisher: the key of a deploy's name record, or the peer that
    /// asks this node to host a module (one identity, one quota).
    Publisher(&'a PeerId),
    /// This node's auto-scaling.
    Scaling,
}

/// Why a module was not hosted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InstallError {
    /// Over a size limit or a quota.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The module is not valid, or the store failed.
    #[error(transparent)]
    Function(#[from] FnError),
    /// Other modules kept the compiler busy.
    #[error("busy compiling other modules: try again later")]
    Busy,
}

/// The limits of what a host runs and stores.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostLimits {
    /// Calls it runs at once (what it announces as capacity).
    pub(crate) capacity: u32,
    /// Fuel one peer may burn per second (0: no budget).
    pub(crate) fuel_per_invoker: u64,
    /// What it stores for others.
    pub(crate) store: StoreLimits,
}

/// The functions a node hosts and the pool that runs them.
pub(crate) struct Host {
    runtime: Runtime,
    executor: Arc<Executor>,
    store: ModuleStore,
    functions: Mutex<HashMap<FunctionId, Function>>,
    hosted: sled::Tree,
    names: sled::Tree,
    in_flight: Arc<AtomicU32>,
    capacity: u32,
    /// Byzantine test modes (none on an honest node).
    byzantine: Byzantine,
    /// Replies a silent Byzantine node holds and never sends.
    unanswered: Mutex<VecDeque<Reply>>,
    /// Answers a slow Byzantine node sends when they are due.
    late: Mutex<VecDeque<(Instant, Reply, Response)>>,
    /// Per function: calls and execution time since the last window.
    windows: Mutex<HashMap<FunctionId, Window>>,
    /// Functions hosted by auto-scaling, not by a deployment.
    scaled: Mutex<HashSet<FunctionId>>,
    /// Fuel each peer may burn here per second, and who was told so.
    budget: Mutex<Budget>,
    /// The budget's clock: time since the host started.
    epoch: Instant,
    /// What it stores for whom, and the bounds.
    quota: Quota,
    /// One compile at a time.
    compiler: tokio::sync::Semaphore,
}

struct Budget {
    fuel: FuelBudget<PeerId>,
    said: PerKey<PeerId>,
}

/// One function's calls since the last load report.
#[derive(Clone, Copy)]
struct Window {
    calls: u32,
    busy: Duration,
    last_call: Instant,
}

impl Host {
    pub(crate) fn new(
        runtime: Runtime,
        executor: Executor,
        store: ModuleStore,
        db: &sled::Db,
        byzantine: Byzantine,
        limits: HostLimits,
    ) -> Result<Self, sled::Error> {
        let HostLimits {
            capacity,
            fuel_per_invoker,
            store: store_limits,
        } = limits;
        Ok(Self {
            runtime,
            executor: Arc::new(executor),
            store,
            functions: Mutex::new(HashMap::new()),
            hosted: db.open_tree("hosted")?,
            names: db.open_tree("names")?,
            in_flight: Arc::new(AtomicU32::new(0)),
            capacity,
            byzantine,
            unanswered: Mutex::new(VecDeque::new()),
            late: Mutex::new(VecDeque::new()),
            windows: Mutex::new(HashMap::new()),
            scaled: Mutex::new(HashSet::new()),
            budget: Mutex::new(Budget {
                fuel: FuelBudget::new(fuel_per_invoker),
                said: PerKey::default(),
            }),
            epoch: Instant::now(),
            quota: Quota::open(db, store_limits)?,
            compiler: tokio::sync::Semaphore::new(1),
        })
    }

    /// Bytes stored for others, as charged, and the limits.
    pub(crate) fn storage(&self) -> (u64, StoreLimits) {
        (self.quota.used(), self.quota.limits())
    }

    /// Sends `response` on `reply`, unless this node is a Byzantine test
    /// node that answers late (after [`SLOW`]) or never (the reply is held,
    /// at most [`HELD`] of them, so the asker waits for its timeout).
    pub(crate) fn deliver(&self, reply: Reply, response: Response) {
        if self.byzantine.has(Mode::Silent) {
            let mut held = self
                .unanswered
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if held.len() >= HELD {
                held.pop_front();
            }
            held.push_back(reply);
        } else if self.byzantine.has(Mode::Slow) {
            // Sent by `send_late` (this may be an executor thread, with no
            // async runtime to wait on).
            self.late
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back((Instant::now() + SLOW, reply, response));
        } else {
            reply.send(response);
        }
    }

    /// Whether this is a Byzantine test node that corrupts what it
    /// computes (agent states too).
    pub(crate) fn corrupts_outputs(&self) -> bool {
        self.byzantine.has(Mode::WrongOutput)
    }

    /// Whether this is a slow Byzantine test node ([`Host::send_late`]
    /// must then run).
    pub(crate) fn is_slow(&self) -> bool {
        self.byzantine.has(Mode::Slow)
    }

    /// Sends the late answers of a slow Byzantine test node that are due.
    pub(crate) fn send_late(&self) {
        let now = Instant::now();
        let mut late = self.late.lock().unwrap_or_else(PoisonError::into_inner);
        while late.front().is_some_and(|(due, _, _)| *due <= now) {
            if let Some((_, reply, response)) = late.pop_front() {
                reply.send(response);
            }
        }
    }

    /// Whether `peer` may start a call here now: not while it owes fuel
    /// past its budget (it is answered "busy" and said once a minute).
    fn within_budget(&self, peer: &PeerId) -> bool {
        let mut b = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        if b.fuel.admit(peer, self.epoch.elapsed()) {
            return true;
        }
        let rate = b.fuel.rate();
        if b.said.due(*peer) {
            warn!(%peer, fuel_per_second = rate, "a peer is over its fuel budget here: its calls are answered busy");
        }
        false
    }

    /// Charges `peer`'s budget for a call that ended.
    fn charge(&self, peer: &PeerId, result: &Result<Outcome, FnError>) {
        let fuel = match result {
            Ok(o) => o.fuel,
            Err(e) => e.fuel().unwrap_or(0),
        };
        let mut b = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        b.fuel.charge(peer, fuel, self.epoch.elapsed());
    }

    /// The executor's threads busy and calls waiting for one.
    pub(crate) fn executor_load(&self) -> (usize, usize) {
        (self.executor.running(), self.executor.queued())
    }

    /// Calls queued or running.
    pub(crate) fn load(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Calls run at once.
    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    pub(crate) fn hosted(&self) -> Vec<FunctionId> {
        let mut ids: Vec<FunctionId> = self
            .functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        ids.sort();
        ids
    }

    pub(crate) fn function(&self, id: &FunctionId) -> Option<Function> {
        self.functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Stores, compiles and starts hosting `module`; announces it. A
    /// deployment (`scaled` false) is hosted again after a restart; an
    /// auto-scaled replica is not, and may retire.
    /// Stores and compiles `module` for `by` within the store's limits
    /// (one compile at a time), then hosts it.
    pub(crate) async fn install(
        &self,
        node: &Node,
        module: &[u8],
        by: By<'_>,
    ) -> Result<FunctionId, InstallError> {
        let id = FunctionId::of(module);
        let scaled = matches!(by, By::Scaling);
        // Hosted already (a deploy again, or a replica asked twice):
        // nothing to compile or store.
        if let Some(function) = self.function(&id) {
            return Ok(self.serve(node, function, scaled).await);
        }
        let publisher = publisher_of(by);
        let size = module.len() as u64;
        // Refused at once when over a quota; asked again in the compiler's
        // turn, when the charges of the installs before are in.
        self.quota.admit(publisher.as_deref(), &id, size)?;
        let function = {
            let _turn = tokio::time::timeout(COMPILE_WAIT, self.compiler.acquire())
                .await
                .map_err(|_| InstallError::Busy)?;
            self.quota.admit(publisher.as_deref(), &id, size)?;
            let runtime = self.runtime.clone();
            let store = self.store.clone();
            let bytes = module.to_vec();
            tokio::task::spawn_blocking(move || store.put_and_load(&runtime, &bytes))
                .await
                .map_err(|e| FnError::Runtime(format!("compile task failed: {e}")))??
        };
        self.quota.charge(
            publisher.as_deref(),
            id,
            self.store.stored_bytes(&self.runtime, id),
        );
        Ok(self.serve(node, function, scaled).await)
    }

    /// Whether a module `id` from `by` could still be stored (before it is
    /// fetched: its size is not known yet).
    pub(crate) fn may_store(&self, by: By<'_>, id: &FunctionId) -> Result<(), Refusal> {
        self.quota.admit(publisher_of(by).as_deref(), id, 0)
    }

    /// Starts hosting a compiled function: records it and announces it.
    async fn serve(&self, node: &Node, function: Function, scaled: bool) -> FunctionId {
        let id = function.id();
        self.functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, function);
        {
            let mut scaled_set = self.scaled.lock().unwrap_or_else(PoisonError::into_inner);
            if scaled {
                scaled_set.insert(id);
            } else {
                // A deployment pins a function auto-scaling took on.
                scaled_set.remove(&id);
                if let Err(e) = self.hosted.insert(id.as_bytes(), &[]) {
                    warn!("cannot record hosted function {id}: {e}");
                }
            }
        }
        if !scaled {
            self.persist().await;
        }
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_insert(Window {
                calls: 0,
                busy: Duration::ZERO,
                last_call: Instant::now(),
            });
        info!(function = %id, scaled, "hosting");
        announce(node, id).await;
        id
    }

    /// Whether this node hosts `id`.
    pub(crate) fn hosts(&self, id: &FunctionId) -> bool {
        self.functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(id)
    }

    /// Functions hosted by auto-scaling.
    pub(crate) fn scaled(&self) -> Vec<FunctionId> {
        let set = self.scaled.lock().unwrap_or_else(PoisonError::into_inner);
        set.iter().copied().collect()
    }

    /// How long since `id` was last called (or hosted).
    pub(crate) fn idle_for(&self, id: &FunctionId) -> Duration {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows
            .get(id)
            .map_or(Duration::MAX, |w| w.last_call.elapsed())
    }

    /// Stops hosting an auto-scaled replica: peers and the DHT are told.
    pub(crate) async fn retire(&self, node: &Node, id: FunctionId) {
        let removed = self
            .functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
            .is_some();
        self.scaled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if !removed {
            return;
        }
        info!(function = %id, "retired an idle auto-scaled replica");
        if let Err(e) = node.routing.announce(id, node.net.peer_id(), None).await {
            warn!("routing: {e}");
        }
        let _ = node
            .net
            .announce(Announcement::Provider {
                function: id,
                hosting: false,
                load: self.load(),
                capacity: self.capacity(),
                addrs: Vec::new(),
            })
            .await;
    }

    /// This node's load report, closing the current window of `length`.
    pub(crate) fn take_window(&self, length: Duration) -> Load {
        let capacity = self.capacity.max(1);
        let budget = length.as_micros().max(1) as u64 * u64::from(capacity);
        let permille = |busy: Duration| ((busy.as_micros() as u64 * 1000) / budget) as u32;
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total = Duration::ZERO;
        let mut functions: Vec<FunctionLoad> = windows
            .iter_mut()
            .map(|(id, w)| {
                let f = FunctionLoad {
                    function: *id,
                    calls: w.calls,
                    busy_permille: permille(w.busy),
                };
                total += w.busy;
                w.calls = 0;
                w.busy = Duration::ZERO;
                f
            })
            .collect();
        functions.sort_by_key(|f| f.function);
        Load {
            capacity: self.capacity,
            in_flight: self.load(),
            busy_permille: permille(total),
            functions,
        }
    }

    /// Adds a finished call to its function's window. A call that ends
    /// after its function retired is not counted: the window's keys are
    /// the hosted functions, and the load report lists them as hosted.
    fn record_call(&self, id: FunctionId, busy: Duration) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = windows.get_mut(&id) {
            w.calls += 1;
            w.busy += busy;
            w.last_call = Instant::now();
        }
    }

    /// Remembers a name this node published, to republish it after a restart.
    pub(crate) fn remember_name(&self, record: &NameRecord) {
        if let Err(e) = self.names.insert(record.name.as_bytes(), record.encode()) {
            warn!("cannot record name {}: {e}", record.name);
        }
    }

    /// Writes what was recorded (hosted functions, names) to disk before
    /// the deploy that recorded it is answered: a node killed a moment
    /// after answering hosts the function again when it restarts.
    pub(crate) async fn persist(&self) {
        if let Err(e) = self.hosted.flush_async().await {
            warn!("cannot write the hosted functions and names to disk: {e}");
        }
    }

    /// The name record kept here for `name`, if any.
    pub(crate) fn name_record(&self, name: &str) -> Option<NameRecord> {
        let bytes = self.names.get(name.as_bytes()).ok().flatten()?;
        NameRecord::decode(&bytes).ok()
    }

    /// A name kept here for `function`, if any.
    pub(crate) fn name_of(&self, function: &FunctionId) -> Option<String> {
        self.names()
            .into_iter()
            .find(|r| r.function == *function)
            .map(|r| r.name)
    }

    fn names(&self) -> Vec<NameRecord> {
        self.names
            .iter()
            .filter_map(|kv| kv.ok())
            .filter_map(|(_, v)| NameRecord::decode(&v).ok())
            .collect()
    }

    /// Hosts again what was hosted before a restart.
    pub(crate) async fn restore(&self, node: &Node) {
        for record in self.names() {
            node.names.put(&record.name, record.function);
        }
        let ids: Vec<FunctionId> = self
            .hosted
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| <[u8; 32]>::try_from(k.as_ref()).ok())
            .map(FunctionId::from_bytes)
            .collect();
        for id in ids {
            // Already in the store: load it (from the compiled artifact when
            // cached) instead of storing and hashing the module again.
            let (runtime, store) = (self.runtime.clone(), self.store.clone());
            match tokio::task::spawn_blocking(move || store.load(&runtime, id)).await {
                Ok(Ok(function)) => {
                    self.serve(node, function, false).await;
                }
                Ok(Err(e)) => warn!(function = %id, "cannot host again: {e}"),
                Err(e) => warn!(function = %id, "cannot host again: {e}"),
            }
        }
    }

    /// Hands a call to the pool; `done` gets its result on the executor
    /// thread that ran it.
    fn submit(
        &self,
        function: Function,
        invoke: &Invoke,
        done: impl FnOnce(Result<Outcome, FnError>) + Send + 'static,
    ) -> Result<(), FnError> {
        self.submit_with(function, invoke, Limits::default(), done)
    }

    /// [`Self::submit`] with limits other than the default (a lower fuel
    /// limit the invoke asks for still applies).
    fn submit_with(
        &self,
        function: Function,
        invoke: &Invoke,
        mut limits: Limits,
        done: impl FnOnce(Result<Outcome, FnError>) + Send + 'static,
    ) -> Result<(), FnError> {
        if let Some(fuel) = invoke.fuel {
            limits.fuel = limits.fuel.min(fuel);
        }
        let opts = CallOptions {
            limits,
            seed: Seed::derive(&invoke.invocation.to_be_bytes()),
            ..CallOptions::default()
        };
        let in_flight = self.in_flight.clone();
        in_flight.fetch_add(1, Ordering::Relaxed);
        let submitted = self
            .executor
            .submit(function, invoke.input.clone(), opts, move |result| {
                in_flight.fetch_sub(1, Ordering::Relaxed);
                done(result);
            });
        if submitted.is_err() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        submitted
    }

    /// Runs a call on the pool.
    pub(crate) async fn call(
        &self,
        function: Function,
        invoke: &Invoke,
    ) -> Result<Outcome, FnError> {
        self.call_with(function, invoke, Limits::default()).await
    }

    /// Runs a call on the pool with `limits`.
    pub(crate) async fn call_with(
        &self,
        function: Function,
        invoke: &Invoke,
        limits: Limits,
    ) -> Result<Outcome, FnError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit_with(function, invoke, limits, move |result| {
            let _ = tx.send(result);
        })?;
        rx.await
            .map_err(|_| FnError::Runtime("executor dropped the call".into()))?
    }

    /// What `orb fn inspect` says of `module` (compiled in the compiler's
    /// turn, off the async threads; nothing is stored).
    pub(crate) async fn inspect(
        &self,
        module: &[u8],
    ) -> Result<orb_functions::ModuleInfo, FnError> {
        let _turn = tokio::time::timeout(COMPILE_WAIT, self.compiler.acquire())
            .await
            .map_err(|_| FnError::Runtime("the compiler is busy: try again in a moment".into()))?;
        let runtime = self.runtime.clone();
        let bytes = module.to_vec();
        tokio::task::spawn_blocking(move || runtime.inspect(&bytes))
            .await
            .map_err(|e| FnError::Runtime(format!("inspect task failed: {e}")))?
    }

    /// Runs an invocation of a function hosted here; on a ledger, signs a
    /// receipt charging `invoker`. A peer's call (`from`) is charged to
    /// its fuel budget.
    pub(crate) async fn run(
        &self,
        node: &Node,
        invoke: &Invoke,
        invoker: Option<PublicKey>,
        from: Option<&PeerId>,
    ) -> Response {
        let Some(function) = self.function(&invoke.function) else {
            return Response::NotHosted;
        };
        if from.is_some_and(|peer| !self.within_budget(peer)) {
            return Response::Busy;
        }
        let span = execute_span(invoke, from);
        let started = Instant::now();
        let result = self.call(function, invoke).instrument(span.clone()).await;
        if let Some(peer) = from {
            self.charge(peer, &result);
        }
        span.in_scope(|| self.response(node, invoke, invoker, started, result))
    }

    /// What a call that ended answers: the call is counted in the load
    /// window, the output corrupted in byzantine mode, and on a ledger the
    /// receipt signed.
    fn response(
        &self,
        node: &Node,
        invoke: &Invoke,
        invoker: Option<PublicKey>,
        started: Instant,
        result: Result<Outcome, FnError>,
    ) -> Response {
        node.ran.push(super::calls::record(invoke, None, &result));
        if !matches!(result, Err(FnError::Busy { .. })) {
            let busy = result
                .as_ref()
                .map_or_else(|_| started.elapsed(), |o| o.duration);
            self.record_call(invoke.function, busy);
        }
        match result {
            Ok(mut outcome) => {
                if self.byzantine.has(Mode::WrongOutput) {
                    outcome.output.extend_from_slice(CORRUPTION);
                }
                // A wrong receipt: signed for more fuel than was burnt.
                let signed_fuel = if self.byzantine.has(Mode::WrongReceipt) {
                    outcome.fuel + 1
                } else {
                    outcome.fuel
                };
                let receipt = match (&node.ledger, invoker) {
                    (Some(ledger), Some(invoker)) => {
                        Some(ledger.sign_receipt(invoker, invoke, &outcome.output, signed_fuel))
                    }
                    _ => None,
                };
                Response::Output {
                    output: outcome.output,
                    fuel: outcome.fuel,
                    execution_us: outcome.duration.as_micros() as u64,
                    receipt,
                }
            }
            Err(FnError::Busy { .. }) => Response::Busy,
            Err(e) => Response::Failed {
                kind: e.kind().to_owned(),
                message: e.to_string(),
                fuel: e.fuel(),
            },
        }
    }

    /// Who pays for `peer`'s call: nobody without a ledger, the peer's key
    /// if it has credits; else why the call is refused.
    pub(crate) fn invoker(node: &Node, peer: &PeerId) -> Result<Option<PublicKey>, String> {
        match (&node.ledger, super::ledger::key_of(peer)) {
            (None, _) => Ok(None),
            (Some(ledger), Some(invoker)) if ledger.can_pay(&invoker) => Ok(Some(invoker)),
            (Some(_), _) => Err(format!(
                "the invoking node {peer} has no credits on this ledger"
            )),
        }
    }

    /// Answers a peer's request.
    pub(crate) async fn answer(&self, node: &Node, peer: PeerId, request: Request) -> Response {
        match request {
            Request::Invoke(invoke) => match Self::invoker(node, &peer) {
                Ok(invoker) => self.run(node, &invoke, invoker, Some(&peer)).await,
                Err(why) => Response::Refused(why),
            },
            Request::FetchModule { function } => match self.store.get(function) {
                Ok(bytes) => Response::Module(bytes),
                Err(_) => Response::Refused(format!("no module {function} here")),
            },
            Request::Host { function } => {
                if self.function(&function).is_some() {
                    return Response::Hosting {
                        accepted: true,
                        reason: String::new(),
                    };
                }
                if let Err(refused) = self.may_store(By::Publisher(&peer), &function) {
                    return Response::Hosting {
                        accepted: false,
                        reason: refused.to_string(),
                    };
                }
                match fetch_module(node, peer, function).await {
                    Ok(bytes) => match self.install(node, &bytes, By::Publisher(&peer)).await {
                        Ok(_) => Response::Hosting {
                            accepted: true,
                            reason: String::new(),
                        },
                        Err(e) => Response::Hosting {
                            accepted: false,
                            reason: e.to_string(),
                        },
                    },
                    Err(reason) => Response::Hosting {
                        accepted: false,
                        reason,
                    },
                }
            }
            _ => Response::Refused("not a function request".into()),
        }
    }
}

/// The span of a call run here, `execute`: the child of the span that sent
/// it when it came with a trace context (from a peer), else of the current
/// span (a call this node runs for itself).
fn execute_span(invoke: &Invoke, caller: Option<&PeerId>) -> Span {
    let span = info_span!(
        "execute",
        invocation = %format_args!("{:032x}", invoke.invocation),
        function = %invoke.function,
        caller = field::Empty,
        otel.kind = "server",
    );
    if let Some(peer) = caller {
        span.record("caller", field::display(peer));
    }
    super::trace::adopt(&span, invoke.trace.as_ref());
    span
}

/// Answers a peer's invoke with no task of its own: the call goes to the
/// pool from where the request was read, and the executor thread that runs
/// it signs the receipt and sends the answer to the peer's stream.
pub(crate) fn answer_invoke_now(node: &Arc<Node>, peer: PeerId, invoke: Invoke, reply: Reply) {
    let host = &node.host;
    let invoker = match Host::invoker(node, &peer) {
        Ok(invoker) => invoker,
        Err(why) => {
            reply.send(Response::Refused(why));
            return;
        }
    };
    let Some(function) = host.function(&invoke.function) else {
        reply.send(Response::NotHosted);
        return;
    };
    if !host.within_budget(&peer) {
        reply.send(Response::Busy);
        return;
    }
    let span = execute_span(&invoke, Some(&peer));
    let started = Instant::now();
    // The reply goes to the executor with the call, or answers here when
    // the pool refuses it.
    let reply = Arc::new(Mutex::new(Some(reply)));
    let invoke = Arc::new(invoke);
    let (answer, running, call) = (reply.clone(), node.clone(), invoke.clone());
    let executing = span.clone();
    let submitted = host.submit(function, &invoke, move |result| {
        // Closed (and exported) when the answer is on its way.
        let _in = executing.enter();
        tracing::debug!(
            target: "orb::calls",
            invocation = %format!("{:032x}", call.invocation),
            function = %call.function,
            caller = %peer,
            ok = result.is_ok(),
            us = started.elapsed().as_micros() as u64,
            "executed"
        );
        running.host.charge(&peer, &result);
        let response = running
            .host
            .response(&running, &call, invoker, started, result);
        if let Some(reply) = answer.lock().unwrap_or_else(PoisonError::into_inner).take() {
            running.host.deliver(reply, response);
        }
    });
    if let Err(e) = submitted {
        let _in = span.enter();
        let response = host.response(node, &invoke, invoker, started, Err(e));
        if let Some(reply) = reply.lock().unwrap_or_else(PoisonError::into_inner).take() {
            host.deliver(reply, response);
        }
    }
}

/// Fetches a module by hash from `peer` and checks the hash.
pub(crate) async fn fetch_module(
    node: &Node,
    peer: PeerId,
    function: FunctionId,
) -> Result<Vec<u8>, String> {
    match node
        .net
        .request(peer, &Request::FetchModule { function })
        .await
    {
        Ok(Response::Module(bytes)) => {
            let got = FunctionId::of(&bytes);
            if got == function {
                Ok(bytes)
            } else {
                warn!(%peer, "module hash mismatch: expected {function}, got {got}");
                Err(format!(
                    "module hash mismatch: expected {function}, got {got}"
                ))
            }
        }
        Ok(Response::Refused(reason)) => Err(reason),
        Ok(other) => Err(format!("unexpected answer to a module fetch: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The publisher an install is charged to (none: this node's choice).
fn publisher_of(by: By<'_>) -> Option<String> {
    match by {
        By::Publisher(peer) => Some(peer.to_string()),
        By::Scaling => None,
    }
}

/// Tells the routing dataflow (which publishes the DHT provider record) and
/// every peer (gossip) that this node hosts `id`.
pub(crate) async fn announce(node: &Node, id: FunctionId) {
    if let Err(e) = node
        .routing
        .announce(id, node.net.peer_id(), Some(own_row(node)))
        .await
    {
        warn!("routing: {e}");
    }
    let addrs = match node.net.status().await {
        Ok(s) => s.external.into_iter().chain(s.listen).collect(),
        Err(_) => Vec::new(),
    };
    let _ = node
        .net
        .announce(Announcement::Provider {
            function: id,
            hosting: true,
            load: node.host.load(),
            capacity: node.host.capacity(),
            addrs,
        })
        .await;
}

/// Feeds a peer's announcement into the routing dataflow.
pub(crate) async fn learn(node: &Node, peer: PeerId, announcement: Announcement) {
    match announcement {
        Announcement::Claim(_)
        | Announcement::Settlements(_)
        | Announcement::Proposal(_)
        | Announcement::Committed(_)
        | Announcement::Equivocation(_) => {
            if let Some(ledger) = &node.ledger {
                ledger.learn(peer, announcement).await;
            }
        }
        Announcement::Load(load) => node.scaler.learn(node, peer, load).await,
        Announcement::Provider {
            function,
            hosting,
            load,
            capacity,
            addrs,
        } => {
            debug!(%peer, %function, hosting, load, "provider announcement");
            if !hosting {
                node.scaler.forget(function, &peer);
            }
            let addrs = addrs.iter().filter_map(|a| a.parse().ok()).collect();
            node.net.add_addresses_nowait(peer, addrs);
            let row = hosting.then_some(orb_engine::Provider {
                peer,
                load,
                capacity,
                cached: true,
                busy_until_ms: 0,
            });
            if let Err(e) = node.routing.announce(function, peer, row).await {
                warn!("routing: {e}");
            }
        }
    }
}

/// Re-announces hosted functions and republishes names, forever (the node
/// drops it at shutdown): new peers learn them, records outlive the nodes
/// that stored them, and a node that restarted alone publishes once it has
/// peers again.
pub(crate) async fn republish_forever(node: Arc<Node>) {
    let mut published_with_peers = false;
    loop {
        let pause = if published_with_peers {
            REANNOUNCE
        } else {
            Duration::from_millis(500)
        };
        tokio::time::sleep(pause).await;
        let connected = node.net.status().await.map_or(0, |s| s.connected);
        if connected == 0 {
            published_with_peers = false;
            continue;
        }
        for id in node.host.hosted() {
            announce(&node, id).await;
            if !published_with_peers {
                let _ = node.net.provide(id).await;
            }
        }
        if !published_with_peers {
            for record in node.host.names() {
                if let Err(e) = node.net.put_name(record.clone()).await {
                    debug!("republishing name {}: {e}", record.name);
                }
            }
        }
        published_with_peers = true;
    }
}
