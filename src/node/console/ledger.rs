//! The Ledger page: the chain's height and head, time to finality of the
//! recent blocks, the latest blocks (each with its settlements, paid or
//! disputed), balances, and an audit of this node's chain from genesis
//! (what `orb ledger audit` checks at its default level) with its
//! progress.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use orb_ledger::{AuditOptions, Block, PublicKey};
use serde::Deserialize;

use super::chart::{self, BLUE, Line};
use super::{Live, duration_us, live_parts, page as layout, short, token_field};
use crate::node::Node;

/// Blocks listed.
const RECENT_BLOCKS: u64 = 10;

/// Balances listed.
const BALANCES: usize = 50;

fn peer(key: &PublicKey) -> String {
    orb_net::identity::peer_of(key.0).map_or_else(|| key.to_hex(), |p| p.to_string())
}

/// The console's audit of this node's chain: at most one at a time.
#[derive(Default)]
pub(crate) struct AuditJob {
    state: Mutex<Audit>,
    /// Heights done by the running audit.
    done: Arc<AtomicU64>,
}

#[derive(Default)]
enum Audit {
    #[default]
    Never,
    Running {
        to: u64,
        started: Instant,
    },
    Clean {
        to: u64,
        blocks: u64,
        settlements: u64,
        votes: u64,
        seconds: f64,
    },
    Found {
        height: Option<u64>,
        reason: String,
    },
    Failed(String),
}

impl AuditJob {
    fn markup(&self, node: &Node) -> Markup {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let button = html! {
            form method="post" action="/console/audit" {
                (token_field(node))
                button type="submit" id="audit" { "Audit this node's chain" }
            }
        };
        html! {
            h2 { "Audit" }
            p.muted { "Rebuilds every balance from genesis and checks every block's links, Merkle roots, signatures and finality evidence." }
            @match &*state {
                Audit::Never => (button),
                Audit::Running { to, started } => {
                    @let done = self.done.load(Ordering::Relaxed);
                    p id="audit-progress" { "Auditing: block " (done) " of " (to) " (" (format!("{:.1}", started.elapsed().as_secs_f64())) " s)" }
                    progress value=(done) max=((*to).max(1)) aria-label="audit progress" {}
                },
                Audit::Clean { to, blocks, settlements, votes, seconds } => {
                    p.ok id="audit-result" { "Clean: " (blocks) " blocks up to height " (to) ", " (settlements) " settlements, " (votes) " votes checked in " (format!("{seconds:.2}")) " s." }
                    (button)
                },
                Audit::Found { height, reason } => {
                    p.bad id="audit-result" role="alert" { "Mismatch" @if let Some(h) = height { " at height " (h) } ": " (reason) }
                    (button)
                },
                Audit::Failed(why) => {
                    p.bad id="audit-result" role="alert" { "The audit could not run: " (why) }
                    (button)
                },
            }
        }
    }
}

pub(super) async fn page(State(node): State<Arc<Node>>) -> Response {
    let body = html! {
        h1 { "Ledger" }
        (live_parts(Live::Ledger, parts(&node)))
    };
    layout(&node, "Ledger", "Ledger", body).into_response()
}

/// The blocks from `head` down, at most [`RECENT_BLOCKS`].
fn recent(node: &Node, head: u64) -> Vec<Block> {
    let Some(ledger) = &node.ledger else {
        return Vec::new();
    };
    let chain = ledger
        .consensus
        .chain
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    (head.saturating_sub(RECENT_BLOCKS - 1).max(1)..=head)
        .rev()
        .filter_map(|h| chain.block(h).ok().flatten())
        .collect()
}

fn sorted(xs: &[u64]) -> Vec<u64> {
    let mut xs = xs.to_vec();
    xs.sort_unstable();
    xs
}

