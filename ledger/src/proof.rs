//! Evidence an auditor can check with no node and no data dir.
//!
//! A [`Checkpoint`] is a signed tree head: (chain, height, head hash, the
//! RFC 9162 root over the hashes of blocks 1..=height). An
//! [`InclusionProof`] carries a receipt inside its settlement, the block
//! header, the settlement's Merkle path to the header's root, and the header's path to the
//! checkpoint's history root — the header chain to the checkpoint,
//! compressed to log₂(height) hashes. A [`ConsistencyProof`] shows a newer
//! checkpoint's history extends an older one (no block rewritten).

use serde::{Deserialize, Serialize};

use crate::block::Header;
use crate::keys::{Digest, Keypair, PublicKey, Signature};
use crate::merkle;
use crate::receipt::Receipt;
use crate::settlement::Settlement;

const TAG: &[u8] = b"orb/checkpoint/1\0";

/// A signed (height, head, history root).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The chain id.
    pub chain: Digest,
    /// Blocks covered.
    pub height: u64,
    /// The hash of block `height`.
    pub head: Digest,
    /// RFC 9162 root over the hashes of blocks 1..=height.
    pub history: Digest,
    /// Who signed it.
    pub signer: PublicKey,
    /// The signature.
    pub signature: Signature,
}

fn leaves(block_hashes: &[Digest]) -> Vec<merkle::Hash> {
    block_hashes
        .iter()
        .map(|h| merkle::leaf_hash(&h.0))
        .collect()
}

impl Checkpoint {
    fn body(&self) -> Vec<u8> {
        crate::encode(&(
            self.chain,
            self.height,
            self.head,
            self.history,
            self.signer,
        ))
    }

    /// Signs a checkpoint over `block_hashes` (blocks 1..=n, n ≥ 1).
    pub fn new(key: &Keypair, chain: Digest, block_hashes: &[Digest]) -> Option<Self> {
        let head = *block_hashes.last()?;
        let mut c = Self {
            chain,
            height: block_hashes.len() as u64,
            head,
            history: Digest(merkle::root(&leaves(block_hashes))),
            signer: key.public(),
            signature: Signature([0; 64]),
        };
        c.signature = key.sign(TAG, &c.body());
        Some(c)
    }

    /// Checks the signature.
    pub fn verify(&self) -> bool {
        self.signer.verify(TAG, &self.body(), &self.signature)
    }
}

/// A receipt's inclusion in a checkpointed chain: the settlement holding
/// it, proven into its block and the block into the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The settlement holding the receipt.
    pub settlement: Settlement,
    /// The receipt's index in the settlement.
    pub receipt: u32,
    /// Its block's header.
    pub header: Header,
    /// The settlement's index in the block.
    pub index: u32,
    /// Path from the settlement's leaf to `header.settlements_root`.
    pub settlement_path: Vec<Digest>,
    /// Path from the header's hash to `checkpoint.history`.
    pub history_path: Vec<Digest>,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
}

fn raw(v: &[Digest]) -> Vec<merkle::Hash> {
    v.iter().map(|d| d.0).collect()
}

fn wrap(v: Vec<merkle::Hash>) -> Vec<Digest> {
    v.into_iter().map(Digest).collect()
}

impl InclusionProof {
    /// Builds a proof for receipt `receipt` of settlement `index` of the
    /// block `block_hashes[height-1]`.
    pub fn new(
        settlements: &[Settlement],
        header: Header,
        (index, receipt): (u32, u32),
        block_hashes: &[Digest],
        checkpoint: Checkpoint,
    ) -> Option<Self> {
        let leaves_s: Vec<_> = settlements.iter().map(|s| s.leaf().0).collect();
        let settlement_path = wrap(merkle::inclusion_proof(&leaves_s, index as usize)?);
        let settlement = settlements.get(index as usize)?.clone();
        settlement.body.receipts.get(receipt as usize)?;
        let history_path = wrap(merkle::inclusion_proof(
            &leaves(&block_hashes[..checkpoint.height as usize]),
            header.height.checked_sub(1)? as usize,
        )?);
        Some(Self {
            settlement,
            receipt,
            header,
            index,
            settlement_path,
            history_path,
            checkpoint,
        })
    }

    /// The proven receipt.
    pub fn receipt(&self) -> Option<&Receipt> {
        self.settlement.body.receipts.get(self.receipt as usize)
    }

    /// Checks every link: the receipt and its executor's signature, the
    /// settlement's signatures, its leaf in the header's root, the header
    /// in the checkpoint's history, the checkpoint's signature.
    pub fn verify(&self) -> Result<(), String> {
        let Some(receipt) = self.receipt() else {
            return Err("the settlement has no such receipt".into());
        };
        if !receipt.verify() {
            return Err("the receipt's executor signature is bad".into());
        }
        if !self.settlement.verify() {
            return Err("the settlement's signatures are bad".into());
        }
        if !merkle::verify_inclusion(
            self.index as usize,
            self.header.settlements as usize,
            &self.settlement.leaf().0,
            &raw(&self.settlement_path),
            &self.header.settlements_root.0,
        ) {
            return Err("the settlement is not in the block's Merkle root".into());
        }
        let c = &self.checkpoint;
        if self.header.chain != c.chain {
            return Err("the block and the checkpoint are on different chains".into());
        }
        if self.header.height == 0 || self.header.height > c.height {
            return Err(format!(
                "block {} is not below checkpoint {}",
                self.header.height, c.height
            ));
        }
        if !merkle::verify_inclusion(
            (self.header.height - 1) as usize,
            c.height as usize,
            &merkle::leaf_hash(&self.header.hash().0),
            &raw(&self.history_path),
            &c.history.0,
        ) {
            return Err("the block header is not in the checkpoint's history".into());
        }
        if !c.verify() {
            return Err("the checkpoint's signature is bad".into());
        }
        Ok(())
    }
}

/// Proof that `new` extends `old`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The earlier checkpoint.
    pub old: Checkpoint,
    /// The later one.
    pub new: Checkpoint,
    /// RFC 9162 consistency path.
    pub path: Vec<Digest>,
}

impl ConsistencyProof {
    /// Builds the proof from the current block hashes.
    pub fn new(old: Checkpoint, new: Checkpoint, block_hashes: &[Digest]) -> Option<Self> {
        let path = wrap(merkle::consistency_proof(
            &leaves(&block_hashes[..new.height as usize]),
            old.height as usize,
        )?);
        Some(Self { old, new, path })
    }

    /// Checks it (the signatures of both checkpoints included).
    pub fn verify(&self) -> Result<(), String> {
        if self.old.chain != self.new.chain {
            return Err("the checkpoints are on different chains".into());
        }
        if !self.old.verify() || !self.new.verify() {
            return Err("a checkpoint's signature is bad".into());
        }
        if self.old.height > self.new.height {
            return Err("the old checkpoint is higher than the new one".into());
        }
        if !merkle::verify_consistency(
            self.old.height as usize,
            self.new.height as usize,
            &self.old.history.0,
            &self.new.history.0,
            &raw(&self.path),
        ) {
            return Err(format!(
                "the chain does not extend the checkpoint at height {}: history was rewritten",
                self.old.height
            ));
        }
        Ok(())
    }
}
