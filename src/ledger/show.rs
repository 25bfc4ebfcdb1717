//! `orb ledger show` and `orb ledger export`: blocks as they are stored,
//! read straight from the store (no state is rebuilt, nothing is checked:
//! that is `orb ledger audit`).

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use clap::Args;
use orb_ledger::{Block, Digest, Effects, Genesis, PublicKey, Settlement, SledStore};
use serde::Serialize;

use super::store::{chain_error, guarded, ledger_dir, open_store};
use super::{peer_id, print_json};
use crate::exit::CliError;

pub(crate) const SHOW_HELP: &str = "\
Shows what is stored; it checks nothing (see `orb ledger audit`).
Exit codes: 0 shown, or the chain has no blocks yet (it says so); 2 no ledger
in the data dir, no block at HEIGHT, the store is locked or unreadable.";

pub(crate) const EXPORT_HELP: &str = "\
One JSON object per line: the block's fields (header, signature, receipts,
evidence) with its height, hash and the balance effects stored with it.
Exit codes: 0 written; 2 no ledger, a bad range, the store is locked or unreadable.";

/// `orb ledger show` flags.
#[derive(Args, Debug)]
pub(crate) struct ShowArgs {
    /// A height, or `latest`.
    #[arg(default_value = "latest")]
    height: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `orb ledger export` flags.
#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// First height [default: 1].
    #[arg(long, value_name = "H")]
    from: Option<u64>,
    /// Last height [default: the head].
    #[arg(long, value_name = "H")]
    to: Option<u64>,
}

/// The store's genesis and head, or exit 2.
fn genesis_and_head(store: &SledStore, data_dir: &Path) -> Result<(Genesis, u64), CliError> {
    let dir = ledger_dir(data_dir);
    let genesis = orb_ledger::stored_genesis(store)
        .map_err(|e| chain_error(&dir, e))?
        .ok_or_else(|| chain_error(&dir, orb_ledger::ChainError::NoGenesis))?;
    let head = orb_ledger::stored_head(store).map_err(|e| chain_error(&dir, e))?;
    Ok((genesis, head))
}

/// Block `h` and its effects, or exit 2 when the store lacks them.
fn block_at(store: &SledStore, data_dir: &Path, h: u64) -> Result<(Block, Effects), CliError> {
    let dir = ledger_dir(data_dir);
    let missing = |what: &str| {
        CliError::usage(anyhow::anyhow!(
            "the {what} of block {h} are missing from {}: run `orb ledger audit`",
            dir.display()
        ))
    };
    let block = orb_ledger::stored_block(store, h)
        .map_err(|e| chain_error(&dir, e))?
        .ok_or_else(|| missing("contents"))?;
    let effects = orb_ledger::stored_effects(store, h)
        .map_err(|e| chain_error(&dir, e))?
        .ok_or_else(|| missing("balance effects"))?;
    Ok((block, effects))
}

#[derive(Serialize)]
struct Account {
    key: PublicKey,
    peer: String,
}

impl Account {
    fn of(key: PublicKey) -> Self {
        Self {
            peer: peer_id(&key),
            key,
        }
    }
}

#[derive(Serialize)]
struct ReceiptView {
    id: Digest,
    executor: Account,
    output: Digest,
    fuel: u64,
    /// `paid` (agrees with the majority) or `disputed` (earned nothing).
    status: &'static str,
}

#[derive(Serialize)]
struct SettlementView {
    index: usize,
    id: Digest,
    invocation: String,
    invoker: Account,
    function: Digest,
    input: Digest,
    /// The majority output, if a strict majority of receipts agree.
    output: Option<Digest>,
    receipts: Vec<ReceiptView>,
}

/// A voter the block excludes for good: two signed votes of it for one
/// height, round and asker, naming different blocks.
#[derive(Serialize)]
struct EquivocationView {
    voter: Account,
    height: u64,
    round: u64,
    asker: Account,
    blocks: [Digest; 2],
}

#[derive(Serialize)]
struct EvidenceView {
    claims: usize,
    polls: usize,
    votes: usize,
}

#[derive(Serialize)]
struct BlockView {
    chain: Digest,
    head: u64,
    height: u64,
    hash: Digest,
    prev: Digest,
    proposer: Account,
    settlements_root: Digest,
    settlements: Vec<SettlementView>,
    equivocations: Vec<EquivocationView>,
    evidence: EvidenceView,
    effects: Vec<Change>,
}

/// A balance change of one block.
#[derive(Serialize)]
struct Change {
    key: PublicKey,
    peer: String,
    change: i128,
}

fn view(block: &Block, effects: Effects, head: u64) -> BlockView {
    let h = &block.header;
    BlockView {
        chain: h.chain,
        head,
        height: h.height,
        hash: block.hash(),
        prev: h.prev,
        proposer: Account::of(h.proposer.key),
        settlements_root: h.settlements_root,
        settlements: block
            .settlements
            .iter()
            .enumerate()
            .map(|(index, s)| settlement_view(index, s))
            .collect(),
        equivocations: block
            .equivocations
            .iter()
            .map(|(a, b)| EquivocationView {
                voter: Account::of(a.body.voter),
                height: a.body.height,
                round: a.body.round,
                asker: Account::of(a.body.asker),
                blocks: [a.body.block, b.body.block],
            })
            .collect(),
        evidence: EvidenceView {
            claims: block.evidence.claims.len(),
            polls: block.evidence.polls.len(),
            votes: block.evidence.polls.iter().map(|p| p.votes.len()).sum(),
        },
        effects: effects
            .0
            .into_iter()
            .map(|(key, change)| Change {
                peer: peer_id(&key),
                key,
                change,
            })
            .collect(),
    }
}