pub(super) fn parts(node: &Arc<Node>) -> Vec<(&'static str, Markup)> {
    let Some(ledger) = &node.ledger else {
        return vec![(
            "ledger-facts",
            html! { p { "This node keeps no ledger: start it with " code { "--genesis" } "." } },
        )];
    };
    let status = ledger.status();
    let facts = html! {
        dl {
            dt { "Height" } dd id="height" { (status.height) }
            dt { "Head" } dd.mono { (status.head) }
            dt { "Committee" } dd { (status.committee.len()) " members" @if status.member { ", this node one of them" } }
            dt { "Mempool" } dd { (status.mempool) " settlements waiting, " (ledger.journal.len()) " of this node's unsettled" }
            dt { "Pipelined" } dd { (status.pipelined) " proposals made while the block before was being decided" }
            @if let Some(why) = &status.poisoned {
                dt { "Stopped" } dd.bad role="alert" { (why) }
            }
        }
    };
    let finality = html! {
        h2 { "Time to finality" }
        @if status.finality_us.is_empty() {
            p.muted { "No block decided here yet." }
        } @else {
            @let n = status.finality_us.len();
            @let sorted = sorted(&status.finality_us);
            p { "Last " (n) " blocks: p50 " (duration_us(sorted[n / 2])) ", max " (duration_us(sorted[n - 1])) "." }
            (chart::lines(
                "time to finality of the recent blocks",
                "ms",
                "blocks ago",
                (-(n as f64 - 1.0).max(1.0), 0.0),
                &[Line {
                    label: "finality",
                    colour: BLUE,
                    points: status.finality_us.iter().enumerate().map(|(i, us)| ((i as f64) - (n as f64 - 1.0), *us as f64 / 1e3)).collect(),
                }],
            ))
        }
    };
    let blocks = recent(node, status.height);
    let table = html! {
        h2 { "Recent blocks" }
        @if blocks.is_empty() {
            p.muted { "No block yet: blocks are proposed once calls are settled." }
        } @else {
            div.scroll {
                table id="blocks" {
                    thead { tr { th { "Height" } th { "Hash" } th { "Proposer" } th { "Settlements" } th { "Votes" } } }
                    tbody {
                        @for b in &blocks {
                            tr {
                                td { a href=(format!("/console/ledger/block/{}", b.header.height)) { (b.header.height) } }
                                td.mono { (short(&b.hash().to_hex())) }
                                td.mono { (short(&peer(&b.header.proposer.key))) }
                                td { (b.settlements.len()) }
                                td { (b.evidence.polls.iter().map(|p| p.votes.len()).sum::<usize>()) }
                            }
                        }
                    }
                }
            }
        }
    };
    let mut balances: Vec<(PublicKey, i64)> = ledger
        .consensus
        .balances
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(k, b)| (*k, *b))
        .collect();
    balances.sort_by_key(|(k, b)| (std::cmp::Reverse(*b), *k));
    let accounts = html! {
        h2 { "Balances" }
        div.scroll {
            table id="balances" {
                thead { tr { th { "Account" } th { "Balance" } } }
                tbody {
                    @for (k, b) in balances.iter().take(BALANCES) {
                        tr {
                            td.mono title=(k.to_hex()) { (short(&peer(k))) @if *k == ledger.me { " (this node)" } }
                            td { (b) }
                        }
                    }
                }
            }
        }
    };
    vec![
        ("ledger-facts", facts),
        ("ledger-finality", finality),
        ("ledger-blocks", table),
        ("ledger-balances", accounts),
        ("ledger-audit", node.console.audit.markup(node)),
    ]
}

