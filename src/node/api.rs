//! The node's HTTP API (axum): the control API the CLI uses (`/api/…`) and
//! the public function endpoint `POST /fn/{name-or-id}`.
//!
//! `POST /fn/{target}`: the body is the input, the response body the output;
//! headers `x-orb-fuel`, `x-orb-executor`, `x-orb-invocation`,
//! `x-orb-resolve-us`, `x-orb-network-us`, `x-orb-execution-us`,
//! `x-orb-replicas` (executors that answered), `x-orb-disputed` (those
//! outvoted, comma-separated). `?replicas=R` runs the call on R executors
//! (default: the node's `--replicas`), `?fuel=N` lowers the fuel limit.
//! Errors are JSON `{"error": …}` with 400 (bad name or parameter), 402 (this
//! node has no credits), 404 (no provider), 422 (the guest failed; with
//! `kind` and `fuel`), 502 (the replicas disagree, no majority), 503 (every
//! provider failed or is busy; or this node runs `--max-calls` calls
//! already, with `Retry-After: 1`).
//!
//! `ANY /fn/{target}/{path…}` (and `/fn/{target}` with any method but
//! POST, path `/`): an HTTP request to a wasi:http function. This node
//! encodes it as an [`HttpRequest`] (method, the path after the target,
//! the query, headers but the hop-by-hop ones, `host` and
//! `content-length`, body), and that is the call's input; the executing
//! runtime checks the function's kind, so a function that takes raw input
//! answers 400 (`invalid_request`). A raw `POST /fn/{target}` to a wasi:http
//! function is `POST /` with that body. Whichever way it was called, an
//! output that is an encoded [`HttpResponse`] is answered as the
//! component's status, headers and body, plus the `x-orb-*` headers (a
//! component's own `x-orb-*` headers are dropped). Orb's `?fuel` and
//! `?replicas` are not read from the path form: its query is the function's.
//!
//! Agents (`/agent/{module}/{id}`, `/api/agents`): [`super::agents::http`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use orb_functions::{FunctionId, HttpRequest, HttpResponse};
use orb_net::{NameRecord, Request, Response as NetResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument as _;

use super::Node;
use super::agents::store::AgentModule;
use super::host::{By, InstallError};
use super::invoke::{InvokeError, invoke};
use super::quota::Refusal;

/// Largest module or input accepted over HTTP, unless the node takes
/// larger modules ([`body_limit`]).
const MAX_BODY: usize = 16 << 20;

/// Largest body the API reads: [`MAX_BODY`], or a whole module of the
/// node's `--max-module-bytes` (and a little over, so a module just past
/// the limit is refused by the store, naming it) when that is larger.
pub(crate) fn body_limit(max_module: u64) -> usize {
    MAX_BODY.max(
        usize::try_from(max_module)
            .unwrap_or(usize::MAX)
            .saturating_add(64 << 10),
    )
}

pub(crate) fn router(node: Arc<Node>) -> Router {
    let limit = body_limit(node.host.storage().1.max_module);
    Router::new()
        .route("/fn/{target}", post(call).fallback(call_root))
        .route("/fn/{target}/", any(call_root))
        .route("/fn/{target}/{*path}", any(call_http))
        .route(
            "/api/deploy",
            post(deploy).layer(axum::middleware::from_fn_with_state(
                node.clone(),
                require_token,
            )),
        )
        .route(
            "/api/agents/move",
            post(super::agents::http::move_hosts).layer(axum::middleware::from_fn_with_state(
                node.clone(),
                require_token,
            )),
        )
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/peers", get(peers))
        .route("/api/functions", get(functions))
        .route("/api/ledger", get(ledger))
        .route("/api/logs/{*target}", get(logs))
        .route("/api/calls", get(calls))
        .merge(super::agents::http::routes())
        .merge(super::console::routes())
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(move |request, next| {
            refuse_oversized(limit, request, next)
        }))
        .with_state(node)
}

/// A mutating request to an API bound beyond loopback must carry the
/// node's token ([`super::token`]); anything else is refused with 401
/// before the body is read. On any address, one a browser says comes from
/// another site's page is refused with 403: a page the user visits cannot
/// deploy or move through the node on the user's machine.
async fn require_token(
    State(node): State<Arc<Node>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if super::console::cross_site(request.headers()) {
        return error(
            StatusCode::FORBIDDEN,
            json!({ "error": "a request from another site's page cannot change this node" }),
        );
    }
    if let Some(token) = &node.api_token {
        let given = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !super::token::admits(token, given) {
            return error(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "this node's API is reachable beyond loopback: a deploy, an \
                    audit or a move needs its API token (orb deploy --api-token TOKEN, or \
                    ORB_API_TOKEN): the node's --api-token, or the one it printed when it started and \
                    keeps in DATA_DIR/api.token" }),
            );
        }
    }
    next.run(request).await
}

