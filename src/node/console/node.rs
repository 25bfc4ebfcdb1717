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
                                td { (p.kind()) }
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
        (network(&node.peer_id, &peers))
    };
    vec![
        ("node-facts", facts),
        ("node-peers", table),
        ("node-network", picture),
    ]
}

/// Peers the picture shows at most (the connected ones first).
const PICTURED: usize = 48;

/// The relay a `/…/p2p/RELAY/p2p-circuit/…` address goes through.
fn relay_of(addr: &str) -> Option<&str> {
    let before = addr
        .split("/p2p-circuit")
        .next()
        .filter(|_| addr.contains("/p2p-circuit"))?;
    before
        .rsplit("/p2p/")
        .next()
        .filter(|r| !r.is_empty() && !r.contains('/'))
}

/// The links the node knows of, as (from, to, how): `None` is this node.
/// A direct connection links this node to the peer; a relayed one links
/// the peer to its relay (to this node when the relay is not pictured);
/// a peer known but not connected is linked to the relay its circuit
/// address names, if any.
fn links<'a>(peers: &[&'a PeerInfo]) -> Vec<(Option<&'a str>, &'a str, &'static str)> {
    let pictured = |id: &str| peers.iter().any(|p| p.peer_id == id);
    let mut links = Vec::new();
    for p in peers {
        let relay = p
            .addrs
            .iter()
            .filter_map(|a| relay_of(a))
            .find(|r| pictured(r) && *r != p.peer_id);
        match (p.connected, p.relayed, relay) {
            (true, false, _) => links.push((None, p.peer_id.as_str(), "direct")),
            (true, true, Some(r)) => links.push((Some(r), p.peer_id.as_str(), "relayed")),
            (true, true, None) => links.push((None, p.peer_id.as_str(), "relayed")),
            (false, _, Some(r)) => links.push((Some(r), p.peer_id.as_str(), "known")),
            (false, _, None) => {}
        }
    }
    links
}

/// This node in the middle, the peers it knows around it (connected ones
/// filled, the others hollow), and the links it knows of ([`links`]):
/// solid when direct, dashed when relayed, dotted from a known peer to its
/// relay; supernodes drawn larger.
fn network(me: &str, known: &[PeerInfo]) -> Markup {
    const SIZE: f64 = 320.0;
    let mut peers: Vec<&PeerInfo> = known.iter().filter(|p| !p.banned).collect();
    peers.sort_by_key(|p| !p.connected);
    peers.truncate(PICTURED);
    let centre = SIZE / 2.0;
    let radius = SIZE / 2.0 - 40.0;
    let at = |i: usize| {
        let angle = std::f64::consts::TAU * i as f64 / peers.len().max(1) as f64
            - std::f64::consts::FRAC_PI_2;
        (centre + radius * angle.cos(), centre + radius * angle.sin())
    };
    let place =
        |id: Option<&str>| match id.and_then(|id| peers.iter().position(|p| p.peer_id == id)) {
            Some(i) => at(i),
            None => (centre, centre),
        };
    let links = links(&peers);
    let connected = peers.iter().filter(|p| p.connected).count();
    let label = format!(
        "this node, {connected} connected peer{} and {} more it knows of; {} link{}",
        if connected == 1 { "" } else { "s" },
        peers.len() - connected,
        links.len(),
        if links.len() == 1 { "" } else { "s" },
    );
    html! {
        svg.chart id="network" role="img" aria-label=(label) viewBox=(format!("0 0 {SIZE} {SIZE}"))
            style="max-width: 20rem" xmlns="http://www.w3.org/2000/svg" {
            @for (from, to, how) in &links {
                @let (x1, y1) = place(*from);
                @let (x2, y2) = place(Some(to));
                line x1=(format!("{x1:.1}")) y1=(format!("{y1:.1}")) x2=(format!("{x2:.1}")) y2=(format!("{y2:.1}"))
                    data-from=(from.unwrap_or(me)) data-to=(to) data-kind=(how)
                    stroke="currentColor" stroke-opacity=(if *how == "known" { "0.25" } else { "0.4" })
                    stroke-dasharray=(match *how { "relayed" => "4 4", "known" => "1 3", _ => "none" }) {}
            }
            @for (i, p) in peers.iter().enumerate() {
                @let (x, y) = at(i);
                @let colour = if p.supernode { "#f59e0b" } else { "#3b82f6" };
                g data-peer=(p.peer_id) {
                    title { (p.peer_id) " (" (if p.connected { p.kind() } else { "known, not connected" }) ")" }
                    circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r=(if p.supernode { 12 } else { 8 })
                        fill=(if p.connected { colour } else { "none" }) stroke=(colour) stroke-width="2" {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, connected: bool, relayed: bool, supernode: bool, addrs: &[&str]) -> PeerInfo {
        PeerInfo {
            peer_id: id.into(),
            addrs: addrs.iter().map(|a| (*a).to_owned()).collect(),
            connected,
            relayed,
            agent: String::new(),
            banned: false,
            score: 0.0,
            supernode,
            rtt_us: None,
        }
    }

    #[test]
    fn the_picture_links_peers_through_the_relays_their_addresses_name() {
        assert_eq!(
            relay_of("/ip4/1.2.3.4/tcp/1/p2p/RELAY/p2p-circuit/p2p/ME"),
            Some("RELAY")
        );
        assert_eq!(relay_of("/ip4/1.2.3.4/tcp/1/p2p/RELAY"), None);
        let known = [
            peer("SUPER", true, false, true, &["/ip4/10.0.0.1/tcp/4001"]),
            peer(
                "BEHIND",
                true,
                true,
                false,
                &["/ip4/10.0.0.1/tcp/4001/p2p/SUPER/p2p-circuit"],
            ),
            peer(
                "FAR",
                false,
                false,
                false,
                &["/ip4/10.0.0.1/tcp/4001/p2p/SUPER/p2p-circuit"],
            ),
            peer("GONE", false, false, false, &["/ip4/10.0.0.9/tcp/4001"]),
            peer(
                "ODD",
                true,
                true,
                false,
                &["/ip4/10.0.0.1/tcp/4001/p2p/ELSEWHERE/p2p-circuit"],
            ),
        ];
        let refs: Vec<&PeerInfo> = known.iter().collect();
        assert_eq!(
            links(&refs),
            [
                (None, "SUPER", "direct"),
                (Some("SUPER"), "BEHIND", "relayed"),
                (Some("SUPER"), "FAR", "known"),
                (None, "ODD", "relayed"),
            ]
        );
        let svg = network("ME", &known).into_string();
        assert_eq!(svg.matches("<line").count(), 4, "{svg}");
        assert_eq!(svg.matches("data-peer=").count(), 5, "{svg}");
        assert!(
            svg.contains(r#"data-from="ME" data-to="SUPER" data-kind="direct""#),
            "{svg}"
        );
        assert!(
            svg.contains("3 connected peers and 2 more it knows of; 4 links"),
            "{svg}"
        );
    }
}
