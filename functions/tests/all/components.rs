//! Components (`wasi:cli/run`, WASI 0.2) run as modules do: the examples
//! built for wasm32-wasip2 give the modules' outputs, the same fuel on
//! every run, and each limit its module error; bad components are refused
//! with a reason.

use std::time::Duration;

use orb_functions::{CallOptions, Error, FunctionKind, Limits, ModuleStore, Seed};

use crate::{component, example, runtime, wat};

fn run(wasm: &[u8], input: &[u8], opts: &CallOptions) -> Result<(Vec<u8>, u64), Error> {
    // A fresh runtime (engine, pools, epoch thread) per run.
    let rt = runtime();
    let f = rt.load(wasm)?;
    let out = rt.call(&f, input, opts)?;
    Ok((out.output, out.fuel))
}

/// A `wasi:cli/run` component whose `run` is a core function with a memory
/// and a table; `body` leaves run's result on the stack (0 ok, 1 error).
fn command(body: &str) -> Vec<u8> {
    wat(&format!(
        r#"(component
            (core module $m
                (memory 1)
                (table $t 1 funcref)
                (func (export "run") (result i32) {body}))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $r (export "run" (func $run)))
            (export "wasi:cli/run@0.2.0" (instance $r)))"#
    ))
}

#[test]
fn the_examples_as_components_give_the_modules_outputs() {
    let rt = runtime();
    let opts = CallOptions::default();
    for (name, input) in [
        ("echo", &b"h\xc3\xa9llo"[..]),
        ("reverse", b"h\xc3\xa9llo"),
        ("wordcount", b"To be, or not to be"),
        ("hash", b"orb"),
        ("fib", b"20"),
    ] {
        let c = rt.load(&component(name)).expect("component loads");
        let m = rt.load(&example(name)).expect("module loads");
        assert_eq!(
            (c.kind(), m.kind()),
            (FunctionKind::Component, FunctionKind::Module)
        );
        let (c_out, m_out) = (
            rt.call(&c, input, &opts).expect("component runs"),
            rt.call(&m, input, &opts).expect("module runs"),
        );
        assert_eq!(c_out.output, m_out.output, "{name}");
        assert!(c_out.fuel > 0, "{name}: fuel is metered");
    }
}

