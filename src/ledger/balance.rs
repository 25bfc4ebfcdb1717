//! `orb ledger balance` and `orb ledger balances`: credits at the head,
//! folded from the genesis balances and the effects stored with each
//! block (the audit is what re-derives those effects from the receipts).

use std::path::Path;

use clap::Args;
use orb_ledger::PublicKey;
use serde::Serialize;

use super::store::{guarded, open_chain};
use super::{parse_key, peer_id, print_json};
use crate::exit::CliError;

pub(crate) const AFTER_HELP: &str = "\
Balances are what the stored blocks say; `orb ledger audit` recomputes them
from the receipts. Exit codes: 0 printed (an unknown account has 0 credits);
2 a bad PEER, no ledger in the data dir, the store is locked or unreadable.";

/// `orb ledger balance` flags.
#[derive(Args, Debug)]
pub(crate) struct BalanceArgs {
    /// The account: a peer id (12D3KooW…) or a 64-hex public key.
    peer: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `orb ledger balances` flags.
#[derive(Args, Debug)]
pub(crate) struct BalancesArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Balance {
    key: PublicKey,
    peer: String,
    balance: u128,
}

impl Balance {
    fn of(key: PublicKey, balance: u128) -> Self {
        Self {
            peer: peer_id(&key),
            key,
            balance,
        }
    }
}

pub(crate) fn balance(args: BalanceArgs, data_dir: &Path) -> Result<(), CliError> {
    let key = parse_key(&args.peer).map_err(|e| CliError::usage(anyhow::anyhow!(e)))?;
    guarded(data_dir, || {
        let chain = open_chain(data_dir)?;
        let b = Balance::of(key, chain.balance(&key));
        if args.json {
            #[derive(Serialize)]
            struct Answer {
                chain: orb_ledger::Digest,
                height: u64,
                #[serde(flatten)]
                balance: Balance,
            }
            return print_json(&Answer {
                chain: chain.id(),
                height: chain.height(),
                balance: b,
            });
        }
        outln!("{} credits at height {}", b.balance, chain.height());
        Ok(())
    })
}

pub(crate) fn balances(args: BalancesArgs, data_dir: &Path) -> Result<(), CliError> {
    guarded(data_dir, || {
        let chain = open_chain(data_dir)?;
        let mut all: Vec<Balance> = chain
            .state()
            .balances()
            .into_iter()
            .map(|(k, b)| Balance::of(k, b))
            .collect();
        all.sort_by(|a, b| b.balance.cmp(&a.balance).then(a.key.cmp(&b.key)));
        if args.json {
            #[derive(Serialize)]
            struct Answer {
                chain: orb_ledger::Digest,
                height: u64,
                balances: Vec<Balance>,
            }
            return print_json(&Answer {
                chain: chain.id(),
                height: chain.height(),
                balances: all,
            });
        }
        outln!(
            "{} accounts at height {} of chain {}",
            all.len(),
            chain.height(),
            chain.id()
        );
        for b in &all {
            outln!("  {:>20}  {}", b.balance, b.peer);
        }
        Ok(())
    })
}
