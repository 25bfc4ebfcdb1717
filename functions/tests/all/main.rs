//! Integration tests of `orb-functions`, one module per behaviour (one test
//! binary: on two cores, link time is what makes a test suite slow).

mod components;
mod determinism;
mod executor;
mod guests;
mod http;
mod limits;
mod loader;
mod store;

use std::path::PathBuf;

use orb_functions::{CallOptions, Function, Limits, Outcome, Result, Runtime, RuntimeConfig};

/// A runtime with small pools, as tests run many at once.
pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        pool_instances: 16,
        max_memory_bytes: 256 << 20,
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

/// Compiles WebAssembly text.
pub fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid wat")
}

/// A WASI command whose `_start` body is `body`; `$write` writes
/// `len` bytes at `ptr` to stdout, and `$exit` calls `proc_exit`.
pub fn command(body: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (table $t 1 funcref)
            (data (i32.const 64) "0123456789abcdef")
            (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
                (i32.store (i32.const 0) (local.get $ptr))
                (i32.store (i32.const 4) (local.get $len))
                (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
            (func (export "_start") {body}))"#
    ))
}

/// Loads and calls `wasm` with `limits`.
pub fn call_with(wasm: &[u8], input: &[u8], limits: Limits) -> Result<Outcome> {
    let rt = runtime();
    let f: Function = rt.load(wasm)?;
    rt.call(&f, input, &CallOptions::with_limits(limits))
}

/// Where scripts/guests put the example functions.
pub fn functions_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ORB_FUNCTIONS_DIR") {
        return dir.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("functions")
}

/// The bytes of an example function; fails clearly when they are not built.
pub fn example(name: &str) -> Vec<u8> {
    let path = functions_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "example function {} missing ({e}): run scripts/guests first (scripts/test does)",
            path.display()
        )
    })
}

/// The component twin of an example function (scripts/guests builds the
/// Rust examples for wasm32-wasip2 into `components/`).
pub fn component(name: &str) -> Vec<u8> {
    let path = functions_dir()
        .join("components")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "example component {} missing ({e}): run scripts/guests first (scripts/test does)",
            path.display()
        )
    })
}
