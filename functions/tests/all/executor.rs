//! The executor's queue is bounded: a full queue answers `Busy` at once, and
//! dropping the executor finishes what was queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orb_functions::{CallOptions, Error, Executor, Limits};

use crate::{command, runtime};

#[test]
fn a_full_queue_answers_busy_immediately() {
    let rt = runtime();
    let spin = rt.load(&command("(loop $l (br $l))")).expect("loads");
    let slow = CallOptions::with_limits(Limits {
        fuel: u64::MAX,
        timeout: Duration::from_millis(300),
        ..Limits::default()
    });
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
