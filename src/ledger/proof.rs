//! `orb ledger checkpoint`, `prove`, `verify-proof` and `consistency`:
//! evidence about a chain that anyone can check without a node.
//!
//! A checkpoint is the head and the Merkle root of all block hashes,
//! signed by this node's key (`identity.key`); an inclusion proof ties a
//! receipt to such a checkpoint; a consistency proof shows the chain now
//! extends a checkpoint taken earlier. The signatures say who vouches for
//! the chain, not that it is right: `orb ledger audit` checks that.

use std::path::{Path, PathBuf};

use clap::Args;
use orb_ledger::{Checkpoint, Digest, InclusionProof};

use super::store::{chain_error, guarded, ledger_dir, open_chain};
use super::{node_key, peer_id, read_json, write_json};
use crate::exit::{CHECK_FAILED, CliError};

pub(crate) const CHECKPOINT_HELP: &str = "\
Signs the stored head as it is (run `orb ledger audit` first to check it).
Keep the file: `orb ledger consistency --since FILE` later proves the chain
still extends it. Exit codes: 0 written; 2 no ledger or no blocks yet, the
store is locked or unreadable, an unwritable file.";

pub(crate) const PROVE_HELP: &str = "\
The proof holds the receipt, its block header, the receipt's Merkle path to
the header and the header's path to a checkpoint of the head signed by this
node's key. Check it anywhere with `orb ledger verify-proof FILE`.
Exit codes: 0 written; 2 the receipt is not in the chain, a bad RECEIPT_ID, no
ledger, the store is locked or unreadable.";

pub(crate) const VERIFY_HELP: &str = "\
Checks every link: the executor's signature on the receipt, the receipt in
its block's Merkle root, the block header in the checkpoint's history, the
checkpoint's signature. It reads only FILE (no node, no data dir). A valid
proof shows the receipt is in the chain the signer vouched for; whether to
trust the signer is yours to decide.
Exit codes: 0 valid; 1 invalid (it says which link failed); 2 FILE is
unreadable or not an inclusion proof.";

pub(crate) const CONSISTENCY_HELP: &str = "\
Checks that the checkpoint is on this chain, that its head is the block
stored at its height, and that the chain's history root extends the
checkpoint's (RFC 9162 consistency proof): no block up to it was rewritten.
--out writes the proof, with a new checkpoint signed by this node's key.
Exit codes: 0 the chain extends the checkpoint; 1 it does not (another chain,
history rewritten, a bad signature, or the chain is shorter); 2 FILE is
unreadable, no ledger, the store is locked or unreadable.";

