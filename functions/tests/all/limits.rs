//! Each limit and each error has its own test.

use std::time::{Duration, Instant};

use orb_functions::{Error, Limits};

use crate::{call_with, command, wat};

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn success_reports_output_and_fuel() {
    let wasm = command("(drop (call $write (i32.const 1) (i32.const 64) (i32.const 4)))");
    let out = call_with(&wasm, b"", limits()).expect("runs");
    assert_eq!(out.output, b"0123");
    assert!(out.fuel > 0, "fuel is reported: {}", out.fuel);
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let wasm = command("(loop $l (br $l))");
    let err = call_with(
        &wasm,
        b"",
        Limits {
            fuel: 100_000,
            ..limits()
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::OutOfFuel { limit: 100_000 }), "{err}");
    assert!(err.is_guest_failure());
}

#[test]
fn an_endless_loop_with_ample_fuel_times_out() {
    let wasm = command("(loop $l (br $l))");
    let started = Instant::now();
    let err = call_with(
        &wasm,
        b"",
        Limits {
            fuel: u64::MAX,
            timeout: Duration::from_millis(100),
            ..limits()
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    // The deadline is enforced, not merely reported after the fact.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn growing_memory_past_the_limit_fails_the_call() {
    // Grow one page at a time; trap when a grow is refused.
    let wasm = command(
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable",
    );
    let err = call_with(
        &wasm,
        b"",
        Limits {
            memory_bytes: 1 << 20,
            ..limits()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimit { limit, .. } if limit == 1 << 20),
        "{err}"
    );
}

#[test]
fn a_refused_grow_that_the_guest_handles_is_not_an_error() {
    let wasm = command(
        "(if (i32.ne (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))
         (drop (call $write (i32.const 1) (i32.const 64) (i32.const 2)))",
    );
    let out = call_with(
        &wasm,
        b"",
        Limits {
            memory_bytes: 1 << 20,
            ..limits()
        },
    )
    .expect("handled");
    assert_eq!(out.output, b"01");
}

#[test]
fn growing_a_table_past_the_limit_fails_the_call() {
    let wasm = command(
        "(if (i32.eq (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1)) (then unreachable))",
    );
    let err = call_with(
        &wasm,
        b"",
        Limits {
            table_elements: 100,
            ..limits()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ResourceLimit {
                resource: "table elements",
                limit: 100,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn writing_past_the_output_limit_fails_the_call() {
    let wasm = command(
        "(loop $l (drop (call $write (i32.const 1) (i32.const 64) (i32.const 16))) (br $l))",
    );
    let err = call_with(
        &wasm,
        b"",
        Limits {
            output_bytes: 1000,
            ..limits()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::OutputTooLarge { limit: 1000, .. }),
        "{err}"
    );
}

#[test]
fn output_exactly_at_the_limit_is_fine() {
    let wasm = command("(drop (call $write (i32.const 1) (i32.const 64) (i32.const 16)))");
    let out = call_with(
        &wasm,
        b"",
        Limits {
            output_bytes: 16,
            ..limits()
        },
    )
    .expect("fits");
    assert_eq!(out.output.len(), 16);
}

#[test]
fn the_log_is_captured_and_capped_silently() {
    let wasm = command(
        "(drop (call $write (i32.const 2) (i32.const 64) (i32.const 16)))
         (drop (call $write (i32.const 2) (i32.const 64) (i32.const 16)))
         (drop (call $write (i32.const 1) (i32.const 64) (i32.const 1)))",
    );
    let out = call_with(
        &wasm,
        b"",
        Limits {
            log_bytes: 20,
            ..limits()
        },
    )
    .expect("log overflow is not fatal");
    assert_eq!(out.log, b"0123456789abcdef0123");
    assert_eq!(out.output, b"0");
}

#[test]
fn a_trap_carries_its_message() {
    let err = call_with(&command("unreachable"), b"", limits()).unwrap_err();
    match err {
        Error::Trap { message, .. } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other}"),
    }
}

#[test]
fn a_non_zero_exit_is_reported_with_its_code_and_log() {
    let wasm = command(
        "(drop (call $write (i32.const 2) (i32.const 64) (i32.const 3))) (call $exit (i32.const 7))",
    );
    let err = call_with(&wasm, b"", limits()).unwrap_err();
    assert!(
        matches!(&err, Error::Exit { code: 7, log, .. } if log == "012"),
        "{err}"
    );
    assert!(err.to_string().contains("guest stderr"), "{err}");
}

#[test]
fn exit_code_zero_is_success() {
    let wasm = command(
        "(drop (call $write (i32.const 1) (i32.const 64) (i32.const 1))) (call $exit (i32.const 0))",
    );
    let out = call_with(&wasm, b"", limits()).expect("exit 0 is success");
    assert_eq!(out.output, b"0");
}

#[test]
fn limits_above_the_runtime_maximum_are_refused() {
    let wasm = command("");
    let err = call_with(
        &wasm,
        b"",
        Limits {
            memory_bytes: 1 << 40,
            ..limits()
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::LimitTooHigh { .. }), "{err}");
}

#[test]
fn sleeping_is_refused_not_performed() {
    // poll_oneoff answers ENOTSUP (58) instead of blocking the thread.
    let wasm = wat(r#"(module
        (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start")
            (call $exit (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#);
    let err = call_with(&wasm, b"", limits()).unwrap_err();
    assert!(matches!(err, Error::Exit { code: 58, .. }), "{err}");
}

#[test]
fn an_invalid_module_is_refused() {
    let err = call_with(b"\0asm\x01\0\0\0\xff", b"", limits()).unwrap_err();
    assert!(matches!(err, Error::InvalidModule(_)), "{err}");
    assert!(err.is_module_rejected());
    let err = call_with(b"not wasm at all", b"", limits()).unwrap_err();
    assert!(
        err.to_string().contains("not a WebAssembly binary"),
        "{err}"
    );
}

#[test]
fn unsupported_abis_name_what_is_missing() {
    let cases = [
        (
            r#"(module (import "env" "now" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
            "env::now",
        ),
        (
            r#"(module (memory (export "memory") 1))"#,
            "missing export `_start`",
        ),
        (
            r#"(module (memory (export "memory") 1) (func (export "_initialize")))"#,
            "reactor",
        ),
        (
            r#"(module (func (export "_start")))"#,
            "missing export `memory`",
        ),
        (
            r#"(module (memory (export "memory") 1) (func (export "_start") (param i32)))"#,
            "no parameters",
        ),
    ];
    for (text, expected) in cases {
        let err = call_with(&wat(text), b"", limits()).unwrap_err();
        assert!(matches!(err, Error::UnsupportedAbi(_)), "{err}");
        assert!(
            err.to_string().contains(expected),
            "{err} should name {expected}"
        );
    }
}

#[test]
fn the_guest_sees_no_environment_arguments_beyond_its_name_or_files() {
    // environ_sizes_get must report 0 variables; path_open on fd 3 must fail (no preopens).
    let wasm = wat(r#"(module
        (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start")
            (drop (call $env (i32.const 0) (i32.const 4)))
            (if (i32.ne (i32.load (i32.const 0)) (i32.const 0)) (then (call $exit (i32.const 10))))
            ;; errno 8 = EBADF: there is no preopened directory at fd 3
            (if (i32.ne (call $prestat (i32.const 3) (i32.const 8)) (i32.const 8)) (then (call $exit (i32.const 11))))))"#);
    call_with(&wasm, b"", limits()).expect("no env, no preopens");
}

#[test]
fn a_failed_call_still_reports_the_fuel_it_used() {
    // Ten thousand loop iterations, then a trap.
    let wasm = wat(r#"(module (memory (export "memory") 1)
        (func (export "_start") (local $i i32)
            (local.set $i (i32.const 10000))
            (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i)))
            unreachable))"#);
    let err = call_with(&wasm, b"", limits()).unwrap_err();
    assert!(matches!(err, Error::Trap { .. }), "{err}");
    let fuel = err.fuel().expect("a guest failure reports fuel");
    assert!(fuel > 10_000, "{fuel}");
    // The same failure costs the same fuel every time.
    assert_eq!(
        call_with(&wasm, b"", limits()).unwrap_err().fuel(),
        Some(fuel)
    );
}
