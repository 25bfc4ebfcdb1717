//! The web console every node serves on its API port: server-rendered
//! pages (maud) that read without a script, kept live by server-sent
//! events (htmx and its SSE extension, embedded in the binary), usable at
//! phone width, by keyboard and in dark mode.
//!
//! - `GET /`: the node ([`node`]).
//! - `GET /console/functions`: functions, providers, calls/s and latency
//!   over the last two minutes ([`functions`]).
//! - `GET|POST /console/deploy`: upload a module, read its ABI verdict,
//!   deploy it ([`deploy`]).
//! - `GET|POST /console/invoke`: call a function ([`invoke`]).
//! - `GET /console/ledger`, `/console/ledger/block/{h}`, `POST
//!   /console/audit`: the chain, a block's settlements, balances, an audit
//!   of this node's chain with its progress ([`ledger`]).
//! - `GET /console/agents`: agent modules and their agents ([`agents`]).
//! - `GET /console/live/{page}`: the page's parts, re-rendered each second,
//!   as server-sent events.
//!
//! Form posts are refused when the browser says they come from another
//! site (`Sec-Fetch-Site: cross-site`, or an `Origin` that is not this
//! node's). Deploy and audit change the node: when the API is reachable
//! beyond loopback they need the node's API token, which their forms ask
//! for. Invoke is public, as `POST /fn/{name}` is.

mod agents;
mod chart;
mod deploy;
mod functions;
mod invoke;
mod ledger;
mod node;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use maud::{DOCTYPE, Markup, html};

use super::Node;

/// What the console keeps between requests: uploads waiting for their
/// deploy to be confirmed, and the audit it runs.
#[derive(Default)]
pub(crate) struct ConsoleState {
    staged: deploy::Staged,
    audit: ledger::AuditJob,
}

/// The stylesheet: a readable column, tables that scroll on a phone, the
/// system's light or dark colours.
const STYLE: &str = r#"
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #fbfbfc; --muted: #5b6470;
  --line: #d8dde3; --accent: #0b5fcc; --ok: #137333; --bad: #b3261e; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e8eb; --bg: #121416; --muted: #a1a9b3; --line: #2d3238;
    --accent: #7cb0ff; --ok: #6dd58c; --bad: #ff8a80; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: baseline;
  padding: .75rem 1rem; border-bottom: 1px solid var(--line); }
header strong { font-size: 1.1rem; }
nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; }
nav a { color: var(--accent); text-decoration: none; }
nav a[aria-current] { font-weight: 600; text-decoration: underline; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.4rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 500; }
code, .mono { font-family: ui-monospace, monospace; font-size: .9em; overflow-wrap: anywhere; }
form { display: grid; gap: .75rem; max-width: 36rem; }
label { display: grid; gap: .25rem; }
input, textarea, button { font: inherit; padding: .5rem; border: 1px solid var(--line);
  border-radius: .35rem; background: var(--bg); color: var(--fg); }
button { background: var(--accent); color: var(--bg); border: none; cursor: pointer;
  justify-self: start; padding: .5rem 1.25rem; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
pre { padding: .75rem; border: 1px solid var(--line); border-radius: .35rem;
  white-space: pre-wrap; overflow-wrap: anywhere; }
.ok { color: var(--ok); } .bad { color: var(--bad); } .muted { color: var(--muted); }
.chart { width: 100%; height: auto; max-width: 36rem; display: block; }
.grid { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(min(100%, 26rem), 1fr)); }
figure { margin: 0; }
progress { width: 100%; max-width: 36rem; }
a { color: var(--accent); }
.skip { position: absolute; left: -100vw; }
.skip:focus { position: static; }
"#;

pub(crate) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/", get(node::page))
        .route("/console/functions", get(functions::page))
        .route("/console/deploy", get(deploy::page).post(deploy::upload))
        .route("/console/deploy/confirm", post(deploy::confirm))
        .route("/console/invoke", get(invoke::page).post(invoke::form))
        .route("/console/ledger", get(ledger::page))
        .route("/console/ledger/block/{height}", get(ledger::block))
        .route("/console/audit", post(ledger::audit))
        .route("/console/agents", get(agents::page))
        .route("/console/live/{page}", get(live))
        .route("/console/htmx.js", get(|| script(HTMX)))
        .route("/console/htmx-sse.js", get(|| script(HTMX_SSE)))
}

/// htmx and its SSE extension (from the npm registry, unmodified; their
/// licence is in `assets/LICENSE-htmx`).
const HTMX: &str = include_str!("assets/htmx.min.js");
const HTMX_SSE: &str = include_str!("assets/htmx-sse.min.js");