/// A body declared larger than `limit` ([`body_limit`]) is refused (413)
/// before any of it is read; one without a declared length is cut off by
/// the body limit as it is read.
async fn refuse_oversized(
    limit: usize,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "error": format!("a body of {n} bytes is over the limit of {limit}") }),
        );
    }
    next.run(request).await
}

pub(super) fn error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

/// 503 with `Retry-After: secs`: busy for the moment, not failed.
pub(super) fn busy(body: serde_json::Value, secs: &'static str) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, body);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(secs));
    response
}

#[derive(Default, Deserialize)]
struct CallParams {
    fuel: Option<u64>,
    replicas: Option<usize>,
}

async fn call(
    State(node): State<Arc<Node>>,
    Path(target): Path<String>,
    Query(params): Query<CallParams>,
    incoming: HeaderMap,
    input: Bytes,
) -> Response {
    if let Some(r) = params.replicas
        && !(1..=16).contains(&r)
    {
        return error(
            StatusCode::BAD_REQUEST,
            json!({ "error": format!("replicas must be between 1 and 16, not {r}") }),
        );
    }
    // Load shedding: past the limit a call is refused at once, never
    // queued behind the others.
    let Ok(_slot) = node.calls.clone().try_acquire_owned() else {
        let known = matches!(
            node.names.get(&target),
            Some(super::names::Known::Function(_))
        );
        node.metrics.shed(&target, known);
        return busy(
            json!({ "error": format!(
                "this node is running its limit of {} calls (--max-calls); retry in a moment",
                node.max_calls
            ) }),
            "1",
        );
    };
    // The HTTP hop of the call's trace, under the caller's `traceparent`.
    let span = tracing::info_span!(
        "http",
        otel.name = "POST /fn/{target}",
        otel.kind = "server"
    );
    super::trace::adopt_http(&span, &incoming);
    match invoke(
        &node,
        &target,
        Vec::from(input),
        params.fuel,
        params.replicas,
    )
    .instrument(span)
    .await
    {
        Ok(done) => answer(done),
        Err(e) => invoke_error(e),
    }
}

/// The headers a client must not forward: they describe one connection
/// (and `host`, `content-length` are the gateway's own to set).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// `/fn/{target}/`, and `/fn/{target}` with any method but POST: the
/// request `METHOD /` to a wasi:http function.
async fn call_root(
    State(node): State<Arc<Node>>,
    Path(target): Path<String>,
    request: axum::extract::Request,
) -> Response {
    serve_http(node, target, "/".into(), request).await
}

/// `/fn/{target}/{path…}`: an HTTP request to a wasi:http function.
async fn call_http(
    State(node): State<Arc<Node>>,
    Path((target, path)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    serve_http(node, target, format!("/{path}"), request).await
}

/// Encodes the request as an [`HttpRequest`] (the function's input; a
/// function that is not wasi:http refuses it, a 400) and calls as `call`
/// does.
async fn serve_http(
    node: Arc<Node>,
    target: String,
    path: String,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "error": format!("the body is over {MAX_BODY} bytes") }),
        );
    };
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let input = HttpRequest {
        method: parts.method.as_str().to_owned(),
        path_and_query,
        headers,
        body: body.to_vec(),
    };
    let params = CallParams::default();
    call(
        State(node),
        Path(target),
        Query(params),
        parts.headers,
        Bytes::from(input.encode()),
    )
    .await
}

