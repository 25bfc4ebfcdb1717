//! `orb`: a node of the Orb network, as a library. The `orb` binary is its
//! command line (`orb node` starts one); tests, benchmarks and simulations
//! start nodes in their own process with the same code.
//!
//! A node hosts WebAssembly functions (named by the blake3 hash of their
//! bytes), answers peers' calls on its executor pool, serves the DHT, keeps
//! the routing table (function → providers) in a timely dataflow, calls
//! functions anywhere on the network on R replicas, and, given a genesis,
//! takes part in the reward ledger. The layers below are crates of their
//! own: `orb-functions` (the runtime), `orb-ledger` (the chain and its
//! rules), `orb-net` (libp2p), `orb-engine` (the dataflows).
//!
//! Lifecycle: [`Node::start`] takes a [`NodeConfig`] (the fields of `orb
//! node`'s flags) and returns a [`NodeHandle`] once the node listens and
//! serves. The node owns every task it spawns, its two dataflow threads and
//! its network event loop; [`NodeHandle::shutdown`] cancels the tasks, lets
//! calls in flight finish within a grace period, stops and joins the rest,
//! and flushes its database, after which its data dir is free.
//!
//! ```no_run
//! # async fn example() -> Result<(), orb::Error> {
//! let config = orb::NodeConfig {
//!     api: "127.0.0.1:0".parse().expect("an address"),
//!     listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a multiaddr")],
//!     ..orb::NodeConfig::new("/tmp/orb-a")
//! };
//! let node = orb::Node::start(config).await?;
//! let echo = node.host(&std::fs::read("echo.wasm").expect("a module")).await?;
//! let called = node.invoke(&echo.to_hex(), b"hi".to_vec()).await;
//! assert_eq!(called.map(|c| c.output).ok(), Some(b"hi".to_vec()));
//! node.shutdown().await
//! # }
//! ```

mod node;
pub mod show;

pub use node::{
    Byzantine, ByzantineMode, Error, InvokeError, Invoked, Node, NodeConfig, NodeHandle,
    StoreLimits, api_token_file, check_api_token,
};
pub use orb_functions::FunctionId;
pub use orb_net::{Multiaddr, PeerId};