#[test]
fn the_same_call_gives_the_same_output_and_fuel_in_every_runtime() {
    for (name, input) in [
        ("echo", &b"orb"[..]),
        ("fib", b"22"),
        ("wordcount", b"a b a c"),
        ("hash", b"xyz"),
        ("entropy", b""),
    ] {
        let opts = CallOptions {
            seed: Seed::derive(name.as_bytes()),
            ..CallOptions::default()
        };
        let a = run(&component(name), input, &opts).expect("runs");
        let b = run(&component(name), input, &opts).expect("runs");
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn a_component_sees_the_calls_clocks_and_seed_only() {
    let with = |seed: &[u8], wall: Duration| {
        let opts = CallOptions {
            seed: Seed::derive(seed),
            wall_clock: wall,
            ..CallOptions::default()
        };
        let (out, _) = run(&component("entropy"), b"", &opts).expect("runs");
        String::from_utf8(out).expect("text")
    };
    let a = with(b"call-1", Duration::ZERO);
    assert!(a.contains("wall_clock_ns=0\n"), "{a}");
    // The counting monotonic clock: one microsecond per reading.
    assert!(a.contains("monotonic_elapsed_ns=1000\n"), "{a}");
    assert_eq!(a, with(b"call-1", Duration::ZERO));
    let b = with(b"call-2", Duration::ZERO);
    assert_ne!(a, b, "another seed draws other random values");
    let later = with(b"call-1", Duration::from_secs(7));
    assert!(later.contains("wall_clock_ns=7000000000\n"), "{later}");
}

#[test]
fn each_limit_gives_the_modules_error() {
    let rt = runtime();
    let small = Limits {
        fuel: 50_000_000,
        memory_bytes: 16 << 20,
        output_bytes: 64 << 10,
        ..Limits::default()
    };
    let timed = Limits {
        fuel: u64::MAX,
        timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    for (name, limits, expect) in [
        ("spin", small.clone(), "out_of_fuel"),
        ("spin", timed, "timeout"),
        ("balloon", small.clone(), "memory_limit"),
        ("flood", small, "output_too_large"),
    ] {
        let call = |wasm: &[u8]| {
            let f = rt.load(wasm).expect("loads");
            rt.call(&f, b"", &CallOptions::with_limits(limits.clone()))
                .unwrap_err()
        };
        let (c, m) = (call(&component(name)), call(&example(name)));
        assert_eq!((c.kind(), m.kind()), (expect, expect), "{name}: {c} / {m}");
        assert!(c.is_guest_failure());
        assert!(
            c.fuel().is_some_and(|f| f > 0),
            "{name}: fuel reported: {c:?}"
        );
    }
}

#[test]
fn a_failing_main_is_a_guest_exit_with_its_message() {
    let rt = runtime();
    let f = rt.load(&component("fib")).expect("loads");
    let err = rt.call(&f, b"twenty", &CallOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Exit { code: 1, log, .. } if log.contains("fib wants a number")),
        "{err}"
    );
    // `run` returning its error without `exit` is exit code 1 too.
    let err = run(&command("(i32.const 1)"), b"", &CallOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Exit { code: 1, .. }), "{err}");
    let (out, _) = run(&command("(i32.const 0)"), b"", &CallOptions::default()).expect("ok");
    assert!(out.is_empty());
}

#[test]
fn limits_bind_a_components_core_code_as_a_modules() {
    let limits = |l: Limits| CallOptions::with_limits(l);
    let looping = command("(loop $l (br $l)) (i32.const 0)");
    let err = run(
        &looping,
        b"",
        &limits(Limits {
            fuel: 100_000,
            ..Limits::default()
        }),
    )
    .unwrap_err();
    assert!(matches!(err, Error::OutOfFuel { limit: 100_000 }), "{err}");

    let growing = command(
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable",
    );
    let err = run(
        &growing,
        b"",
        &limits(Limits {
            memory_bytes: 1 << 20,
            ..Limits::default()
        }),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimit { limit, .. } if limit == 1 << 20),
        "{err}"
    );

    let table = command(
        "(if (i32.eq (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1)) (then unreachable)) (i32.const 0)",
    );
    let err = run(
        &table,
        b"",
        &limits(Limits {
            table_elements: 100,
            ..Limits::default()
        }),
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
fn no_state_survives_from_one_component_call_to_the_next() {
    // As the module test: read three addresses, fail if any is set, scribble.
    let wasm = command(
        "(drop (memory.grow (i32.const 40)))
         (i32.add (i32.load (i32.const 1024))
             (i32.add (i32.load (i32.const 1500000)) (i32.load (i32.const 2600000))))
         (i32.store (i32.const 1024) (i32.const 42))
         (i32.store (i32.const 1500000) (i32.const 7))
         (i32.store (i32.const 2600000) (i32.const 9))
         (i32.ne (i32.const 0))",
    );
    let rt = runtime();
    let f = rt.load(&wasm).expect("loads");
    for _ in 0..50 {
        rt.call(&f, b"", &CallOptions::default())
            .expect("a clean slot");
    }
}

/// A component that asks its monotonic clock to wake it in `nanos`.
fn sleeper(nanos: u64) -> Vec<u8> {
    wat(&format!(
        r#"(component
            (import "wasi:io/poll@0.2.0" (instance $poll
                (export "pollable" (type (sub resource)))))
            (alias export $poll "pollable" (type $pollable))
            (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
                (alias outer 1 $pollable (type $p))
                (export "pollable" (type $exported (eq $p)))
                (type $own (own $exported))
                (export "subscribe-duration" (func (param "when" u64) (result $own)))))
            (core func $subscribe (canon lower (func $clock "subscribe-duration")))
            (core module $m
                (import "clock" "subscribe" (func $subscribe (param i64) (result i32)))
                (func (export "run") (result i32)
                    (drop (call $subscribe (i64.const {nanos})))
                    (i32.const 0)))
            (core instance $i (instantiate $m
                (with "clock" (instance (export "subscribe" (func $subscribe))))))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $r (export "run" (func $run)))
            (export "wasi:cli/run@0.2.0" (instance $r)))"#
    ))
}