/// The answer to a call: the output as the body, or a wasi:http
/// function's response as it gave it; Orb's `x-orb-*` headers either way.
fn answer(done: super::invoke::Invoked) -> Response {
    let mut headers = HeaderMap::new();
    let (status, body) = match HttpResponse::decode(&done.output) {
        Some(response) => {
            for (name, value) in &response.headers {
                if HOP_BY_HOP.contains(&name.as_str()) || name.starts_with("x-orb-") {
                    continue;
                }
                if let (Ok(name), Ok(value)) = (
                    axum::http::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_bytes(value),
                ) {
                    headers.append(name, value);
                }
            }
            let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, response.body)
        }
        None => (StatusCode::OK, done.output.clone()),
    };
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("x-orb-function", done.function.to_hex());
    put("x-orb-invocation", done.invocation.clone());
    put("x-orb-fuel", done.fuel.to_string());
    put("x-orb-executor", done.executor.clone());
    put("x-orb-resolve-us", done.resolve_us.to_string());
    put("x-orb-network-us", done.network_us.to_string());
    put("x-orb-execution-us", done.execution_us.to_string());
    put("x-orb-attempts", done.attempts.to_string());
    put(
        "x-orb-replicas",
        (done.agreed.len() + done.disputed.len()).to_string(),
    );
    if !done.disputed.is_empty() {
        put("x-orb-disputed", done.disputed.join(","));
    }
    (status, headers, body).into_response()
}

/// A deploy that was not stored: 413 over the size limit, 507 past a
/// quota, 503 (retry) when the compiler is busy, 400 for a module that is
/// not valid, 500 for the node's own failure.
fn install_error(e: &InstallError) -> Response {
    let (status, kind) = match e {
        InstallError::Refused(Refusal::TooLarge { .. }) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
        }
        InstallError::Refused(Refusal::Quota { .. }) => (StatusCode::INSUFFICIENT_STORAGE, "quota"),
        InstallError::Refused(Refusal::Full { .. }) => {
            (StatusCode::INSUFFICIENT_STORAGE, "store_full")
        }
        InstallError::Busy => {
            return busy(json!({ "error": e.to_string(), "kind": "busy" }), "5");
        }
        InstallError::Function(f) if f.is_module_rejected() => (StatusCode::BAD_REQUEST, f.kind()),
        InstallError::Function(f) => (StatusCode::INTERNAL_SERVER_ERROR, f.kind()),
    };
    error(status, json!({ "error": e.to_string(), "kind": kind }))
}

fn invoke_error(e: InvokeError) -> Response {
    let message = e.to_string();
    match e {
        InvokeError::NoProvider(_) => error(StatusCode::NOT_FOUND, json!({ "error": message })),
        InvokeError::BadTarget(_) => error(StatusCode::BAD_REQUEST, json!({ "error": message })),
        // An HTTP request to a function that is not wasi:http, or one it
        // cannot take: the caller's mistake.
        InvokeError::Guest { kind, .. } if kind == "invalid_request" => error(
            StatusCode::BAD_REQUEST,
            json!({ "error": message, "kind": kind }),
        ),
        InvokeError::Guest {
            kind,
            fuel,
            executor,
            ..
        } => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": message, "kind": kind, "fuel": fuel, "executor": executor }),
        ),
        InvokeError::Disagreement { .. } => {
            error(StatusCode::BAD_GATEWAY, json!({ "error": message }))
        }
        InvokeError::Exhausted { .. } => {
            error(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": message }))
        }
        InvokeError::Busy(_) => busy(json!({ "error": message, "kind": "busy" }), "1"),
        InvokeError::NoCredits(_) => {
            error(StatusCode::PAYMENT_REQUIRED, json!({ "error": message }))
        }
        InvokeError::Internal(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": message }),
        ),
    }
}

#[derive(Deserialize)]
struct DeployParams {
    name: String,
    #[serde(default = "one")]
    replicas: usize,
    /// The publisher's public key, hex of its libp2p protobuf encoding.
    publisher: String,
    /// Hex of the publisher's signature over the name record.
    signature: String,
    /// Deploy it as an agent module.
    #[serde(default)]
    agent: bool,
    /// The state a new agent starts from (JSON; with `agent`).
    init: Option<String>,
    /// Upgrade the agent module deployed as `name` to this one (with
    /// `agent`; sent through one of its hosts).
    #[serde(default)]
    upgrade: bool,
}

fn one() -> usize {
    1
}

/// Where a deployed module landed.
#[derive(Serialize)]
pub(super) struct Deployed {
    pub(super) function: FunctionId,
    pub(super) agent: bool,
    pub(super) name: String,
    pub(super) publisher: String,
    pub(super) replicas: usize,
    pub(super) providers: Vec<String>,
    pub(super) declined: Vec<String>,
}