/// `orb ledger checkpoint` flags.
#[derive(Args, Debug)]
pub(crate) struct CheckpointArgs {
    /// Write the checkpoint to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// `orb ledger prove` flags.
#[derive(Args, Debug)]
pub(crate) struct ProveArgs {
    /// The receipt's id (64 hex digits, as `orb ledger show` prints it).
    receipt_id: String,
    /// Write the proof to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// `orb ledger verify-proof` flags.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The inclusion proof (JSON, as `orb ledger prove` writes it).
    file: PathBuf,
}

/// `orb ledger consistency` flags.
#[derive(Args, Debug)]
pub(crate) struct ConsistencyArgs {
    /// The earlier checkpoint (JSON, as `orb ledger checkpoint` writes it).
    #[arg(long, value_name = "FILE")]
    since: PathBuf,
    /// Write the consistency proof to FILE.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

fn no_blocks(data_dir: &Path) -> CliError {
    CliError::usage(anyhow::anyhow!(
        "the ledger in {} has no blocks yet",
        ledger_dir(data_dir).display()
    ))
}

fn check_failed(error: anyhow::Error) -> CliError {
    CliError {
        code: CHECK_FAILED,
        error,
    }
}

pub(crate) fn checkpoint(args: CheckpointArgs, data_dir: &Path) -> Result<(), CliError> {
    let checkpoint = guarded(data_dir, || {
        let chain = open_chain(data_dir)?;
        let key = node_key(data_dir)?;
        chain
            .checkpoint(&key)
            .map_err(|e| chain_error(&ledger_dir(data_dir), e))?
            .ok_or_else(|| no_blocks(data_dir))
    })?;
    write_json(args.out.as_deref(), &checkpoint)?;
    eprintln!(
        "checkpoint of chain {} at height {}, signed by {}",
        checkpoint.chain,
        checkpoint.height,
        peer_id(&checkpoint.signer)
    );
    Ok(())
}

pub(crate) fn prove(args: ProveArgs, data_dir: &Path) -> Result<(), CliError> {
    let id = Digest::from_hex(&args.receipt_id).ok_or_else(|| {
        CliError::usage(anyhow::anyhow!(
            "`{}` is not a receipt id (64 hex digits)",
            args.receipt_id
        ))
    })?;
    let proof = guarded(data_dir, || {
        let chain = open_chain(data_dir)?;
        let key = node_key(data_dir)?;
        chain
            .prove(&id, &key)
            .map_err(|e| chain_error(&ledger_dir(data_dir), e))?
            .ok_or_else(|| {
                CliError::usage(anyhow::anyhow!(
                    "receipt {id} is not in the chain in {} (height {})",
                    ledger_dir(data_dir).display(),
                    chain.height()
                ))
            })
    })?;
    write_json(args.out.as_deref(), &proof)?;
    eprintln!(
        "receipt {id} is in settlement {} of block {}, proven to the checkpoint at height {}",
        proof.index, proof.header.height, proof.checkpoint.height
    );
    Ok(())
}

pub(crate) fn verify(args: VerifyArgs) -> Result<(), CliError> {
    let proof: InclusionProof = read_json(&args.file, "an inclusion proof")?;
    proof.verify().map_err(|why| {
        check_failed(anyhow::anyhow!(
            "invalid proof in {}: {why}",
            args.file.display()
        ))
    })?;
    let c = &proof.checkpoint;
    let Some(r) = proof.receipt() else {
        return Err(check_failed(anyhow::anyhow!("the proof names no receipt")));
    };
    outln!("valid: receipt {} is in the chain", r.id());
    outln!("  invocation   {:032x}", r.body.invocation);
    outln!("  function     {}", r.body.function);
    outln!("  fuel         {}", r.body.fuel);
    outln!("  executor     {}", peer_id(&r.body.executor));
    outln!("  invoker      {}", peer_id(&r.body.invoker));
    outln!(
        "  block        {} (settlement {} of {}, receipt {} of {})",
        proof.header.height,
        proof.index,
        proof.header.settlements,
        proof.receipt,
        proof.settlement.body.receipts.len()
    );
    outln!("  checkpoint   height {} of chain {}", c.height, c.chain);
    outln!("  signed by    {} ({})", peer_id(&c.signer), c.signer);
    Ok(())
}

pub(crate) fn consistency(args: ConsistencyArgs, data_dir: &Path) -> Result<(), CliError> {
    let old: Checkpoint = read_json(&args.since, "a checkpoint")?;
    if !old.verify() {
        return Err(check_failed(anyhow::anyhow!(
            "the checkpoint in {} has a bad signature (signer {})",
            args.since.display(),
            peer_id(&old.signer)
        )));
    }
    let dir = ledger_dir(data_dir);
    let (proof, height) = guarded(data_dir, || {
        let chain = open_chain(data_dir)?;
        let key = node_key(data_dir)?;
        let proof = chain
            .consistency(old.clone(), &key)
            .map_err(|e| chain_error(&dir, e))?
            .map_err(|why| check_failed(anyhow::anyhow!("{why}")))?;
        // The history root covers the head too, but say which block differs.
        let ours = chain
            .block(old.height)
            .map_err(|e| chain_error(&dir, e))?
            .map(|b| b.hash());
        if ours != Some(old.head) {
            return Err(check_failed(anyhow::anyhow!(
                "block {} of this chain is {}, the checkpoint's head is {}: history was rewritten",
                old.height,
                ours.map_or_else(|| "missing".to_string(), |h| h.to_string()),
                old.head
            )));
        }
        Ok((proof, chain.height()))
    })?;
    proof
        .verify()
        .map_err(|why| check_failed(anyhow::anyhow!(why)))?;
    if let Some(out) = &args.out {
        write_json(Some(out), &proof)?;
    }
    outln!(
        "chain at height {height} extends checkpoint at height {} ({} hashes)",
        old.height,
        proof.path.len()
    );
    Ok(())
}
