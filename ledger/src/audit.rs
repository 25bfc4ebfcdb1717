//! The audit: re-checks a stored chain from genesis, in levels (each
//! includes the ones below, as bitcoin-core's `verifychain`):
//!
//! 0. every block decodes;
//! 1. heights, hash links, receipt counts and Merkle roots;
//! 2. proposer, receipt and vote signatures and the finality evidence;
//! 3. rewards and balances recomputed from genesis, compared with the
//!    effects stored with each block;
//! 4. storage consistency: keys, each height's receipt index entry
//!    against its block, the meta keys.
//!
//! It reports the first failing height and why. A store that cannot be
//! read at all is an error, not a finding.

use serde::Serialize;

use crate::chain::{StoredBlock, height_key, stored_genesis, stored_head};
use crate::keys::{Digest, PublicKey};
use crate::state::State;
use crate::store::{LedgerStore, StoreError, Table};

/// The highest level.
pub const MAX_LEVEL: u8 = 4;

/// What to audit.
#[derive(Clone, Copy, Debug)]
pub struct AuditOptions {
    /// First height reported on (state is still rebuilt from genesis).
    pub from: u64,
    /// Last height (default: the head).
    pub to: Option<u64>,
    /// 0..=4.
    pub level: u8,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            from: 1,
            to: None,
            level: 3,
        }
    }
}

/// The first thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The failing height (none for store-wide findings).
    pub height: Option<u64>,
    /// The level whose check failed.
    pub level: u8,
    /// Why.
    pub reason: String,
}

/// The audit's result.
#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    /// The chain id.
    pub chain: Digest,
    /// The level run.
    pub level: u8,
    /// First height checked.
    pub from: u64,
    /// Last height checked.
    pub to: u64,
    /// The store's head.
    pub head: u64,
    /// Blocks checked.
    pub blocks: u64,
    /// Receipts checked.
    pub receipts: u64,
    /// Settlements checked.
    pub settlements: u64,
    /// Finality votes checked (level ≥ 2).
    pub votes: u64,
    /// The first failure, if any.
    pub finding: Option<Finding>,
    /// Balances at `to`, recomputed (level ≥ 3, clean runs only).
    pub balances: Option<Vec<(PublicKey, u128)>>,
}

/// The store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's genesis or head is missing or unreadable.
    #[error("unreadable ledger: {0}")]
    Unreadable(String),
}

impl From<crate::chain::ChainError> for AuditError {
    fn from(e: crate::chain::ChainError) -> Self {
        match e {
            crate::chain::ChainError::Store(s) => AuditError::Store(s),
            other => AuditError::Unreadable(other.to_string()),
        }
    }
}

