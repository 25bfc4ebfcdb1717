//! Genesis: the chain's parameters and initial balances. The chain id is
//! the hash of its genesis, so two nodes agree on the rules exactly when
//! they agree on the id.

use serde::{Deserialize, Serialize};

use crate::keys::{Digest, PublicKey};
use crate::snowball::{Params, ParamsError};

const TAG: &[u8] = b"orb/genesis/1\0";

/// The chain's parameters and initial balances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// A human-readable name (part of the id).
    pub name: String,
    /// Snowball's parameters for every height.
    pub snowball: Params,
    /// King-of-the-Hill committee slots.
    pub slots: u32,
    /// Minimum claim difficulty (leading zero bits of the work hash).
    pub difficulty: u32,
    /// Credits per unit of fuel an executor earns (and the invoker pays).
    pub price: u64,
    /// Credits a block's proposer earns.
    pub block_reward: u64,
    /// Most receipts one block may hold.
    pub max_receipts: u32,
    /// Initial balances (a faucet).
    pub balances: Vec<(PublicKey, u64)>,
}

/// Why a genesis was refused.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// Bad Snowball parameters.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// The committee could never produce α_confidence votes.
    #[error("{slots} slots cannot give alpha_confidence = {alpha} votes")]
    Slots {
        /// Slots.
        slots: u32,
        /// α_confidence.
        alpha: usize,
    },
    /// Something else.
    #[error("{0}")]
    Other(String),
}

impl Genesis {
    /// A laptop-sized chain: 8 slots, k 5, α 4/4, β 6, difficulty 8 bits
    /// (a node mines a claim in milliseconds), price 1, reward 1000.
    pub fn local(name: &str, balances: Vec<(PublicKey, u64)>) -> Self {
        Self {
            name: name.to_string(),
            snowball: Params::new(5, 4, 4, 6).unwrap_or_default(),
            slots: 8,
            difficulty: 8,
            price: 1,
            block_reward: 1000,
            max_receipts: 4096,
            balances,
        }
    }

    /// The chain id.
    pub fn id(&self) -> Digest {
        Digest::of(TAG, &crate::encode(self))
    }

    /// Checks the parameters (deserializing does not).
    pub fn validate(&self) -> Result<(), GenesisError> {
        let p = self.snowball;
        Params::new(p.k(), p.alpha_preference(), p.alpha_confidence(), p.beta())?;
        if (self.slots as usize) < p.alpha_confidence() {
            return Err(GenesisError::Slots {
                slots: self.slots,
                alpha: p.alpha_confidence(),
            });
        }
        if self.max_receipts == 0 {
            return Err(GenesisError::Other("max_receipts must be positive".into()));
        }
        if self.difficulty > 64 {
            return Err(GenesisError::Other(
                "difficulty above 64 bits cannot be mined".into(),
            ));
        }
        let mut keys: Vec<_> = self.balances.iter().map(|(k, _)| k).collect();
        keys.sort();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(GenesisError::Other("a key has two initial balances".into()));
        }
        Ok(())
    }
}
