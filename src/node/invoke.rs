//! Invoking: from a name or id to an output, through the network.
//!
//! 1. Resolve: an id is used as is; a name is looked up in the node's cache,
//!    else in the DHT (a signed record, verified).
//! 2. Schedule: the routing dataflow joins the call with the routing table
//!    and answers with the providers it knows, least loaded first, those
//!    holding the compiled module before those that do not, without those
//!    that answered "busy" in the last `--busy-window-ms`; when it knows
//!    none, the DHT's provider records are fed into it and it is asked
//!    again. The call runs on the first R of them at once.
//! 3. Reroute: "busy", "not hosted", a bad receipt, a timeout or a failed
//!    connection moves that replica on to the next provider (the caller
//!    sees nothing while providers remain); a provider that failed is
//!    withdrawn from the routing table. Every attempt carries the same
//!    invocation id, so a retried call is still settled, and paid, once.
//! 4. Decide: a strict majority of equal results (output hash and fuel, or
//!    the same guest failure) is the answer. Without one, more providers
//!    are tried, up to R + [`EXTRA_REPLICAS`]; then the call fails naming
//!    the disagreement. Executors outvoted are recorded as disputed. The
//!    rule is `orb_ledger`'s pure [`Agreement`] (and [`check_receipt`] for
//!    the receipts in step 3): this module only asks providers, feeds it
//!    their answers and does what it decides.
//! 5. Settle: on a ledger, every receipt goes into one settlement signed by
//!    this node, which the ledger pays by the same majority rule.
//!
//! Single-replica calls are verified by sampling: a fraction of them is
//! re-executed by a second provider, picked at random, after the caller has
//! its answer; a mismatch brings in a third, and the settlement then pays
//! the majority (the caller already had the unverified answer: sampling
//! makes cheating unprofitable, replicas make it ineffective).
//!
//! Each hop is a span (info level, named by the invocation on `invoke`):
//! `invoke` holds `resolve`, `schedule` (the providers it found), `vote`
//! (the replicas asked until the agreement decides: one `send` each, with
//! its `receipt_check`) and `settle`. A `send` to another node carries its
//! trace context in the [`Invoke`] ([`super::trace`]), so the `execute`
//! span there is its child in the same trace.
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use orb_engine::Provider;
use orb_functions::FunctionId;
use orb_ledger::{Agreement, Decision, Digest, Outcome, Receipt, ReceiptBody, check_receipt};
use orb_net::{Invoke, Offence, PeerId, Request, Response};
use serde::Serialize;
use tracing::{Instrument as _, debug, field, info, info_span, warn};

use super::Node;
use super::ledger::key_of;
use super::names::Known;

/// Providers tried beyond R when the replicas disagree.
const EXTRA_REPLICAS: usize = 2;

/// One attempt on one provider gives up after this long (the executor's
/// own wall-clock limit is 10 s).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// An answer whose network time (round trip less execution) is over this
/// is slow: its provider is scored and left out for a busy window.
const SLOW_ANSWER: Duration = Duration::from_secs(2);

/// A successful call, with where and how long.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct Invoked {
    /// The invocation id (hex), the same on every attempt and receipt.
    pub invocation: String,
    /// The function called.
    pub function: FunctionId,
    /// The output (the response body of `POST /fn/…`).
    #[serde(skip)]
    pub output: Vec<u8>,
    /// Fuel the call used.
    pub fuel: u64,
    /// The peer id of the executor whose answer this is.
    pub executor: String,
    /// Time to resolve the name and schedule the call, in microseconds.
    pub resolve_us: u64,
    /// Time on the network for the answer, in microseconds.
    pub network_us: u64,
    /// Time the executor ran the call, in microseconds.
    pub execution_us: u64,
    /// Providers asked.
    pub attempts: u32,
    /// Providers asked that gave no answer (failed, busy, did not answer
    /// in time) and were replaced by another: a rerouted call has one.
    pub rerouted: u32,
    /// Executors whose results agree (the answer's majority).
    pub agreed: Vec<String>,
    /// Executors outvoted by the majority.
    pub disputed: Vec<String>,
}

