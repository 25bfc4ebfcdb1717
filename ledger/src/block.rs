//! Blocks: a header (height, previous hash, Merkle root of the receipts,
//! proposer), the receipts, and the finality evidence: the signed votes
//! of the deciding Snowball polls and the claims that put their voters on
//! the committee.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::genesis::Genesis;
use crate::keys::{self, Digest, Keypair, PublicKey, Signature};
use crate::koth::Claim;
use crate::receipt::Receipt;
use crate::vote::Vote;

const HEADER_TAG: &[u8] = b"orb/header/1\0";

/// What the block hash covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The chain id.
    pub chain: Digest,
    /// Height; the first block is 1.
    pub height: u64,
    /// The previous block's hash (the chain id for height 1).
    pub prev: Digest,
    /// RFC 9162 Merkle root over the receipts' leaves.
    pub receipts_root: Digest,
    /// How many receipts.
    pub receipts: u32,
    /// The proposer's committee claim.
    pub proposer: Claim,
}

/// One deciding poll: the votes that answered it for the block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    /// The round the votes carry.
    pub round: u64,
    /// The signed votes.
    pub votes: Vec<Vote>,
}

/// Finality evidence: β polls of at least α_confidence committee votes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The voters' committee claims.
    pub claims: Vec<Claim>,
    /// The deciding polls.
    pub polls: Vec<Poll>,
}

/// A block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The hashed header.
    pub header: Header,
    /// The proposer's signature over the block hash.
    pub signature: Signature,
    /// The receipts, in Merkle leaf order.
    pub receipts: Vec<Receipt>,
    /// Filled in when the block is decided.
    pub evidence: Evidence,
}

impl Header {
    /// The block hash.
    pub fn hash(&self) -> Digest {
        Digest::of(HEADER_TAG, &crate::encode(self))
    }
}

/// The Merkle root over receipts.
pub fn receipts_root(receipts: &[Receipt]) -> Digest {
    let leaves: Vec<_> = receipts.iter().map(|r| r.leaf().0).collect();
    Digest(crate::merkle::root(&leaves))
}

impl Block {
    /// A signed proposal (no evidence yet).
    pub fn propose(
        key: &Keypair,
        chain: Digest,
        height: u64,
        prev: Digest,
        proposer: Claim,
        receipts: Vec<Receipt>,
    ) -> Self {
        let header = Header {
            chain,
            height,
            prev,
            receipts_root: receipts_root(&receipts),
            receipts: receipts.len() as u32,
            proposer,
        };
        let signature = key.sign(HEADER_TAG, &header.hash().0);
        Self {
            header,
            signature,
            receipts,
            evidence: Evidence::default(),
        }
    }

    /// The block hash.
    pub fn hash(&self) -> Digest {
        self.header.hash()
    }

    /// Level 1: the body matches the header (receipt count and Merkle
    /// root) and the header links to `prev` at `height` on `chain`.
    pub fn check_links(&self, chain: &Digest, height: u64, prev: &Digest) -> Result<(), String> {
        let h = &self.header;
        if h.chain != *chain {
            return Err(format!("block is for chain {}, not {}", h.chain, chain));
        }
        if h.height != height {
            return Err(format!(
                "header says height {}, stored at {height}",
                h.height
            ));
        }
        if h.prev != *prev {
            return Err(format!(
                "previous hash {} does not match the block below ({prev})",
                h.prev
            ));
        }
        if h.receipts as usize != self.receipts.len() {
            return Err(format!(
                "header counts {} receipts, body holds {}",
                h.receipts,
                self.receipts.len()
            ));
        }
        if receipts_root(&self.receipts) != h.receipts_root {
            return Err("receipts do not hash to the header's Merkle root".into());
        }
        Ok(())
    }

    /// Level 2: the proposer's signature and claim, every receipt's
    /// signature (batch verified), and the finality evidence.
    pub fn check_signatures(&self, genesis: &Genesis) -> Result<(), String> {
        self.check_proposal(genesis)?;
        self.check_evidence(genesis)
    }

    /// The proposer's signature and claim and every receipt's signature:
    /// what a proposal carries before it is decided.
    pub fn check_proposal(&self, genesis: &Genesis) -> Result<(), String> {
        let chain = genesis.id();
        let hash = self.hash();
        let proposer = self.header.proposer;
        if !proposer.is_valid(&chain, genesis.difficulty) {
            return Err("the proposer's committee claim is below the chain's difficulty".into());
        }
        if !proposer.key.verify(HEADER_TAG, &hash.0, &self.signature) {
            return Err("bad proposer signature".into());
        }
        if self.receipts.len() > genesis.max_receipts as usize {
            return Err(format!(
                "{} receipts, the chain allows {}",
                self.receipts.len(),
                genesis.max_receipts
            ));
        }
        let batch: Vec<_> = self.receipts.iter().map(Receipt::signed_message).collect();
        if !keys::verify_batch(&batch) {
            let bad = self
                .receipts
                .iter()
                .position(|r| !r.verify())
                .unwrap_or_default();
            return Err(format!(
                "receipt {bad} ({}) has a bad executor signature",
                self.receipts[bad].id()
            ));
        }
        Ok(())
    }

    /// The finality evidence: valid claims on distinct slots, β polls with
    /// distinct rounds, each with α_confidence distinct committee voters
    /// whose signed votes are for this block at this height.
    pub fn check_evidence(&self, genesis: &Genesis) -> Result<(), String> {
        let chain = genesis.id();
        let hash = &self.hash();
        let params = genesis.snowball;
        let ev = &self.evidence;
        let mut slots = BTreeSet::new();
        let mut committee = BTreeSet::new();
        for c in &ev.claims {
            if !c.is_valid(&chain, genesis.difficulty) {
                return Err(format!(
                    "evidence claim of {} is below the chain's difficulty",
                    c.key
                ));
            }
            if !slots.insert(c.slot(&chain, genesis.slots)) {
                return Err("two evidence claims hold the same slot".into());
            }
            committee.insert(c.key);
        }
        if ev.polls.len() < params.beta() {
            return Err(format!(
                "finality evidence holds {} polls, beta is {}",
                ev.polls.len(),
                params.beta()
            ));
        }
        let mut rounds = BTreeSet::new();
        let mut batch = Vec::new();
        for poll in &ev.polls {
            if !rounds.insert(poll.round) {
                return Err(format!(
                    "poll round {} appears twice in the evidence",
                    poll.round
                ));
            }
            let mut voters = BTreeSet::<PublicKey>::new();
            for v in &poll.votes {
                let b = &v.body;
                if b.chain != chain
                    || b.height != self.header.height
                    || b.block != *hash
                    || b.round != poll.round
                {
                    return Err(format!(
                        "a vote of round {} is for another block, height or round",
                        poll.round
                    ));
                }
                if !committee.contains(&b.voter) {
                    return Err(format!("voter {} holds no committee claim", b.voter));
                }
                if !voters.insert(b.voter) {
                    return Err(format!(
                        "voter {} votes twice in round {}",
                        b.voter, poll.round
                    ));
                }
                batch.push(v.signed_message());
            }
            if voters.len() < params.alpha_confidence() {
                return Err(format!(
                    "poll round {} has {} votes, alpha_confidence is {}",
                    poll.round,
                    voters.len(),
                    params.alpha_confidence()
                ));
            }
        }
        if !keys::verify_batch(&batch) {
            return Err("a finality vote has a bad signature".into());
        }
        Ok(())
    }
}
