//! The executor's queue is bounded: a full queue answers `Busy` at once, and
//! dropping the executor finishes what was queued. Functions take turns for
//! threads, and none holds more than its share of threads or queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orb_functions::{CallOptions, Error, Executor, Limits, Shares};

use crate::{command, runtime};

#[test]
fn a_full_queue_answers_busy_immediately() {
    let rt = runtime();
    let spin = rt.load(&command("(loop $l (br $l))")).expect("loads");
    let slow = looping(Duration::from_millis(300));
    let executor = Executor::new(rt, 1, 1).expect("executor");
    // The first call occupies the only thread ...
    executor
        .submit(spin.clone(), vec![], slow.clone(), |_| {})
        .expect("first");
    // ... once the thread has taken it off the queue ...
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while executor.queued() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first call never started"
        );
        std::thread::yield_now();
    }
    // ... the second fills the queue, and the third is refused.
    executor
        .submit(spin.clone(), vec![], slow.clone(), |_| {})
        .expect("queued");
    let err = executor.submit(spin, vec![], slow, |_| {}).unwrap_err();
    assert!(matches!(err, Error::Busy { capacity: 1 }), "{err}");
}

#[test]
fn dropping_the_executor_finishes_queued_calls() {
    let rt = runtime();
    let f = rt
        .load(&command(
            "(drop (call $write (i32.const 1) (i32.const 64) (i32.const 1)))",
        ))
        .expect("loads");
    let done = Arc::new(AtomicUsize::new(0));
    let executor = Executor::new(rt, 2, 64).expect("executor");
    for _ in 0..50 {
        let done = done.clone();
        executor
            .submit(f.clone(), vec![], CallOptions::default(), move |r| {
                assert_eq!(r.expect("ok").output, b"0");
                done.fetch_add(1, Ordering::SeqCst);
            })
            .expect("queued");
    }
    drop(executor);
    assert_eq!(done.load(Ordering::SeqCst), 50);
}

#[test]
fn call_waits_for_the_result() {
    let rt = runtime();
    let f = rt
        .load(&command(
            "(drop (call $write (i32.const 1) (i32.const 64) (i32.const 3)))",
        ))
        .expect("loads");
    let executor = Executor::for_runtime(rt).expect("executor");
    assert_eq!(
        executor
            .call(&f, vec![], CallOptions::default())
            .expect("ok")
            .output,
        b"012"
    );
}

/// Options for a call that loops until `timeout` passes.
fn looping(timeout: Duration) -> CallOptions {
    CallOptions::with_limits(Limits {
        fuel: u64::MAX,
        timeout,
        ..Limits::default()
    })
}

/// Waits until `executor` runs `n` calls.
fn wait_running(executor: &Executor, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while executor.running() != n {
        assert!(std::time::Instant::now() < deadline, "never {n} running");
        std::thread::yield_now();
    }
}

#[test]
fn functions_take_turns_for_a_free_thread() {
    let rt = runtime();
    let gate = rt.load(&command("(loop $l (br $l))")).expect("loads");
    let a = rt
        .load(&command(
            "(drop (call $write (i32.const 1) (i32.const 64) (i32.const 1)))",
        ))
        .expect("loads");
    let b = rt
        .load(&command(
            "(drop (call $write (i32.const 1) (i32.const 65) (i32.const 1)))",
        ))
        .expect("loads");
    let executor = Executor::new(rt, 1, 64).expect("executor");
    // The only thread is held while three calls of `a`, then three of
    // `b`, are queued: they run a, b, a, b, a, b, not in arrival order.
    executor
        .submit(gate, vec![], looping(Duration::from_millis(200)), |_| {})
        .expect("gate");
    wait_running(&executor, 1);
    let order = Arc::new(Mutex::new(String::new()));
    for f in [&a, &a, &a, &b, &b, &b] {
        let order = order.clone();
        executor
            .submit(f.clone(), vec![], CallOptions::default(), move |r| {
                let out = r.expect("ok").output;
                order
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8(out).unwrap());
            })
            .expect("queued");
    }
    drop(executor);
    assert_eq!(*order.lock().unwrap(), "010101");
}

#[test]
fn a_function_at_its_share_leaves_threads_to_others() {
    let rt = runtime();
    let spin = rt.load(&command("(loop $l (br $l))")).expect("loads");
    let quick = rt
        .load(&command(
            "(drop (call $write (i32.const 1) (i32.const 64) (i32.const 2)))",
        ))
        .expect("loads");
    // One call of a function at a time, four threads, one queued call
    // per function.
    let executor = Executor::with_shares(rt, Shares::fair(1, 4)).expect("executor");
    assert_eq!(
        executor.shares(),
        Shares {
            threads: 4,
            per_function: 1,
            queue: 4,
            queue_per_function: 1
        }
    );
    let spins_done = Arc::new(AtomicUsize::new(0));
    let submit_spin = || {
        let done = spins_done.clone();
        executor.submit(
            spin.clone(),
            vec![],
            looping(Duration::from_millis(800)),
            move |_| {
                done.fetch_add(1, Ordering::SeqCst);
            },
        )
    };
    // The first spin runs; one more waits for its one thread although
    // three threads are idle; a third is over its share of the queue.
    submit_spin().expect("runs");
    wait_running(&executor, 1);
    submit_spin().expect("waits");
    let err = submit_spin().unwrap_err();
    assert!(matches!(err, Error::Busy { capacity: 1 }), "{err}");
    assert_eq!(executor.queued(), 1);
    // Another function's call runs at once on a free thread, long before
    // the spin (800 ms of looping) ends.
    let out = executor
        .call(&quick, vec![], CallOptions::default())
        .expect("ok");
    assert_eq!(out.output, b"01");
    assert_eq!(spins_done.load(Ordering::SeqCst), 0);
    // The quick call's thread is free again (it counts itself out just
    // after handing over the result); the spin still runs.
    wait_running(&executor, 1);
    assert_eq!(spins_done.load(Ordering::SeqCst), 0);
}

#[test]
fn long_calls_beyond_the_slots_pause_and_finish_with_the_same_fuel() {
    let rt = orb_functions::Runtime::new(orb_functions::RuntimeConfig {
        pool_instances: 16,
        long_call_slots: 1,
        ..orb_functions::RuntimeConfig::default()
    })
    .expect("runtime");
    let spin = rt.load(&command("(loop $l (br $l))")).expect("loads");
    let fuel = CallOptions::with_limits(Limits {
        fuel: 300_000_000,
        ..Limits::default()
    });
    let executor = Executor::new(rt.clone(), 3, 8).expect("executor");
    let results = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..3 {
        let results = results.clone();
        executor
            .submit(spin.clone(), vec![], fuel.clone(), move |r| {
                results.lock().unwrap().push(r);
            })
            .expect("runs");
    }
    // Three spin at once; only one at a time runs long.
    while results.lock().unwrap().len() < 3 {
        assert!(rt.long_calls() <= 1);
        std::thread::yield_now();
    }
    drop(executor);
    for r in results.lock().unwrap().iter() {
        match r {
            Err(Error::OutOfFuel { limit }) => assert_eq!(*limit, 300_000_000),
            other => panic!("not out of fuel: {other:?}"),
        }
    }
    assert_eq!(rt.long_calls(), 0);
}
