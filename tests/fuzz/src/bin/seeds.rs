//! `orb-fuzz-seeds TARGET DIR`: writes the target's seed inputs (real
//! messages) into DIR, one file each, for libFuzzer to start from.

use std::process::ExitCode;

// In the instrumented build (scripts/fuzz) libFuzzer provides the coverage
// hooks every instrumented dependency calls.
#[cfg(feature = "libfuzzer")]
extern crate libfuzzer_sys;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, dir] = args.as_slice() else {
        eprintln!("usage: orb-fuzz-seeds TARGET DIR");
        return ExitCode::from(2);
    };
    if !orb_fuzz::TARGETS.iter().any(|(name, _)| name == target) {
        let names: Vec<&str> = orb_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("unknown target '{target}' (known: {})", names.join(", "));
        return ExitCode::from(2);
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("cannot create {dir}: {e}");
        return ExitCode::from(1);
    }
    for (i, seed) in orb_fuzz::seeds(target).iter().enumerate() {
        let path = std::path::Path::new(dir).join(format!("seed-{i}"));
        if let Err(e) = std::fs::write(&path, seed) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
