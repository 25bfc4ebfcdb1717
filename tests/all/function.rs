//! `orb fn id` and `orb fn inspect`.

use crate::{assert_fails, example, json, run_orb, stdout};

#[test]
fn id_is_the_blake3_of_the_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = example("echo");
    let out = run_orb(
        dir.path(),
        &["fn", "id", path.to_str().expect("path")],
        None,
    );
    let expected = blake3::hash(&std::fs::read(&path).expect("read"))
        .to_hex()
        .to_string();
    assert_eq!(stdout(&out).trim(), expected);
}

#[test]
fn inspect_shows_the_interface_and_the_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = example("upper");
    let out = run_orb(
        dir.path(),
        &["fn", "inspect", path.to_str().expect("path")],
        None,
    );
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("wasi_snapshot_preview1::fd_write (func)"),
        "{text}"
    );
    assert!(text.contains("_start (func)"), "{text}");
    assert!(text.contains("abi       ok"), "{text}");
}

#[test]
fn inspect_names_an_import_orb_does_not_provide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = wat::parse_str(
        r#"(module (import "env" "clock" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .expect("wat");
    let path = dir.path().join("env.wasm");
    std::fs::write(&path, wasm).expect("write");
    let out = run_orb(
        dir.path(),
        &["fn", "inspect", "--json", path.to_str().expect("path")],
        None,
    );
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["imports"][0]["provided"], false);
    assert!(
        v["unsupported"]
            .as_str()
            .expect("verdict")
            .contains("env::clock")
    );

    // Running it is refused with the same reason, as a usage error.
    let out = run_orb(dir.path(), &["run", path.to_str().expect("path")], None);
    assert_fails(&out, 2, "env::clock");
}
