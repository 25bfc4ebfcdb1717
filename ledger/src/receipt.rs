//! Receipts: an executor's signed statement that it ran an invocation.

use serde::{Deserialize, Serialize};

use crate::keys::{Digest, Keypair, PublicKey, Signature};

const TAG: &[u8] = b"orb/receipt/1\0";

/// What an executor signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// The invocation's id (the same for every replica of one call).
    pub invocation: u128,
    /// The function's blake3 id.
    pub function: Digest,
    /// blake3 of the input.
    pub input: Digest,
    /// blake3 of the output.
    pub output: Digest,
    /// Fuel the execution burned.
    pub fuel: u64,
    /// The node that ran it.
    pub executor: PublicKey,
    /// The node the call came from (it pays).
    pub invoker: PublicKey,
}

/// A signed receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The signed fields.
    pub body: ReceiptBody,
    /// The executor's signature over the canonical encoding of `body`.
    pub signature: Signature,
}

impl ReceiptBody {
    /// The canonical encoding (postcard: fixed field order, minimal
    /// varints; the same body always gives the same bytes).
    pub fn canonical(&self) -> Vec<u8> {
        crate::encode(self)
    }

    /// Signs as the executor (`key` must be the executor's).
    pub fn sign(self, key: &Keypair) -> Receipt {
        let signature = crate::with_encoded(&self, |body| key.sign(TAG, body));
        Receipt {
            body: self,
            signature,
        }
    }
}

impl Receipt {
    /// The receipt's id: blake3 over the tagged canonical body. One
    /// executor's receipt for one invocation always has the same id.
    pub fn id(&self) -> Digest {
        crate::digest_of(TAG, &self.body)
    }

    /// The Merkle leaf: the whole receipt, signature included.
    pub fn leaf(&self) -> Digest {
        Digest(crate::with_encoded(self, crate::merkle::leaf_hash))
    }

    /// Checks the executor's signature.
    pub fn verify(&self) -> bool {
        crate::with_encoded(&self.body, |body| {
            self.body.executor.verify(TAG, body, &self.signature)
        })
    }

    /// The triple batch verification takes.
    pub fn signed_message(&self) -> (PublicKey, Vec<u8>, Signature) {
        let mut m = TAG.to_vec();
        crate::with_encoded(&self.body, |body| m.extend_from_slice(body));
        (self.body.executor, m, self.signature)
    }
}
