//! Components (`wasi:cli/run`, built for wasm32-wasip2) through the `orb`
//! binary: `orb run` and `orb fn inspect` tell them from modules by their
//! bytes and run them with the modules' outputs, limits and exit codes, the
//! same in every process; bad ones are usage errors with their reason; a
//! component deployed on two nodes answers through a third.

use std::path::Path;

use serde_json::Value;

use crate::replication::{deploy_file_on, invoke_ok, node, wait_providers_of_file};
use crate::{assert_fails, component, example, functions_dir, json, run_orb, stdout};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn a_component_gives_its_modules_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, input) in [
        ("echo", "héllo"),
        ("reverse", "héllo"),
        ("hash", "orb"),
        ("fib", "25"),
        ("wordcount", "to be or not to be"),
    ] {
        let run = |path: &Path| {
            let out = run_orb(dir.path(), &["run", s(path), "--input", input], None);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            stdout(&out)
        };
        assert_eq!(run(&component(name)), run(&example(name)), "{name}");
    }
}

/// The Python component scripts/guests built, or `None` (said on stderr)
/// where it could not install componentize-py.
fn python_component() -> Option<std::path::PathBuf> {
    let path = functions_dir().join("components").join("py-wordcount.wasm");
    if path.exists() {
        return Some(path);
    }
    eprintln!(
        "skipped: {} missing (scripts/guests could not install componentize-py)",
        path.display()
    );
    None
}

/// examples/functions/python/wordcount.py, which scripts/guests builds with
/// componentize-py: CPython in a component (its libc imports
/// `wasi:sockets`, linked with every use refused) counts words as the Rust
/// `wordcount` does, with the same output and fuel on every run.
#[test]
fn a_python_component_counts_words_as_the_rust_one_does() {
    let Some(path) = python_component() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = "To be, or not to be: that's the question. Ünïcode ÜNÏCODE 42";
    let expected =
        r#"{"42":1,"be":2,"not":1,"or":1,"question":1,"that's":1,"the":1,"to":2,"ünïcode":2}"#;
    let args = ["run", s(&path), "--input", input, "--json"];
    // The first run compiles the component; the second loads the artifact.
    let one = json(&run_orb(dir.path(), &args, None));
    assert_eq!(one["ok"], true, "{one}");
    assert_eq!(one["output"], expected);
    assert_eq!(one["log"], "12 words, 9 distinct\n");
    let two = json(&run_orb(dir.path(), &args, None));
    assert_eq!(
        (&two["output"], &two["fuel"]),
        (&one["output"], &one["fuel"])
    );
    let rust = run_orb(
        dir.path(),
        &["run", s(&component("wordcount")), "--input", input],
        None,
    );
    assert_eq!(stdout(&rust), expected);
    // Input that is not UTF-8: the guest's message and exit code 1.
    let out = run_orb(dir.path(), &["run", s(&path)], Some(b"\xff\xfe"));
    assert_fails(&out, 3, "input is not UTF-8");
}

#[test]
fn a_component_call_gives_the_same_output_and_fuel_in_two_processes() {
    for (name, input) in [("entropy", ""), ("fib", "21"), ("wordcount", "x y x")] {
        // Separate data dirs: each process compiles the component itself.
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let path = component(name);
        let args = ["run", s(&path), "--input", input, "--json"];
        let (one, two) = (
            json(&run_orb(a.path(), &args, None)),
            json(&run_orb(b.path(), &args, None)),
        );
        assert_eq!(one["ok"], true, "{name}: {one}");
        assert_eq!(one["output"], two["output"], "{name}");
        assert_eq!(one["fuel"], two["fuel"], "{name}");
        // A third process, loading a's compiled artifact: the same again.
        let three = json(&run_orb(a.path(), &args, None));
        assert_eq!(
            (&three["output"], &three["fuel"]),
            (&one["output"], &one["fuel"])
        );
    }
}

#[test]
fn a_second_run_of_a_component_uses_its_compiled_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = component("hash");
    let out = run_orb(dir.path(), &["run", s(&path), "--input", "x"], None);
    assert!(out.status.success());
    let id = blake3::hash(&std::fs::read(&path).expect("read"))
        .to_hex()
        .to_string();
    let engine = std::fs::read_dir(dir.path().join("functions").join("compiled"))
        .expect("compiled dir")
        .next()
        .expect("one engine")
        .expect("entry")
        .path();
    let artifact = engine.join(format!("{id}.component.cwasm"));
    let mtime = || {
        std::fs::metadata(&artifact)
            .expect("the component's artifact")
            .modified()
            .expect("mtime")
    };
    let before = mtime();
    let out = run_orb(dir.path(), &["run", s(&path), "--input", "x"], None);
    assert!(out.status.success());
    assert_eq!(before, mtime());
}

