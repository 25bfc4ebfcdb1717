//! The agents' HTTP API.
//!
//! - `POST /agent/{module}/{id}`: the body is the message, the response
//!   body the agent's reply; `?message_id=` (32 hex digits) makes a retry
//!   safe: a message id the agent has applied gets the reply it got then
//!   (`x-orb-duplicate: true`). Without one the node draws an id, and a
//!   retry is a new message. Headers `x-orb-seq` (the message's place in
//!   the agent's order), `x-orb-message-id`, `x-orb-sequencer` (the host
//!   that put it in that order) and `x-orb-outvoted` (the hosts whose
//!   result the majority of the agent's hosts outvoted).
//! - `GET /agent/{module}/{id}/state`: `{agent, seq, function, hash,
//!   state}` (the state as JSON when it is JSON, else `state_hex`); 404
//!   before the agent's first message.
//! - `GET /agent/{module}/{id}/log?from=SEQ`: the applied messages from
//!   `from` on (at most 1,000).
//! - `GET /topic/{module}/{id}/{topic}`: the agent's publications on
//!   `topic` as server-sent events, from the first its hosts keep (or after
//!   `?after=SEQ.INDEX`, or the `Last-Event-ID` a reconnecting client
//!   sends), then each new one as it comes: event `publication`, id
//!   `SEQ.INDEX`, data `{topic, seq, index, publisher, message}` with the
//!   message as `{text}` or `{hex}`. With `?wait=false` one batch (at most
//!   256) as JSON `{topic, publications}` instead.
//! - `GET /api/agents`: the agents this node hosts.
//! - `POST /api/agents/move?name=NAME&from=PEER[&to=PEER]` (a control
//!   call: it needs the API token when the API is reachable beyond
//!   loopback): moves every agent of the module NAME from host `from` to
//!   `to` (or a connected node picked here), driven by this node, which
//!   must be a host that stays; with `to` and no `from`, `to` becomes one
//!   more host. Answers when every agent moved, with
//!   `{name, function, hosts, epoch, from, to, agents, lagging, millis}`.
//!
//! Errors are JSON `{error, kind}`: 400 `bad_name`, 404 `no_module`, 413
//! `too_large`, 422 `step_failed` / `not_an_agent` / `state_too_large`
//! (the agent's state is unchanged), 502 `unreachable` (its host did not
//! answer: retry with the same message id), 503 `busy` or `no_majority`
//! (too few of a replicated agent's hosts applied it alike; with
//! `Retry-After`: retry with the same message id).

use std::collections::VecDeque;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use orb_net::{AgentLogEntry, AgentState, Publication};
use serde::Deserialize;
use serde_json::{Value, json};

use super::topics::{self, Topic};
use super::{AgentError, AgentName, MAX_STATE};
use crate::node::Node;
use crate::node::api::{busy, error};

/// Most hosts of an agent module (each step runs on all of them).
pub(crate) const MAX_HOSTS: usize = 7;

/// Largest initial state given at deploy (it travels in the URL).
const MAX_INIT: usize = 16 << 10;

pub(crate) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/agent/{module}/{id}", post(send))
        .route("/agent/{module}/{id}/state", get(state))
        .route("/agent/{module}/{id}/log", get(log))
        .route("/topic/{module}/{id}/{topic}", get(topic))
        .route("/api/agents", get(list))
}

/// The initial state of an agent deploy (`None`: not an agent): JSON, at
/// most [`MAX_INIT`].
pub(crate) fn deploy_init(
    agent: bool,
    replicas: usize,
    init: Option<String>,
) -> Result<Option<Vec<u8>>, String> {
    if !agent {
        return match init {
            Some(_) => Err("init is for agents (agent=true)".into()),
            None => Ok(None),
        };
    }
    if replicas > MAX_HOSTS {
        return Err(format!(
            "an agent module has at most {MAX_HOSTS} hosts, not {replicas}"
        ));
    }
    let Some(init) = init else {
        return Ok(Some(Vec::new()));
    };
    if init.len() > MAX_INIT.min(MAX_STATE) {
        return Err(format!(
            "the initial state is {} bytes; at deploy it may have at most {MAX_INIT} (send a \
             larger one as a message)",
            init.len()
        ));
    }
    serde_json::from_str::<Value>(&init)
        .map_err(|e| format!("the initial state is not JSON: {e}"))?;
    Ok(Some(init.into_bytes()))
}

