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
const LAYOUT_KEY: &[u8] = b"layout";
/// The store layout this code writes: one value per height (2; layout 1
/// kept effects and a receipt index in tables of their own).
const LAYOUT: u8 = 2;

/// What the store keeps at one height, in one value: the block, its
/// balance effects, and its receipts' entry in the receipt index (per
/// receipt, the first 8 bytes of its id as a big-endian number and the
/// index of its settlement, sorted), first in the encoding so that a
/// lookup reads it without decoding the block.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredBlock {
    /// The receipt index entry of the block.
    pub receipts: Vec<(u64, u32)>,
    /// The block's balance effects.
    pub effects: Effects,
    /// The block, evidence included.
    pub block: Block,
}

/// [`StoredBlock`] by reference: the same encoding, without copying the block.
#[derive(serde::Serialize)]
struct StoredRef<'a> {
    receipts: &'a [(u64, u32)],
    effects: &'a Effects,
    block: &'a Block,
}

impl StoredBlock {
    /// The receipt index entry of `block`.
    pub fn index(block: &Block) -> Vec<(u64, u32)> {
        let mut index: Vec<(u64, u32)> = block
            .receipts()
            .map(|(i, r)| (receipt_prefix(&r.id()), i as u32))
            .collect();
        index.sort_unstable();
        index
    }

    /// The stored bytes of `block` with `effects`.
    pub fn encode(block: &Block, effects: &Effects) -> Vec<u8> {
        crate::encode(&StoredRef {
            receipts: &Self::index(block),
            effects,
            block,
        })
    }

    /// Decodes a stored value.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        crate::decode(bytes)
    }
}

/// A receipt id's key in the receipt index.
fn receipt_prefix(id: &Digest) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(first)
}

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
    /// An earlier write failed: nothing more is written until the chain
    /// is opened again.
    #[error("the ledger stopped writing after a failed write ({0}); reopen it")]
    Poisoned(String),
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
    /// Why a write failed, once one did: the store may hold more or less
    /// than this chain's state says, so no later write is tried (reopen
    /// the chain to learn what the store kept).
    poisoned: Option<String>,
    /// The height of a torn last block dropped on opening, if one was.
    dropped_torn: Option<u64>,
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

/// Reads a store's head height (0 when empty): its last block's.
pub fn stored_head(store: &dyn LedgerStore) -> Result<u64, ChainError> {
    match store.last_key(Table::Blocks)? {
        None => Ok(0),
        Some(k) => <[u8; 8]>::try_from(k.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| ChainError::Corrupt("a block key is not an 8-byte height".into())),
    }
}

/// Reads and decodes what is stored at `h`.
pub fn stored(store: &dyn LedgerStore, h: u64) -> Result<Option<StoredBlock>, ChainError> {
    store
        .get(Table::Blocks, &height_key(h))?
        .map(|b| {
            StoredBlock::decode(&b).map_err(|e| ChainError::Corrupt(format!("block {h}: {e}")))
        })
        .transpose()
}

/// Reads and decodes the block at `h`.
pub fn stored_block(store: &dyn LedgerStore, h: u64) -> Result<Option<Block>, ChainError> {
    Ok(stored(store, h)?.map(|s| s.block))
}

/// Reads and decodes the effects stored with block `h`.
pub fn stored_effects(store: &dyn LedgerStore, h: u64) -> Result<Option<Effects>, ChainError> {
    Ok(stored(store, h)?.map(|s| s.effects))
}

/// Drops the last block when it does not decode: a write the process did
/// not finish (a torn write) leaves at most the last height unreadable,
/// and a commit that did not finish was never acknowledged. A block below
/// the head that does not decode is corruption, and opening reports it.
fn drop_torn_head(store: &dyn LedgerStore) -> Result<Option<u64>, ChainError> {
    let head = stored_head(store)?;
    if head == 0 {
        return Ok(None);
    }
    match stored(store, head) {
        Ok(_) => Ok(None),
        Err(ChainError::Corrupt(_)) => {
            store.remove(Table::Blocks, &height_key(head))?;
            Ok(Some(head))
        }
        Err(e) => Err(e),
    }
}