/// Why a call produced no output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// Nobody on the network provides the function, or the name is unknown.
    #[error("no provider for {0}")]
    NoProvider(String),
    /// The target is neither a valid name nor a function id.
    #[error("{0}")]
    BadTarget(String),
    /// The function itself failed (a majority of replicas agree on it).
    #[error("the function failed ({kind}): {message}")]
    Guest {
        /// The kind of failure (`trap`, `fuel`, `timeout`, …).
        kind: String,
        /// What the runtime said.
        message: String,
        /// Fuel used, when known.
        fuel: Option<u64>,
        /// The executor that reported it.
        executor: String,
    },
    /// Every provider tried failed, was busy or did not answer.
    #[error("every provider of {target} failed: {tried}")]
    Exhausted {
        /// The name or id called.
        target: String,
        /// What each provider tried did.
        tried: String,
    },
    /// The replicas' results differ and no strict majority agrees.
    #[error("the replicas of {target} disagree, no strict majority: {results}")]
    Disagreement {
        /// The name or id called.
        target: String,
        /// Each replica's result.
        results: String,
    },
    /// This node is at a limit for the moment (name lookups in flight).
    #[error("busy: {0}")]
    Busy(String),
    /// This node failed (a dataflow or the network stopped).
    #[error("{0}")]
    Internal(String),
    /// This node's account cannot pay for the call.
    #[error(
        "this node's account {0} has no credits on the ledger: calls are paid by the node they enter"
    )]
    NoCredits(String),
}

/// Resolves `target` (a name or a 64-hex-digit id) to a function id.
pub(crate) async fn resolve_name(node: &Node, target: &str) -> Result<FunctionId, InvokeError> {
    if target.len() == 64
        && let Ok(id) = target.parse::<FunctionId>()
    {
        return Ok(id);
    }
    orb_net::check_name(target).map_err(|e| InvokeError::BadTarget(e.to_string()))?;
    match node.names.get(target) {
        Some(Known::Function(id)) => return Ok(id),
        Some(Known::Missing) => return Err(InvokeError::NoProvider(target.to_owned())),
        None => {}
    }
    let Some(_turn) = node.names.lookup() else {
        return Err(InvokeError::Busy(format!(
            "{} name lookups are in flight on this node: try {target} again in a moment",
            super::names::LOOKUPS
        )));
    };
    match node.net.get_name(target).await {
        Ok(Some(record)) => {
            node.names.put(target, record.function);
            Ok(record.function)
        }
        // Just started (its peers not in its DHT table yet), the node
        // asked nobody: the name is not known missing, so try again soon.
        Err(orb_net::Error::NotJoined) => Err(InvokeError::Busy(format!(
            "{target} was looked up before this node joined the DHT: try again in a moment"
        ))),
        Ok(None) => {
            node.names.missing(target);
            Err(InvokeError::NoProvider(target.to_owned()))
        }
        Err(e) => Err(InvokeError::Internal(e.to_string())),
    }
}

/// The providers of `id` the routing dataflow knows, best first: from its
/// cache when that has any that are not busy, else by a lookup.
pub(crate) async fn providers(node: &Node, id: FunctionId) -> Result<Vec<Provider>, InvokeError> {
    if let Some(found) = node.routing.cached(id)
        && !found.is_empty()
    {
        return Ok(found);
    }
    node.routing
        .resolve(id)
        .await
        .map_err(|e| InvokeError::Internal(e.to_string()))
}

/// Asks the DHT for providers of `id` and feeds them to the routing dataflow.
async fn discover(node: &Node, id: FunctionId) -> Result<Vec<Provider>, InvokeError> {
    let found = node
        .net
        .providers(id)
        .await
        .map_err(|e| InvokeError::Internal(e.to_string()))?;
    for peer in found {
        let row = Provider {
            peer,
            load: 0,
            capacity: 0,
            cached: false,
            busy_until_ms: 0,
        };
        node.routing
            .announce(id, row.peer, Some(row))
            .await
            .map_err(|e| InvokeError::Internal(e.to_string()))?;
    }
    providers(node, id).await
}

