//! The Functions page: every function this node knows, by name and id,
//! its providers with their load, and the calls that entered here: counts,
//! calls/s, p50/p99 latency and errors over the last two minutes, charted.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::chart::{self, BLUE, Line, ORANGE};
use super::{Live, duration_us, live_parts, page as layout, short};
use crate::node::Node;
use crate::node::history::{Point, WINDOW};
use crate::node::logs::{Cursor, gather};

/// Functions charted at most (those with the most calls).
const CHARTED: usize = 4;

/// Seconds the table's figures cover.
const RECENT: u64 = 60;

pub(super) async fn page(State(node): State<Arc<Node>>) -> Response {
    let body = html! {
        h1 { "Functions" }
        (live_parts(Live::Functions, parts(&node).await))
    };
    layout(&node, "Functions", "Functions", body).into_response()
}

/// The names a function was called by here (its names and its id).
fn called_as(node: &Node, id: &str, names: &[String]) -> Vec<String> {
    let recent = node.metrics.recent_functions();
    recent
        .into_iter()
        .filter(|f| f == id || names.contains(f))
        .collect()
}

/// The seconds of every name in `names`, added up.
fn series(node: &Node, names: &[String]) -> Vec<Point> {
    let mut sum: Vec<Point> = Vec::new();
    for name in names {
        let s = node.metrics.series(name);
        if sum.is_empty() {
            sum = s;
            continue;
        }
        for (a, b) in sum.iter_mut().zip(s) {
            a.ok += b.ok;
            a.failed += b.failed;
            // Not the merged quantiles, but the worse of the two: close
            // enough for a chart, and a name is rarely called two ways.
            a.p50_us = a.p50_us.max(b.p50_us);
            a.p99_us = a.p99_us.max(b.p99_us);
        }
    }
    sum
}

