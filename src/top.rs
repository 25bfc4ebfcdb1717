//! `orb top`: a node's live figures in the terminal (ratatui), for an
//! operator on a server without a browser: who the node is, its peers
//! with their kind and round trip, the functions it knows with their
//! providers, and the calls that entered it in the last minute (calls/s,
//! p50, p99, errors, a sparkline of calls per second). What the console's
//! Node and Functions pages show, from the same API.

use std::time::{Duration, Instant};

use clap::Args;
use ratatui::Frame;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize as _};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Sparkline, Table};
use serde_json::Value;

use crate::client::Client;
use crate::exit::{CliError, INTERNAL};
use orb::show::{duration_us, short_peer as short};

pub(crate) const AFTER_HELP: &str = "\
Keys: q or Esc quits. The figures refresh every --interval-ms.
--once prints one frame as plain text (no terminal needed: for scripts,
logs and tests).

Exit codes: 0 quit; 4 the node cannot be reached.";

/// `orb top` flags.
#[derive(Args, Debug)]
pub(crate) struct TopArgs {
    /// How often the figures refresh, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    interval_ms: u64,
    /// Print one frame as text and exit.
    #[arg(long)]
    once: bool,
    /// The frame's size with --once: COLUMNSxROWS.
    #[arg(long, default_value = "120x40", value_parser = size)]
    size: (u16, u16),
}

fn size(text: &str) -> Result<(u16, u16), String> {
    let (w, h) = text
        .split_once('x')
        .ok_or_else(|| format!("a size is COLUMNSxROWS, like 120x40, not {text:?}"))?;
    let parse = |n: &str| {
        n.parse::<u16>()
            .ok()
            .filter(|n| (20..=1000).contains(n))
            .ok_or_else(|| format!("{n:?} is not a size from 20 to 1000"))
    };
    Ok((parse(w)?, parse(h)?))
}

/// What one refresh read.
struct Figures {
    status: Value,
    peers: Vec<Value>,
    functions: Vec<Value>,
    calls: Vec<Value>,
    ledger: Option<Value>,
}

fn read(client: &Client) -> Result<Figures, CliError> {
    let list = |v: Value| v.as_array().cloned().unwrap_or_default();
    Ok(Figures {
        status: client.get("/api/status")?,
        peers: list(client.get("/api/peers")?)
            .into_iter()
            .filter(|p| p["connected"] == true)
            .collect(),
        functions: list(client.get("/api/functions")?),
        calls: list(client.get("/api/calls")?),
        ledger: client.get("/api/ledger").ok(),
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn draw(frame: &mut Frame<'_>, f: &Figures) {
    let [head, peers, functions, calls] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Percentage(30),
        Constraint::Percentage(35),
        Constraint::Min(6),
    ])
    .areas(frame.area());
    let s = &f.status;
    let chain = f.ledger.as_ref().map_or_else(
        || "no ledger".to_owned(),
        |l| {
            format!(
                "height {}, committee {}, mempool {}",
                text(&l["height"]),
                l["committee"].as_array().map_or(0, Vec::len),
                text(&l["mempool"])
            )
        },
    );
    let lines = vec![
        Line::from(vec!["peer ".dim(), text(&s["peer_id"]).bold()]),
        Line::from(vec![
            "NAT ".dim(),
            text(&s["nat"]).into(),
            "   supernode ".dim(),
            (if s["supernode"] == true { "yes" } else { "no" }).into(),
            "   connected ".dim(),
            text(&s["connected"]).into(),
            "   routing table ".dim(),
            text(&s["routing_table"]).into(),
        ]),
        Line::from(vec!["chain ".dim(), chain.into()]),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" orb top ")),
        head,
    );
    peers_table(frame, peers, &f.peers);
    functions_table(frame, functions, &f.functions, &f.calls);
    calls_spark(frame, calls, &f.calls);
}

fn header(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.iter().copied()).style(Style::new().add_modifier(Modifier::BOLD))
}

