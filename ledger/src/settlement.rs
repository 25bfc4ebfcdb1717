//! Settlements: the invoker's signed set of every receipt one invocation
//! produced. The unit a block holds and the ledger pays.
//!
//! A call replicated on R executors gives R receipts. The invoker's node
//! groups them by invocation and signs the group: that signature is what
//! authorizes the debit (an executor alone cannot charge anyone). The
//! ledger then pays by a rule anyone can recompute from the block:
//!
//! - receipts are grouped by their result, (output hash, fuel);
//! - a result held by a strict majority of the receipts is the verdict:
//!   each executor that reported it earns its fuel × price, paid by the
//!   invoker;
//! - executors that reported anything else are *disputed*: recorded in the
//!   chain, paid nothing;
//! - without a strict majority nobody is paid (the call failed).
//!
//! An invocation is settled at most once per invoker: a second settlement
//! of the same `(invoker, invocation)` makes a block invalid, so a call is
//! never paid twice however often it was retried.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::keys::{Digest, Keypair, PublicKey, Signature};
use crate::receipt::Receipt;

const TAG: &[u8] = b"orb/settlement/1\0";

/// What the invoker signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementBody {
    /// The invocation every receipt is for.
    pub invocation: u128,
    /// The node that made the call and pays for it.
    pub invoker: PublicKey,
    /// One receipt per executor that ran it, in the order they answered.
    pub receipts: Vec<Receipt>,
}

/// A signed settlement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The signed fields.
    pub body: SettlementBody,
    /// The invoker's signature over the canonical encoding of `body`.
    pub signature: Signature,
}

/// What the pay rule makes of a settlement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The majority result (output hash, fuel), if a strict majority of
    /// the receipts agree.
    pub result: Option<(Digest, u64)>,
    /// Indexes of the receipts that agree with the majority (paid).
    pub agreed: Vec<usize>,
    /// Indexes of the receipts that disagree with it, or all of them when
    /// there is no majority (paid nothing).
    pub disputed: Vec<usize>,
}

impl SettlementBody {
    /// Signs as the invoker (`key` must be the invoker's).
    pub fn sign(self, key: &Keypair) -> Settlement {
        let signature = crate::with_encoded(&self, |body| key.sign(TAG, body));
        Settlement {
            body: self,
            signature,
        }
    }
}

impl Settlement {
    /// The settlement's id: blake3 over the tagged canonical body.
    pub fn id(&self) -> Digest {
        crate::digest_of(TAG, &self.body)
    }

    /// The Merkle leaf: the whole settlement, signatures included.
    pub fn leaf(&self) -> Digest {
        Digest(crate::with_encoded(self, crate::merkle::leaf_hash))
    }

    /// Checks the invoker's signature (not the receipts').
    pub fn verify_invoker(&self) -> bool {
        crate::with_encoded(&self.body, |body| {
            self.body.invoker.verify(TAG, body, &self.signature)
        })
    }

    /// Checks the invoker's and every executor's signature.
    pub fn verify(&self) -> bool {
        self.verify_invoker() && self.body.receipts.iter().all(Receipt::verify)
    }

    /// The invoker's triple for batch verification.
    pub fn signed_message(&self) -> (PublicKey, Vec<u8>, Signature) {
        let mut m = TAG.to_vec();
        crate::with_encoded(&self.body, |body| m.extend_from_slice(body));
        (self.body.invoker, m, self.signature)
    }

    /// The shape rules: at least one receipt; every receipt for this
    /// invocation, invoker, function and input; no executor twice.
    pub fn check(&self) -> Result<(), String> {
        let b = &self.body;
        let Some(first) = b.receipts.first() else {
            return Err(format!(
                "settlement of {:032x} holds no receipt",
                b.invocation
            ));
        };
        let mut executors = BTreeSet::new();
        for (i, r) in b.receipts.iter().enumerate() {
            let rb = &r.body;
            if rb.invocation != b.invocation || rb.invoker != b.invoker {
                return Err(format!(
                    "receipt {i} of settlement {:032x} is for another invocation or invoker",
                    b.invocation
                ));
            }
            if rb.function != first.body.function || rb.input != first.body.input {
                return Err(format!(
                    "receipt {i} of settlement {:032x} ran another function or input",
                    b.invocation
                ));
            }
            if !executors.insert(rb.executor) {
                return Err(format!(
                    "settlement {:032x} holds two receipts of executor {}",
                    b.invocation, rb.executor
                ));
            }
        }
        Ok(())
    }

    /// The pay rule (see the module docs).
    pub fn verdict(&self) -> Verdict {
        let receipts = &self.body.receipts;
        let mut counts: HashMap<(Digest, u64), usize> = HashMap::new();
        for r in receipts {
            *counts.entry((r.body.output, r.body.fuel)).or_default() += 1;
        }
        let result = counts
            .into_iter()
            .find(|(_, n)| 2 * n > receipts.len())
            .map(|(result, _)| result);
        let (agreed, disputed) = (0..receipts.len()).partition(|&i| {
            let b = &receipts[i].body;
            result == Some((b.output, b.fuel))
        });
        Verdict {
            result,
            agreed,
            disputed,
        }
    }

    /// What the invoker pays: the agreeing receipts' fuel × `price`.
    pub fn cost(&self, price: u64) -> u128 {
        let v = self.verdict();
        v.agreed
            .iter()
            .map(|&i| u128::from(self.body.receipts[i].body.fuel) * u128::from(price))
            .sum()
    }
}