fn agent_error(e: &AgentError) -> Response {
    let body = json!({ "error": e.to_string(), "kind": e.kind() });
    let status = match e.kind() {
        "bad_name" => StatusCode::BAD_REQUEST,
        "no_module" => StatusCode::NOT_FOUND,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "step_failed" | "not_an_agent" | "state_too_large" => StatusCode::UNPROCESSABLE_ENTITY,
        "unreachable" => StatusCode::BAD_GATEWAY,
        "moved" | "refused" => StatusCode::CONFLICT,
        "busy" | "no_majority" => return busy(body, "1"),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, body)
}

fn name(module: &str, id: &str) -> Result<AgentName, AgentError> {
    AgentName::parse(&format!("{module}/{id}"))
}

#[derive(Deserialize)]
struct SendParams {
    message_id: Option<String>,
}

async fn send(
    State(node): State<Arc<Node>>,
    Path((module, id)): Path<(String, String)>,
    Query(params): Query<SendParams>,
    message: Bytes,
) -> Response {
    let agent = match name(&module, &id) {
        Ok(a) => a,
        Err(e) => return agent_error(&e),
    };
    let message_id = match params.message_id.as_deref().map(hex::decode) {
        None => rand::random::<[u8; 16]>(),
        Some(Ok(bytes)) if bytes.len() == 16 => {
            let mut id = [0u8; 16];
            id.copy_from_slice(&bytes);
            id
        }
        Some(_) => {
            return agent_error(&AgentError::BadName(
                "message_id must be 32 hex digits".into(),
            ));
        }
    };
    match super::send(
        &node,
        &agent,
        message_id,
        Vec::from(message),
        (None, None, None),
    )
    .await
    {
        Ok(applied) => {
            let mut headers = HeaderMap::new();
            for (k, v) in [
                ("x-orb-seq", applied.seq.to_string()),
                ("x-orb-message-id", hex::encode(message_id)),
                ("x-orb-duplicate", applied.duplicate.to_string()),
                ("x-orb-outvoted", applied.outvoted.join(",")),
                ("x-orb-sequencer", applied.sequencer.clone()),
            ] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    headers.insert(k, v);
                }
            }
            (StatusCode::OK, headers, applied.reply).into_response()
        }
        Err(e) => agent_error(&e),
    }
}

/// The state as the API shows it.
fn state_json(agent: &str, s: &AgentState) -> Value {
    let mut v = json!({
        "agent": agent,
        "seq": s.seq,
        "function": s.function.to_hex(),
        "hash": hex::encode(s.hash),
    });
    match serde_json::from_slice::<Value>(&s.state) {
        Ok(state) => v["state"] = state,
        Err(_) if s.state.is_empty() => v["state"] = Value::Null,
        Err(_) => v["state_hex"] = Value::String(hex::encode(&s.state)),
    }
    v
}

async fn state(
    State(node): State<Arc<Node>>,
    Path((module, id)): Path<(String, String)>,
) -> Response {
    let agent = match name(&module, &id) {
        Ok(a) => a,
        Err(e) => return agent_error(&e),
    };
    match super::state(&node, &agent).await {
        Ok(Some(s)) => Json(state_json(&agent.to_string(), &s)).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no message has reached {agent} yet"), "kind": "no_agent" }),
        ),
        Err(e) => agent_error(&e),
    }
}

fn text_or_hex(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => json!({ "text": s }),
        Err(_) => json!({ "hex": hex::encode(bytes) }),
    }
}

fn entry_json(e: &AgentLogEntry) -> Value {
    json!({
        "seq": e.seq,
        "message_id": hex::encode(e.message_id),
        "sender": e.sender,
        "message": text_or_hex(&e.message),
        "reply": text_or_hex(&e.reply),
        "function": e.function.to_hex(),
        "before": hex::encode(e.before),
        "after": hex::encode(e.after),
    })
}

#[derive(Deserialize)]
struct LogParams {
    #[serde(default)]
    from: u64,
}