/// `GET /console/ledger/block/{height}`: a block and its settlements.
pub(super) async fn block(State(node): State<Arc<Node>>, Path(height): Path<u64>) -> Response {
    let found = node.ledger.as_ref().and_then(|l| {
        l.consensus
            .chain
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .block(height)
            .ok()
            .flatten()
    });
    let Some(b) = found else {
        let body = html! { h1 { "Block " (height) } p.bad { "This node holds no block at height " (height) "." } };
        return (
            StatusCode::NOT_FOUND,
            layout(&node, "Block", "Ledger", body),
        )
            .into_response();
    };
    let body = html! {
        h1 { "Block " (height) }
        dl {
            dt { "Hash" } dd.mono { (b.hash().to_hex()) }
            dt { "Previous" } dd.mono { (b.header.prev.to_hex()) }
            dt { "Proposer" } dd.mono { (peer(&b.header.proposer.key)) }
            dt { "Settlements root" } dd.mono { (b.header.settlements_root.to_hex()) }
            dt { "Finality evidence" } dd { (b.evidence.polls.len()) " polls, " (b.evidence.polls.iter().map(|p| p.votes.len()).sum::<usize>()) " votes" }
            @if !b.equivocations.is_empty() {
                dt { "Excluded" } dd.bad { (b.equivocations.len()) " voters for equivocating" }
            }
        }
        h2 { "Settlements" }
        @if b.settlements.is_empty() { p.muted { "None." } }
        @for s in &b.settlements {
            @let verdict = s.verdict();
            section.settlement {
                h3.mono { "Invocation " (format!("{:032x}", s.body.invocation)) }
                p { "Paid by " span.mono { (short(&peer(&s.body.invoker))) } }
                div.scroll {
                    table {
                        thead { tr { th { "Executor" } th { "Fuel" } th { "Output" } th { "Status" } } }
                        tbody {
                            @for (i, r) in s.body.receipts.iter().enumerate() {
                                tr {
                                    td.mono { (short(&peer(&r.body.executor))) }
                                    td { (r.body.fuel) }
                                    td.mono { (short(&r.body.output.to_hex())) }
                                    @if verdict.agreed.contains(&i) { td.ok { "paid" } } @else { td.bad { "disputed" } }
                                }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/console/ledger" { "Back to the ledger" } }
    };
    layout(&node, &format!("Block {height}"), "Ledger", body).into_response()
}

#[derive(Deserialize)]
pub(super) struct AuditForm {
    token: Option<String>,
}

/// `POST /console/audit`: starts an audit of this node's chain (unless one
/// runs) and goes back to the Ledger page, where its progress shows.
pub(super) async fn audit(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Form(form): Form<AuditForm>,
) -> Response {
    if let Some(no) = super::refused(&node, &headers, form.token.as_deref()) {
        return no;
    }
    let Some(ledger) = node.ledger.clone() else {
        return (StatusCode::NOT_FOUND, "this node keeps no ledger").into_response();
    };
    let job = &node.console.audit;
    {
        let mut state = job.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*state, Audit::Running { .. }) {
            let (store, to) = {
                let chain = ledger
                    .consensus
                    .chain
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                (chain.store().clone(), chain.height())
            };
            *state = Audit::Running {
                to,
                started: Instant::now(),
            };
            job.done.store(0, Ordering::Relaxed);
            let done = job.done.clone();
            let task_node = node.clone();
            node.tasks.spawn(async move {
                let started = Instant::now();
                let ran = tokio::task::spawn_blocking(move || {
                    let opts = AuditOptions {
                        to: Some(to),
                        ..AuditOptions::default()
                    };
                    orb_ledger::audit::audit(&store, opts, &mut |h| {
                        done.store(h, Ordering::Relaxed)
                    })
                })
                .await;
                let outcome = match ran {
                    Ok(Ok(report)) => match report.finding {
                        None => Audit::Clean {
                            to: report.to,
                            blocks: report.blocks,
                            settlements: report.settlements,
                            votes: report.votes,
                            seconds: started.elapsed().as_secs_f64(),
                        },
                        Some(f) => Audit::Found {
                            height: f.height,
                            reason: f.reason,
                        },
                    },
                    Ok(Err(e)) => Audit::Failed(e.to_string()),
                    Err(e) => Audit::Failed(format!("the audit task failed: {e}")),
                };
                *task_node
                    .console
                    .audit
                    .state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = outcome;
            });
        }
    }
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/console/ledger#ledger-audit")],
    )
        .into_response()
}
