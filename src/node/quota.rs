//! What a node keeps on disk for others. Any peer can ask a node to host a
//! module (and a deploy through the API stores one), and modules are kept
//! for good, so without bounds a flood of large modules fills the disk.
//! Each module is at most [`Limits::max_module`] bytes; what one publisher
//! had this node store (modules and their compiled artifacts) is at most
//! [`Limits::per_publisher`] bytes; all of it at most [`Limits::total`].
//! The publisher of a deploy is its name record's key; of a peer's hosting
//! request, that peer; auto-scaling (this node's own choice) counts only
//! toward the total. A module already stored costs nothing again.
//!
//! What was charged is kept in the `quota` tree (function id → publisher,
//! bytes), so the bounds hold across restarts. A module's compiled size is
//! known only once it is compiled: a publisher's use may pass its quota by
//! at most one artifact.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use orb_functions::FunctionId;
use serde::{Deserialize, Serialize};

/// The bounds of what a node stores for others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest module accepted, in bytes.
    pub max_module: u64,
    /// Bytes stored for one publisher at most.
    pub per_publisher: u64,
    /// Bytes stored in all at most.
    pub total: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_module: 8 << 20,
            per_publisher: 256 << 20,
            total: 4 << 30,
        }
    }
}

/// Why a module is not stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The module is over the size limit.
    #[error("a module of {size} bytes is over this node's limit of {limit} (--max-module-bytes)")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The publisher used its quota.
    #[error(
        "publisher {publisher} already has {used} bytes stored here, its quota is {limit} (--publisher-quota-bytes)"
    )]
    Quota {
        /// Who.
        publisher: String,
        /// What it has stored.
        used: u64,
        /// Its quota.
        limit: u64,
    },
    /// The store is full.
    #[error("this node's function store is full: {used} of {limit} bytes (--store-quota-bytes)")]
    Full {
        /// Stored in all.
        used: u64,
        /// The limit.
        limit: u64,
    },
}

/// One charge, as kept in the tree.
#[derive(Serialize, Deserialize)]
struct Charge {
    publisher: Option<String>,
    bytes: u64,
}

/// How much is stored, for whom (the pure part).
#[derive(Debug, Default)]
struct Usage {
    by: HashMap<String, u64>,
    total: u64,
    charged: HashMap<FunctionId, Option<String>>,
}

impl Usage {
    fn admit(
        &self,
        limits: &Limits,
        publisher: Option<&str>,
        id: &FunctionId,
        size: u64,
    ) -> Result<(), Refusal> {
        if self.charged.contains_key(id) {
            return Ok(());
        }
        if size > limits.max_module {
            return Err(Refusal::TooLarge {
                size,
                limit: limits.max_module,
            });
        }
        if let Some(p) = publisher {
            let used = self.by.get(p).copied().unwrap_or(0);
            if used.saturating_add(size) > limits.per_publisher {
                return Err(Refusal::Quota {
                    publisher: p.to_owned(),
                    used,
                    limit: limits.per_publisher,
                });
            }
        }
        if self.total.saturating_add(size) > limits.total {
            return Err(Refusal::Full {
                used: self.total,
                limit: limits.total,
            });
        }
        Ok(())
    }

    /// Records a charge; false if `id` was charged already.
    fn charge(&mut self, publisher: Option<&str>, id: FunctionId, bytes: u64) -> bool {
        if self.charged.contains_key(&id) {
            return false;
        }
        if let Some(p) = publisher {
            *self.by.entry(p.to_owned()).or_default() += bytes;
        }
        self.total = self.total.saturating_add(bytes);
        self.charged.insert(id, publisher.map(str::to_owned));
        true
    }
}

/// The node's store bounds and what it has charged against them.
pub(crate) struct Quota {
    limits: Limits,
    tree: sled::Tree,
    usage: Mutex<Usage>,
}

