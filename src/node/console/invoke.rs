//! The Invoke page: a form that calls a function as `POST /fn/{name}`
//! does, and shows its output, fuel, executor, the agreeing and the
//! outvoted executors and each hop's time.

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{cross_site, duration_us, page as layout, short};
use crate::node::Node;
use crate::node::invoke::invoke;

#[derive(Deserialize, Default)]
pub(super) struct InvokeForm {
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

/// `?function=NAME` fills the form in.
#[derive(Deserialize)]
pub(super) struct Prefill {
    function: Option<String>,
}

pub(super) async fn page(
    State(node): State<Arc<Node>>,
    Query(prefill): Query<Prefill>,
) -> Response {
    let form = InvokeForm {
        function: prefill.function.unwrap_or_default(),
        ..InvokeForm::default()
    };
    let body = html! {
        h1 { "Invoke" }
        (invoke_form_markup(&form))
    };
    layout(&node, "Invoke", "Invoke", body).into_response()
}

pub(super) async fn form(
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
                    dt { "Resolve" } dd id="resolve" { (duration_us(done.resolve_us)) }
                    dt { "Network" } dd id="network" { (duration_us(done.network_us)) }
                    dt { "Execution" } dd id="execution" { (duration_us(done.execution_us)) }
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
    (status, layout(&node, "Invoke", "Invoke", body)).into_response()
}
