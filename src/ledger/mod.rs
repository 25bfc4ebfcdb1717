//! `orb ledger`: the reward chain of a node, read offline from its data
//! dir (`DATA_DIR/ledger`, an `orb_ledger::SledStore`).
//!
//! `genesis` writes a new chain's parameters; `show`, `balance`,
//! `balances` and `export` read blocks and balances; `audit` re-checks
//! the whole chain from genesis; `checkpoint`, `prove` and `consistency`
//! sign evidence with the node's key, which `verify-proof` checks with no
//! node and no data dir. Nothing here writes to a ledger: the node is the
//! only writer, and while it runs it holds the store's lock (the commands
//! say so and exit 2).

mod audit;
mod balance;
mod genesis;
mod proof;
mod show;
mod store;

pub(crate) use store::{guarded, open_chain};

use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;
use orb_ledger::{Keypair, PublicKey};
use serde::Serialize;

use crate::exit::CliError;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a check found the chain or a proof wrong (audit, verify-proof, consistency)
  2  no ledger in the data dir, a store that is locked by a running node,
     unreadable or corrupt, a bad argument or an unreadable file";

/// `orb ledger` subcommands.
#[derive(Subcommand, Debug)]
#[command(after_help = EXIT_CODES)]
pub(crate) enum LedgerCommand {
    /// Write the genesis of a new chain (its hash is the chain id).
    #[command(after_help = genesis::AFTER_HELP)]
    Genesis(genesis::GenesisArgs),
    /// Show a block: header, proposer, receipts, equivocations recorded, finality evidence.
    #[command(after_help = show::SHOW_HELP)]
    Show(show::ShowArgs),
    /// Print one account's balance at the head.
    #[command(after_help = balance::AFTER_HELP)]
    Balance(balance::BalanceArgs),
    /// Print every non-zero balance at the head.
    #[command(after_help = balance::AFTER_HELP)]
    Balances(balance::BalancesArgs),
    /// Print blocks as JSON lines: each block with its hash and balance effects.
    #[command(after_help = show::EXPORT_HELP)]
    Export(show::ExportArgs),
    /// Re-check the chain from genesis: links, signatures, balances, storage.
    #[command(after_help = audit::AFTER_HELP)]
    Audit(audit::AuditArgs),
    /// Sign a checkpoint of the head with this node's key.
    #[command(after_help = proof::CHECKPOINT_HELP)]
    Checkpoint(proof::CheckpointArgs),
    /// Write a proof that a receipt is in the chain, checkable with no node.
    #[command(after_help = proof::PROVE_HELP)]
    Prove(proof::ProveArgs),
    /// Check an inclusion proof (no node and no data dir needed).
    #[command(after_help = proof::VERIFY_HELP)]
    VerifyProof(proof::VerifyArgs),
    /// Prove that the chain extends an earlier checkpoint (no block rewritten).
    #[command(after_help = proof::CONSISTENCY_HELP)]
    Consistency(proof::ConsistencyArgs),
    /// A running node's view, through its API (--node): height, committee,
    /// mempool, finality times, live balances.
    Status(crate::client::ListArgs),
}

pub(crate) fn run(cmd: LedgerCommand, data_dir: &Path, node: &str) -> Result<(), CliError> {
    match cmd {
        LedgerCommand::Status(args) => crate::client::ledger_status(args, node),
        LedgerCommand::Genesis(args) => genesis::run(args),
        LedgerCommand::Show(args) => show::show(args, data_dir),
        LedgerCommand::Balance(args) => balance::balance(args, data_dir),
        LedgerCommand::Balances(args) => balance::balances(args, data_dir),
        LedgerCommand::Export(args) => show::export(args, data_dir),
        LedgerCommand::Audit(args) => audit::run(args, data_dir),
        LedgerCommand::Checkpoint(args) => proof::checkpoint(args, data_dir),
        LedgerCommand::Prove(args) => proof::prove(args, data_dir),
        LedgerCommand::VerifyProof(args) => proof::verify(args),
        LedgerCommand::Consistency(args) => proof::consistency(args, data_dir),
    }
}

/// A ledger key as a peer id (what `orb status` and `orb peers` print).
fn peer_id(key: &PublicKey) -> String {
    orb_net::identity::peer_of(key.0)
        .map(|p| p.to_string())
        .unwrap_or_else(|| format!("(not an Ed25519 key: {key})"))
}

/// An account named by a 64-hex public key or an Ed25519 peer id.
fn parse_key(s: &str) -> Result<PublicKey, String> {
    if let Some(key) = PublicKey::from_hex(s) {
        return Ok(key);
    }
    if s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "`{s}` is not a public key: a key is 64 hex digits, this has {}",
            s.len()
        ));
    }
    let peer: orb_net::PeerId = s
        .parse()
        .map_err(|e| format!("`{s}` is neither a 64-hex public key nor a peer id ({e})"))?;
    orb_net::identity::ed25519_public(&peer)
        .map(PublicKey)
        .ok_or_else(|| format!("peer id {s} does not embed an Ed25519 key"))
}

/// The data dir's node key (`identity.key`, created if missing), as the
/// ledger signs with it.
fn node_key(data_dir: &Path) -> Result<Keypair, CliError> {
    let key = orb_net::identity::load_or_create(&data_dir.join("identity.key"))
        .map_err(CliError::usage)?;
    let secret = orb_net::identity::ed25519_secret(&key).ok_or_else(|| {
        CliError::usage(anyhow::anyhow!(
            "{} is not an Ed25519 key",
            data_dir.join("identity.key").display()
        ))
    })?;
    Ok(Keypair::from_secret(secret))
}

/// Writes `value` as pretty JSON to `out`, or to stdout without it.
fn write_json(out: Option<&Path>, value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).context("JSON")?;
    match out {
        None => outln!("{text}"),
        Some(path) => std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(CliError::usage)?,
    }
    Ok(())
}

/// Reads a JSON file of type `T` (`what` names it in errors); exit 2.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, CliError> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(CliError::usage)?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not {what}", path.display()))
        .map_err(CliError::usage)
}

/// A one-line JSON value on stdout.
fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    outln!("{}", serde_json::to_string(value).context("JSON")?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_hex_and_peer_ids() {
        let key = Keypair::generate().public();
        assert_eq!(parse_key(&key.to_hex()), Ok(key));
        assert_eq!(parse_key(&peer_id(&key)), Ok(key));
        assert!(parse_key("abc").unwrap_err().contains("64 hex digits"));
        assert!(parse_key("12D3KooWnope").is_err());
    }
}