pub(super) async fn parts(node: &Arc<Node>) -> Vec<(&'static str, Markup)> {
    let functions = crate::node::api::by_function(node.routing.table().await.unwrap_or_default());
    let totals = node.metrics.calls_by_function();
    let now = node.metrics.second();
    struct Row {
        id: String,
        names: Vec<String>,
        providers: Vec<orb_engine::Provider>,
        ok: u64,
        failed: u64,
        recent: (u64, u64, u32, u32),
        called_as: Vec<String>,
    }
    let mut rows: Vec<Row> = functions
        .into_iter()
        .map(|(id, providers)| {
            let names = node.names_of(&id);
            let (ok, failed) =
                names
                    .iter()
                    .chain(std::iter::once(&id))
                    .fold((0, 0), |(o, f), n| {
                        let (a, b) = totals.get(n).copied().unwrap_or((0, 0));
                        (o + a, f + b)
                    });
            let called_as = called_as(node, &id, &names);
            let recent = called_as.iter().fold((0, 0, 0, 0), |acc, n| {
                let (o, f, p50, p99) = node.metrics.summary(n, RECENT);
                (acc.0 + o, acc.1 + f, acc.2.max(p50), acc.3.max(p99))
            });
            Row {
                id,
                names,
                providers,
                ok,
                failed,
                recent,
                called_as,
            }
        })
        .collect();
    let table = html! {
        @if rows.is_empty() {
            p { "No function known yet: deploy one on the " a href="/console/deploy" { "Deploy" } " page or with " code { "orb deploy" } "." }
        } @else {
            div.scroll {
                table id="functions" {
                    thead { tr {
                        th { "Name" } th { "Function" } th { "Providers (load/capacity)" }
                        th { "Calls here: ok / failed" } th { "Last minute: calls/s" }
                        th { "p50" } th { "p99" }
                    } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td { @if r.names.is_empty() { "—" } @else { (r.names.join(", ")) } }
                                td.mono title=(r.id) { (&r.id[..12]) "…" }
                                td.mono.providers {
                                    @for p in &r.providers {
                                        span title=(p.peer) { (short(&p.peer.to_string())) } " (" (p.load) "/" (p.capacity) ")" br;
                                    }
                                }
                                td { span.ok { (r.ok) } " / " span.bad { (r.failed) } }
                                td { (format!("{:.2}", r.recent.0 as f64 / RECENT as f64)) }
                                td { @if r.recent.0 > 0 { (duration_us(u64::from(r.recent.2))) } @else { "—" } }
                                td { @if r.recent.0 > 0 { (duration_us(u64::from(r.recent.3))) } @else { "—" } }
                            }
                        }
                    }
                }
            }
        }
    };
    rows.retain(|r| !r.called_as.is_empty());
    rows.sort_by_key(|r| std::cmp::Reverse(r.recent.0 + r.recent.1));
    rows.truncate(CHARTED);
    let charts = html! {
        h2 { "Calls here, last " (WINDOW / 60) " minutes" }
        @if rows.is_empty() {
            p.muted { "No call entered this node in the last " (WINDOW / 60) " minutes." }
        }
        div.grid {
            @for r in &rows {
                @let points = series(node, &r.called_as);
                @let name = r.names.first().cloned().unwrap_or_else(|| r.id[..12].to_owned());
                @let at = |p: &Point| p.second as f64 - now as f64;
                figure.latency data-function=(name) {
                    figcaption { strong { (name) } " latency" }
                    (chart::lines(
                        &format!("{name}: p50 and p99 latency per second"),
                        "ms",
                        "seconds ago",
                        (-(WINDOW as f64), 0.0),
                        &[
                            Line { label: "p50", colour: BLUE, points: points.iter().filter(|p| p.ok > 0).map(|p| (at(p), f64::from(p.p50_us) / 1e3)).collect() },
                            Line { label: "p99", colour: ORANGE, points: points.iter().filter(|p| p.ok > 0).map(|p| (at(p), f64::from(p.p99_us) / 1e3)).collect() },
                        ],
                    ))
                }
                figure.rate data-function=(name) {
                    figcaption { strong { (name) } " calls/s" }
                    (chart::lines(
                        &format!("{name}: calls answered and failed per second"),
                        "calls/s",
                        "seconds ago",
                        (-(WINDOW as f64), 0.0),
                        &[
                            Line { label: "answered", colour: BLUE, points: points.iter().map(|p| (at(p), f64::from(p.ok))).collect() },
                            Line { label: "failed", colour: ORANGE, points: points.iter().map(|p| (at(p), f64::from(p.failed))).collect() },
                        ],
                    ))
                }
            }
        }
    };
    let mut recent = Vec::new();
    for r in &rows {
        let name = r.names.first().cloned().unwrap_or_else(|| r.id.clone());
        if let Ok(found) = gather(node, &r.id, &Cursor::default()).await {
            recent.push((name, found));
        }
    }
    let calls = html! {
        h2 { "Recent calls, on every host that ran them" }
        p.muted { "What " code { "orb logs NAME" } " shows; each host keeps its last calls." }
        @for (name, found) in &recent {
            h3 { (name) }
            div.scroll {
                table.calls data-function=(name) {
                    thead { tr { th { "Ended (UTC)" } th { "Host" } th { "Outcome" } th { "Fuel" } th { "Time" } th { "Invocation" } th { "Log" } } }
                    tbody {
                        @for c in found.calls.iter().rev().take(RECENT_CALLS) {
                            tr {
                                td { (clock(c.at_ms)) }
                                td.mono title=(c.host) { (short(&c.host)) }
                                @if c.outcome == "ok" { td.ok { (c.outcome) } } @else { td.bad { (c.outcome) } }
                                td { (c.fuel) }
                                td { (duration_us(c.duration_us)) }
                                td.mono title=(c.invocation) { (&c.invocation[..12]) }
                                td.mono { (c.log) }
                            }
                        }
                    }
                }
            }
            @if !found.unreachable.is_empty() {
                p.bad { "Not answered: " (found.unreachable.join("; ")) }
            }
        }
    };
    vec![
        ("fn-table", table),
        ("fn-charts", charts),
        ("fn-calls", calls),
    ]
}

/// Calls listed per function.
const RECENT_CALLS: usize = 10;

/// `HH:MM:SS.mmm` of milliseconds since the epoch (UTC).
fn clock(ms: u64) -> String {
    let day = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3_600_000,
        day / 60_000 % 60,
        day / 1000 % 60,
        day % 1000
    )
}
