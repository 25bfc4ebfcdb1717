//! The chain: validated, durable appends on a [`LedgerStore`], and the
//! state (balances, paid invocations) folded from it.

use std::path::Path;

use crate::block::Block;
use crate::genesis::Genesis;
use crate::keys::{Digest, Keypair, PublicKey};
use crate::proof::{Checkpoint, ConsistencyProof, InclusionProof};
use crate::state::{Effects, State};
use crate::store::{LedgerStore, SledStore, StoreError, Table};

const GENESIS_KEY: &[u8] = b"genesis";
const HEAD_KEY: &[u8] = b"head";

/// What went wrong with a chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store holds data that does not decode.
    #[error("corrupt ledger: {0}")]
    Corrupt(String),
    /// No genesis in the store and none given.
    #[error("the ledger has no genesis (start a node with one, or pass --genesis)")]
    NoGenesis,
    /// The store belongs to another chain.
    #[error("the ledger is chain {stored}, not {given}")]
    OtherChain {
        /// The stored chain id.
        stored: Digest,
        /// The id asked for.
        given: Digest,
    },
    /// A bad genesis.
    #[error(transparent)]
    Genesis(#[from] crate::genesis::GenesisError),
    /// A block that cannot be appended.
    #[error("block at height {height} refused: {reason}")]
    Invalid {
        /// Its height.
        height: u64,
        /// Why.
        reason: String,
    },
}

/// A height as a big-endian key.
pub fn height_key(h: u64) -> [u8; 8] {
    h.to_be_bytes()
}

/// A chain on a store.
pub struct Chain<S: LedgerStore = SledStore> {
    store: S,
    genesis: Genesis,
    id: Digest,
    state: State,
}

impl Chain<SledStore> {
    /// Opens the chain in `dir` (see [`Chain::open`]).
    pub fn open_dir(dir: &Path, genesis: Option<Genesis>) -> Result<Self, ChainError> {
        Chain::open(SledStore::open(dir)?, genesis)
    }
}

/// Reads a store's genesis, if it has one.
pub fn stored_genesis(store: &dyn LedgerStore) -> Result<Option<Genesis>, ChainError> {
    store
        .get(Table::Meta, GENESIS_KEY)?
        .map(|b| {
            crate::decode::<Genesis>(&b).map_err(|e| ChainError::Corrupt(format!("genesis: {e}")))
        })
        .transpose()
}

/// Reads a store's head height (0 when empty).
pub fn stored_head(store: &dyn LedgerStore) -> Result<u64, ChainError> {
    match store.get(Table::Meta, HEAD_KEY)? {
        None => Ok(0),
        Some(b) => <[u8; 8]>::try_from(b.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| ChainError::Corrupt("head is not an 8-byte height".into())),
    }
}

/// Reads and decodes the block at `h`.
pub fn stored_block(store: &dyn LedgerStore, h: u64) -> Result<Option<Block>, ChainError> {
    store
        .get(Table::Blocks, &height_key(h))?
        .map(|b| {
            crate::decode::<Block>(&b).map_err(|e| ChainError::Corrupt(format!("block {h}: {e}")))
        })
        .transpose()
}

/// Reads and decodes the effects stored with block `h`.
pub fn stored_effects(store: &dyn LedgerStore, h: u64) -> Result<Option<Effects>, ChainError> {
    store
        .get(Table::Effects, &height_key(h))?
        .map(|b| {
            crate::decode::<Effects>(&b)
                .map_err(|e| ChainError::Corrupt(format!("effects {h}: {e}")))
        })
        .transpose()
}

