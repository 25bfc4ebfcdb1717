//! `orb agent audit`: an agent's log (as `orb agent log --json` prints
//! it) checked against the chain in a node's data dir.

use std::path::{Path, PathBuf};

use clap::Args;
use orb_ledger::{LoggedStep, check_steps};
use serde_json::{Value, json};

use crate::client::read_input;
use crate::exit::{CHECK_FAILED, CliError};
use crate::ledger::{guarded, open_chain};

pub(super) const HELP: &str = "\\
Save the log first, from any node: orb agent log AGENT --json > log.json. Then
point --data-dir at a node's data dir (stopped, or a copy) and run
orb agent audit AGENT --log log.json. Each step's receipt states blake3 digests
of (agent, seq, message id, state before, message) and of (state after,
reply), so a log entry is stated only by a receipt of exactly that step.
Exit 0: every step is stated and the states chain; 1: something does not
(each listed); 2: the log or the ledger cannot be read.";

/// `orb agent audit` flags.
#[derive(Args, Debug)]
pub(crate) struct AuditArgs {
    /// The agent: MODULE/ID.
    agent: String,
    /// Its log, as `orb agent log AGENT --json` prints it (`-` for stdin).
    #[arg(long, value_name = "PATH")]
    log: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args: AuditArgs, data_dir: &Path) -> Result<(), CliError> {
    let bytes = read_input(None, Some(&args.log))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        CliError::usage(anyhow::anyhow!(
            "{} is not a log as orb agent log --json prints it: {e}",
            args.log.display()
        ))
    })?;
    let steps = value
        .as_array()
        .ok_or_else(|| CliError::usage(anyhow::anyhow!("the log is not a JSON array")))?
        .iter()
        .map(logged)
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| CliError::usage(anyhow::anyhow!("a log entry: {e}")))?;
    let report = guarded(data_dir, || {
        let chain = open_chain(data_dir)?;
        let blocks = (1..=chain.height())
            .map(|h| {
                chain
                    .block(h)
                    .map_err(|e| CliError::usage(anyhow::anyhow!("block {h}: {e}")))
                    .map(|b| (h, b))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let receipts = blocks
            .iter()
            .filter_map(|(h, b)| b.as_ref().map(|b| (*h, b)))
            .flat_map(|(h, b)| b.receipts().map(move |(_, r)| (h, r)));
        Ok(check_steps(&args.agent, &steps, receipts))
    })?;
    let range = match (steps.first(), steps.last()) {
        (Some(a), Some(b)) => format!("seq {}..={}", a.seq, b.seq),
        _ => "no steps".to_owned(),
    };
    if args.json {
        outln!(
            "{}",
            json!({
                "agent": args.agent,
                "steps": report.steps,
                "stated": report.stated,
                "receipts": report.receipts,
                "executors": report.executors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "heights": report.heights,
                "problems": report.problems,
                "clean": report.problems.is_empty(),
            })
        );
    } else if report.problems.is_empty() {
        let heights = report
            .heights
            .map_or_else(String::new, |(lo, hi)| format!(" in blocks {lo}..={hi}"));
        outln!(
            "{}: clean — {} steps ({range}), the states chain, each stated by a receipt: {} receipts by {} hosts{heights}",
            args.agent,
            report.steps,
            report.receipts,
            report.executors.len()
        );
    }
    if report.problems.is_empty() {
        return Ok(());
    }
    if !args.json {
        for p in &report.problems {
            eprintln!("{p}");
        }
    }
    Err(CliError {
        code: CHECK_FAILED,
        error: anyhow::anyhow!(
            "MISMATCH: {} of {} steps of {} are not as the chain states them",
            report.problems.len(),
            report.steps,
            args.agent
        ),
    })
}

/// A log entry as `orb agent log --json` prints it.
fn logged(e: &Value) -> Result<LoggedStep, String> {
    fn hex_of<const N: usize>(e: &Value, k: &str) -> Result<[u8; N], String> {
        let s = e[k].as_str().ok_or_else(|| format!("no {k}"))?;
        hex::decode(s)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{k} is not {N} bytes of hex"))
    }
    fn bytes(e: &Value, k: &str) -> Result<Vec<u8>, String> {
        let v = &e[k];
        match (v["text"].as_str(), v["hex"].as_str()) {
            (Some(t), _) => Ok(t.as_bytes().to_vec()),
            (None, Some(h)) => hex::decode(h).map_err(|e| format!("{k}: {e}")),
            _ => Err(format!("no {k}")),
        }
    }
    Ok(LoggedStep {
        seq: e["seq"].as_u64().ok_or("no seq")?,
        message_id: hex_of(e, "message_id")?,
        message: bytes(e, "message")?,
        before: hex_of(e, "before")?,
        after: hex_of(e, "after")?,
        reply: bytes(e, "reply")?,
    })
}