/// Executors caught disagreeing with a majority, most recent last.
#[derive(Default)]
pub(crate) struct Disputes(Mutex<VecDeque<Dispute>>);

/// One executor outvoted on one invocation.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Dispute {
    pub(crate) invocation: String,
    pub(crate) function: String,
    pub(crate) executor: String,
    /// How it was caught: `replicas` or `sampled verification`.
    pub(crate) by: &'static str,
}

impl Disputes {
    fn record(&self, dispute: Dispute) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if all.len() >= 1000 {
            all.pop_front();
        }
        all.push_back(dispute);
    }

    /// The recorded disputes, oldest first.
    pub(crate) fn list(&self) -> Vec<Dispute> {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.iter().cloned().collect()
    }
}

/// One replica's answer.
struct Answer {
    peer: PeerId,
    result: Outcome,
    output: Vec<u8>,
    /// The guest failure's message and fuel, for a failed call.
    failure: Option<(String, Option<u64>)>,
    fuel: u64,
    receipt: Option<Receipt>,
    execution_us: u64,
    network_us: u64,
}

/// What one attempt on one provider gave.
enum Attempt {
    Answer(Box<Answer>),
    /// Try the next provider; why this one did not answer.
    Reroute(String),
}

/// Picks providers for one call: the routing dataflow's ranking, then the
/// DHT's, each provider at most once.
struct Schedule {
    node: Arc<Node>,
    call: Arc<Invoke>,
    queue: VecDeque<Provider>,
    tried: HashSet<PeerId>,
    /// DHT lookups made for this call.
    dht_asks: u32,
    failures: Vec<String>,
    /// Providers asked that gave no answer (failed, busy, timed out) and
    /// were replaced by another.
    reroutes: u32,
}

/// DHT lookups one call makes at most (one at the start when nothing is
/// known, one when every provider known has failed).
const MAX_DHT_ASKS: u32 = 2;

impl Schedule {
    async fn new(node: Arc<Node>, call: Invoke) -> Result<Self, InvokeError> {
        let mut queue: VecDeque<Provider> = spread(providers(&node, call.function).await?);
        let mut dht_asks = 0;
        if queue.is_empty() {
            queue = discover(&node, call.function).await?.into();
            dht_asks = 1;
        }
        Ok(Self {
            node,
            call: Arc::new(call),
            queue,
            tried: HashSet::new(),
            dht_asks,
            failures: Vec::new(),
            reroutes: 0,
        })
    }

    /// The next provider not tried yet.
    async fn next(&mut self) -> Result<Option<PeerId>, InvokeError> {
        loop {
            if let Some(p) = self.queue.pop_front() {
                if self.tried.insert(p.peer) {
                    return Ok(Some(p.peer));
                }
                continue;
            }
            // Everything in the queue failed. Rows learned since the call
            // began (gossip, another lookup) come first; then the DHT, which
            // may know providers we do not: asked once more even if the
            // call began with a lookup, since a provider that was still
            // announcing itself then may be there now.
            let fresh: VecDeque<Provider> = providers(&self.node, self.call.function)
                .await?
                .into_iter()
                .filter(|p| !self.tried.contains(&p.peer))
                .collect();
            if !fresh.is_empty() {
                self.queue = fresh;
                continue;
            }
            if self.dht_asks >= MAX_DHT_ASKS {
                return Ok(None);
            }
            self.dht_asks += 1;
            self.queue = discover(&self.node, self.call.function).await?.into();
        }
    }

