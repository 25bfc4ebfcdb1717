//! End-to-end tests of the `orb` binary: real processes, real files.
//! One test binary with a module per behaviour.

mod agents;
mod component;
mod consensus;
mod console;
mod delay;
mod exhaust;
mod function;
mod hostile;
mod http;
mod ledger;
mod lifecycle;
mod metrics;
mod network;
mod partition;
mod pipeline;
mod replication;
mod run;
mod sim;
mod soak;
mod traces;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Held by tests that start many nodes or time a node's load, so they do
/// not starve each other on a 2-core machine.
pub static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where scripts/guests put the example functions.
pub fn functions_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ORB_FUNCTIONS_DIR") {
        return dir.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("functions")
}

/// The path of an example function; fails clearly when it is not built.
pub fn example(name: &str) -> PathBuf {
    let path = functions_dir().join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "example function {} missing: run scripts/guests first (scripts/test does)",
        path.display()
    );
    path
}

/// The path of an example function's component twin (scripts/guests
/// builds the Rust examples for wasm32-wasip2 into `components/`).
pub fn component(name: &str) -> PathBuf {
    let path = functions_dir()
        .join("components")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "example component {} missing: run scripts/guests first (scripts/test does)",
        path.display()
    );
    path
}

/// `orb` with a private data dir.
pub fn orb(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orb"));
    cmd.env("ORB_DATA_DIR", data_dir)
        .env_remove("ORB_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Runs `orb args...` with `stdin` and returns its output.
pub fn run_orb(data_dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = orb(data_dir);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn orb");
    if let Some(bytes) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(bytes).expect("write stdin");
    }
    child.wait_with_output().expect("orb output")
}

/// Asserts a clean failure: the exit code, one `error:` line, no panic.
pub fn assert_fails(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "{stderr} should contain {needle}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

/// The stdout of a run, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// The stdout of a run, as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// A row of `scripts/reliability`'s table (test, what was tried, what
/// held, figures), printed by the long tests it runs.
pub fn reliability_row(test: &str, tried: &str, held: &str, figures: &str) {
    eprintln!("reliability-row\t{test}\t{tried}\t{held}\t{figures}");
}