#[test]
fn a_component_may_poll_but_not_sleep() {
    run(&sleeper(0), b"", &CallOptions::default()).expect("a zero wait is a poll");
    let err = run(&sleeper(1_000_000_000), b"", &CallOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Trap { message, .. } if message.contains("sleeping is not supported")),
        "{err}"
    );
}

#[test]
fn inspect_shows_the_world_the_imports_and_the_verdict() {
    let rt = runtime();
    let bytes = component("echo");
    let info = rt.inspect(&bytes).expect("inspect");
    assert_eq!(info.kind, FunctionKind::Component);
    assert_eq!(info.world.as_deref(), Some("wasi:cli/command"));
    assert_eq!(info.size, bytes.len());
    assert_eq!(info.unsupported, None);
    assert!(
        info.imports.iter().all(|i| i.provided),
        "{:?}",
        info.imports
    );
    assert!(
        info.imports
            .iter()
            .any(|i| i.name.starts_with("wasi:cli/stdin@0.2.")),
        "{:?}",
        info.imports
    );
    assert!(
        info.exports
            .iter()
            .any(|e| e.name.starts_with("wasi:cli/run@0.2.")),
        "{:?}",
        info.exports
    );
    let module = rt.inspect(&example("echo")).expect("inspect");
    assert_eq!((module.kind, module.world), (FunctionKind::Module, None));
}

/// Why `wasm` is refused, from `load` and from `inspect` alike.
fn refusal(wasm: &[u8]) -> String {
    let rt = runtime();
    let err = rt.load(wasm).expect_err("refused");
    assert!(err.is_module_rejected(), "{err}");
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    if let Error::UnsupportedAbi(why) = &err {
        let info = rt.inspect(wasm).expect("inspect");
        assert_eq!(info.unsupported.as_ref(), Some(why));
    }
    message
}

#[test]
fn bad_components_are_refused_with_their_reason() {
    let junk = [&b"\0asm\x0d\0\x01\0"[..], b"not a component"].concat();
    let why = refusal(&junk);
    assert!(
        why.starts_with("invalid module: this component does not compile"),
        "{why}"
    );

    let why = refusal(&wat("(component)"));
    assert!(
        why.contains("unknown world") && why.contains("exports nothing"),
        "{why}"
    );

    let proxy = wat(r#"(component
            (core module $m (func (export "handle") (param i32 i32)))
            (core instance $i (instantiate $m))
            (func $handle (param "request" u32) (param "response" u32)
                (canon lift (core func $i "handle")))
            (instance $h (export "handle" (func $handle)))
            (export "wasi:http/incoming-handler@0.2.0" (instance $h)))"#);
    // A proxy is taken (tests/all/http.rs calls a real one).
    assert!(runtime().load(&proxy).expect("a proxy loads").serves_http());

    // A command that also imports `import`.
    let run_with_import = |import: &str| {
        let text = format!(
            r#"(component
                (import "{import}" (instance))
                (core module $m (func (export "run") (result i32) (i32.const 0)))
                (core instance $i (instantiate $m))
                (func $run (result (result)) (canon lift (core func $i "run")))
                (instance $r (export "run" (func $run)))
                (export "wasi:cli/run@0.2.0" (instance $r)))"#
        );
        wat(&text)
    };
    // Sockets link (CPython's libc imports them), every use refused; only
    // their WASI 0.2 version is offered.
    runtime()
        .load(&run_with_import("wasi:sockets/tcp@0.2.0"))
        .expect("a command importing wasi:sockets 0.2 links");
    let why = refusal(&run_with_import("wasi:sockets/tcp@0.3.0"));
    assert!(
        why.contains("`wasi:sockets/tcp@0.3.0`") && why.contains("WASI 0.2"),
        "{why}"
    );
    let why = refusal(&run_with_import("wasi:http/outgoing-handler@0.2.0"));
    assert!(why.contains("a command may not use wasi:http"), "{why}");
    let why = refusal(&run_with_import("acme:db/query@1.0.0"));
    assert!(
        why.contains("`acme:db/query@1.0.0`") && why.contains("not provided"),
        "{why}"
    );

    // Named as Orb provides it, typed otherwise: the linker's check says so.
    let mistyped = wat(r#"(component
            (import "wasi:cli/environment@0.2.0" (instance $env
                (export "get-arguments" (func (result u32)))))
            (core module $m (func (export "run") (result i32) (i32.const 0)))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $r (export "run" (func $run)))
            (export "wasi:cli/run@0.2.0" (instance $r)))"#);
    let why = refusal(&mistyped);
    assert!(why.contains("wasi:cli/environment@0.2.0"), "{why}");
}