/// Audits `store`; `progress` is called with each height as it is done.
pub fn audit(
    store: &dyn LedgerStore,
    opts: AuditOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<AuditReport, AuditError> {
    let genesis =
        stored_genesis(store)?.ok_or_else(|| AuditError::Unreadable("no genesis".into()))?;
    genesis
        .validate()
        .map_err(|e| AuditError::Unreadable(format!("genesis: {e}")))?;
    let chain = genesis.id();
    let head = stored_head(store)?;
    let level = opts.level.min(MAX_LEVEL);
    let from = opts.from.max(1);
    let to = opts.to.unwrap_or(head).min(head);
    let mut report = AuditReport {
        chain,
        level,
        from,
        to,
        head,
        blocks: 0,
        receipts: 0,
        settlements: 0,
        votes: 0,
        finding: None,
        balances: None,
    };
    let fail = |height: Option<u64>, level: u8, reason: String| {
        Some(Finding {
            height,
            level,
            reason,
        })
    };

    // Level 3 folds every block from genesis; lower levels need only the
    // block below `from` for its hash.
    let start = if level >= 3 {
        1
    } else {
        from.saturating_sub(1).max(1)
    };
    let mut state = State::genesis(&genesis);
    let mut prev = chain;
    for h in start..=to {
        let checked = h >= from;
        let stored = match store.get(Table::Blocks, &height_key(h))? {
            None => {
                report.finding = fail(
                    Some(h),
                    0,
                    format!("block {h} is missing (the head is {head})"),
                );
                return Ok(report);
            }
            Some(bytes) => match StoredBlock::decode(&bytes) {
                Ok(b) => b,
                Err(e) => {
                    report.finding = fail(Some(h), 0, format!("block {h} does not decode: {e}"));
                    return Ok(report);
                }
            },
        };
        let block = &stored.block;
        // Below `from` at levels 1–2 only the hash of the block is used.
        if level >= 1
            && (checked || level >= 3)
            && let Err(reason) = block.check_links(&chain, h, &prev)
        {
            report.finding = fail(Some(h), 1, reason);
            return Ok(report);
        }
        if level >= 2 && checked {
            if let Err(reason) = block.check_signatures(&genesis) {
                report.finding = fail(Some(h), 2, reason);
                return Ok(report);
            }
            report.votes += block
                .evidence
                .polls
                .iter()
                .map(|p| p.votes.len() as u64)
                .sum::<u64>();
        }
        if level >= 3 {
            let effects = match state.effects(&genesis, block) {
                Ok(e) => e,
                Err(reason) => {
                    report.finding = fail(Some(h), 3, reason);
                    return Ok(report);
                }
            };
            if stored.effects != effects {
                report.finding = fail(
                    Some(h),
                    3,
                    describe_difference(&stored.effects.0, &effects.0),
                );
                return Ok(report);
            }
            state.apply(block, &effects);
        }
        if level >= 4 && stored.receipts != StoredBlock::index(block) {
            report.finding = fail(
                Some(h),
                4,
                format!("the receipt index entry of block {h} does not match its receipts"),
            );
            return Ok(report);
        }
        if checked {
            report.blocks += 1;
            report.receipts += block.receipt_count() as u64;
            report.settlements += block.settlements.len() as u64;
        }
        prev = block.hash();
        progress(h);
    }
    if level >= 3 {
        report.balances = Some(state.balances());
    }
    if level >= 4 && to == head {
        report.finding = storage(store, head)?;
    }
    Ok(report)
}

fn describe_difference(
    stored: &std::collections::BTreeMap<PublicKey, i128>,
    computed: &std::collections::BTreeMap<PublicKey, i128>,
) -> String {
    let keys: std::collections::BTreeSet<_> = stored.keys().chain(computed.keys()).collect();
    for k in keys {
        let (s, c) = (
            stored.get(k).copied().unwrap_or(0),
            computed.get(k).copied().unwrap_or(0),
        );
        if s != c {
            return format!(
                "stored balance change of {k} is {s:+}, recomputed from the receipts: {c:+}"
            );
        }
    }
    "stored balance effects differ from the recomputed ones".into()
}

/// Level 4: the blocks table holds heights 1..=head and nothing else,
/// the meta table only the genesis and the layout.
fn storage(store: &dyn LedgerStore, head: u64) -> Result<Option<Finding>, AuditError> {
    let finding = |height: Option<u64>, reason: String| {
        Some(Finding {
            height,
            level: 4,
            reason,
        })
    };
    let mut found = None;
    let mut expect = 1u64;
    store.scan(Table::Blocks, &mut |k, _| {
        match <[u8; 8]>::try_from(k).map(u64::from_be_bytes) {
            Ok(h) if h == expect => expect += 1,
            Ok(_) => {
                found = finding(
                    Some(expect),
                    format!("blocks has no entry for height {expect}"),
                );
            }
            Err(_) => {
                found = finding(
                    None,
                    format!(
                        "blocks holds a key that is not a big-endian height: {}",
                        hex::encode(k)
                    ),
                );
            }
        }
        found.is_none()
    })?;
    if found.is_none() && expect != head + 1 {
        found = finding(
            Some(expect),
            format!("blocks ends at height {}, the head is {head}", expect - 1),
        );
    }
    if found.is_none() {
        store.scan(Table::Meta, &mut |k, _| {
            if k != b"genesis" && k != b"layout" {
                found = finding(
                    None,
                    format!("unexpected meta key {}", String::from_utf8_lossy(k)),
                );
            }
            found.is_none()
        })?;
    }
    Ok(found)
}
