//! The Agents page: the agent modules registered here with their hosts
//! (and the host list they are moving from, while they move), and the
//! agents this node keeps: sequence number, state hash and state.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::{Live, live_parts, page as layout, short};
use crate::node::Node;

/// Agents listed.
const LISTED: usize = 200;

/// State shown per agent, in characters.
const STATE_SHOWN: usize = 120;

pub(super) async fn page(State(node): State<Arc<Node>>) -> Response {
    let body = html! {
        h1 { "Agents" }
        (live_parts(Live::Agents, parts(&node)))
    };
    layout(&node, "Agents", "Agents", body).into_response()
}

pub(super) fn parts(node: &Arc<Node>) -> Vec<(&'static str, Markup)> {
    let modules = node.agents.modules();
    let agents = node.agents.list(LISTED);
    let name_of = |id: &str| {
        let names = node.names_of(id);
        if names.is_empty() {
            format!("{}…", &id[..12])
        } else {
            names.join(", ")
        }
    };
    let modules = html! {
        h2 { "Modules" }
        @match &modules {
            Err(e) => p.bad { (e) },
            Ok(m) if m.is_empty() => p { "No agent module here: deploy one with " code { "orb deploy --agent" } "." },
            Ok(m) => div.scroll {
                table id="agent-modules" {
                    thead { tr { th { "Module" } th { "Hosts" } th { "Host list" } th { "Upgrades" } } }
                    tbody {
                        @for (id, module) in m {
                            tr {
                                td title=(id) { (name_of(&id.to_hex())) }
                                td.mono {
                                    @if module.hosts.is_empty() { "this node alone" }
                                    @for h in &module.hosts { (short(h)) @if *h == node.peer_id { " (here)" } br; }
                                }
                                td { "epoch " (module.epoch) @if !module.previous.is_empty() { ", moving from " (module.previous.len()) " hosts" } }
                                td.mono { @match &module.replaces { Some(r) => (short(&r.to_hex())), None => "—" } }
                            }
                        }
                    }
                }
            },
        }
    };
    let agents = html! {
        h2 { "Agents kept here" }
        @match &agents {
            Err(e) => p.bad { (e) },
            Ok(a) if a.is_empty() => p.muted { "None yet: an agent exists from its first message." },
            Ok(a) => div.scroll {
                table id="agents" {
                    thead { tr { th { "Agent" } th { "Module" } th { "Seq" } th { "State hash" } th { "State" } } }
                    tbody {
                        @for (name, s) in a {
                            @let state = String::from_utf8_lossy(&s.state);
                            tr {
                                td.mono { (name) }
                                td { (name_of(&s.function.to_hex())) }
                                td { (s.seq) }
                                td.mono { (short(&hex::encode(s.hash))) }
                                td.mono { (state.chars().take(STATE_SHOWN).collect::<String>()) @if state.chars().count() > STATE_SHOWN { "…" } }
                            }
                        }
                    }
                }
            },
        }
    };
    vec![("agent-modules", modules), ("agent-list", agents)]
}
