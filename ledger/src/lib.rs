//! `orb-ledger`: Orb's reward ledger.
//!
//! - [`Receipt`]: an executor's signed statement that it ran an invocation.
//! - [`Settlement`]: every receipt of one invocation, signed by the invoker;
//!   a strict majority of equal results is paid, the rest is disputed.
//! - [`Agreement`]: the pure state machine (no I/O, no clock) an invoking
//!   node decides one call's replicas by: wait, ask another provider, a
//!   majority and who it outvoted, or none; [`check_receipt`] is the rule
//!   a receipt returned with an answer must pass.
//! - [`Block`]: height, previous hash, the RFC 9162 [`merkle`] root of its
//!   settlements, the proposer's committee claim and signature, and the
//!   finality evidence (signed [`Vote`]s of the deciding polls).
//! - [`Genesis`]: Snowball parameters, King-of-the-Hill slots and
//!   difficulty, price, block reward, initial balances; its hash is the
//!   chain id.
//! - [`Koth`]: the committee, mined claims on slots.
//! - [`Snowball`]: the pure state machine (no I/O, no clock) every height
//!   is decided by.
//! - [`consensus`]: the [`consensus::Replica`], one node's consensus as a
//!   pure state machine (step / ready / advance): committee, proposer
//!   lottery, mempool, polls, decisions; drivers carry out its I/O.
//! - [`sequencer`]: the pure rules by which an agent's hosts put its
//!   messages in one order and agree on its states (ballots, prepare,
//!   sync, replicate, strict majorities of the hosts).
//! - [`Chain`] on a [`LedgerStore`] ([`SledStore`]): validated appends,
//!   one atomic, fsync'd commit per block; [`State`]: balances folded from
//!   the chain.
//! - [`audit()`]: levels 0–4 from genesis; [`proof`]: checkpoints,
//!   inclusion and consistency proofs checkable with no node.
//!
//! It knows nothing of networking; `orb-net` carries its types and
//! `orb-engine` drives consensus.
//!
//! ```
//! use orb_ledger::{Params, Snowball};
//!
//! let params = Params::new(5, 4, 4, 2).unwrap();
//! let mut sb = Snowball::new(params, "a");
//! sb.record_poll(&["b", "b", "b", "b", "a"]);
//! assert_eq!(sb.preference(), &"b");
//! sb.record_poll(&["b", "b", "b", "b", "b"]);
//! assert_eq!(sb.decided(), Some(&"b"));
//! ```

mod agreement;
pub mod audit;
mod block;
mod chain;
pub mod consensus;
pub mod fault;
mod genesis;
mod keys;
mod koth;
pub mod merkle;
pub mod proof;
mod receipt;
pub mod sequencer;
mod settlement;
pub mod sim;
mod snowball;
mod state;
mod steps;
mod store;
mod vote;

pub use agreement::{Agreement, Decision, Outcome, ReceiptError, check_receipt};
pub use audit::{AuditOptions, AuditReport, Finding, audit};
pub use block::{
    Block, Evidence, Header, MAX_EQUIVOCATIONS, Poll, Records, equivocations_hash,
    settlements_root, voted_hash,
};
pub use chain::{
    Chain, ChainError, StoredBlock, height_key, stored, stored_block, stored_effects,
    stored_genesis, stored_head,
};
pub use genesis::{Genesis, GenesisError};
pub use keys::{Digest, Keypair, PublicKey, Signature, Verifier, verify_batch};
pub use koth::{Claim, ClaimRefused, Koth};
pub use proof::{Checkpoint, ConsistencyProof, InclusionProof};
pub use receipt::{AgentStep, Receipt, ReceiptBody};
pub use settlement::{Settlement, SettlementBody, Verdict};
pub use snowball::{Params, ParamsError, Snowball};
pub use state::{Effects, State};
pub use steps::{LoggedStep, StepsReport, check_steps};
pub use store::{LedgerStore, MemStore, SledStore, StoreError, Table, Write};
pub use vote::{Vote, VoteBody};

/// The canonical binary encoding (postcard) of ledger objects.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("ledger types always serialize")
}

/// Runs `f` on the canonical encoding of `value`, encoded into a buffer
/// this thread reuses: what hashes and signatures read, without an
/// allocation each time.
pub fn with_encoded<T: serde::Serialize, R>(value: &T, f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // Taken out while in use, so a nested call gets a buffer of its own.
    let mut buf = SCRATCH.with(|s| s.take());
    buf.clear();
    let buf = postcard::to_extend(value, buf).expect("ledger types always serialize");
    let out = f(&buf);
    SCRATCH.with(|s| s.replace(buf));
    out
}

/// blake3 of `tag ‖ canonical encoding of value`.
pub(crate) fn digest_of<T: serde::Serialize>(tag: &[u8], value: &T) -> keys::Digest {
    with_encoded(value, |bytes| keys::Digest::of(tag, bytes))
}

/// Decodes the canonical encoding.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
