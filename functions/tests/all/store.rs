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

/// What `store` gives for `id` after the disk was damaged: the function
/// itself (echo answers its input), or a clear error; never other code.
fn echo_or_error(store: &ModuleStore, rt: &orb_functions::Runtime, id: FunctionId) -> bool {
    match store.load(rt, id) {
        Ok(f) => {
            let out = rt
                .call(&f, b"still echo", &CallOptions::default())
                .expect("call");
            assert_eq!(out.output, b"still echo", "damaged storage ran other code");
            true
        }
        Err(e) => {
            assert!(
                matches!(
                    e,
                    Error::HashMismatch { .. } | Error::NotStored(_) | Error::Store { .. }
                ),
                "{e}"
            );
            false
        }
    }
}

#[test]
fn damaged_swapped_or_cut_artifacts_are_recompiled_never_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let store = ModuleStore::open(dir.path()).expect("open");
    let echo = store
        .put_and_load(&rt, &example("echo"))
        .expect("echo")
        .id();
    let path = artifacts(dir.path())[0].clone();
    let good = std::fs::read(&path).expect("read");
    store
        .put_and_load(&rt, &example("reverse"))
        .expect("reverse");
    let other = artifacts(dir.path())
        .into_iter()
        .find(|p| *p != path)
        .expect("reverse's artifact");
    // Another function's valid artifact in echo's place.
    std::fs::copy(&other, &path).expect("swap");
    assert!(
        echo_or_error(&store, &rt, echo),
        "recompiled from the module"
    );
    assert_eq!(std::fs::read(&path).expect("read"), good, "rewritten");
    // A bit flipped anywhere (64 places over the file), or the file cut.
    let step = (good.len() / 64).max(1);
    for at in (0..good.len()).step_by(step) {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).expect("flip");
        assert!(echo_or_error(&store, &rt, echo), "flip at {at}");
    }
    for len in [0, 31, 32, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..len]).expect("cut");
        assert!(echo_or_error(&store, &rt, echo), "cut at {len}");
    }
    // The module itself damaged, the artifact gone: refused, not run.
    std::fs::remove_file(&path).expect("rm");
    let module = dir.path().join("modules").join(format!("{echo}.wasm"));
    let bytes = std::fs::read(&module).expect("read");
    std::fs::write(&module, &bytes[..bytes.len() / 2]).expect("cut");
    assert!(!echo_or_error(&store, &rt, echo));
    std::fs::remove_file(&module).expect("rm");
    assert!(!echo_or_error(&store, &rt, echo));
}

#[test]
fn a_store_that_cannot_write_says_so_and_keeps_nothing_half_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let store = ModuleStore::open(dir.path()).expect("open");
    // The artifacts' directory cannot be made (a file holds its name):
    // every write there fails, as on a full or read-only disk.
    std::fs::write(dir.path().join("compiled"), b"in the way").expect("block");
    let err = store.put_and_load(&rt, &example("echo")).unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err}");
    assert!(
        err.to_string().contains("compiled"),
        "names the path: {err}"
    );
    assert!(
        store.ids().expect("ids").is_empty(),
        "no module without its artifact"
    );
    // Once the disk is writable again, the same deploy works.
    std::fs::remove_file(dir.path().join("compiled")).expect("unblock");
    let f = store.put_and_load(&rt, &example("echo")).expect("echo");
    assert_eq!(store.ids().expect("ids"), vec![f.id()]);
}