async fn deploy(
    State(node): State<Arc<Node>>,
    Query(params): Query<DeployParams>,
    module: Bytes,
) -> Response {
    let bad = |message: String| error(StatusCode::BAD_REQUEST, json!({ "error": message }));
    let (Ok(publisher), Ok(signature)) = (
        hex::decode(&params.publisher),
        hex::decode(&params.signature),
    ) else {
        return bad("publisher and signature must be hex".into());
    };
    if params.replicas == 0 || params.replicas > 64 {
        return bad("--replicas must be between 1 and 64".into());
    }
    let init = match super::agents::http::deploy_init(params.agent, params.replicas, params.init) {
        Ok(init) => init,
        Err(why) => return bad(why),
    };
    let function = FunctionId::of(&module);
    let record = NameRecord {
        name: params.name.clone(),
        function,
        publisher,
        signature,
    };
    let publisher = match record.verify() {
        Ok(p) => p,
        Err(e) => return bad(e.to_string()),
    };
    if params.upgrade {
        if !params.agent {
            return bad("upgrade is for agent modules (agent=true)".into());
        }
        return upgrade(&node, record, &publisher, &module).await;
    }
    match place(&node, record, &publisher, &module, params.replicas, init).await {
        Ok(deployed) => Json(deployed).into_response(),
        Err(response) => response,
    }
}

/// Hosts `module` here under the verified `record` and asks other peers to
/// host replicas until `replicas` do; with `init`, registers it as an
/// agent module on every host. What a deploy through the API or the
/// console does once the record is checked.
pub(super) async fn place(
    node: &Node,
    record: NameRecord,
    publisher: &orb_net::PeerId,
    module: &[u8],
    replicas: usize,
    init: Option<Vec<u8>>,
) -> Result<Deployed, Response> {
    let function = record.function;
    let name = record.name.clone();
    let agent = init.is_some();
    if let Err(e) = node
        .host
        .install(node, module, By::Publisher(publisher))
        .await
    {
        return Err(install_error(&e));
    }
    node.host.remember_name(&record);
    node.host.persist().await;
    node.names.put(&record.name, function);
    // The provider record goes out from the routing dataflow, which saw our
    // own row appear when `install` announced it.
    if let Err(e) = node.net.put_name(record).await {
        tracing::debug!("name record: {e}");
    }

    // Ask other peers to host replicas, in an order fixed by the function id
    // so that deployments of different functions spread over the network.
    let mut providers = vec![node.peer_id.clone()];
    let mut declined = Vec::new();
    if replicas > 1 {
        for peer in node.spread(&function).await {
            if providers.len() >= replicas {
                break;
            }
            let Ok(id) = peer.parse() else { continue };
            match node.net.request(id, &Request::Host { function }).await {
                Ok(NetResponse::Hosting { accepted: true, .. }) => providers.push(peer),
                Ok(NetResponse::Hosting { reason, .. }) => {
                    declined.push(format!("{peer}: {reason}"))
                }
                Ok(other) => declined.push(format!("{peer}: {other:?}")),
                Err(e) => declined.push(format!("{peer}: {e}")),
            }
        }
    }
    if let Some(init) = init {
        // Every host keeps the same registration: the initial state and
        // the host list, in the order ballots name the hosts.
        let hosts = if providers.len() > 1 {
            providers.clone()
        } else {
            Vec::new()
        };
        let module = AgentModule {
            init: init.clone(),
            hosts: hosts.clone(),
            ..AgentModule::default()
        };
        if let Err(e) = node.agents.register(function, &module) {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": e.to_string() }),
            ));
        }
        let register = module.request(function);
        for peer in providers.iter().skip(1) {
            let Ok(id) = peer.parse() else { continue };
            match node.net.request(id, &register).await {
                Ok(NetResponse::Hosting { accepted: true, .. }) => {}
                other => {
                    return Err(error(
                        StatusCode::BAD_GATEWAY,
                        json!({ "error": format!(
                            "{peer} hosts the module but did not keep it as an agent module \
                             ({other:?}): deploy again"
                        ) }),
                    ));
                }
            }
        }
    }
    Ok(Deployed {
        function,
        agent,
        name,
        publisher: publisher.to_string(),
        replicas,
        providers,
        declined,
    })
}