impl<S: LedgerStore> Chain<S> {
    /// Opens a chain: a new store takes `genesis`; an existing one must
    /// hold the same genesis (or `None` accepts whatever it holds). The
    /// state is rebuilt from the stored blocks and effects (the audit is
    /// what re-derives the effects).
    pub fn open(store: S, genesis: Option<Genesis>) -> Result<Self, ChainError> {
        let genesis = match (stored_genesis(&store)?, genesis) {
            (Some(stored), Some(given)) if stored.id() != given.id() => {
                return Err(ChainError::OtherChain {
                    stored: stored.id(),
                    given: given.id(),
                });
            }
            (Some(stored), _) => stored,
            (None, Some(given)) => {
                given.validate()?;
                store.commit(&[(Table::Meta, GENESIS_KEY.to_vec(), crate::encode(&given))])?;
                given
            }
            (None, None) => return Err(ChainError::NoGenesis),
        };
        let mut state = State::genesis(&genesis);
        for h in 1..=stored_head(&store)? {
            let block = stored_block(&store, h)?
                .ok_or_else(|| ChainError::Corrupt(format!("block {h} is missing")))?;
            let effects = stored_effects(&store, h)?
                .ok_or_else(|| ChainError::Corrupt(format!("effects of block {h} are missing")))?;
            state.apply(&block, &effects);
        }
        Ok(Self {
            id: genesis.id(),
            store,
            genesis,
            state,
        })
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The chain id.
    pub fn id(&self) -> Digest {
        self.id
    }

    /// The state after the last block.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The head height (0: no blocks yet).
    pub fn height(&self) -> u64 {
        self.state.height
    }

    /// The head hash (the chain id when there are no blocks).
    pub fn head(&self) -> Digest {
        self.state.head
    }

    /// A key's balance.
    pub fn balance(&self, key: &PublicKey) -> u128 {
        self.state.balance(key)
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The block at `h`.
    pub fn block(&self, h: u64) -> Result<Option<Block>, ChainError> {
        stored_block(&self.store, h)
    }

    /// Where a receipt is: (height, index of its settlement).
    pub fn locate(&self, receipt: &Digest) -> Result<Option<(u64, u32)>, ChainError> {
        Ok(self.store.get(Table::Receipts, &receipt.0)?.and_then(|v| {
            let h = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
            let i = u32::from_be_bytes(v.get(8..12)?.try_into().ok()?);
            Some((h, i))
        }))
    }

    /// Checks a proposal for the next height: links, receipts and state
    /// (not the finality evidence, which a proposal does not have yet).
    pub fn check_proposal(&self, block: &Block) -> Result<Effects, String> {
        block.check_links(&self.id, self.state.height + 1, &self.state.head)?;
        block.check_proposal(&self.genesis)?;
        self.state.effects(&self.genesis, block)
    }

    /// Validates a decided block in full (evidence included) and appends
    /// it durably; returns its effects.
    pub fn append(&mut self, block: Block) -> Result<Effects, ChainError> {
        let height = self.state.height + 1;
        let invalid = |reason: String| ChainError::Invalid { height, reason };
        block
            .check_links(&self.id, height, &self.state.head)
            .map_err(invalid)?;
        block.check_signatures(&self.genesis).map_err(invalid)?;
        let effects = self.state.effects(&self.genesis, &block).map_err(invalid)?;
        self.commit(&block, &effects)?;
        self.state.apply(&block, &effects);
        Ok(effects)
    }

    /// Appends a block the caller already checked in full (the consensus
    /// replica checks every block it commits, and computed `effects`
    /// against this same state): only its link to the head is checked
    /// again, then it is written durably.
    pub fn commit_checked(&mut self, block: &Block, effects: &Effects) -> Result<(), ChainError> {
        let height = self.state.height + 1;
        block
            .check_links(&self.id, height, &self.state.head)
            .map_err(|reason| ChainError::Invalid { height, reason })?;
        self.commit(block, effects)?;
        self.state.apply(block, effects);
        Ok(())
    }

    fn commit(&self, block: &Block, effects: &Effects) -> Result<(), ChainError> {
        let h = block.header.height;
        let mut writes = vec![
            (Table::Blocks, height_key(h).to_vec(), crate::encode(block)),
            (
                Table::Effects,
                height_key(h).to_vec(),
                crate::encode(effects),
            ),
            (Table::Meta, HEAD_KEY.to_vec(), height_key(h).to_vec()),
        ];
        for (i, r) in block.receipts() {
            let mut loc = height_key(h).to_vec();
            loc.extend_from_slice(&(i as u32).to_be_bytes());
            writes.push((Table::Receipts, r.id().0.to_vec(), loc));
        }
        self.store.commit(&writes)?;
        Ok(())
    }
}

/// Proofs and checkpoints.
impl<S: LedgerStore> Chain<S> {
    /// The hashes of blocks 1..=head.
    pub fn block_hashes(&self) -> Result<Vec<Digest>, ChainError> {
        (1..=self.height())
            .map(|h| {
                self.block(h)?
                    .map(|b| b.hash())
                    .ok_or_else(|| ChainError::Corrupt(format!("block {h} is missing")))
            })
            .collect()
    }

    /// A checkpoint of the head signed by `key` (None before block 1).
    pub fn checkpoint(&self, key: &Keypair) -> Result<Option<Checkpoint>, ChainError> {
        Ok(Checkpoint::new(key, self.id, &self.block_hashes()?))
    }

    /// An inclusion proof of a receipt to a checkpoint of the head.
    pub fn prove(
        &self,
        receipt: &Digest,
        key: &Keypair,
    ) -> Result<Option<InclusionProof>, ChainError> {
        let Some((h, i)) = self.locate(receipt)? else {
            return Ok(None);
        };
        let block = self
            .block(h)?
            .ok_or_else(|| ChainError::Corrupt(format!("block {h} is missing")))?;
        let hashes = self.block_hashes()?;
        let Some(cp) = Checkpoint::new(key, self.id, &hashes) else {
            return Ok(None);
        };
        let Some(r) = block
            .settlements
            .get(i as usize)
            .and_then(|s| s.body.receipts.iter().position(|r| r.id() == *receipt))
        else {
            return Err(ChainError::Corrupt(format!(
                "the receipt index points {receipt} at block {h} settlement {i}, which does not hold it"
            )));
        };
        Ok(InclusionProof::new(
            &block.settlements,
            block.header,
            (i, r as u32),
            &hashes,
            cp,
        ))
    }

    /// Proof that the chain extends `old`, or why it does not.
    pub fn consistency(
        &self,
        old: Checkpoint,
        key: &Keypair,
    ) -> Result<Result<ConsistencyProof, String>, ChainError> {
        if old.chain != self.id {
            return Ok(Err(format!(
                "the checkpoint is for chain {}, this ledger is {}",
                old.chain, self.id
            )));
        }
        if old.height > self.height() {
            return Ok(Err(format!(
                "the checkpoint is at height {}, this ledger only reaches {}",
                old.height,
                self.height()
            )));
        }
        let hashes = self.block_hashes()?;
        let Some(new) = Checkpoint::new(key, self.id, &hashes) else {
            return Ok(Err("the ledger has no blocks".into()));
        };
        Ok(ConsistencyProof::new(old, new, &hashes)
            .ok_or_else(|| "the checkpoint is empty".to_string()))
    }
}