async fn script(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// The console's pages, in the order the nav shows them.
const PAGES: [(&str, &str); 6] = [
    ("/", "Node"),
    ("/console/functions", "Functions"),
    ("/console/deploy", "Deploy"),
    ("/console/invoke", "Invoke"),
    ("/console/ledger", "Ledger"),
    ("/console/agents", "Agents"),
];

/// A page of the console, `current` the nav entry it is.
fn page(node: &Node, title: &str, current: &str, body: Markup) -> Markup {
    let short = short(&node.peer_id);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Orb " (short) }
                style { (maud::PreEscaped(STYLE)) }
                script src="/console/htmx.js" defer {}
                script src="/console/htmx-sse.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to the page" }
                header {
                    strong { "Orb" }
                    span.mono title=(node.peer_id) { (short) }
                    nav aria-label="console" {
                        @for (href, name) in PAGES {
                            @if name == current {
                                a href=(href) aria-current="page" { (name) }
                            } @else {
                                a href=(href) { (name) }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    }
}

/// The pages whose parts are kept live.
#[derive(Clone, Copy)]
enum Live {
    Node,
    Functions,
    Ledger,
    Agents,
}

impl Live {
    fn parse(page: &str) -> Option<Self> {
        Some(match page {
            "node" => Live::Node,
            "functions" => Live::Functions,
            "ledger" => Live::Ledger,
            "agents" => Live::Agents,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Live::Node => "node",
            Live::Functions => "functions",
            Live::Ledger => "ledger",
            Live::Agents => "agents",
        }
    }

    /// The page's parts now: (id, markup).
    async fn parts(self, node: &Arc<Node>) -> Vec<(&'static str, Markup)> {
        match self {
            Live::Node => node::parts(node).await,
            Live::Functions => functions::parts(node).await,
            Live::Ledger => ledger::parts(node),
            Live::Agents => agents::parts(node),
        }
    }
}

/// `parts` laid out in the page, each replaced by its event from
/// `/console/live/{page}` while the page is open (without a script the
/// page is what it was when loaded).
fn live_parts(page: Live, parts: Vec<(&'static str, Markup)>) -> Markup {
    html! {
        div hx-ext="sse" sse-connect=(format!("/console/live/{}", page.name())) {
            @for (id, part) in parts {
                section id=(id) sse-swap=(id) aria-live="polite" { (part) }
            }
        }
    }
}

/// How often a live page's parts are sent again.
const LIVE_EVERY: Duration = Duration::from_secs(1);

/// `GET /console/live/{page}`: the page's parts each second as events
/// named by their ids, until the browser leaves or the node stops.
async fn live(State(node): State<Arc<Node>>, Path(page): Path<String>) -> Response {
    let Some(live) = Live::parse(&page) else {
        return (StatusCode::NOT_FOUND, format!("no live page {page:?}")).into_response();
    };
    let stop = node.tasks.token().clone().cancelled_owned();
    let ticks = tokio_stream_interval(LIVE_EVERY);
    let events = ticks
        .then(move |()| {
            let node = node.clone();
            async move { live.parts(&node).await }
        })
        .flat_map(|parts| {
            futures::stream::iter(parts.into_iter().map(|(id, part)| {
                Ok::<_, Infallible>(Event::default().event(id).data(part.into_string()))
            }))
        })
        .take_until(stop);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A tick now and then every `every`.
fn tokio_stream_interval(every: Duration) -> impl futures::Stream<Item = ()> {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::stream::unfold(interval, |mut interval| async move {
        interval.tick().await;
        Some(((), interval))
    })
}

use crate::show::{duration_us, short_peer as short};

/// Why a post that changes the node is refused, if it is: from another
/// site's page, or without the node's API token when the API is reachable
/// beyond loopback.
fn refused(node: &Node, headers: &HeaderMap, token: Option<&str>) -> Option<Response> {
    if cross_site(headers) {
        return Some(
            (
                StatusCode::FORBIDDEN,
                "a post from another site's page is refused: open this node's console",
            )
                .into_response(),
        );
    }
    if let Some(expected) = &node.api_token {
        let given = token.map(|t| format!("Bearer {}", t.trim()));
        if !super::token::admits(expected, given.as_deref()) {
            return Some(
                (
                    StatusCode::UNAUTHORIZED,
                    "this node's API is reachable beyond loopback: enter its API token \
                     (its --api-token, or the one it printed when it started and keeps in \
                     DATA_DIR/api.token)",
                )
                    .into_response(),
            );
        }
    }
    None
}

/// The token field of a form that changes the node, when one is needed.
fn token_field(node: &Node) -> Markup {
    html! {
        @if node.api_token.is_some() {
            label { "API token (this node's API is reachable beyond loopback)"
                input type="password" name="token" id="token" required autocomplete="current-password";
            }
        }
    }
}

/// Whether a form post comes from a page of another site.
pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site") == Some("cross-site") {
        return true;
    }
    match (header("origin"), header("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            origin
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                != host
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_post_from_another_site_is_told_apart() {
        let mut h = HeaderMap::new();
        assert!(
            !cross_site(&h),
            "no headers: a client that is not a browser"
        );
        h.insert("host", "127.0.0.1:7420".parse().unwrap());
        h.insert("origin", "http://127.0.0.1:7420".parse().unwrap());
        assert!(!cross_site(&h));
        h.insert("origin", "https://evil.example".parse().unwrap());
        assert!(cross_site(&h));
        h.insert("origin", "null".parse().unwrap());
        assert!(cross_site(&h));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(cross_site(&h));
    }
}