fn peers_table(frame: &mut Frame<'_>, area: Rect, peers: &[Value]) {
    let rows = peers.iter().map(|p| {
        let kind = p["kind"].as_str().unwrap_or("?");
        let rtt = p["rtt_us"]
            .as_u64()
            .map_or_else(|| "—".to_owned(), duration_us);
        Row::new(vec![
            short(&text(&p["peer_id"])),
            kind.to_owned(),
            rtt,
            text(&p["agent"]),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(18),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Min(10),
        ],
    )
    .header(header(&["peer", "kind", "rtt", "software"]))
    .block(Block::bordered().title(format!(" peers ({}) ", peers.len())));
    frame.render_widget(table, area);
}

/// A function's figures from `/api/calls`, added over its names and id.
fn figures_of(calls: &[Value], names: &[String], id: &str) -> (u64, u64, u64, u64) {
    calls
        .iter()
        .filter(|c| {
            let f = text(&c["function"]);
            f == id || names.contains(&f)
        })
        .fold((0, 0, 0, 0), |acc, c| {
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            (
                acc.0 + n("ok"),
                acc.1 + n("failed"),
                acc.2.max(n("p50_us")),
                acc.3.max(n("p99_us")),
            )
        })
}

fn functions_table(frame: &mut Frame<'_>, area: Rect, functions: &[Value], calls: &[Value]) {
    let rows = functions.iter().map(|f| {
        let id = text(&f["function"]);
        let names: Vec<String> = f["names"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        let providers: Vec<String> = f["providers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{} ({}/{})",
                    short(&text(&p["peer"])),
                    text(&p["load"]),
                    text(&p["capacity"])
                )
            })
            .collect();
        let (ok, failed, p50, p99) = figures_of(calls, &names, &id);
        let latency = |us: u64| {
            if ok == 0 {
                "—".to_owned()
            } else {
                duration_us(us)
            }
        };
        Row::new(vec![
            if names.is_empty() {
                "—".to_owned()
            } else {
                names.join(", ")
            },
            id.chars().take(12).collect(),
            providers.join(" "),
            format!("{:.2}", ok as f64 / 60.0),
            latency(p50),
            latency(p99),
            failed.to_string(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(14),
            Constraint::Length(13),
            Constraint::Min(24),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(7),
        ],
    )
    .header(header(&[
        "name",
        "function",
        "providers (load/capacity)",
        "calls/s",
        "p50",
        "p99",
        "errors",
    ]))
    .block(Block::bordered().title(format!(
        " functions ({}): calls entering here, last minute ",
        functions.len()
    )));
    frame.render_widget(table, area);
}

fn calls_spark(frame: &mut Frame<'_>, area: Rect, calls: &[Value]) {
    // The busiest function's answered calls per second.
    let busiest = calls.iter().max_by_key(|c| c["ok"].as_u64().unwrap_or(0));
    let (title, data): (String, Vec<u64>) = match busiest {
        Some(c) => (
            format!(" {}: calls/s, last 60 s ", text(&c["function"])),
            c["per_second"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| n.as_u64().unwrap_or(0))
                .collect(),
        ),
        None => (
            " no call entered this node in the last minute ".to_owned(),
            Vec::new(),
        ),
    };
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(title))
            .data(&data),
        area,
    );
}

/// The frame's cells as lines of text.
fn as_text(backend: &TestBackend) -> String {
    let buffer = backend.buffer();
    let width = buffer.area.width as usize;
    let mut out = String::new();
    for row in buffer.content().chunks(width) {
        let line: String = row.iter().map(|c| c.symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(crate) fn top(args: TopArgs, node: &str) -> Result<(), CliError> {
    let client = Client::new(node, Duration::from_secs(5));
    let internal = |e: std::io::Error| CliError {
        code: INTERNAL,
        error: anyhow::anyhow!("terminal: {e}"),
    };
    if args.once {
        let figures = read(&client)?;
        let (w, h) = args.size;
        // A test backend cannot fail (its error type is empty).
        let Ok(mut terminal) = Terminal::new(TestBackend::new(w, h));
        let Ok(_) = terminal.draw(|frame| draw(frame, &figures));
        let text = as_text(terminal.backend());
        outln!("{}", text.trim_end());
        return Ok(());
    }
    // Read once before taking the terminal over, so a wrong --node is a
    // plain error message.
    let mut figures = read(&client)?;
    let mut terminal = ratatui::init();
    let every = Duration::from_millis(args.interval_ms);
    let result = (|| -> Result<(), CliError> {
        let mut next = Instant::now();
        loop {
            if Instant::now() >= next {
                figures = read(&client)?;
                terminal
                    .draw(|frame| draw(frame, &figures))
                    .map_err(internal)?;
                next = Instant::now() + every;
            }
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait).map_err(internal)?
                && let Event::Key(key) = event::read().map_err(internal)?
                && key.kind == KeyEventKind::Press
            {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                    return Ok(());
                }
            }
        }
    })();
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_shows_the_node_its_peers_and_functions() {
        let figures = Figures {
            status: serde_json::json!({"peer_id": "12D3KooWtest", "nat": "public", "supernode": true, "connected": 1, "routing_table": 1}),
            peers: vec![
                serde_json::json!({"peer_id": "12D3KooWpeerabcdefghij", "connected": true, "relayed": false, "supernode": false, "kind": "direct", "rtt_us": 1500, "agent": "orb/0.1.0"}),
            ],
            functions: vec![
                serde_json::json!({"function": "ab".repeat(32), "names": ["echo"], "providers": [{"peer": "12D3KooWpeerabcdefghij", "load": 0, "capacity": 2}]}),
            ],
            calls: vec![
                serde_json::json!({"function": "echo", "ok": 120, "failed": 3, "p50_us": 800, "p99_us": 2500, "per_second": [1, 2, 3]}),
            ],
            ledger: None,
        };
        let mut terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
        terminal.draw(|frame| draw(frame, &figures)).unwrap();
        let text = as_text(terminal.backend());
        for expected in [
            "12D3KooWtest",
            "public",
            "1.5 ms",
            "echo",
            "2.00",
            "800 µs",
            "2.5 ms",
            "no ledger",
        ] {
            assert!(text.contains(expected), "{expected} missing in:\n{text}");
        }
    }

    #[test]
    fn sizes_are_columns_by_rows() {
        assert_eq!(size("120x40"), Ok((120, 40)));
        assert!(size("120").is_err());
        assert!(size("5x5").is_err());
    }
}
