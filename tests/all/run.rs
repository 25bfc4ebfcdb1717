//! `orb run`: outputs, fuel, errors and exit codes, determinism across processes.

use crate::{assert_fails, example, json, run_orb, stdout};

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn runs_with_input_from_a_flag_a_file_or_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = example("echo");
    let out = run_orb(dir.path(), &["run", s(&echo), "--input", "flag"], None);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "flag");

    let file = dir.path().join("input.txt");
    std::fs::write(&file, b"file").expect("write");
    let out = run_orb(
        dir.path(),
        &["run", s(&echo), "--input-file", s(&file)],
        None,
    );
    assert_eq!(stdout(&out), "file");

    let out = run_orb(dir.path(), &["run", s(&echo)], Some(b"stdin"));
    assert_eq!(stdout(&out), "stdin");
}

#[test]
fn json_reports_output_fuel_duration_and_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wc = example("wordcount");
    let out = run_orb(
        dir.path(),
        &["run", s(&wc), "--input", "a b a", "--json"],
        None,
    );
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["output"], r#"{"a":2,"b":1}"#);
    assert!(v["fuel"].as_u64().expect("fuel") > 0);
    assert!(v["duration_us"].as_u64().is_some());
    let id = blake3::hash(&std::fs::read(&wc).expect("read"))
        .to_hex()
        .to_string();
    assert_eq!(v["function"], id);
}

#[test]
fn every_example_gives_its_expected_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("echo", "orb", "orb".to_string()),
        ("reverse", "abc", "cba".to_string()),
        ("hash", "orb", blake3::hash(b"orb").to_hex().to_string()),
        ("fib", "25", "75025".to_string()),
        ("upper", "abc", "ABC".to_string()),
    ];
    for (name, input, expected) in cases {
        let out = run_orb(
            dir.path(),
            &["run", s(&example(name)), "--input", input],
            None,
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout(&out), expected, "{name}");
    }
}

#[test]
fn adversarial_functions_fail_with_exit_code_3_and_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &[&str], &str); 4] = [
        ("spin", &["--fuel", "20000000"], "out of fuel"),
        ("spin", &["--fuel", "0", "--timeout-ms", "200"], "timeout"),
        ("balloon", &["--memory-mb", "16"], "memory limit"),
        ("flood", &["--output-kb", "64"], "output too large"),
    ];
    for (name, flags, needle) in cases {
        let path = example(name);
        let mut args = vec!["run", s(&path)];
        args.extend_from_slice(flags);
        let out = run_orb(dir.path(), &args, None);
        assert_fails(&out, 3, needle);
    }
}

#[test]
fn guest_errors_in_json_name_their_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_orb(
        dir.path(),
        &["run", s(&example("fib")), "--input", "x", "--json"],
        None,
    );
    assert_eq!(out.status.code(), Some(3));
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "exit");
    assert!(v["error"]["fuel"].as_u64().expect("fuel") > 0, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("fib wants a number")
    );
}

#[test]
fn bad_files_and_flags_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_orb(dir.path(), &["run", "/no/such/module.wasm"], None);
    assert_fails(&out, 2, "cannot read module `/no/such/module.wasm`");

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"this is not wasm").expect("write");
    let out = run_orb(dir.path(), &["run", s(&junk)], None);
    assert_fails(&out, 2, "invalid module");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);

    let out = run_orb(
        dir.path(),
        &["run", s(&example("echo")), "--memory-mb", "1000000"],
        None,
    );
    assert_fails(&out, 2, "exceeds this runtime's maximum");

    let out = run_orb(
        dir.path(),
        &["run", s(&example("echo")), "--fuel", "lots"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_same_call_gives_the_same_output_and_fuel_in_different_processes() {
    for (name, input) in [("entropy", ""), ("fib", "21"), ("wordcount", "x y x")] {
        // Separate data dirs: one process compiles, the other compiles too.
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let path = example(name);
        let args = ["run", s(&path), "--input", input, "--json"];
        let (one, two) = (
            json(&run_orb(a.path(), &args, None)),
            json(&run_orb(b.path(), &args, None)),
        );
        assert_eq!(one["output"], two["output"], "{name}");
        assert_eq!(one["fuel"], two["fuel"], "{name}");
    }
}

#[test]
fn the_seed_flag_changes_random_values_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = example("entropy");
    let run = |seed: &str| {
        json(&run_orb(
            dir.path(),
            &["run", s(&path), "--seed", seed, "--json"],
            None,
        ))
    };
    let (a, b, a2) = (run("a"), run("b"), run("a"));
    assert_eq!(a["output"], a2["output"]);
    assert_ne!(a["output"], b["output"]);
}

#[test]
fn a_second_run_uses_the_compiled_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = example("hash");
    let out = run_orb(dir.path(), &["run", s(&path), "--input", "x"], None);
    assert!(out.status.success());
    let compiled = dir.path().join("functions").join("compiled");
    let engines: Vec<_> = std::fs::read_dir(&compiled)
        .expect("compiled dir")
        .collect();
    assert_eq!(engines.len(), 1);
    let id = blake3::hash(&std::fs::read(&path).expect("read"))
        .to_hex()
        .to_string();
    let artifact = engines[0]
        .as_ref()
        .expect("entry")
        .path()
        .join(format!("{id}.cwasm"));
    let before = std::fs::metadata(&artifact)
        .expect("artifact")
        .modified()
        .expect("mtime");
    let out = run_orb(dir.path(), &["run", s(&path), "--input", "x"], None);
    assert!(out.status.success());
    let after = std::fs::metadata(&artifact)
        .expect("artifact")
        .modified()
        .expect("mtime");
    assert_eq!(before, after);
}

#[test]
fn help_answers_the_obvious_questions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_orb(dir.path(), &["--help"], None);
    let help = stdout(&out);
    assert!(help.contains("Exit codes"), "{help}");
    let out = run_orb(dir.path(), &["run", "--help"], None);
    let help = stdout(&out);
    for needle in [
        "--input",
        "--fuel",
        "--timeout-ms",
        "--memory-mb",
        "--json",
        "stdin",
        "Examples",
    ] {
        assert!(help.contains(needle), "run --help lacks {needle}");
    }
}

#[test]
fn a_reader_that_closes_early_ends_orb_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("big.txt");
    std::fs::write(&input, vec![b'y'; 4 << 20]).expect("write");
    for args in [
        vec![
            "run",
            s(&example("echo")),
            "--input-file",
            s(&input),
            "--output-kb",
            "8192",
        ],
        vec!["pipeline", "run", "enrich"],
    ] {
        let mut child = crate::orb(dir.path())
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut first = [0u8; 8];
        child
            .stdout
            .take()
            .expect("stdout")
            .read_exact(&mut first)
            .expect("read");
        // The pipe is closed here, with most of the output unread.
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
