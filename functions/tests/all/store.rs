//! The module store keeps modules by id, verifies them, and keeps compiled
//! artifacts so that a restart does not recompile.

use orb_functions::{CallOptions, Error, FunctionId, ModuleStore};

use crate::{example, runtime};

fn artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for engine in std::fs::read_dir(dir.join("compiled")).expect("compiled dir") {
        for f in std::fs::read_dir(engine.expect("entry").path()).expect("engine dir") {
            found.push(f.expect("entry").path());
        }
    }
    found
}

#[test]
fn a_stored_module_loads_from_its_artifact_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = example("reverse");
    let id = {
        let rt = runtime();
        let store = ModuleStore::open(dir.path()).expect("open");
        let f = store.put_and_load(&rt, &wasm).expect("load");
        assert_eq!(f.id(), FunctionId::of(&wasm));
        f.id()
    };
    let found = artifacts(dir.path());
    assert_eq!(found.len(), 1, "one artifact: {found:?}");
    let written = std::fs::metadata(&found[0])
        .expect("meta")
        .modified()
        .expect("mtime");

    // "Restart": a new runtime and store over the same directory.
    let rt = runtime();
    let store = ModuleStore::open(dir.path()).expect("reopen");
    assert_eq!(store.ids().expect("ids"), vec![id]);
    let f = store.load(&rt, id).expect("load from artifact");
    let out = rt.call(&f, b"abc", &CallOptions::default()).expect("call");
    assert_eq!(out.output, b"cba");
    let after = std::fs::metadata(&found[0])
        .expect("meta")
        .modified()
        .expect("mtime");
    assert_eq!(written, after, "the artifact was reused, not rewritten");
}

#[test]
fn a_corrupt_artifact_is_recompiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let store = ModuleStore::open(dir.path()).expect("open");
    let id = store
        .put_and_load(&rt, &example("echo"))
        .expect("load")
        .id();
    let artifact = &artifacts(dir.path())[0];
    std::fs::write(artifact, b"garbage").expect("corrupt");
    let f = store.load(&rt, id).expect("recompiles");
    assert_eq!(
        rt.call(&f, b"x", &CallOptions::default())
            .expect("call")
            .output,
        b"x"
    );
    assert_ne!(std::fs::read(artifact).expect("read"), b"garbage");
}

#[test]
fn a_tampered_module_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ModuleStore::open(dir.path()).expect("open");
    let id = store.put(&example("echo")).expect("put");
    let path = dir.path().join("modules").join(format!("{id}.wasm"));
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).expect("tamper");
    let err = store.get(id).unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
}

#[test]
fn an_invalid_module_is_not_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ModuleStore::open(dir.path()).expect("open");
    let err = store
        .put_and_load(&runtime(), b"\0asm\x01\0\0\0\x01")
        .unwrap_err();
    assert!(matches!(err, Error::InvalidModule(_)), "{err}");
    assert!(store.ids().expect("ids").is_empty());
}
