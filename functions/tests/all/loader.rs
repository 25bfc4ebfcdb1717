//! The loader never panics: random bytes and truncated modules or
//! components get a clear error.

use orb_functions::Error;
use proptest::prelude::*;

use crate::{example, runtime};

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let rt = runtime();
        match rt.load(&bytes) {
            Err(Error::InvalidModule(msg)) => prop_assert!(!msg.contains('\n')),
            Err(Error::UnsupportedAbi(_)) => {}
            other => prop_assert!(false, "unexpected: {other:?}"),
        }
    }

    #[test]
    fn random_bytes_after_the_magic_are_refused(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let rt = runtime();
        let bytes = [&b"\0asm\x01\0\0\0"[..], &tail].concat();
        prop_assert!(matches!(rt.load(&bytes), Err(Error::InvalidModule(_)) | Err(Error::UnsupportedAbi(_))));
    }

    #[test]
    fn random_bytes_after_a_components_magic_are_refused(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let rt = runtime();
        let bytes = [&b"\0asm\x0d\0\x01\0"[..], &tail].concat();
        match rt.load(&bytes) {
            Err(Error::InvalidModule(msg)) | Err(Error::UnsupportedAbi(msg)) => prop_assert!(!msg.contains('\n')),
            other => prop_assert!(false, "unexpected: {other:?}"),
        }
    }
}

#[test]
fn every_truncation_of_a_real_module_is_refused() {
    let rt = runtime();
    let wasm = example("echo");
    // Every cut in the header and a stride through the rest.
    let cuts = (0..64).chain((64..wasm.len()).step_by(wasm.len() / 97 + 1));
    for cut in cuts {
        match rt.load(&wasm[..cut]) {
            Err(Error::InvalidModule(_)) => {}
            // Eight bytes are a complete, empty module: valid, but no command.
            Err(Error::UnsupportedAbi(_)) if cut == 8 => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert!(rt.load(&wasm).is_ok());
}

#[test]
fn every_truncation_of_a_real_component_is_refused() {
    let rt = runtime();
    let wasm = crate::component("echo");
    let cuts = (0..64).chain((64..wasm.len()).step_by(wasm.len() / 97 + 1));
    for cut in cuts {
        match rt.load(&wasm[..cut]) {
            Err(Error::InvalidModule(_)) => {}
            // Eight bytes are a complete, empty component: of no world.
            Err(Error::UnsupportedAbi(why)) if cut == 8 => {
                assert!(why.contains("unknown world"), "{why}")
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert!(rt.load(&wasm).is_ok());
}