    /// Runs the call on providers until `agreement` decides: asks as many
    /// as it wants at once, feeds it every answer and reroute, and keeps
    /// each answer in `answers` (in the order they came, as the agreement
    /// counts them). Returns the decision, a majority or none.
    async fn agree(
        &mut self,
        agreement: &mut Agreement<PeerId>,
        answers: &mut Vec<Answer>,
    ) -> Result<Decision<PeerId>, InvokeError> {
        let mut running = FuturesUnordered::new();
        loop {
            match agreement.decision() {
                Decision::AskAnother(n) => {
                    for _ in 0..n {
                        let Some(peer) = self.next().await? else {
                            agreement.exhausted();
                            break;
                        };
                        agreement.asked();
                        let send = info_span!("send", %peer, otel.kind = "client");
                        running.push(
                            attempt(self.node.clone(), peer, self.call.clone()).instrument(send),
                        );
                    }
                }
                Decision::Wait => {
                    let Some(outcome) = running.next().await else {
                        return Err(InvokeError::Internal(
                            "waiting for answers no provider was asked for".into(),
                        ));
                    };
                    match outcome {
                        Attempt::Answer(a) => {
                            if agreement.answered(a.peer, a.result.clone()) {
                                answers.push(*a);
                            } else {
                                self.failures
                                    .push(format!("{}: answered twice", short_peer(&a.peer)));
                            }
                        }
                        Attempt::Reroute(why) => {
                            self.failures.push(why);
                            self.reroutes += 1;
                            agreement.rerouted();
                        }
                    }
                }
                decided => return Ok(decided),
            }
        }
    }
}

/// The routing answer's order, with providers that rank equal (same load
/// per capacity, same module holding) shuffled: ties otherwise go by peer
/// id, and every entry node would send its calls to the same provider
/// between two load reports.
fn spread(mut ranked: Vec<Provider>) -> VecDeque<Provider> {
    use rand::seq::SliceRandom as _;
    let key = |p: &Provider| {
        (
            u64::from(p.load) * 1000 / u64::from(p.capacity.max(1)),
            !p.cached,
        )
    };
    let mut rng = rand::rng();
    let mut start = 0;
    while start < ranked.len() {
        let k = key(&ranked[start]);
        let end = ranked[start..]
            .iter()
            .position(|p| key(p) != k)
            .map_or(ranked.len(), |n| start + n);
        ranked[start..end].shuffle(&mut rng);
        start = end;
    }
    ranked.into()
}

/// Leaves `peer` out of this node's scheduling for the busy window (it
/// answered "busy", never answered, or answered far too late).
async fn leave_out(node: &Node, peer: &PeerId) {
    let _ = node.routing.busy(*peer, node.busy_window_ms).await;
}