#[test]
fn a_stored_component_loads_from_its_own_artifact_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = component("reverse");
    let id = {
        let rt = runtime();
        let store = ModuleStore::open(dir.path()).expect("open");
        let f = store.put_and_load(&rt, &wasm).expect("load");
        assert_eq!(f.kind(), FunctionKind::Component);
        // The module of the same name beside it: its artifact never collides.
        store
            .put_and_load(&rt, &example("reverse"))
            .expect("module");
        f.id()
    };
    let compiled = dir.path().join("compiled");
    let engine = std::fs::read_dir(&compiled)
        .expect("compiled")
        .next()
        .expect("an engine dir")
        .expect("entry")
        .path();
    let artifact = engine.join(format!("{id}.component.cwasm"));
    let written = std::fs::metadata(&artifact)
        .expect("the component's artifact")
        .modified()
        .expect("mtime");

    let rt = runtime();
    let store = ModuleStore::open(dir.path()).expect("reopen");
    let f = store.load(&rt, id).expect("load from artifact");
    assert_eq!(f.kind(), FunctionKind::Component);
    let out = rt.call(&f, b"abc", &CallOptions::default()).expect("call");
    assert_eq!(out.output, b"cba");
    let after = std::fs::metadata(&artifact)
        .expect("meta")
        .modified()
        .expect("mtime");
    assert_eq!(written, after, "the artifact was reused, not rewritten");

    // The module's valid artifact put in the component's place is refused
    // by the seal and the component recompiled, never the module run.
    let module_id = orb_functions::FunctionId::of(&example("reverse"));
    std::fs::copy(engine.join(format!("{module_id}.cwasm")), &artifact).expect("swap");
    let f = store.load(&rt, id).expect("recompiles");
    assert_eq!(f.kind(), FunctionKind::Component);
    assert!(store.stored_bytes(&rt, id) > wasm.len() as u64);
}

#[test]
fn as_many_component_calls_as_the_pool_has_slots_run_at_once() {
    // Each call slot of the pool fits a component (its core instances and
    // tables), not only a module: four slots, four concurrent components.
    let slots = 4;
    let rt = orb_functions::Runtime::new(orb_functions::RuntimeConfig {
        pool_instances: slots,
        max_memory_bytes: 256 << 20,
        ..orb_functions::RuntimeConfig::default()
    })
    .expect("runtime");
    let f = rt.load(&component("echo")).expect("loads");
    let start = std::sync::Barrier::new(slots as usize);
    std::thread::scope(|scope| {
        for t in 0..slots {
            let (rt, f, start) = (&rt, &f, &start);
            scope.spawn(move || {
                start.wait();
                for i in 0..20 {
                    let input = format!("{t}/{i}");
                    let out = rt
                        .call(f, input.as_bytes(), &CallOptions::default())
                        .expect("a slot for each concurrent component call");
                    assert_eq!(out.output, input.as_bytes());
                }
            });
        }
    });
}