#[test]
fn a_component_past_a_limit_fails_with_exit_3_as_its_module_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &[&str], &str); 4] = [
        ("spin", &["--fuel", "20000000"], "out_of_fuel"),
        ("spin", &["--fuel", "0", "--timeout-ms", "200"], "timeout"),
        ("balloon", &["--memory-mb", "16"], "memory_limit"),
        ("flood", &["--output-kb", "64"], "output_too_large"),
    ];
    for (name, flags, kind) in cases {
        let run = |path: &Path| {
            let mut args = vec!["run", s(path), "--json"];
            args.extend_from_slice(flags);
            let out = run_orb(dir.path(), &args, None);
            assert_eq!(out.status.code(), Some(3), "{name} {flags:?}");
            json(&out)["error"]["kind"].clone()
        };
        let (c, m) = (run(&component(name)), run(&example(name)));
        assert_eq!((c.as_str(), m.as_str()), (Some(kind), Some(kind)), "{name}");
    }
    let out = run_orb(
        dir.path(),
        &["run", s(&component("fib")), "--input", "x"],
        None,
    );
    assert_fails(&out, 3, "fib wants a number");
}

#[test]
fn inspect_shows_a_components_world_imports_exports_and_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = component("echo");
    let out = run_orb(dir.path(), &["fn", "inspect", s(&path)], None);
    assert!(out.status.success());
    let text = stdout(&out);
    for needle in [
        "kind      component",
        "world     wasi:cli/command",
        "  wasi:cli/stdin@0.2.",
        "  wasi:cli/run@0.2.0 (instance)",
        "abi       ok: wasi:cli/run component",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let v = json(&run_orb(
        dir.path(),
        &["fn", "inspect", "--json", s(&path)],
        None,
    ));
    assert_eq!(
        (&v["kind"], &v["world"]),
        (&"component".into(), &"wasi:cli/command".into())
    );
    let m = json(&run_orb(
        dir.path(),
        &["fn", "inspect", "--json", s(&example("echo"))],
        None,
    ));
    assert_eq!(m["kind"], "module");
}

/// A `wasi:cli/run` command that also imports the instance `import`.
fn command_importing(import: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
            (import "{import}" (instance))
            (core module $m (func (export "run") (result i32) (i32.const 0)))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $r (export "run" (func $run)))
            (export "wasi:cli/run@0.2.0" (instance $r)))"#
    ))
    .expect("wat")
}

#[test]
fn bad_components_are_usage_errors_with_their_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    };
    let malformed = write("malformed.wasm", b"\0asm\x0d\0\x01\0not a component");
    let out = run_orb(dir.path(), &["run", s(&malformed)], None);
    assert_fails(&out, 2, "this component does not compile");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let out = run_orb(dir.path(), &["fn", "inspect", s(&malformed)], None);
    assert_fails(&out, 2, "this component does not compile");

    let proxy = wat::parse_str(
        r#"(component
            (core module $m (func (export "handle") (param i32 i32)))
            (core instance $i (instantiate $m))
            (func $handle (param "request" u32) (param "response" u32)
                (canon lift (core func $i "handle")))
            (instance $h (export "handle" (func $handle)))
            (export "wasi:http/incoming-handler@0.3.0" (instance $h)))"#,
    )
    .expect("wat");
    let refused = [
        (
            write("empty.wasm", &wat::parse_str("(component)").expect("wat")),
            "unknown world",
        ),
        (
            write("proxy.wasm", &proxy),
            "export `wasi:http/incoming-handler@0.3.0` is not WASI 0.2's",
        ),
        (
            write("sockets.wasm", &command_importing("wasi:sockets/tcp@0.3.0")),
            "import `wasi:sockets/tcp@0.3.0` (instance) is not provided",
        ),
    ];
    for (path, why) in refused {
        let out = run_orb(dir.path(), &["run", s(&path)], None);
        assert_fails(&out, 2, why);
        // Inspecting it answers (exit 0, as for a module Orb cannot run)
        // with the same reason.
        let v = json(&run_orb(
            dir.path(),
            &["fn", "inspect", "--json", s(&path)],
            None,
        ));
        assert!(
            v["unsupported"].as_str().is_some_and(|u| u.contains(why)),
            "{}: {v}",
            path.display()
        );
    }
    // Nothing refused was stored.
    let stored = std::fs::read_dir(dir.path().join("functions").join("modules"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0);
}