/// Runs `call` on `peer` (here when that is this node).
async fn attempt(node: Arc<Node>, peer: PeerId, call: Arc<Invoke>) -> Attempt {
    let sent = Instant::now();
    let local = peer == node.net.peer_id();
    let response = if local {
        let me = node.ledger.as_ref().map(|l| l.me);
        Ok(node.host.run(&node, &call, me, None).await)
    } else {
        // The executor's spans join this call's trace under this attempt.
        let mut sent = (*call).clone();
        sent.trace = super::trace::outgoing();
        let request = Request::Invoke(sent);
        match tokio::time::timeout(ATTEMPT_TIMEOUT, node.net.request(peer, &request)).await {
            // As many of our calls as its window allows are in flight there.
            Ok(Err(orb_net::Error::WindowFull { .. })) => Ok(Response::Busy),
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => {
                // Silent: scored, and left out of scheduling for a while.
                node.net.report(peer, Offence::Unanswered);
                leave_out(&node, &peer).await;
                Err(format!("no answer in {} s", ATTEMPT_TIMEOUT.as_secs()))
            }
        }
    };
    let round_trip = sent.elapsed().as_micros() as u64;
    let reroute = |why: String| Attempt::Reroute(format!("{}: {why}", short_peer(&peer)));
    match response {
        Ok(Response::Output {
            output,
            fuel,
            execution_us,
            receipt,
        }) => {
            let hash = Digest(*blake3::hash(&output).as_bytes());
            if let Some(ledger) = &node.ledger {
                let executor = if local {
                    Some(ledger.me)
                } else {
                    key_of(&peer)
                };
                let check = info_span!("receipt_check");
                let checked = check.in_scope(|| match executor {
                    Some(executor) => {
                        let expected = ReceiptBody {
                            invocation: call.invocation,
                            function: Digest(*call.function.as_bytes()),
                            input: Digest(*blake3::hash(&call.input).as_bytes()),
                            output: hash,
                            fuel,
                            executor,
                            invoker: ledger.me,
                        };
                        check_receipt(receipt.as_ref(), &expected).map_err(|e| e.to_string())
                    }
                    None => Err("its peer id holds no ed25519 key".to_owned()),
                });
                if let Err(why) = checked {
                    debug!(%peer, "bad receipt: {why}");
                    node.net.report(peer, Offence::Invalid);
                    withdraw(&node, call.function, &peer).await;
                    return reroute("no valid receipt for its answer".into());
                }
            }
            let network_us = if local {
                0
            } else {
                round_trip.saturating_sub(execution_us)
            };
            if network_us > SLOW_ANSWER.as_micros() as u64 {
                // Far slower than its work explains: left out of this
                // node's scheduling for a while, and scored.
                node.net.report(peer, Offence::Slow);
                leave_out(&node, &peer).await;
            }
            Attempt::Answer(Box::new(Answer {
                result: Outcome::Output { hash, fuel },
                peer,
                output,
                failure: None,
                fuel,
                receipt,
                execution_us,
                network_us,
            }))
        }
        // A guest failure is an answer: calls are deterministic, so the
        // replicas vote on it like on an output.
        Ok(Response::Failed {
            kind,
            message,
            fuel,
        }) => Attempt::Answer(Box::new(Answer {
            result: Outcome::Failed { kind },
            peer,
            output: Vec::new(),
            failure: Some((message, fuel)),
            fuel: fuel.unwrap_or(0),
            receipt: None,
            execution_us: 0,
            network_us: 0,
        })),
        Ok(Response::Busy) => {
            leave_out(&node, &peer).await;
            reroute("busy".into())
        }
        Ok(Response::Refused(why)) => {
            withdraw(&node, call.function, &peer).await;
            reroute(format!("refused: {why}"))
        }
        Ok(other) => {
            debug!(%peer, ?other, "provider cannot run it");
            withdraw(&node, call.function, &peer).await;
            reroute("does not host it".into())
        }
        Err(e) => {
            debug!(%peer, "provider failed: {e}");
            withdraw(&node, call.function, &peer).await;
            reroute(e)
        }
    }
}

/// Calls `target` with `input` on `replicas` executors (the node's default
/// when `None`).
pub(crate) async fn invoke(
    node: &Arc<Node>,
    target: &str,
    input: Vec<u8>,
    fuel: Option<u64>,
    replicas: Option<usize>,
) -> Result<Invoked, InvokeError> {
    invoke_as(node, rand::random(), target, input, fuel, replicas).await
}

