//! The Deploy page: upload a module with a name and a replica count; the
//! node shows what `orb fn inspect` would (imports, exports, whether Orb
//! can run it) and keeps the upload for a moment; confirming deploys it as
//! `orb deploy` would, signed with the data dir's publisher key, and shows
//! where it landed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Form, Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use orb_functions::FunctionId;
use orb_net::NameRecord;
use serde::Deserialize;

use super::{page as layout, refused, short, token_field};
use crate::node::Node;

/// Uploads kept between the verdict and the confirmation.
const STAGED: usize = 4;

/// Uploads inspected and not yet deployed, newest last.
#[derive(Default)]
pub(crate) struct Staged(Mutex<VecDeque<(FunctionId, Arc<Vec<u8>>)>>);

impl Staged {
    fn keep(&self, id: FunctionId, module: Vec<u8>) {
        let mut staged = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        staged.retain(|(i, _)| *i != id);
        if staged.len() >= STAGED {
            staged.pop_front();
        }
        staged.push_back((id, Arc::new(module)));
    }

    fn take(&self, id: &FunctionId) -> Option<Arc<Vec<u8>>> {
        let mut staged = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let at = staged.iter().position(|(i, _)| i == id)?;
        staged.remove(at).map(|(_, m)| m)
    }
}

fn form_markup(node: &Node, name: &str, replicas: &str) -> Markup {
    html! {
        form method="post" action="/console/deploy" enctype="multipart/form-data" {
            label { "Function (.wasm: a WASI preview-1 command module or a wasi:cli/run component)"
                input type="file" name="module" id="module" accept=".wasm,application/wasm" required;
            }
            label { "Name"
                input name="name" id="name" required value=(name) autocomplete="off" pattern="[a-z0-9][a-z0-9._-]*";
            }
            label { "Replicas (hosts, 1 to 64)"
                input name="replicas" id="replicas" inputmode="numeric" value=(replicas);
            }
            (token_field(node))
            button type="submit" id="inspect" { "Inspect" }
        }
    }
}

pub(super) async fn page(State(node): State<Arc<Node>>) -> Response {
    let body = html! {
        h1 { "Deploy" }
        p.muted { "The module is checked first; nothing is deployed until you confirm." }
        (form_markup(&node, "", "1"))
    };
    layout(&node, "Deploy", "Deploy", body).into_response()
}

/// A page with `outcome` under the form.
fn answer(
    node: &Node,
    status: StatusCode,
    name: &str,
    replicas: &str,
    outcome: Markup,
) -> Response {
    let body = html! {
        h1 { "Deploy" }
        (form_markup(node, name, replicas))
        (outcome)
    };
    (status, layout(node, "Deploy", "Deploy", body)).into_response()
}

fn failed(node: &Node, status: StatusCode, name: &str, replicas: &str, why: &str) -> Response {
    answer(
        node,
        status,
        name,
        replicas,
        html! { h2 { "Not deployed" } p.bad id="error" role="alert" { (why) } },
    )
}

/// Replicas as the form gives them.
fn replicas(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!(
            "replicas must be a number from 1 to 64, not {text:?}"
        )),
    }
}