fn settlement_view(index: usize, s: &Settlement) -> SettlementView {
    let verdict = s.verdict();
    let b = &s.body;
    let first = b.receipts.first().map(|r| &r.body);
    SettlementView {
        index,
        id: s.id(),
        invocation: format!("{:032x}", b.invocation),
        invoker: Account::of(b.invoker),
        function: first.map_or(Digest([0; 32]), |r| r.function),
        input: first.map_or(Digest([0; 32]), |r| r.input),
        output: verdict.result.map(|(output, _)| output),
        receipts: b
            .receipts
            .iter()
            .enumerate()
            .map(|(i, r)| ReceiptView {
                id: r.id(),
                executor: Account::of(r.body.executor),
                output: r.body.output,
                fuel: r.body.fuel,
                status: if verdict.agreed.contains(&i) {
                    "paid"
                } else {
                    "disputed"
                },
            })
            .collect(),
    }
}

pub(crate) fn show(args: ShowArgs, data_dir: &Path) -> Result<(), CliError> {
    let wanted = match args.height.as_str() {
        "latest" => None,
        h => Some(h.parse::<u64>().map_err(|_| {
            CliError::usage(anyhow::anyhow!(
                "`{h}` is not a height (a number, or `latest`)"
            ))
        })?),
    };
    guarded(data_dir, || {
        let store = open_store(data_dir)?;
        let (genesis, head) = genesis_and_head(&store, data_dir)?;
        if head == 0 {
            if args.json {
                print_json(
                    &serde_json::json!({ "chain": genesis.id(), "head": 0, "block": null }),
                )?;
            } else {
                outln!("no blocks yet: chain {} ({})", genesis.id(), genesis.name);
            }
            return Ok(());
        }
        let h = wanted.unwrap_or(head);
        if h == 0 || h > head {
            return Err(CliError::usage(anyhow::anyhow!(
                "no block at height {h}: the chain has blocks 1..={head}"
            )));
        }
        let (block, effects) = block_at(&store, data_dir, h)?;
        let v = view(&block, effects, head);
        if args.json {
            return print_json(&v);
        }
        print_block(&v);
        Ok(())
    })
}

fn print_block(v: &BlockView) {
    outln!("block {} of {} on chain {}", v.height, v.head, v.chain);
    outln!("hash      {}", v.hash);
    outln!("prev      {}", v.prev);
    outln!("proposer  {} ({})", v.proposer.peer, v.proposer.key);
    outln!(
        "settlements {} (Merkle root {})",
        v.settlements.len(),
        v.settlements_root
    );
    for s in &v.settlements {
        let verdict = match &s.output {
            Some(_) => "majority",
            None => "NO MAJORITY, nobody paid",
        };
        outln!(
            "  {:<4} invocation {}  function {}  invoker {}  {verdict}",
            s.index,
            s.invocation,
            s.function,
            s.invoker.peer
        );
        for r in &s.receipts {
            outln!(
                "       receipt {}  executor {}  fuel {}  {}",
                r.id,
                r.executor.peer,
                r.fuel,
                r.status
            );
        }
    }
    if !v.equivocations.is_empty() {
        outln!(
            "equivocations {} (each voter excluded for good)",
            v.equivocations.len()
        );
        for e in &v.equivocations {
            outln!(
                "  voter {}  height {} round {} asked by {}: voted {} and {}",
                e.voter.peer,
                e.height,
                e.round,
                e.asker.peer,
                e.blocks[0],
                e.blocks[1]
            );
        }
    }
    outln!(
        "evidence  {} polls, {} votes, {} committee claims",
        v.evidence.polls,
        v.evidence.votes,
        v.evidence.claims
    );
    outln!("effects   {} balance changes", v.effects.len());
    for c in &v.effects {
        outln!("  {:+} {}", c.change, c.peer);
    }
}

/// One line of `orb ledger export`.
#[derive(Serialize)]
struct ExportLine<'a> {
    height: u64,
    hash: Digest,
    #[serde(flatten)]
    block: &'a Block,
    effects: &'a Effects,
}

pub(crate) fn export(args: ExportArgs, data_dir: &Path) -> Result<(), CliError> {
    guarded(data_dir, || {
        let store = open_store(data_dir)?;
        let (_, head) = genesis_and_head(&store, data_dir)?;
        let from = args.from.unwrap_or(1).max(1);
        let to = args.to.unwrap_or(head);
        if to > head {
            return Err(CliError::usage(anyhow::anyhow!(
                "--to {to} is above the head ({head})"
            )));
        }
        // Without --from, an empty chain exports nothing.
        if args.from.is_some() && from > to {
            return Err(CliError::usage(anyhow::anyhow!(
                "--from {from} is above the last height, {to}"
            )));
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for h in from..=to {
            let (block, effects) = block_at(&store, data_dir, h)?;
            let line = ExportLine {
                height: h,
                hash: block.hash(),
                block: &block,
                effects: &effects,
            };
            let text = serde_json::to_string(&line).context("JSON")?;
            if let Err(e) = writeln!(out, "{text}") {
                crate::exit::stdout_failed(e);
            }
        }
        if let Err(e) = out.flush() {
            crate::exit::stdout_failed(e);
        }
        Ok(())
    })
}
