//! The Node page: who this node is (peer id, addresses, NAT status,
//! supernode or not), its peers with their kind and round trip, and a
//! picture of the network it knows.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use orb_net::PeerInfo;

use super::{Live, duration_us, live_parts, page as layout, short};
use crate::node::Node;

pub(super) async fn page(State(node): State<Arc<Node>>) -> Response {
    let body = html! {
        h1 { "Node" }
        (live_parts(Live::Node, parts(&node).await))
    };
    layout(&node, "Node", "Node", body).into_response()
}

/// A peer's kind as the tables say it.
fn kind(p: &PeerInfo) -> &'static str {
    match (p.supernode, p.relayed) {
        (true, _) => "supernode",
        (false, true) => "relayed",
        (false, false) => "direct",
    }
}

pub(super) async fn parts(node: &Arc<Node>) -> Vec<(&'static str, Markup)> {
    let status = node.net.status().await.ok();
    let peers = node.net.peers().await.unwrap_or_default();
    let connected: Vec<&PeerInfo> = peers.iter().filter(|p| p.connected).collect();
    let height = node.ledger.as_ref().map(|l| l.height());
    let facts = html! {
        dl {
            dt { "Peer id" } dd.mono id="peer-id" { (node.peer_id) }
            @if let Some(s) = &status {
                dt { "NAT" } dd id="nat" { (format!("{:?}", s.nat).to_lowercase()) }
                dt { "Supernode" } dd id="supernode" { (if s.supernode { "yes: bootstrap, relay, DHT server" } else { "no" }) }
                dt { "Listening" } dd.mono { @for a in &s.listen { (a) br; } }
                @if !s.external.is_empty() {
                    dt { "Reachable at" } dd.mono { @for a in &s.external { (a) br; } }
                }
                @if !s.relays.is_empty() {
                    dt { "Relays" } dd.mono { @for r in &s.relays { (short(r)) br; } }
                }
                dt { "Routing table" } dd { (s.routing_table) " peers, " (s.known_peers) " known" }
            }
            dt { "Hosted" } dd id="hosted" { (node.host.hosted().len()) " functions, " (node.host.load()) " calls in flight of " (node.host.capacity()) }
            dt { "Agents" } dd { (node.agents.count()) " kept here" }
            dt { "Chain" } dd { @match height { Some(h) => { "height " (h) }, None => { "no ledger" } } }
        }
    };
    let table = html! {
        h2 { "Peers" }
        @if connected.is_empty() {
            p { "No peer connected." }
        } @else {
            div.scroll {
                table id="peers" {
                    thead { tr { th { "Peer" } th { "Kind" } th { "Round trip" } th { "Software" } th { "Score" } } }
                    tbody {
                        @for p in &connected {
                            tr {
                                td.mono title=(p.peer_id) { (short(&p.peer_id)) }
                                td { (kind(p)) }
                                td { @match p.rtt_us { Some(us) => (duration_us(us)), None => "—" } }
                                td { (p.agent) }
                                td { (format!("{:.0}", p.score)) }
                            }
                        }
                    }
                }
            }
        }
    };
    let picture = html! {
        h2 { "Network" }
        (network(&node.peer_id, &connected))
    };
    vec![
        ("node-facts", facts),
        ("node-peers", table),
        ("node-network", picture),
    ]
}

/// This node in the middle, its connected peers around it, a link to
/// each: solid when direct, dashed when relayed, supernodes drawn larger.
fn network(me: &str, peers: &[&PeerInfo]) -> Markup {
    const SIZE: f64 = 320.0;
    let centre = SIZE / 2.0;
    let radius = SIZE / 2.0 - 40.0;
    let at = |i: usize| {
        let angle = std::f64::consts::TAU * i as f64 / peers.len().max(1) as f64
            - std::f64::consts::FRAC_PI_2;
        (centre + radius * angle.cos(), centre + radius * angle.sin())
    };
    let label = format!(
        "this node and {} connected peer{}",
        peers.len(),
        if peers.len() == 1 { "" } else { "s" }
    );
    html! {
        svg.chart id="network" role="img" aria-label=(label) viewBox=(format!("0 0 {SIZE} {SIZE}"))
            style="max-width: 20rem" xmlns="http://www.w3.org/2000/svg" {
            @for (i, p) in peers.iter().enumerate() {
                @let (x, y) = at(i);
                line x1=(centre) y1=(centre) x2=(format!("{x:.1}")) y2=(format!("{y:.1}"))
                    stroke="currentColor" stroke-opacity="0.4"
                    stroke-dasharray=(if p.relayed { "4 4" } else { "none" }) {}
            }
            @for (i, p) in peers.iter().enumerate() {
                @let (x, y) = at(i);
                g {
                    title { (p.peer_id) " (" (kind(p)) ")" }
                    circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r=(if p.supernode { 12 } else { 8 })
                        fill=(if p.supernode { "#f59e0b" } else { "#3b82f6" }) {}
                    text x=(format!("{x:.1}")) y=(format!("{:.1}", y + 24.0)) text-anchor="middle"
                        font-size="11" fill="currentColor" { (&p.peer_id[p.peer_id.len().saturating_sub(6)..]) }
                }
            }
            g {
                title { (me) " (this node)" }
                circle cx=(centre) cy=(centre) r="14" fill="#16a34a" {}
                text x=(centre) y=(centre + 30.0) text-anchor="middle" font-size="11" fill="currentColor" { "this node" }
            }
        }
    }
}
