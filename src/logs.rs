//! `orb logs NAME [--follow]`: the calls of a function (or an agent's
//! steps) on every host that ran them, through the node's
//! `GET /api/logs/{NAME}`.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::client::Client;
use crate::exit::CliError;
use orb::show::{duration_us, short_peer as short};

pub(crate) const AFTER_HELP: &str = "\
Each line is one call: when it ended (UTC), the host that ran it, the
outcome (ok, or the error's kind: trap, out_of_fuel, busy, ...), the fuel
it burnt, its time on the executor, the invocation id, and the end of what
the guest wrote to stderr. NAME is a function's name or id, or an agent
`module/id` for that agent's steps. Each host keeps its last 4096 calls.

Exit codes: 0 shown; 2 a bad name; 4 the node cannot be reached, or no
provider of NAME is known.";

/// `orb logs` flags.
#[derive(Args, Debug)]
pub(crate) struct LogsArgs {
    /// A function's name or id, or an agent `module/id`.
    target: String,
    /// Keep printing calls as they end, until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// Show only the last N calls first (0: all kept).
    #[arg(long, short = 'n', default_value_t = 50)]
    lines: usize,
    /// Print one JSON object per call.
    #[arg(long)]
    json: bool,
}

/// How often `--follow` asks again.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds since the epoch as `2026-12-07T01:31:37.123Z`.
fn when(ms: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

fn print(call: &Value, json: bool) {
    if json {
        outln!("{call}");
        return;
    }
    let s = |k: &str| call[k].as_str().unwrap_or_default().to_owned();
    let n = |k: &str| call[k].as_u64().unwrap_or(0);
    let agent = call["agent"]
        .as_str()
        .map(|a| format!(" {a}"))
        .unwrap_or_default();
    let log = s("log");
    let log = if log.is_empty() {
        String::new()
    } else {
        format!(" | {}", log.replace('\n', " ⏎ "))
    };
    outln!(
        "{} {} {:<11} fuel {:>10} {:>9} {}{agent}{log}",
        when(n("at_ms")),
        short(&s("host")),
        s("outcome"),
        n("fuel"),
        duration_us(n("duration_us")),
        &s("invocation")[..12.min(s("invocation").len())],
    );
}

pub(crate) fn logs(args: LogsArgs, node: &str) -> Result<(), CliError> {
    let client = Client::new(node, Duration::from_secs(30));
    let path = |cursor: &str| format!("/api/logs/{}?cursor={cursor}", args.target);
    let first = client.get(&path(""))?;
    let calls = first["calls"].as_array().cloned().unwrap_or_default();
    let skip = if args.lines == 0 {
        0
    } else {
        calls.len().saturating_sub(args.lines)
    };
    for call in &calls[skip..] {
        print(call, args.json);
    }
    for host in first["unreachable"].as_array().into_iter().flatten() {
        eprintln!("not answered: {}", host.as_str().unwrap_or_default());
    }
    if !args.follow {
        return Ok(());
    }
    let mut cursor = first["cursor"].as_str().unwrap_or_default().to_owned();
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        let next = client.get(&path(&cursor))?;
        for call in next["calls"].as_array().into_iter().flatten() {
            print(call, args.json);
        }
        if let Some(c) = next["cursor"].as_str() {
            c.clone_into(&mut cursor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_to_the_millisecond() {
        assert_eq!(when(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(when(1_796_606_697_123), "2026-12-07T01:24:57.123Z");
    }
}