/// `orb agent upgrade`: hosts `module` on every host of the agent module
/// the record's name points at (this node is one of them), registers it
/// there as that module's upgrade, and only then points the name at it.
/// Each agent moves to it on its next step, keeping its state.
async fn upgrade(
    node: &Node,
    record: NameRecord,
    publisher: &orb_net::PeerId,
    module: &[u8],
) -> Response {
    let failed = |status: StatusCode, message: String| error(status, json!({ "error": message }));
    let function = record.function;
    let old = match super::invoke::resolve_name(node, &record.name).await {
        Ok(old) => old,
        Err(e) => return failed(StatusCode::NOT_FOUND, format!("nothing to upgrade: {e}")),
    };
    if old == function {
        return failed(
            StatusCode::CONFLICT,
            format!("{} already runs this module ({function})", record.name),
        );
    }
    let registered = match node.agents.store_module(&old) {
        Ok(Some(m)) => m,
        Ok(None) => {
            return failed(
                StatusCode::CONFLICT,
                format!(
                    "this node does not host the agent module {} ({old}): send the upgrade \
                     through one of its hosts (orb ls shows them)",
                    record.name
                ),
            );
        }
        Err(e) => return failed(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if !registered.previous.is_empty() {
        return failed(
            StatusCode::CONFLICT,
            format!(
                "the agents of {} are moving to new hosts: finish the move (run `orb agent move` \
                 again) before upgrading",
                record.name
            ),
        );
    }
    if let Some(kept) = node.host.name_record(&record.name)
        && kept.function == old
        && kept.publisher != record.publisher
    {
        return failed(
            StatusCode::FORBIDDEN,
            format!(
                "{} was published by another key: only its publisher upgrades it",
                record.name
            ),
        );
    }
    if let Err(e) = node
        .host
        .install(node, module, By::Publisher(publisher))
        .await
    {
        return install_error(&e);
    }
    let others: Vec<String> = registered
        .hosts
        .iter()
        .filter(|p| **p != node.peer_id)
        .cloned()
        .collect();
    for peer in &others {
        let Ok(id) = peer.parse() else { continue };
        match node.net.request(id, &Request::Host { function }).await {
            Ok(NetResponse::Hosting { accepted: true, .. }) => {}
            other => {
                return failed(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "{peer}, a host of {}, did not take the upgrade ({other:?}): nothing moved; upgrade again",
                        record.name
                    ),
                );
            }
        }
    }
    let upgrade = AgentModule {
        replaces: Some(old),
        ..registered.clone()
    };
    if let Err(e) = node.agents.register(function, &upgrade) {
        return failed(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let register = upgrade.request(function);
    for peer in &others {
        let Ok(id) = peer.parse() else { continue };
        match node.net.request(id, &register).await {
            Ok(NetResponse::Hosting { accepted: true, .. }) => {}
            other => {
                return failed(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "{peer} hosts the upgrade but did not register it ({other:?}): upgrade again"
                    ),
                );
            }
        }
    }
    // Every host knows the upgrade: now the name may point at it.
    node.host.remember_name(&record);
    node.names.put(&record.name, function);
    let name = record.name.clone();
    if let Err(e) = node.net.put_name(record).await {
        tracing::debug!("name record: {e}");
    }
    let mut providers = vec![node.peer_id.clone()];
    providers.extend(others);
    Json(json!({
        "function": function,
        "replaces": old,
        "agent": true,
        "name": name,
        "publisher": publisher.to_string(),
        "providers": providers,
    }))
    .into_response()
}

/// `GET /metrics`: the node's metrics in the Prometheus text format.
async fn metrics(State(node): State<Arc<Node>>) -> Response {
    match node.metrics.encode(&node).await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                super::metrics::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": format!("encoding the metrics: {e}") }),
        ),
    }
}

async fn status(State(node): State<Arc<Node>>) -> Response {
    let (stored, limits) = node.host.storage();
    let (resolved, missing) = node.names.kept();
    match node.net.status().await {
        Ok(status) => Json(json!({
            "peer_id": status.peer_id,
            "listen": status.listen,
            "external": status.external,
            "nat": status.nat,
            "supernode": status.supernode,
            "dht_server": status.dht_server,
            "relays": status.relays,
            "connected": status.connected,
            "routing_table": status.routing_table,
            "known_peers": status.known_peers,
            "hosted": node.host.hosted().len(),
            "load": node.host.load(),
            "capacity": node.host.capacity(),
            "stored_bytes": stored,
            "store_limits": {
                "max_module": limits.max_module,
                "per_publisher": limits.per_publisher,
                "total": limits.total,
            },
            "names": { "resolved": resolved, "missing": missing },
            "replicas": node.replicas,
            "verify_fraction": node.verify_fraction,
            "disputes": node.disputes.list(),
        }))
        .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": e.to_string() }),
        ),
    }
}

