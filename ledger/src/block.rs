//! Blocks: a header (height, previous hash, Merkle root of the
//! settlements, proposer, hash of the equivocations), the settlements (each
//! one invocation's receipts, signed by its invoker), the equivocations the
//! proposer knew of (pairs of conflicting signed votes: each excludes its
//! voter from the committee for good), and the finality evidence: the
//! signed votes of the deciding Snowball polls and the claims that put
//! their voters on the committee.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::genesis::Genesis;
use crate::keys::{Digest, Keypair, PublicKey, Signature, Verifier};
use crate::koth::Claim;
use crate::receipt::Receipt;
use crate::settlement::Settlement;
use crate::vote::Vote;

const HEADER_TAG: &[u8] = b"orb/header/2\0";
const EQUIVOCATIONS_TAG: &[u8] = b"orb/equivocations/1\0";
const VOTED_TAG: &[u8] = b"orb/voted/1\0";

/// Most equivocations one block records.
pub const MAX_EQUIVOCATIONS: usize = 64;

static UNCACHED: Verifier = Verifier::uncached();

/// What the block hash covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The chain id.
    pub chain: Digest,
    /// Height; the first block is 1.
    pub height: u64,
    /// The previous block's hash (the chain id for height 1).
    pub prev: Digest,
    /// RFC 9162 Merkle root over the settlements' leaves.
    pub settlements_root: Digest,
    /// How many settlements.
    pub settlements: u32,
    /// Hash of the block's equivocations ([`equivocations_hash`]).
    pub equivocations: Digest,
    /// Hash of the block's `voted` claims ([`voted_hash`]).
    pub voted: Digest,
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
    /// The settlements, in Merkle leaf order.
    pub settlements: Vec<Settlement>,
    /// Conflicting vote pairs, one per newly excluded voter.
    pub equivocations: Vec<(Vote, Vote)>,
    /// The claims of the members that voted in the finality evidence the
    /// proposer holds for the previous block: what keeps a claim from
    /// lapsing. The evidence itself is not hashed (each node may hold
    /// another copy), so activity is read from here, never from it.
    pub voted: Vec<Claim>,
    /// Filled in when the block is decided.
    pub evidence: Evidence,
}

impl Header {
    /// The block hash.
    pub fn hash(&self) -> Digest {
        crate::digest_of(HEADER_TAG, self)
    }
}

/// What a [`Verifier`] remembers a passed check by: blake3 of the tag and
/// every part the check reads.
fn fingerprint(tag: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(tag);
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// What the header holds of a block's equivocations.
pub fn equivocations_hash(equivocations: &[(Vote, Vote)]) -> Digest {
    crate::digest_of(EQUIVOCATIONS_TAG, &equivocations)
}

/// What the header holds of a block's `voted` claims.
pub fn voted_hash(voted: &[Claim]) -> Digest {
    crate::digest_of(VOTED_TAG, &voted)
}

/// What a proposal records besides its settlements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    /// Equivocations to record (each excludes its voter for good).
    pub equivocations: Vec<(Vote, Vote)>,
    /// The claims of the voters in the previous block's evidence.
    pub voted: Vec<Claim>,
}

/// The Merkle root over settlements.
pub fn settlements_root(settlements: &[Settlement]) -> Digest {
    let leaves: Vec<_> = settlements.iter().map(|s| s.leaf().0).collect();
    Digest(crate::merkle::root(&leaves))
}

impl Block {
    /// A signed proposal (no evidence yet) with no [`Records`].
    pub fn propose(
        key: &Keypair,
        chain: Digest,
        height: u64,
        prev: Digest,
        proposer: Claim,
        settlements: Vec<Settlement>,
    ) -> Self {
        Self::propose_with(
            key,
            chain,
            height,
            prev,
            proposer,
            settlements,
            Records::default(),
        )
    }

