//! The same module, input and seed give the same output and fuel, across
//! runtimes; a different seed changes the random values and nothing else.

use orb_functions::{CallOptions, Seed};

use crate::{example, runtime};

fn run(name: &str, input: &[u8], seed: Seed) -> (Vec<u8>, u64) {
    // A fresh runtime (engine, pools, epoch thread) per run.
    let rt = runtime();
    let f = rt.load(&example(name)).expect("loads");
    let opts = CallOptions {
        seed,
        ..CallOptions::default()
    };
    let out = rt.call(&f, input, &opts).expect("runs");
    (out.output, out.fuel)
}

#[test]
fn entropy_is_a_function_of_the_seed() {
    let a = run("entropy", b"", Seed::derive(b"call-1"));
    let b = run("entropy", b"", Seed::derive(b"call-1"));
    assert_eq!(a, b, "same seed, same output and fuel");
    let c = run("entropy", b"", Seed::derive(b"call-2"));
    assert_ne!(a.0, c.0, "another seed draws other random values");
    let text = String::from_utf8(a.0).expect("text");
    assert!(text.contains("wall_clock_ns=0\n"), "{text}");
}

#[test]
fn fuel_is_identical_across_runs() {
    for (name, input) in [
        ("fib", &b"22"[..]),
        ("wordcount", b"a b a c"),
        ("hash", b"xyz"),
    ] {
        let a = run(name, input, Seed::default());
        let b = run(name, input, Seed::default());
        assert_eq!(a, b, "{name}");
        assert!(a.1 > 0);
    }
}

#[test]
fn nan_bits_are_canonical() {
    // 0/0 yields a NaN whose payload would be platform-defined without canonicalization.
    let wasm = crate::command(
        "(i32.store (i32.const 128) (i32.reinterpret_f32 (f32.div (f32.const 0) (f32.const 0))))
         (drop (call $write (i32.const 1) (i32.const 128) (i32.const 4)))",
    );
    let rt = runtime();
    let f = rt.load(&wasm).expect("loads");
    let out = rt.call(&f, b"", &CallOptions::default()).expect("runs");
    assert_eq!(out.output, 0x7fc0_0000u32.to_le_bytes());
}

#[test]
fn no_state_survives_from_one_call_to_the_next() {
    // Each call outputs what it finds at three addresses (low, inside and past
    // the kept-resident 2 MiB) and then scribbles there. Pooled slots are reused, so any
    // reset bug shows up as a non-zero read on a later call.
    let wasm = crate::command(
        "(drop (memory.grow (i32.const 40)))
         (i32.store (i32.const 128) (i32.add (i32.load (i32.const 1024))
             (i32.add (i32.load (i32.const 1500000)) (i32.load (i32.const 2600000)))))
         (drop (call $write (i32.const 1) (i32.const 128) (i32.const 4)))
         (i32.store (i32.const 1024) (i32.const 42))
         (i32.store (i32.const 1500000) (i32.const 7))
         (i32.store (i32.const 2600000) (i32.const 9))",
    );
    let rt = runtime();
    let f = rt.load(&wasm).expect("loads");
    for _ in 0..50 {
        let out = rt.call(&f, b"", &CallOptions::default()).expect("runs");
        assert_eq!(out.output, 0u32.to_le_bytes());
    }
}