/// Checks that the store's layout is the one this code reads.
fn check_layout(store: &dyn LedgerStore) -> Result<(), ChainError> {
    match store.get(Table::Meta, LAYOUT_KEY)?.as_deref() {
        Some([LAYOUT]) => Ok(()),
        Some(other) => Err(ChainError::Corrupt(format!(
            "the ledger's layout is {other:?}, this Orb reads layout {LAYOUT}"
        ))),
        None => Err(ChainError::Corrupt(format!(
            "the ledger was written by an older Orb (layout 1; this one reads layout {LAYOUT}): \
             move the directory away and let the node sync the chain again"
        ))),
    }
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
            (Some(stored), _) => {
                check_layout(&store)?;
                stored
            }
            (None, Some(given)) => {
                given.validate()?;
                store.commit(&[
                    (Table::Meta, GENESIS_KEY.to_vec(), crate::encode(&given)),
                    (Table::Meta, LAYOUT_KEY.to_vec(), vec![LAYOUT]),
                ])?;
                given
            }
            (None, None) => return Err(ChainError::NoGenesis),
        };
        let dropped_torn = drop_torn_head(&store)?;
        let mut state = State::genesis(&genesis);
        for h in 1..=stored_head(&store)? {
            let at = stored(&store, h)?
                .ok_or_else(|| ChainError::Corrupt(format!("block {h} is missing")))?;
            state.apply(&at.block, &at.effects);
        }
        Ok(Self {
            id: genesis.id(),
            store,
            genesis,
            state,
            poisoned: None,
            dropped_torn,
        })
    }

    /// The height of the last block if opening found it torn (it did not
    /// decode) and dropped it: a write that never finished, so it was
    /// never acknowledged; the node fetches that block again from its
    /// peers.
    pub fn dropped_torn(&self) -> Option<u64> {
        self.dropped_torn
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

    /// Where a receipt is: (height, index of its settlement). Reads each
    /// height's receipt index entry (not its block) until one names the
    /// receipt, then confirms it in that block.
    pub fn locate(&self, receipt: &Digest) -> Result<Option<(u64, u32)>, ChainError> {
        let key = receipt_prefix(receipt);
        let mut hits: Vec<(u64, u32)> = Vec::new();
        let mut bad = None;
        self.store.scan(Table::Blocks, &mut |k, v| {
            let Ok(h) = <[u8; 8]>::try_from(k).map(u64::from_be_bytes) else {
                return true;
            };
            match postcard::take_from_bytes::<Vec<(u64, u32)>>(v) {
                Ok((index, _)) => {
                    let from = index.partition_point(|(p, _)| *p < key);
                    hits.extend(
                        index[from..]
                            .iter()
                            .take_while(|(p, _)| *p == key)
                            .map(|(_, i)| (h, *i)),
                    );
                }
                Err(e) => bad = Some(ChainError::Corrupt(format!("block {h}: {e}"))),
            }
            bad.is_none()
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        for (h, i) in hits {
            let holds = self.block(h)?.is_some_and(|b| {
                b.settlements
                    .get(i as usize)
                    .is_some_and(|s| s.body.receipts.iter().any(|r| r.id() == *receipt))
            });
            if holds {
                return Ok(Some((h, i)));
            }
        }
        Ok(None)
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
        self.commit_checked_all(&[(block, effects)])
    }

    /// Appends blocks the caller already checked in full, in order, each
    /// with its effects: one durable write for all of them (a group
    /// commit: the store's one fsync covers every block). On an error
    /// nothing of the batch is applied.
    pub fn commit_checked_all(&mut self, blocks: &[(&Block, &Effects)]) -> Result<(), ChainError> {
        let (mut height, mut head) = (self.state.height, self.state.head);
        let mut writes = Vec::with_capacity(blocks.len());
        for (block, effects) in blocks {
            height += 1;
            block
                .check_links(&self.id, height, &head)
                .map_err(|reason| ChainError::Invalid { height, reason })?;
            head = block.hash();
            writes.push(Self::write(block, effects));
        }
        if writes.is_empty() {
            return Ok(());
        }
        self.write_all(&writes)?;
        for (block, effects) in blocks {
            self.state.apply(block, effects);
        }
        Ok(())
    }

    fn write(block: &Block, effects: &Effects) -> crate::store::Write {
        (
            Table::Blocks,
            height_key(block.header.height).to_vec(),
            StoredBlock::encode(block, effects),
        )
    }

    fn commit(&mut self, block: &Block, effects: &Effects) -> Result<(), ChainError> {
        self.write_all(&[Self::write(block, effects)])
    }

    /// One commit to the store; the first failure poisons the chain.
    fn write_all(&mut self, writes: &[crate::store::Write]) -> Result<(), ChainError> {
        if let Some(why) = &self.poisoned {
            return Err(ChainError::Poisoned(why.clone()));
        }
        self.store.commit(writes).map_err(|e| {
            self.poisoned = Some(e.to_string());
            ChainError::Store(e)
        })
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
