//! `orb-ledger`: Orb's reward ledger.
//!
//! Today it holds RFC 9162-shaped Merkle trees with inclusion and
//! consistency proofs ([`merkle`]) and the Snowball state machine ([`Snowball`], [`Params`]):
//! pure (no I/O, no clock), fed poll results by its caller, the same code in
//! a node and in a simulated network. Receipts, blocks with RFC 9162 Merkle
//! roots, the King-of-the-Hill committee, the sled-backed chain and the audit
//! follow (the ledger issue).
//!
//! It knows nothing of networking; `orb-net` and `orb-engine` drive it.
//!
//! ```
//! use orb_ledger::{Params, Snowball};
//!
//! let params = Params::new(5, 4, 4, 2).unwrap();
//! let mut sb = Snowball::new(params, "a");
//! sb.record_poll(&["b", "b", "b", "b", "a"]);
//! assert_eq!(sb.preference(), &"b");
//! sb.record_poll(&["b", "b", "b", "b", "b"]);
//! assert_eq!(sb.decided(), Some(&"b"));
//! ```

pub mod merkle;
mod snowball;

pub use snowball::{Params, ParamsError, Snowball};
