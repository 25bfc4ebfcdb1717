//! `orb ledger audit`: `orb_ledger::audit()` over a node's stored chain,
//! with a progress bar when a person is watching (stderr is a terminal).

use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Instant;

use clap::Args;
use orb_ledger::audit::{AuditError, MAX_LEVEL};
use orb_ledger::{AuditOptions, AuditReport};
use serde::Serialize;

use super::print_json;
use super::store::{chain_error, guarded, ledger_dir, open_store, store_error};
use crate::exit::{CHECK_FAILED, CliError};

pub(crate) const AFTER_HELP: &str = "\
Levels (each includes the ones below):
  0  every block decodes
  1  heights, hash links, receipt counts and Merkle roots
  2  proposer, receipt and vote signatures, and the finality evidence
  3  rewards and balances recomputed from genesis, compared with the
     balance effects stored with each block (default)
  4  storage: the receipt index against the blocks, no orphans above the head
     (when auditing up to the head)
Level 3 and 4 replay every block from genesis; --from only narrows what is
reported. It stops at the first failure and names its height and reason.

The audit checks the chain the store holds. sled cuts a log damaged mid-way
back to its last intact write when it opens it (as after a crash), and such
a store audits clean at a lower height: `orb ledger consistency --since` an
earlier checkpoint is what shows lost blocks.

Exit codes: 0 clean; 1 a mismatch was found; 2 the store cannot be read at
all (no ledger, no genesis, locked by a running node, corrupt).";

/// `orb ledger audit` flags.
#[derive(Args, Debug)]
pub(crate) struct AuditArgs {
    /// First height to check [default: 1].
    #[arg(long, value_name = "H")]
    from: Option<u64>,
    /// Last height to check [default: the head].
    #[arg(long, value_name = "H")]
    to: Option<u64>,
    /// How much to check (0..=4, see below).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=i64::from(MAX_LEVEL)))]
    level: u8,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The report with its timing, as `--json` prints it.
#[derive(Serialize)]
struct Output<'a> {
    clean: bool,
    #[serde(flatten)]
    report: &'a AuditReport,
    seconds: f64,
    receipts_per_second: f64,
}

pub(crate) fn run(args: AuditArgs, data_dir: &Path) -> Result<(), CliError> {
    let dir = ledger_dir(data_dir);
    let opts = AuditOptions {
        from: args.from.unwrap_or(1),
        to: args.to,
        level: args.level,
    };
    if let Some(to) = args.to
        && to < opts.from
    {
        return Err(CliError::usage(anyhow::anyhow!(
            "--to {to} is below --from {}",
            opts.from
        )));
    }
    let (report, seconds) = guarded(data_dir, || {
        let store = open_store(data_dir)?;
        orb_ledger::stored_genesis(&store)
            .map_err(|e| chain_error(&dir, e))?
            .ok_or_else(|| chain_error(&dir, orb_ledger::ChainError::NoGenesis))?;
        // An unreadable head is the audit's to report.
        let head = orb_ledger::stored_head(&store).unwrap_or(0);
        if opts.from > head.max(1) {
            return Err(CliError::usage(anyhow::anyhow!(
                "--from {} is above the head ({head})",
                opts.from
            )));
        }
        let bar = progress_bar(args.to.unwrap_or(head).min(head));
        let started = Instant::now();
        let report = orb_ledger::audit(&store, opts, &mut |h| {
            if let Some(bar) = &bar {
                bar.set_position(h);
            }
        });
        let seconds = started.elapsed().as_secs_f64();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let report = report.map_err(|e| match e {
            AuditError::Store(e) => store_error(&dir, e),
            unreadable => CliError::usage(
                anyhow::Error::new(unreadable).context(format!("the ledger in {}", dir.display())),
            ),
        })?;
        Ok((report, seconds))
    })?;
    let rate = report.receipts as f64 / seconds.max(1e-9);
    if args.json {
        print_json(&Output {
            clean: report.finding.is_none(),
            report: &report,
            seconds,
            receipts_per_second: rate,
        })?;
    }
    match &report.finding {
        None if args.json => Ok(()),
        None if report.head == 0 => {
            outln!(
                "audit level {}: clean, no blocks yet (genesis of chain {} is valid)",
                report.level,
                report.chain
            );
            Ok(())
        }
        None => {
            outln!(
                "audit level {} of blocks {}..={}: clean — {} blocks, {} receipts, {} votes in {seconds:.2} s ({rate:.0} receipts/s)",
                report.level,
                report.from,
                report.to,
                report.blocks,
                report.receipts,
                report.votes,
            );
            Ok(())
        }
        Some(f) => {
            let place = f
                .height
                .map_or_else(|| "in the store".to_string(), |h| format!("at height {h}"));
            Err(CliError {
                code: CHECK_FAILED,
                error: anyhow::anyhow!("MISMATCH {place} (level {}): {}", f.level, f.reason),
            })
        }
    }
}

/// A bar over the heights the audit walks, drawn only on a terminal.
fn progress_bar(last: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(last);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "auditing {bar:40} {pos}/{len} blocks {per_sec} eta {eta}",
        )
        .ok()?,
    );
    Some(bar)
}