/// [`invoke`] under a given invocation id (an agent's call: the same on
/// every attempt, so that it is settled once).
pub(crate) async fn invoke_as(
    node: &Arc<Node>,
    invocation: u128,
    target: &str,
    input: Vec<u8>,
    fuel: Option<u64>,
    replicas: Option<usize>,
) -> Result<Invoked, InvokeError> {
    let span = info_span!("invoke", invocation = %format!("{invocation:032x}"), target);
    let started = Instant::now();
    let result = async move {
        if let Some(ledger) = &node.ledger
            && !ledger.can_pay(&ledger.me)
        {
            return Err(InvokeError::NoCredits(node.peer_id.clone()));
        }
        let id = resolve_name(node, target)
            .instrument(info_span!("resolve"))
            .await?;
        let call = Invoke {
            invocation,
            function: id,
            input,
            fuel,
            trace: None,
        };
        let scheduling = info_span!("schedule", function = %id, providers = field::Empty);
        let mut schedule = Schedule::new(node.clone(), call)
            .instrument(scheduling.clone())
            .await?;
        scheduling.record("providers", schedule.queue.len());
        if schedule.queue.is_empty() {
            // Providers known, all left out for answering "busy" (or
            // failing) a moment ago: say so, not "no provider".
            let resting = node.routing.resting(id);
            if resting > 0 {
                return Err(InvokeError::Exhausted {
                    target: target.to_owned(),
                    tried: format!(
                        "{resting} provider(s), every one busy a moment ago (left out for {} ms); retry in a moment",
                        node.busy_window_ms
                    ),
                });
            }
            return Err(InvokeError::NoProvider(target.to_owned()));
        }
        let resolve_us = started.elapsed().as_micros() as u64;
        let r = replicas.unwrap_or(node.replicas).max(1);
        let mut agreement = Agreement::new(r, r + EXTRA_REPLICAS);
        let mut answers = Vec::new();
        let decided = schedule
            .agree(&mut agreement, &mut answers)
            .instrument(info_span!("vote", replicas = r))
            .await?;
        let attempts = schedule.tried.len() as u32;
        let Decision::Majority {
            result,
            agreed,
            outvoted,
        } = &decided
        else {
            if answers.is_empty() {
                return Err(InvokeError::Exhausted {
                    target: target.to_owned(),
                    tried: schedule.failures.join("; "),
                });
            }
            settle(node, invocation, &answers, &decided, "replicas").await;
            return Err(InvokeError::Disagreement {
                target: target.to_owned(),
                results: describe(&answers),
            });
        };
        // Sampled verification needs another provider the routing table
        // knows (gossip keeps it current): with none, there is nobody to
        // check with, and a DHT lookup for one on every sampled call would
        // cost the network more than the check.
        let verify = answers.len() == 1
            && r == 1
            && matches!(result, Outcome::Output { .. })
            && !schedule.queue.is_empty()
            && rand::random::<f64>() < node.verify_fraction;
        if !verify {
            settle(node, invocation, &answers, &decided, "replicas").await;
        }
        // The answer: the fastest of the majority.
        let best = answers
            .iter()
            .filter(|a| agreed.contains(&a.peer))
            .min_by_key(|a| a.execution_us + a.network_us)
            .ok_or_else(|| InvokeError::Internal("a majority of no answers".into()))?;
        if let Some((message, fuel)) = &best.failure {
            let Outcome::Failed { kind } = result else {
                return Err(InvokeError::Internal("a failure without a kind".into()));
            };
            return Err(InvokeError::Guest {
                kind: kind.clone(),
                message: message.clone(),
                fuel: *fuel,
                executor: peer_text(node, &best.peer),
            });
        }
        let done = Invoked {
            invocation: format!("{invocation:032x}"),
            function: id,
            output: best.output.clone(),
            fuel: best.fuel,
            executor: peer_text(node, &best.peer),
            resolve_us,
            network_us: best.network_us,
            execution_us: best.execution_us,
            attempts,
            rerouted: schedule.reroutes,
            agreed: agreed.iter().map(|p| peer_text(node, p)).collect(),
            disputed: outvoted.iter().map(|p| peer_text(node, p)).collect(),
        };
        if verify {
            // A task of the node: the shutdown's drain waits for it.
            node.tasks
                .spawn(verify_later(schedule, answers).in_current_span());
        }
        Ok(done)
    }
    .instrument(span)
    .await;
    node.metrics.invoked(target, &result, started.elapsed());
    match &result {
        Ok(done) => tracing::debug!(
            target: "orb::calls",
            invocation = %done.invocation,
            target,
            executor = %done.executor,
            agreed = done.agreed.len(),
            outvoted = done.disputed.len(),
            us = started.elapsed().as_micros() as u64,
            "answered"
        ),
        Err(e) => tracing::debug!(
            target: "orb::calls",
            invocation = %format!("{invocation:032x}"),
            target,
            "failed: {e}"
        ),
    }
    result
}

