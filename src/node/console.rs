//! The web console every node serves on its API port: server-rendered
//! pages (maud), no script needed to read them, usable at phone width and
//! in dark mode.
//!
//! - `GET /`: the node: its peer id, addresses, NAT status, peers by kind,
//!   and the functions it knows with their providers and the calls that
//!   entered here.
//! - `GET /console/invoke` and `POST /console/invoke` (a form): calls a
//!   function and shows its output, fuel, executor, the agreeing and the
//!   outvoted executors and each hop's time. Like `POST /fn/{name}` it is
//!   public; the form post is refused when the browser says it comes from
//!   another site (`Sec-Fetch-Site: cross-site`, or an `Origin` that is not
//!   this node's).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::Node;
use super::invoke::invoke;

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
nav a { margin-right: 1rem; color: var(--accent); text-decoration: none; }
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
.ok { color: var(--ok); } .bad { color: var(--bad); }
"#;

pub(crate) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/", get(node_page))
        .route("/console/invoke", get(invoke_page).post(invoke_form))
}

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
            }
            body {
                header {
                    strong { "Orb" }
                    span.mono title=(node.peer_id) { (short) }
                    nav aria-label="console" {
                        @for (href, name) in [("/", "Node"), ("/console/invoke", "Invoke")] {
                            @if name == current {
                                a href=(href) aria-current="page" { (name) }
                            } @else {
                                a href=(href) { (name) }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// `12D3KooW…abcdef`.
fn short(peer: &str) -> String {
    if peer.len() > 16 {
        format!("{}…{}", &peer[..8], &peer[peer.len() - 6..])
    } else {
        peer.to_owned()
    }
}

async fn node_page(State(node): State<Arc<Node>>) -> Response {
    let status = node.net.status().await.ok();
    let peers = node.net.peers().await.unwrap_or_default();
    let functions = super::api::by_function(node.routing.table().await.unwrap_or_default());
    let calls = node.metrics.calls_by_function();
    let height = node.ledger.as_ref().map(|l| l.height());
    let body = html! {
        h1 { "Node" }
        dl {
            dt { "Peer id" } dd.mono id="peer-id" { (node.peer_id) }
            @if let Some(s) = &status {
                dt { "NAT" } dd id="nat" { (format!("{:?}", s.nat).to_lowercase()) }
                dt { "Supernode" } dd { (if s.supernode { "yes" } else { "no" }) }
                dt { "Listening" } dd.mono { @for a in &s.listen { (a) br; } }
                @if !s.external.is_empty() {
                    dt { "Reachable at" } dd.mono { @for a in &s.external { (a) br; } }
                }
                @if !s.relays.is_empty() {
                    dt { "Relays" } dd.mono { @for r in &s.relays { (short(r)) br; } }
                }
                dt { "Routing table" } dd { (s.routing_table) " peers" }
            }
            dt { "Hosted" } dd { (node.host.hosted().len()) " functions, " (node.host.load()) " calls in flight of " (node.host.capacity()) }
            dt { "Chain" } dd { @match height { Some(h) => { "height " (h) }, None => { "no ledger" } } }
        }
        h2 { "Peers" }
        @let connected: Vec<_> = peers.iter().filter(|p| p.connected).collect();
        @if connected.is_empty() {
            p { "No peer connected." }
        } @else {
            div.scroll {
                table id="peers" {
                    thead { tr { th { "Peer" } th { "Kind" } th { "Software" } th { "Score" } } }
                    tbody {
                        @for p in &connected {
                            tr {
                                td.mono title=(p.peer_id) { (short(&p.peer_id)) }
                                td { (if p.relayed { "relayed" } else { "direct" }) }
                                td { (p.agent) }
                                td { (format!("{:.0}", p.score)) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Functions" }
        @if functions.is_empty() {
            p { "No function known yet: deploy one with " code { "orb deploy" } "." }
        } @else {
            div.scroll {
                table id="functions" {
                    thead { tr { th { "Name" } th { "Function" } th { "Providers (load/capacity)" } th { "Calls here: ok / failed" } } }
                    tbody {
                        @for (id, providers) in &functions {
                            @let names = node.names.names_of(id);
                            @let (ok, failed) = names.iter().chain(std::iter::once(id)).fold((0, 0), |(o, f), n| {
                                let (a, b) = calls.get(n).copied().unwrap_or((0, 0));
                                (o + a, f + b)
                            });
                            tr {
                                td { @if names.is_empty() { "—" } @else { (names.join(", ")) } }
                                td.mono title=(id) { (&id[..12]) "…" }
                                td.mono {
                                    @for p in providers {
                                        (short(&p.peer.to_string())) " (" (p.load) "/" (p.capacity) ")" br;
                                    }
                                }
                                td { span.ok { (ok) } " / " span.bad { (failed) } }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&node, "Node", "Node", body).into_response()
}

#[derive(Deserialize, Default)]
struct InvokeForm {
    function: String,
    #[serde(default)]
    input: String,
    #[serde(default)]
    replicas: Option<String>,
}

fn invoke_form_markup(form: &InvokeForm) -> Markup {
    html! {
        form method="post" action="/console/invoke" {
            label { "Function (name or id)"
                input name="function" id="function" required value=(form.function) autocomplete="off";
            }
            label { "Input"
                textarea name="input" id="input" rows="4" { (form.input) }
            }
            label { "Replicas (1 to 16; empty: the node's default)"
                input name="replicas" id="replicas" inputmode="numeric" value=(form.replicas.clone().unwrap_or_default());
            }
            button type="submit" id="call" { "Call" }
        }
    }
}

async fn invoke_page(State(node): State<Arc<Node>>) -> Response {
    let body = html! {
        h1 { "Invoke" }
        (invoke_form_markup(&InvokeForm::default()))
    };
    page(&node, "Invoke", "Invoke", body).into_response()
}

/// Whether a form post comes from a page of another site.
fn cross_site(headers: &HeaderMap) -> bool {
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

async fn invoke_form(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Form(form): Form<InvokeForm>,
) -> Response {
    if cross_site(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "a call from another site's page is refused: open this node's console",
        )
            .into_response();
    }
    let replicas = match form.replicas.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(r) => match r.parse::<usize>() {
            Ok(n) if (1..=16).contains(&n) => Ok(Some(n)),
            _ => Err(format!("replicas must be a number from 1 to 16, not {r:?}")),
        },
    };
    let result = match replicas {
        Ok(replicas) => invoke(
            &node,
            form.function.trim(),
            form.input.clone().into_bytes(),
            None,
            replicas,
        )
        .await
        .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let (status, outcome) = match &result {
        Ok(done) => (
            StatusCode::OK,
            html! {
                h2 { "Output" }
                pre id="output" { (String::from_utf8_lossy(&done.output)) }
                dl id="details" {
                    dt { "Fuel" } dd id="fuel" { (done.fuel) }
                    dt { "Executor" } dd.mono id="executor" { (done.executor) }
                    dt { "Agreeing" } dd.mono id="agreed" { @for p in &done.agreed { (short(p)) br; } }
                    @if !done.disputed.is_empty() {
                        dt { "Outvoted" } dd.mono.bad id="outvoted" { @for p in &done.disputed { (short(p)) br; } }
                    }
                    dt { "Resolve" } dd { (done.resolve_us) " µs" }
                    dt { "Network" } dd { (done.network_us) " µs" }
                    dt { "Execution" } dd { (done.execution_us) " µs" }
                    dt { "Invocation" } dd.mono { (done.invocation) }
                }
            },
        ),
        Err(e) => (
            StatusCode::OK,
            html! {
                h2 { "Error" }
                p.bad id="error" role="alert" { (e) }
            },
        ),
    };
    let body = html! {
        h1 { "Invoke" }
        (invoke_form_markup(&form))
        (outcome)
    };
    (status, page(&node, "Invoke", "Invoke", body)).into_response()
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