#[test]
fn a_component_deployed_on_two_nodes_answers_through_a_third() {
    let root = tempfile::tempdir().expect("tempdir");
    let publisher = root.path().join("publisher");
    let flags = ["--no-autoscale", "--verify-fraction", "0"];
    let r = root.path();
    let s = node(r, "s", None, &flags);
    let boot = s.addrs[0].clone();
    let hosts = [
        node(r, "h1", Some(&boot), &flags),
        node(r, "h2", Some(&boot), &flags),
    ];
    let wordcount = component("wordcount");
    for h in &hosts {
        deploy_file_on(h, &wordcount, "wordcount-c", &publisher);
    }
    wait_providers_of_file(&[&s], &wordcount, 2);
    // Two replicas, one per host (two processes that each compiled the
    // component), must agree on the output and the fuel.
    let v = invoke_ok(
        &s.api,
        &s.dir.join("client"),
        "wordcount-c",
        "to be or not to be",
        &["--replicas", "2"],
    );
    assert_eq!(v["output"], r#"{"be":2,"not":1,"or":1,"to":2}"#, "{v}");
    assert_eq!(v["replicas"], 2, "{v}");
    assert!(v["fuel"].as_u64().is_some_and(|f| f > 0), "{v}");
}

/// `file`'s bytes with a custom section of `padding` bytes appended: the
/// same function to run, a larger module to store and send.
fn padded(file: &Path, padding: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(file).expect("read the function");
    let name = b"orb-test-padding";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.resize(payload.len() + padding, 0x5a);
    bytes.push(0); // a custom section
    let mut size = payload.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&payload);
    bytes
}

/// A node given `--max-module-bytes` above the API's and the network's
/// default sizes takes a module that large over HTTP, and a second node
/// fetches it whole over the network to host a replica; a node with the
/// default limit refuses it, naming the limit.
#[test]
fn a_module_larger_than_the_default_sizes_is_deployed_and_replicated() {
    let root = tempfile::tempdir().expect("tempdir");
    let publisher = root.path().join("publisher");
    let r = root.path();
    let big = ["--no-autoscale", "--max-module-bytes", "32MiB"];
    let entry = node(r, "s", None, &["--no-autoscale"]);
    let boot = entry.addrs[0].clone();
    let a = node(r, "a", Some(&boot), &big);
    let b = node(r, "b", Some(&boot), &big);
    // a deploys to a peer it is connected to: wait until b is one.
    a.wait_status(
        "connected to the supernode and b",
        crate::network::connected(2),
    );
    let file = r.join("echo-20mb.wasm");
    std::fs::write(&file, padded(&example("echo"), 20 << 20)).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orb"))
        .args(["deploy", s(&file), "--name", "big-echo", "--replicas", "3"])
        .args(["--json", "--node", &a.api])
        .env("ORB_DATA_DIR", &publisher)
        .env_remove("ORB_LOG")
        .output()
        .expect("orb deploy");
    let deployed = json(&out);
    let providers: Vec<&str> = deployed["providers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        providers,
        [a.peer_id.as_str(), b.peer_id.as_str()],
        "{deployed}"
    );
    // Three replicas asked for: the entry node, with the default limits,
    // declines, saying why, and holds nothing against a for the answer.
    let declined = deployed["declined"].to_string();
    assert!(
        declined.contains(&entry.peer_id) && declined.contains("exceeds the limit"),
        "{deployed}"
    );
    let peers = json(&entry.client(&["peers", "--json"]));
    let a_seen = peers
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["peer_id"] == a.peer_id.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (a_seen["score"].as_f64(), a_seen["banned"].as_bool()),
        (Some(0.0), Some(false)),
        "{peers}"
    );
    wait_providers_of_file(&[&entry], &file, 2);
    let v = invoke_ok(
        &entry.api,
        &entry.dir.join("client"),
        "big-echo",
        "heavy",
        &["--replicas", "2"],
    );
    assert_eq!(
        (v["output"].as_str(), v["replicas"].as_u64()),
        (Some("heavy"), Some(2)),
        "{v}"
    );
    // entry keeps the default limit (8 MiB): refused, with the limit named.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orb"))
        .args([
            "deploy",
            s(&file),
            "--name",
            "big-echo-2",
            "--node",
            &entry.api,
        ])
        .env("ORB_DATA_DIR", &publisher)
        .env_remove("ORB_LOG")
        .output()
        .expect("orb deploy");
    assert_fails(&out, 2, "the node takes modules of at most 8388608 bytes");
}

/// The Python component, at 18.5 MB over the default module limit, on a
/// node that takes modules up to 32 MiB, called through another node.
#[test]
fn a_python_component_is_deployed_and_called_through_another_node() {
    let Some(path) = python_component() else {
        return;
    };
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().expect("tempdir");
    let publisher = root.path().join("publisher");
    let r = root.path();
    let entry = node(r, "s", None, &["--no-autoscale"]);
    let h = node(
        r,
        "h",
        Some(&entry.addrs[0]),
        &["--no-autoscale", "--max-module-bytes", "32MiB"],
    );
    // Compiling CPython takes the debug build tens of seconds.
    deploy_file_on(&h, &path, "py-wordcount", &publisher);
    wait_providers_of_file(&[&entry], &path, 1);
    let v = invoke_ok(
        &entry.api,
        &entry.dir.join("client"),
        "py-wordcount",
        "to be or not to be",
        &[],
    );
    assert_eq!(v["output"], r#"{"be":2,"not":1,"or":1,"to":2}"#, "{v}");
    assert_eq!(v["executor"], h.peer_id.as_str(), "{v}");
}
