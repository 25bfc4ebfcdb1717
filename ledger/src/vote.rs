//! Votes: a committee member's signed answer to a Snowball query.

use serde::{Deserialize, Serialize};

use crate::keys::{Digest, Keypair, PublicKey, Signature};

const TAG: &[u8] = b"orb/vote/1\0";

/// What a voter signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteBody {
    /// The chain (its genesis hash).
    pub chain: Digest,
    /// The height voted on.
    pub height: u64,
    /// The asking node's poll number (one query, one round).
    pub round: u64,
    /// The asking node: a round is the asker's, so two votes of one voter
    /// for one (height, round, asker) naming different blocks are an
    /// equivocation.
    pub asker: PublicKey,
    /// The block the voter prefers at this height.
    pub block: Digest,
    /// The voter.
    pub voter: PublicKey,
}

/// A signed vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The signed fields.
    pub body: VoteBody,
    /// The voter's signature.
    pub signature: Signature,
}

impl VoteBody {
    /// Signs as the voter.
    pub fn sign(self, key: &Keypair) -> Vote {
        let signature = crate::with_encoded(&self, |body| key.sign(TAG, body));
        Vote {
            body: self,
            signature,
        }
    }
}

impl Vote {
    /// Checks the voter's signature.
    pub fn verify(&self) -> bool {
        crate::with_encoded(&self.body, |body| {
            self.body.voter.verify(TAG, body, &self.signature)
        })
    }

    /// Checks the signature through `verifier` (which may remember it).
    pub fn verify_with(&self, verifier: &crate::Verifier) -> bool {
        crate::with_encoded(&self.body, |body| {
            verifier.verify(&self.body.voter, TAG, body, &self.signature)
        })
    }

    /// Whether `other` is a conflicting vote of the same voter: same
    /// chain, height, round and asker, another block, both signed.
    pub fn equivocates(&self, other: &Vote, verifier: &crate::Verifier) -> bool {
        let (a, b) = (&self.body, &other.body);
        a.voter == b.voter
            && a.chain == b.chain
            && a.height == b.height
            && a.round == b.round
            && a.asker == b.asker
            && a.block != b.block
            && self.verify_with(verifier)
            && other.verify_with(verifier)
    }

    /// The triple batch verification takes.
    pub fn signed_message(&self) -> (PublicKey, Vec<u8>, Signature) {
        let mut m = TAG.to_vec();
        crate::with_encoded(&self.body, |body| m.extend_from_slice(body));
        (self.body.voter, m, self.signature)
    }
}