/// The ledger as this node sees it: committed height and head, committee,
/// mempool, recent finality times, and the live balances (the consensus
/// dataflow's reduce over committed effects), keyed by peer id.
async fn ledger(State(node): State<Arc<Node>>) -> Response {
    let Some(ledger) = &node.ledger else {
        return error(
            StatusCode::NOT_FOUND,
            json!({ "error": "this node keeps no ledger (start it with --genesis)" }),
        );
    };
    let status = ledger.status();
    let balances: serde_json::Map<String, serde_json::Value> = ledger
        .consensus
        .balances
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(k, b)| {
            let who = orb_net::identity::peer_of(k.0).map_or_else(|| k.to_hex(), |p| p.to_string());
            (who, json!(b))
        })
        .collect();
    let chain = ledger
        .consensus
        .chain
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .id();
    Json(json!({
        "chain": chain.to_hex(),
        "key": ledger.me.to_hex(),
        "height": status.height,
        "head": status.head,
        "committee": status.committee,
        "member": status.member,
        "mempool": status.mempool,
        "unsettled": ledger.journal.len(),
        "finality_us": status.finality_us,
        "wait_us": status.wait_us,
        "poll_us": status.poll_us,
        "pipelined": status.pipelined,
        "equivocators": status.equivocators,
        "poisoned": status.poisoned,
        "balances": balances,
    }))
    .into_response()
}

/// `GET /api/calls`: the calls that entered this node in the last minute,
/// by the name they were called by: answered, failed, p50 and p99 latency
/// (µs), and the answered calls of each of the last 60 seconds (oldest
/// first). What `orb top` and the console's Functions page show.
async fn calls(State(node): State<Arc<Node>>) -> Response {
    let list: Vec<serde_json::Value> = node
        .metrics
        .recent_functions()
        .into_iter()
        .map(|function| {
            let (ok, failed, p50, p99) = node.metrics.summary(&function, 60);
            let series = node.metrics.series(&function);
            let per_second: Vec<u32> = series
                .iter()
                .skip(series.len().saturating_sub(60))
                .map(|p| p.ok)
                .collect();
            json!({
                "function": function,
                "ok": ok,
                "failed": failed,
                "p50_us": p50,
                "p99_us": p99,
                "per_second": per_second,
            })
        })
        .collect();
    Json(list).into_response()
}

#[derive(Deserialize)]
struct LogsParams {
    /// `peer:seq,…` from the previous answer.
    #[serde(default)]
    cursor: String,
}

/// `GET /api/logs/{name, id or module/id}?cursor=…`: the calls of a
/// function (or an agent's steps) on every host that ran them, oldest
/// first, and the cursor to ask for newer ones.
async fn logs(
    State(node): State<Arc<Node>>,
    Path(target): Path<String>,
    Query(params): Query<LogsParams>,
) -> Response {
    let cursor = match super::logs::Cursor::parse(&params.cursor) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, json!({ "error": why })),
    };
    match super::logs::gather(&node, &target, &cursor).await {
        Ok(found) => Json(found).into_response(),
        Err(e) => invoke_error(e),
    }
}

async fn peers(State(node): State<Arc<Node>>) -> Response {
    match node.net.peers().await {
        // Each with its kind, as the console and `orb_peers` count it.
        Ok(peers) => Json(
            peers
                .iter()
                .map(|p| {
                    let mut v = json!(p);
                    v["kind"] = json!(p.kind());
                    v
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": e.to_string() }),
        ),
    }
}

/// Routing rows grouped by function (hex id, in order).
pub(crate) fn by_function(
    rows: Vec<(FunctionId, orb_engine::Provider)>,
) -> std::collections::BTreeMap<String, Vec<orb_engine::Provider>> {
    let mut grouped: std::collections::BTreeMap<String, Vec<orb_engine::Provider>> =
        Default::default();
    for (function, provider) in rows {
        grouped.entry(function.to_hex()).or_default().push(provider);
    }
    grouped
}

async fn functions(State(node): State<Arc<Node>>) -> Response {
    match node.routing.table().await {
        Ok(rows) => {
            let list: Vec<serde_json::Value> = by_function(rows)
                .into_iter()
                .map(|(function, providers)| {
                    let names = node.names_of(&function);
                    json!({ "function": function, "names": names, "providers": providers })
                })
                .collect();
            Json(list).into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": e.to_string() }),
        ),
    }
}