    /// A signed proposal that also records `records`.
    pub fn propose_with(
        key: &Keypair,
        chain: Digest,
        height: u64,
        prev: Digest,
        proposer: Claim,
        settlements: Vec<Settlement>,
        records: Records,
    ) -> Self {
        let Records {
            equivocations,
            voted,
        } = records;
        let header = Header {
            chain,
            height,
            prev,
            settlements_root: settlements_root(&settlements),
            settlements: settlements.len() as u32,
            equivocations: equivocations_hash(&equivocations),
            voted: voted_hash(&voted),
            proposer,
        };
        let signature = key.sign(HEADER_TAG, &header.hash().0);
        Self {
            header,
            signature,
            settlements,
            equivocations,
            voted,
            evidence: Evidence::default(),
        }
    }

    /// The block hash.
    pub fn hash(&self) -> Digest {
        self.header.hash()
    }

    /// The claims of the members whose votes are in this block's evidence
    /// (what the next proposal records as `voted`), sorted.
    pub fn voters_claims(&self) -> Vec<Claim> {
        let voters: BTreeSet<PublicKey> = self
            .evidence
            .polls
            .iter()
            .flat_map(|p| p.votes.iter().map(|v| v.body.voter))
            .collect();
        let mut claims: Vec<Claim> = self
            .evidence
            .claims
            .iter()
            .filter(|c| voters.contains(&c.key))
            .copied()
            .collect();
        claims.sort();
        claims.dedup_by_key(|c| c.key);
        claims
    }

    /// Receipts in all settlements.
    pub fn receipt_count(&self) -> usize {
        self.settlements.iter().map(|s| s.body.receipts.len()).sum()
    }

