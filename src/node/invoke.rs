//! Invoking: from a name or id to an output, through the network.
//!
//! 1. Resolve: an id is used as is; a name is looked up in the node's cache,
//!    else in the DHT (a signed record, verified).
//! 2. Route: the routing dataflow answers with the providers it knows, best
//!    first; when it knows none, the DHT's provider records are fed into it
//!    and it is asked again.
//! 3. Call: the call goes to the first provider (run here when that is this
//!    node); "busy", "not hosted" or a failed connection moves on to the
//!    next, and a provider that failed is withdrawn from the routing table.
//!    A guest failure is an answer, not a reason to retry (calls are
//!    deterministic: another replica would fail the same way).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use orb_engine::Provider;
use orb_functions::FunctionId;
use orb_net::{Invoke, PeerId, Request, Response};
use serde::Serialize;
use tracing::{Instrument as _, debug, info_span};

use super::Node;

/// How long a resolved name is trusted before asking the DHT again.
const NAME_TTL: Duration = Duration::from_secs(60);

/// A successful call, with where and how long.
#[derive(Debug, Serialize)]
pub(crate) struct Invoked {
    pub(crate) invocation: String,
    pub(crate) function: FunctionId,
    #[serde(skip)]
    pub(crate) output: Vec<u8>,
    pub(crate) fuel: u64,
    pub(crate) executor: String,
    pub(crate) resolve_us: u64,
    pub(crate) network_us: u64,
    pub(crate) execution_us: u64,
    pub(crate) attempts: u32,
}

/// Why a call produced no output.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvokeError {
    #[error("no provider for {0}")]
    NoProvider(String),
    #[error("{0}")]
    BadTarget(String),
    #[error("the function failed ({kind}): {message}")]
    Guest {
        kind: String,
        message: String,
        fuel: Option<u64>,
        executor: String,
    },
    #[error("every provider of {target} failed: {tried}")]
    Exhausted { target: String, tried: String },
    #[error("{0}")]
    Internal(String),
    #[error(
        "this node's account {0} has no credits on the ledger: calls are paid by the node they enter"
    )]
    NoCredits(String),
}

/// Names resolved recently.
#[derive(Default)]
pub(crate) struct NameCache(Mutex<HashMap<String, (FunctionId, Instant)>>);

impl NameCache {
    fn get(&self, name: &str) -> Option<FunctionId> {
        let cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(name)
            .filter(|(_, at)| at.elapsed() < NAME_TTL)
            .map(|(id, _)| *id)
    }

    /// The names known to point at `function` (hex id).
    pub(crate) fn names_of(&self, function: &str) -> Vec<String> {
        let cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = cache
            .iter()
            .filter(|(_, (id, _))| id.to_hex() == function)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    pub(crate) fn put(&self, name: &str, id: FunctionId) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), (id, Instant::now()));
    }
}

/// Resolves `target` (a name or a 64-hex-digit id) to a function id.
pub(crate) async fn resolve_name(node: &Node, target: &str) -> Result<FunctionId, InvokeError> {
    if target.len() == 64
        && let Ok(id) = target.parse::<FunctionId>()
    {
        return Ok(id);
    }
    orb_net::check_name(target).map_err(|e| InvokeError::BadTarget(e.to_string()))?;
    if let Some(id) = node.names.get(target) {
        return Ok(id);
    }
    match node.net.get_name(target).await {
        Ok(Some(record)) => {
            node.names.put(target, record.function);
            Ok(record.function)
        }
        Ok(None) => Err(InvokeError::NoProvider(target.to_owned())),
        Err(e) => Err(InvokeError::Internal(e.to_string())),
    }
}

/// The providers of `id` the routing dataflow knows, best first.
async fn providers(node: &Node, id: FunctionId) -> Result<Vec<Provider>, InvokeError> {
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
            peer: peer.to_string(),
            load: 0,
            capacity: 0,
            cached: false,
        };
        node.routing
            .announce(id, row.peer.clone(), Some(row))
            .await
            .map_err(|e| InvokeError::Internal(e.to_string()))?;
    }
    providers(node, id).await
}