/// `POST /console/deploy` (multipart): inspects the module and keeps it.
pub(super) async fn upload(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let (mut module, mut name, mut count, mut token) = (None, String::new(), "1".to_owned(), None);
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let field_name = field.name().unwrap_or_default().to_owned();
                let bytes = match field.bytes().await {
                    Ok(b) => b,
                    Err(e) => {
                        return failed(
                            &node,
                            StatusCode::BAD_REQUEST,
                            &name,
                            &count,
                            &format!("the upload broke off: {e}"),
                        );
                    }
                };
                let text = || String::from_utf8_lossy(&bytes).trim().to_owned();
                match field_name.as_str() {
                    "module" => module = Some(bytes.to_vec()),
                    "name" => name = text(),
                    "replicas" => count = text(),
                    "token" => token = Some(text()),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => {
                return failed(
                    &node,
                    StatusCode::BAD_REQUEST,
                    &name,
                    &count,
                    &format!("not a form upload: {e}"),
                );
            }
        }
    }
    if let Some(no) = refused(&node, &headers, token.as_deref()) {
        return no;
    }
    let checked = orb_net::check_name(&name)
        .map_err(|e| e.to_string())
        .and_then(|()| replicas(&count));
    if let Err(why) = checked {
        return failed(&node, StatusCode::BAD_REQUEST, &name, &count, &why);
    }
    let Some(module) = module.filter(|m| !m.is_empty()) else {
        return failed(
            &node,
            StatusCode::BAD_REQUEST,
            &name,
            &count,
            "choose a module file to upload",
        );
    };
    let info = match node.host.inspect(&module).await {
        Ok(info) => info,
        Err(e) => {
            return failed(
                &node,
                StatusCode::UNPROCESSABLE_ENTITY,
                &name,
                &count,
                &format!("not a module Orb can read: {e}"),
            );
        }
    };
    let runnable = info.unsupported.is_none();
    let outcome = html! {
        h2 { "Verdict" }
        @match &info.unsupported {
            None => p.ok id="verdict" { "Runnable: " (match info.kind {
                orb_functions::FunctionKind::Module => "a WASI preview-1 command.",
                orb_functions::FunctionKind::Component => "a wasi:cli/run component.",
            }) },
            Some(why) => p.bad id="verdict" role="alert" { "Orb cannot run it: " (why) },
        }
        dl {
            dt { "Function" } dd.mono id="function" { (info.id) }
            dt { "Kind" } dd id="kind" { (info.kind) @if let Some(world) = &info.world { " (" (world) ")" } }
            dt { "Size" } dd { (info.size) " bytes" }
            dt { "Imports" } dd.mono {
                @for i in &info.imports {
                    span class=(if i.provided { "" } else { "bad" }) { (i.path()) " (" (i.kind) ")" } br;
                }
            }
            dt { "Exports" } dd.mono { @for e in &info.exports { (e.name) " (" (e.kind) ")" br; } }
        }
        @if runnable {
            form method="post" action="/console/deploy/confirm" {
                input type="hidden" name="function" value=(info.id);
                input type="hidden" name="name" value=(name);
                input type="hidden" name="replicas" value=(count);
                @if let Some(t) = &token { input type="hidden" name="token" value=(t); }
                button type="submit" id="deploy" { "Deploy " (name) " on " (count) " host" @if count != "1" { "s" } }
            }
        }
    };
    if runnable {
        node.console.staged.keep(info.id, module);
    }
    answer(&node, StatusCode::OK, &name, &count, outcome)
}

#[derive(Deserialize)]
pub(super) struct Confirm {
    function: String,
    name: String,
    replicas: String,
    token: Option<String>,
}

/// `POST /console/deploy/confirm`: deploys a kept upload.
pub(super) async fn confirm(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Form(c): Form<Confirm>,
) -> Response {
    if let Some(no) = refused(&node, &headers, c.token.as_deref()) {
        return no;
    }
    let count = match replicas(&c.replicas) {
        Ok(n) => n,
        Err(why) => return failed(&node, StatusCode::BAD_REQUEST, &c.name, &c.replicas, &why),
    };
    let module = c
        .function
        .parse::<FunctionId>()
        .ok()
        .and_then(|id| node.console.staged.take(&id));
    let Some(module) = module else {
        return failed(
            &node,
            StatusCode::GONE,
            &c.name,
            &c.replicas,
            "that upload is no longer kept here: upload it again",
        );
    };
    let record = match NameRecord::sign(&node.publisher, &c.name, FunctionId::of(&module)) {
        Ok(r) => r,
        Err(e) => {
            return failed(
                &node,
                StatusCode::BAD_REQUEST,
                &c.name,
                &c.replicas,
                &e.to_string(),
            );
        }
    };
    let publisher = node.publisher.public().to_peer_id();
    let placed = crate::node::api::place(&node, record, &publisher, &module, count, None).await;
    let deployed = match placed {
        Ok(d) => d,
        Err(response) => {
            // The API's JSON error, shown as the page's.
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 64 << 10)
                .await
                .unwrap_or_default();
            let why = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return failed(&node, status, &c.name, &c.replicas, &why);
        }
    };
    let outcome = html! {
        h2 { "Deployed" }
        p.ok id="deployed" { (deployed.name) " is " span.mono { (short(&deployed.function.to_hex())) } "." }
        dl {
            dt { "Publisher" } dd.mono { (deployed.publisher) }
            dt { "Hosts" } dd.mono id="hosts" { @for p in &deployed.providers { (p) br; } }
            @if !deployed.declined.is_empty() {
                dt { "Declined" } dd.mono.bad { @for p in &deployed.declined { (p) br; } }
            }
        }
        p { a href=(format!("/console/invoke?function={}", deployed.name)) id="try" { "Call " (deployed.name) } }
    };
    answer(&node, StatusCode::OK, &c.name, &c.replicas, outcome)
}