    /// Every receipt with where it is: (settlement index, receipt).
    pub fn receipts(&self) -> impl Iterator<Item = (usize, &Receipt)> {
        self.settlements
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.body.receipts.iter().map(move |r| (i, r)))
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
        if h.settlements as usize != self.settlements.len() {
            return Err(format!(
                "header counts {} settlements, body holds {}",
                h.settlements,
                self.settlements.len()
            ));
        }
        if settlements_root(&self.settlements) != h.settlements_root {
            return Err("settlements do not hash to the header's Merkle root".into());
        }
        if equivocations_hash(&self.equivocations) != h.equivocations {
            return Err("equivocations do not hash to the header's hash of them".into());
        }
        if voted_hash(&self.voted) != h.voted {
            return Err("voted claims do not hash to the header's hash of them".into());
        }
        Ok(())
    }

    /// Level 2: the proposer's signature and claim, every receipt's
    /// signature (batch verified), every equivocation, and the finality
    /// evidence.
    pub fn check_signatures(&self, genesis: &Genesis) -> Result<(), String> {
        self.check_proposal(genesis)?;
        self.check_evidence(genesis)
    }

    /// The proposer's signature and claim, every receipt's signature and
    /// every equivocation (two signed votes of one voter on this chain for
    /// one height, round and asker, naming different blocks; one per
    /// voter): what a proposal carries before it is decided.
    pub fn check_proposal(&self, genesis: &Genesis) -> Result<(), String> {
        self.check_proposal_uncached(genesis, &UNCACHED)
    }

    /// Level 1 ([`Block::check_links`]) and then the proposal's checks
    /// through `verifier`, remembered by header and signature alone: once
    /// the links hold, the header's Merkle root binds every settlement, so
    /// nothing needs encoding again to recognise a block checked before.
    pub fn check_linked_proposal_with(
        &self,
        chain: &Digest,
        height: u64,
        prev: &Digest,
        genesis: &Genesis,
        verifier: &Verifier,
    ) -> Result<(), String> {
        self.check_links(chain, height, prev)?;
        let fingerprint = || {
            fingerprint(
                b"orb/linked-proposal-checked/1\0",
                &[&chain.0, &self.hash().0, &self.signature.0],
            )
        };
        verifier.check_once(fingerprint, || {
            self.check_proposal_uncached(genesis, verifier)
        })
    }

    fn check_proposal_uncached(
        &self,
        genesis: &Genesis,
        verifier: &Verifier,
    ) -> Result<(), String> {
        let chain = genesis.id();
        let hash = self.hash();
        let proposer = self.header.proposer;
        if !proposer.is_valid(&chain, genesis.difficulty) {
            return Err("the proposer's committee claim is below the chain's difficulty".into());
        }
        if !proposer.key.verify(HEADER_TAG, &hash.0, &self.signature) {
            return Err("bad proposer signature".into());
        }
        let receipts = self.receipt_count();
        if receipts > genesis.max_receipts as usize {
            return Err(format!(
                "{receipts} receipts, the chain allows {}",
                genesis.max_receipts
            ));
        }
        for s in &self.settlements {
            s.check()?;
        }
        if self.equivocations.len() > MAX_EQUIVOCATIONS {
            return Err(format!(
                "{} equivocations, a block records at most {MAX_EQUIVOCATIONS}",
                self.equivocations.len()
            ));
        }
        let mut voters = BTreeSet::new();
        for (i, (a, b)) in self.equivocations.iter().enumerate() {
            if a.body.chain != chain || !a.equivocates(b, verifier) {
                return Err(format!(
                    "equivocation {i} is not two signed votes of one voter on this chain \
                     for one height, round and asker naming different blocks"
                ));
            }
            if !voters.insert(a.body.voter) {
                return Err(format!(
                    "equivocation {i}: voter {} is recorded twice",
                    a.body.voter
                ));
            }
        }
        if self.voted.len() > genesis.slots as usize {
            return Err(format!(
                "{} voted claims, the committee has {} slots",
                self.voted.len(),
                genesis.slots
            ));
        }
        let mut keys = BTreeSet::new();
        for c in &self.voted {
            if !c.is_valid(&chain, genesis.difficulty) || !keys.insert(c.key) {
                return Err(format!(
                    "voted claim of {} is below the chain's difficulty or listed twice",
                    c.key
                ));
            }
        }
        let mut batch = Vec::with_capacity(self.settlements.len() + receipts);
        for s in &self.settlements {
            batch.push(s.signed_message());
            batch.extend(s.body.receipts.iter().map(Receipt::signed_message));
        }
        if !verifier.verify_batch(&batch) {
            for (i, s) in self.settlements.iter().enumerate() {
                if let Some(r) = s.body.receipts.iter().find(|r| !r.verify()) {
                    return Err(format!(
                        "receipt {} in settlement {i} has a bad executor signature",
                        r.id()
                    ));
                }
                if !s.verify_invoker() {
                    return Err(format!(
                        "settlement {i} ({}) has a bad invoker signature",
                        s.id()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The finality evidence: valid claims on distinct slots, β polls with
    /// distinct rounds, each with α_confidence distinct committee voters
    /// whose signed votes are for this block at this height.
    pub fn check_evidence(&self, genesis: &Genesis) -> Result<(), String> {
        self.check_evidence_uncached(genesis, &UNCACHED)
    }

    /// [`Block::check_evidence`] through `verifier`.
    pub fn check_evidence_with(
        &self,
        genesis: &Genesis,
        verifier: &Verifier,
    ) -> Result<(), String> {
        // The same evidence arrives from many peers (and, in a simulator,
        // at many nodes of one process): check it once.
        let fingerprint = || {
            crate::with_encoded(&self.evidence, |evidence| {
                fingerprint(
                    b"orb/evidence-checked/1\0",
                    &[&genesis.id().0, &self.hash().0, evidence],
                )
            })
        };
        verifier.check_once(fingerprint, || {
            self.check_evidence_uncached(genesis, verifier)
        })
    }

    fn check_evidence_uncached(
        &self,
        genesis: &Genesis,
        verifier: &Verifier,
    ) -> Result<(), String> {
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
        // Rounds are the asker's: the deciding node asked every poll.
        let asker = ev
            .polls
            .first()
            .and_then(|p| p.votes.first())
            .map(|v| v.body.asker);
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
                    || Some(b.asker) != asker
                {
                    return Err(format!(
                        "a vote of round {} is for another block, height, round or asker",
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
        if !verifier.verify_batch(&batch) {
            return Err("a finality vote has a bad signature".into());
        }
        Ok(())
    }
}
