//! `orb-functions`: Orb's function runtime.
//!
//! A function is WebAssembly named by the blake3 hash of its bytes
//! ([`FunctionId`]), of one of two kinds ([`FunctionKind`], told by the
//! bytes' header): a WASI preview-1 command *module* (`wasm32-wasip1`), or a
//! WASI 0.2 `wasi:cli/run` *component* (`wasm32-wasip2`). Either way: input
//! on stdin, output on stdout, a bounded log on stderr, and nothing else of
//! the host. A `wasi:http/proxy` component is a component too, whose input
//! is an encoded [`HttpRequest`] and output an encoded [`HttpResponse`]
//! (its outbound requests are denied). For every kind: no preopened
//! directories, no network (sockets are refused), no environment, clocks and random bytes
//! derived from the call. Every call is metered with fuel
//! and bounded in time, memory, tables, instances and output ([`Limits`]),
//! with the same errors for both kinds, and the same function, input and
//! [`Seed`] give the same output and fuel in any process.
//!
//! - [`Runtime`]: the process's one wasmtime engine; compiles, prepares and
//!   calls modules and components.
//! - [`ModuleStore`]: functions and compiled artifacts on disk, so a restart
//!   does not recompile.
//! - [`Executor`]: the bounded thread pool calls run on; `Busy` when full.
//! - [`FuelBudget`]: fuel per invoker per second, so no invoker takes a
//!   node's threads by calling many functions.
//!
//! This crate knows nothing of networking or dataflow; `orb-engine` and
//! `orb-net` call it.
//!
//! ```
//! use orb_functions::{CallOptions, Runtime, RuntimeConfig};
//!
//! # fn main() -> Result<(), orb_functions::Error> {
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! // A WASI command that writes "hi" to stdout.
//! let wasm = wat::parse_str(r#"(module
//!     (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
//!     (memory (export "memory") 1)
//!     (data (i32.const 16) "hi")
//!     (func (export "_start")
//!         (i32.store (i32.const 0) (i32.const 16))
//!         (i32.store (i32.const 4) (i32.const 2))
//!         (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#).unwrap();
//! let function = runtime.load(&wasm)?;
//! let outcome = runtime.call(&function, b"", &CallOptions::default())?;
//! assert_eq!(outcome.output, b"hi");
//! assert!(outcome.fuel > 0);
//! # Ok(()) }
//! ```

mod abi;
mod budget;
mod component;
mod config;
mod cores;
mod determinism;
mod engine;
mod error;
mod executor;
mod http;
mod id;
mod limits;
mod pipe;
mod runtime;
mod store;

pub use abi::{ExportInfo, FunctionKind, ImportInfo, ModuleInfo, WASI_P1};
pub use budget::FuelBudget;
pub use config::RuntimeConfig;
pub use determinism::Seed;
pub use error::{Error, Result};
pub use executor::{Executor, Shares};
pub use http::{HttpRequest, HttpResponse, REQUEST_TAG, RESPONSE_TAG};
pub use id::FunctionId;
pub use limits::{CORE_INSTANCES_PER_COMPONENT, Limits};
pub use runtime::{CallOptions, Function, Outcome, Runtime};
pub use store::ModuleStore;
