//! `orb-guest`: the guest side of Orb's function ABI, for Rust functions.
//!
//! An Orb function is a WASI command: it reads its whole input from stdin
//! and writes its output to stdout. This crate does that plumbing so a
//! function is one closure in `main`. Build it for `wasm32-wasip1` (a
//! preview-1 module) or `wasm32-wasip2` (a `wasi:cli/run` component); Orb
//! runs either:
//!
//! ```no_run
//! orb_guest::run_text(|text| Ok::<_, String>(text.to_uppercase()));
//! ```
//!
//! An `Err` is written to stderr (Orb keeps it as the call's log) and the
//! guest exits with code 1, which the caller sees as a guest failure.
//!
//! An agent (a module with state that lives on the network) is a closure
//! too: see [`agent()`].

pub mod agent;

pub use agent::{actor, agent};

use std::fmt::Display;
use std::io::{Read, Write};

/// Reads all of stdin.
pub fn input() -> Vec<u8> {
    let mut buf = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
        fail(format!("cannot read input: {e}"));
    }
    buf
}

/// Writes `bytes` to stdout and flushes.
pub fn output(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        fail(format!("cannot write output: {e}"));
    }
}

/// Writes `message` to stderr and exits with code 1.
pub fn fail(message: impl Display) -> ! {
    eprintln!("{message}");
    std::process::exit(1)
}

/// Runs a function from bytes to bytes.
pub fn run<E: Display>(f: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, E>) {
    match f(input()) {
        Ok(out) => output(&out),
        Err(e) => fail(e),
    }
}

/// Runs a function from text to text; input that is not UTF-8 is an error.
pub fn run_text<E: Display>(f: impl FnOnce(String) -> Result<String, E>) {
    run(|bytes| {
        let text = String::from_utf8(bytes).map_err(|e| format!("input is not UTF-8: {e}"))?;
        f(text).map(String::into_bytes).map_err(|e| e.to_string())
    })
}
