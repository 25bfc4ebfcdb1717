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
        let signature = key.sign(TAG, &crate::encode(&self));
        Vote {
            body: self,
            signature,
        }
    }
}

impl Vote {
    /// Checks the voter's signature.
    pub fn verify(&self) -> bool {
        self.body
            .voter
            .verify(TAG, &crate::encode(&self.body), &self.signature)
    }

    /// The triple batch verification takes.
    pub fn signed_message(&self) -> (PublicKey, Vec<u8>, Signature) {
        let mut m = TAG.to_vec();
        m.extend_from_slice(&crate::encode(&self.body));
        (self.body.voter, m, self.signature)
    }
}