impl Quota {
    /// Opens the `quota` tree of `db` and sums what it holds.
    pub(crate) fn open(db: &sled::Db, limits: Limits) -> Result<Self, sled::Error> {
        let tree = db.open_tree("quota")?;
        let mut usage = Usage::default();
        for entry in tree.iter() {
            let (key, value) = entry?;
            let (Ok(id), Ok(charge)) = (
                <[u8; 32]>::try_from(key.as_ref()).map(FunctionId::from_bytes),
                postcard::from_bytes::<Charge>(&value),
            ) else {
                tracing::warn!("quota: an entry that does not decode is skipped");
                continue;
            };
            usage.charge(charge.publisher.as_deref(), id, charge.bytes);
        }
        Ok(Self {
            limits,
            tree,
            usage: Mutex::new(usage),
        })
    }

    /// The bounds.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Bytes stored in all, as charged.
    pub(crate) fn used(&self) -> u64 {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// Whether a module `id` of `size` bytes from `publisher` (none: this
    /// node's own choice) may be stored.
    pub(crate) fn admit(
        &self,
        publisher: Option<&str>,
        id: &FunctionId,
        size: u64,
    ) -> Result<(), Refusal> {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(&self.limits, publisher, id, size)
    }

    /// Charges `bytes` stored for `id` to `publisher` (once per module).
    pub(crate) fn charge(&self, publisher: Option<&str>, id: FunctionId, bytes: u64) {
        let fresh = self
            .usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .charge(publisher, id, bytes);
        if fresh {
            let charge = Charge {
                publisher: publisher.map(str::to_owned),
                bytes,
            };
            let value = postcard::to_stdvec(&charge).unwrap_or_default();
            if let Err(e) = self.tree.insert(id.as_bytes(), value) {
                tracing::warn!(function = %id, "quota: charge not recorded: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> FunctionId {
        FunctionId::of(&[n])
    }

    const LIMITS: Limits = Limits {
        max_module: 100,
        per_publisher: 250,
        total: 400,
    };

    #[test]
    fn a_publisher_is_held_to_its_quota_and_everyone_to_the_total() {
        let mut u = Usage::default();
        assert_eq!(
            u.admit(&LIMITS, Some("a"), &id(0), 101),
            Err(Refusal::TooLarge {
                size: 101,
                limit: 100
            })
        );
        for n in 0..2 {
            assert_eq!(u.admit(&LIMITS, Some("a"), &id(n), 100), Ok(()));
            u.charge(Some("a"), id(n), 120);
        }
        // a holds 240: 10 more fit, 11 do not; b is not held to a's use.
        assert_eq!(u.admit(&LIMITS, Some("a"), &id(2), 10), Ok(()));
        assert!(matches!(
            u.admit(&LIMITS, Some("a"), &id(2), 11),
            Err(Refusal::Quota { used: 240, .. })
        ));
        assert_eq!(u.admit(&LIMITS, Some("b"), &id(3), 100), Ok(()));
        u.charge(Some("b"), id(3), 100);
        // 340 stored in all: the node's own choice is held to the total.
        assert!(matches!(
            u.admit(&LIMITS, None, &id(4), 61),
            Err(Refusal::Full { used: 340, .. })
        ));
        assert_eq!(u.admit(&LIMITS, None, &id(4), 60), Ok(()));
        // A module stored already costs nothing again, whoever asks.
        assert_eq!(u.admit(&LIMITS, Some("a"), &id(0), 100), Ok(()));
        assert!(!u.charge(Some("c"), id(0), 100));
        assert_eq!(u.total, 340);
    }

    #[test]
    fn charges_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let q = Quota::open(&db, LIMITS).unwrap();
        q.charge(Some("a"), id(0), 200);
        q.charge(None, id(1), 150);
        drop(q);
        let q = Quota::open(&db, LIMITS).unwrap();
        assert_eq!(q.used(), 350);
        assert!(matches!(
            q.admit(Some("a"), &id(2), 51),
            Err(Refusal::Quota { used: 200, .. })
        ));
    }
}