/// Sampled verification of a single-replica call: one more provider,
/// picked at random (an executor cannot predict who checks it), runs it; on
/// a mismatch a third decides. The settlement waits for this.
async fn verify_later(mut schedule: Schedule, mut answers: Vec<Answer>) {
    use rand::seq::SliceRandom as _;
    let invocation = schedule.call.invocation;
    schedule.queue.make_contiguous().shuffle(&mut rand::rng());
    // Only providers the routing table knows check a call, never one a
    // lookup would have to find.
    schedule.dht_asks = MAX_DHT_ASKS;
    // The answer in counts as the first of two wanted, three at most.
    let mut agreement = Agreement::new(2, 3);
    for a in &answers {
        agreement.asked();
        agreement.answered(a.peer, a.result.clone());
    }
    let vote = info_span!("vote", replicas = 2, by = "sampled verification");
    let decided = match schedule
        .agree(&mut agreement, &mut answers)
        .instrument(vote)
        .await
    {
        Ok(d) => d,
        Err(e) => {
            debug!("sampled verification: {e}");
            Decision::NoMajority
        }
    };
    if answers.iter().any(|a| a.result != answers[0].result) {
        warn!(
            "sampled verification found a mismatch: {}",
            describe(&answers)
        );
    }
    settle(
        &schedule.node,
        invocation,
        &answers,
        &decided,
        "sampled verification",
    )
    .await;
}

/// Records the executors outvoted and settles every receipt: nobody is
/// paid without a majority, and a majority failure settles nothing (a
/// failed call earns nothing, so a lone receipt must not be paid).
#[tracing::instrument(name = "settle", skip_all, fields(by = by))]
async fn settle(
    node: &Node,
    invocation: u128,
    answers: &[Answer],
    decided: &Decision<PeerId>,
    by: &'static str,
) {
    if let Decision::Majority {
        result, outvoted, ..
    } = decided
    {
        for a in answers.iter().filter(|a| outvoted.contains(&a.peer)) {
            let dispute = Dispute {
                invocation: format!("{invocation:032x}"),
                function: node_function(answers, a),
                executor: a.peer.to_string(),
                by,
            };
            info!(executor = %a.peer, by, "executor outvoted: paid nothing");
            node.disputes.record(dispute);
            node.net.report(a.peer, Offence::Outvoted);
        }
        if matches!(result, Outcome::Failed { .. }) {
            return;
        }
    }
    if let Some(ledger) = &node.ledger {
        let receipts = answers.iter().filter_map(|a| a.receipt.clone()).collect();
        ledger.settle(invocation, receipts).await;
    }
}

fn node_function(answers: &[Answer], a: &Answer) -> String {
    a.receipt
        .as_ref()
        .or_else(|| answers.iter().find_map(|a| a.receipt.as_ref()))
        .map_or_else(String::new, |r| r.body.function.to_string())
}

/// "peer: output hash" for each answer.
fn describe(answers: &[Answer]) -> String {
    answers
        .iter()
        .map(|a| match &a.result {
            Outcome::Output { hash, fuel } => {
                format!(
                    "{} → output {} (fuel {fuel})",
                    short_peer(&a.peer),
                    &hash.to_string()[..16]
                )
            }
            Outcome::Failed { kind } => format!("{} → failed ({kind})", short_peer(&a.peer)),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Takes `peer` out of the routing table for `id` (never this node: it
/// knows what it hosts).
async fn withdraw(node: &Node, id: FunctionId, peer: &PeerId) {
    if *peer != node.net.peer_id() {
        let _ = node.routing.announce(id, *peer, None).await;
    }
}

/// The last characters of a peer id, for messages.
fn short(peer: &str) -> &str {
    &peer[peer.len().saturating_sub(8)..]
}

/// `peer` as text; this node's own without encoding it again (base58, on
/// every call it executes).
fn peer_text(node: &Node, peer: &PeerId) -> String {
    if *peer == node.net.peer_id() {
        node.peer_id.clone()
    } else {
        peer.to_string()
    }
}

fn short_peer(peer: &PeerId) -> String {
    short(&peer.to_string()).to_owned()
}
