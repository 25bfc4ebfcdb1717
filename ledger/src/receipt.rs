//! Receipts: an executor's signed statement that it ran an invocation.

use serde::{Deserialize, Serialize};

use crate::keys::{Digest, Keypair, PublicKey, Signature};

const TAG: &[u8] = b"orb/receipt/1\0";

/// One step of an agent as its receipt states it: a receipt of a step
/// has [`AgentStep::input`] as its input digest and [`AgentStep::output`]
/// as its output digest, so the chain's receipts can be checked against
/// the agent's log (each entry's state hashes before and after).
#[derive(Clone, Copy, Debug)]
pub struct AgentStep<'a> {
    /// The agent: `module/id`.
    pub agent: &'a str,
    /// The step's place in the agent's order.
    pub seq: u64,
    /// The message's id.
    pub message_id: &'a [u8; 16],
    /// The message.
    pub message: &'a [u8],
    /// blake3 of the state before the step.
    pub before: &'a [u8; 32],
    /// blake3 of the state after it.
    pub after: &'a [u8; 32],
    /// The reply.
    pub reply: &'a [u8],
}

impl AgentStep<'_> {
    /// The digest a receipt states as the step's input: the agent, the
    /// step's place, the message and the state it applied to.
    pub fn input(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(b"orb/agent-step-in/1\0");
        h.update(self.agent.as_bytes());
        h.update(&[0]);
        h.update(&self.seq.to_be_bytes());
        h.update(self.message_id);
        h.update(self.before);
        h.update(blake3::hash(self.message).as_bytes());
        Digest(*h.finalize().as_bytes())
    }

    /// The digest a receipt states as the step's output: the state it
    /// left and the reply.
    pub fn output(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(b"orb/agent-step-out/1\0");
        h.update(self.after);
        h.update(blake3::hash(self.reply).as_bytes());
        Digest(*h.finalize().as_bytes())
    }
}

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