async fn log(
    State(node): State<Arc<Node>>,
    Path((module, id)): Path<(String, String)>,
    Query(params): Query<LogParams>,
) -> Response {
    let agent = match name(&module, &id) {
        Ok(a) => a,
        Err(e) => return agent_error(&e),
    };
    match super::log(&node, &agent, params.from).await {
        Ok(entries) => Json(json!({
            "agent": agent.to_string(),
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => agent_error(&e),
    }
}

#[derive(Deserialize)]
struct TopicParams {
    after: Option<String>,
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

/// Reads `SEQ.INDEX`, a publication's place.
fn place(s: &str) -> Option<(u64, u32)> {
    let (seq, index) = s.split_once('.')?;
    Some((seq.parse().ok()?, index.parse().ok()?))
}

fn publication_json(topic: &str, p: &Publication) -> Value {
    let publisher = topic.rsplit_once('/').map_or(topic, |(agent, _)| agent);
    json!({
        "topic": topic,
        "seq": p.seq,
        "index": p.index,
        "publisher": publisher,
        "message": text_or_hex(&p.message),
    })
}

async fn topic(
    State(node): State<Arc<Node>>,
    Path((module, id, name)): Path<(String, String, String)>,
    Query(params): Query<TopicParams>,
    headers: HeaderMap,
) -> Response {
    let topic = match Topic::parse(&format!("{module}/{id}/{name}")) {
        Ok(t) => t,
        Err(e) => return agent_error(&e),
    };
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let after = match params.after.or(resumed) {
        None => (0, 0),
        Some(a) => match place(&a) {
            Some(p) => p,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": format!("after {a:?}: a publication's place is SEQ.INDEX, e.g. 12.0"), "kind": "bad_request" }),
                );
            }
        },
    };
    // The first read answers at once: a topic nobody hosts is an error,
    // not an empty stream.
    let first = match topics::publications(&node, &topic, after, std::time::Duration::ZERO).await {
        Ok(found) => found,
        Err(e) => return agent_error(&e),
    };
    let name = topic.to_string();
    if !params.wait {
        return Json(json!({
            "topic": name,
            "publications": first.iter().map(|p| publication_json(&name, p)).collect::<Vec<_>>(),
        }))
        .into_response();
    }
    let cancel = node.tasks.token().clone();
    let start = (node, topic, after, VecDeque::from(first), cancel);
    let events = futures::stream::unfold(
        start,
        |(node, topic, mut after, mut queue, cancel)| async move {
            loop {
                if let Some(p) = queue.pop_front() {
                    after = (p.seq, p.index);
                    let data = publication_json(&topic.to_string(), &p).to_string();
                    let event = Event::default()
                        .event("publication")
                        .id(format!("{}.{}", p.seq, p.index))
                        .data(data);
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (node, topic, after, queue, cancel),
                    ));
                }
                // Nothing new: a read that waits for the next publication
                // (here, or on the publisher's host), while there is room
                // for one; else, or when it comes back empty at once, read
                // again after a while. Until the node stops.
                let started = tokio::time::Instant::now();
                // A read here waits on this node's own limit; one asked
                // of another node takes one of the places out.
                let here = node
                    .agents
                    .store
                    .has(&topic.agent.to_string())
                    .unwrap_or(false);
                let permit = match here {
                    true => None,
                    false => node.agents.asking.try_acquire().ok(),
                };
                let wait = match here || permit.is_some() {
                    true => topics::MAX_WAIT,
                    false => std::time::Duration::ZERO,
                };
                let read = topics::publications(&node, &topic, after, wait);
                match cancel.run_until_cancelled(read).await? {
                    Ok(found) if !found.is_empty() => {
                        queue.extend(found);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(topic = %topic, "topic not read: {e}"),
                }
                drop(permit);
                if started.elapsed() < topics::FOLLOW / 2 {
                    let pause = tokio::time::sleep(topics::FOLLOW);
                    cancel.run_until_cancelled(pause).await?;
                }
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct MoveParams {
    name: String,
    from: Option<String>,
    to: Option<String>,
}

/// `POST /api/agents/move`.
pub(crate) async fn move_hosts(
    State(node): State<Arc<Node>>,
    Query(params): Query<MoveParams>,
) -> Response {
    for peer in params.from.iter().chain(params.to.as_ref()) {
        if peer.parse::<orb_net::PeerId>().is_err() {
            return agent_error(&AgentError::BadName(format!("{peer:?} is not a peer id")));
        }
    }
    if params.from.is_none() && params.to.is_none() {
        return agent_error(&AgentError::BadName(
            "a move names the host that leaves (from), the node that joins (to), or both".into(),
        ));
    }
    let (from, to) = (params.from.as_deref(), params.to.as_deref());
    match super::moves::move_host(&node, &params.name, from, to).await {
        Ok(moved) => Json(moved).into_response(),
        Err(e) => agent_error(&e),
    }
}

async fn list(State(node): State<Arc<Node>>) -> Response {
    match node.agents.list(10_000) {
        Ok(agents) => Json(
            agents
                .iter()
                .map(|(name, s)| state_json(name, s))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => agent_error(&e),
    }
}
