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
    /// A committee claim expires when its holder has not voted in a
    /// block's finality evidence (nor proposed) for this many heights; its
    /// votes are then refused and its slot is free to mine (0: never).
    #[serde(default)]
    pub claim_expiry: u64,
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
            claim_expiry: 20,
            balances,
        }
    }

    /// The smallest claim expiry under which an honest member that
    /// answers every poll still lapses by chance less than once in a
    /// million: a decider's β polls sample k of the slots each, so a member
    /// is missing from one block's evidence with probability about
    /// (1 − k/slots)^β.
    pub fn safe_claim_expiry(&self) -> u64 {
        let p = self.snowball;
        let miss = (1.0 - p.k() as f64 / f64::from(self.slots.max(1))).max(0.0);
        let per_block = miss.powi(p.beta() as i32);
        if per_block <= 0.0 {
            return 1;
        }
        (1e-6f64.ln() / per_block.ln()).ceil().max(1.0) as u64
    }

    /// The chain id.
    pub fn id(&self) -> Digest {
        crate::digest_of(TAG, self)
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
        if self.claim_expiry != 0 && self.claim_expiry < self.safe_claim_expiry() {
            return Err(GenesisError::Other(format!(
                "claim_expiry {} is below {} heights: honest members would lapse by chance",
                self.claim_expiry,
                self.safe_claim_expiry()
            )));
        }
        let mut keys: Vec<_> = self.balances.iter().map(|(k, _)| k).collect();
        keys.sort();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(GenesisError::Other("a key has two initial balances".into()));
        }
        Ok(())
    }
}
