//! `orb-ledger` will own Orb's reward ledger: signed receipts, blocks with
//! RFC 9162 Merkle roots, the King-of-the-Hill committee, the Snowball state
//! machine (pure: no I/O, no clock), the sled-backed chain and the audit.
//!
//! It knows nothing of networking; `orb-net` and `orb-engine` drive it.
//! Nothing is implemented yet: see the ledger issue.