/// Calls `target` with `input`.
pub(crate) async fn invoke(
    node: &Node,
    target: &str,
    input: Vec<u8>,
    fuel: Option<u64>,
) -> Result<Invoked, InvokeError> {
    let invocation: u128 = rand::random();
    let span = info_span!("invoke", invocation = %format!("{invocation:032x}"), target);
    async move {
        let started = Instant::now();
        if let Some(ledger) = &node.ledger
            && !ledger.can_pay(&ledger.me)
        {
            return Err(InvokeError::NoCredits(node.peer_id.clone()));
        }
        let id = resolve_name(node, target).await?;
        let mut candidates = providers(node, id).await?;
        let mut asked_dht = false;
        if candidates.is_empty() {
            candidates = discover(node, id).await?;
            asked_dht = true;
        }
        if candidates.is_empty() {
            return Err(InvokeError::NoProvider(target.to_owned()));
        }
        let resolve_us = started.elapsed().as_micros() as u64;
        let call = Invoke {
            invocation,
            function: id,
            input,
            fuel,
        };
        let mut tried: Vec<String> = Vec::new();
        let mut failures = Vec::new();
        let mut queue: std::collections::VecDeque<Provider> = candidates.into();
        loop {
            let Some(provider) = queue.pop_front() else {
                if asked_dht {
                    break;
                }
                // Everything we knew failed: the DHT may know providers we do not.
                asked_dht = true;
                queue = discover(node, id)
                    .await?
                    .into_iter()
                    .filter(|p| !tried.contains(&p.peer))
                    .collect();
                continue;
            };
            tried.push(provider.peer.clone());
            let sent = Instant::now();
            let local = provider.peer == node.peer_id;
            let response = if local {
                let response = node.host.run(&call).await;
                if let (Some(ledger), Response::Output { output, fuel, .. }) =
                    (&node.ledger, &response)
                {
                    ledger.receipt(ledger.me, &call, output, *fuel);
                }
                Ok(response)
            } else {
                match provider.peer.parse::<PeerId>() {
                    Ok(peer) => node.net.request(peer, Request::Invoke(call.clone())).await,
                    Err(_) => continue,
                }
            };
            let round_trip = sent.elapsed().as_micros() as u64;
            match response {
                Ok(Response::Output {
                    output,
                    fuel,
                    execution_us,
                }) => {
                    return Ok(Invoked {
                        invocation: format!("{invocation:032x}"),
                        function: id,
                        output,
                        fuel,
                        executor: provider.peer.clone(),
                        resolve_us,
                        network_us: if local {
                            0
                        } else {
                            round_trip.saturating_sub(execution_us)
                        },
                        execution_us,
                        attempts: tried.len() as u32,
                    });
                }
                Ok(Response::Failed {
                    kind,
                    message,
                    fuel,
                }) => {
                    return Err(InvokeError::Guest {
                        kind,
                        message,
                        fuel,
                        executor: provider.peer.clone(),
                    });
                }
                Ok(Response::Busy) => failures.push(format!("{} busy", short(&provider.peer))),
                Ok(other) => {
                    debug!(peer = %provider.peer, ?other, "provider cannot run it");
                    failures.push(format!("{} does not host it", short(&provider.peer)));
                    withdraw(node, id, &provider).await;
                }
                Err(e) => {
                    debug!(peer = %provider.peer, "provider failed: {e}");
                    failures.push(format!("{}: {e}", short(&provider.peer)));
                    withdraw(node, id, &provider).await;
                }
            }
        }
        Err(InvokeError::Exhausted {
            target: target.to_owned(),
            tried: failures.join("; "),
        })
    }
    .instrument(span)
    .await
}

async fn withdraw(node: &Node, id: FunctionId, provider: &Provider) {
    if provider.peer != node.peer_id {
        let _ = node.routing.announce(id, provider.peer.clone(), None).await;
    }
}

fn short(peer: &str) -> &str {
    &peer[peer.len().saturating_sub(8)..]
}
