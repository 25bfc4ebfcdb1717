//! Persistent streams: replay from an index returns exactly the suffix,
//! survives a reopen, and a following replay sees new appends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use orb_engine::{Cancel, EngineConfig, Flow, InspectRecords, Log, execute, iter_source, persist};
use timely::dataflow::operators::Probe;

use crate::shared;

fn replay(db: &sled::Db, from: u64) -> Vec<(u64, String)> {
    let db = db.clone();
    let out = execute(&EngineConfig::default(), move |worker| {
        let log: Log<String> = Log::open(&db, "words").expect("open");
        let flow = Flow::new(4, 7);
        let (seen, out) = shared();
        worker.dataflow::<u64, _, _>(|scope| {
            log.replay(scope, from, false, &flow)
                .inspect_records(move |x: &(u64, String)| seen.borrow_mut().push(x.clone()))
                .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
        out.take()
    })
    .expect("runs");
    out.into_iter().flatten().collect()
}

/// Opens the database in `dir` again, waiting (up to 2 s) for the lock
/// that sled's flusher thread of the handle just dropped may still hold.
fn reopen(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

#[test]
fn a_persisted_stream_replays_exactly_the_suffix_after_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = sled::open(dir.path()).expect("db");
        let db2 = db.clone();
        execute(&EngineConfig::default(), move |worker| {
            let log: Log<String> = Log::open(&db2, "words").expect("open");
            let flow = Flow::new(4, 10);
            worker.dataflow::<u64, _, _>(|scope| {
                let words = iter_source(scope, "words", &flow, (0..100).map(|i| format!("w{i}")));
                persist(words, log).probe_with(&flow.probe);
            });
            orb_engine::run_to_completion(worker);
        })
        .expect("runs");
        db.flush().expect("flush");
    }
    // A new process's view: reopen the database.
    let db = reopen(dir.path());
    assert_eq!(Log::<String>::open(&db, "words").expect("open").len(), 100);
    let suffix = replay(&db, 40);
    let expected: Vec<(u64, String)> = (40..100).map(|i| (i, format!("w{i}"))).collect();
    assert_eq!(suffix, expected);
    assert!(replay(&db, 100).is_empty());
    assert_eq!(replay(&db, 0).len(), 100);
}

#[test]
fn a_following_replay_sees_new_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path()).expect("db");
    let log: Log<u64> = Log::open(&db, "numbers").expect("open");
    log.append(&(0..10).collect::<Vec<_>>()).expect("append");
    let cancel = Cancel::new();
    let seen = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (log, seen, cancel) = (log.clone(), seen.clone(), cancel.clone());
        std::thread::spawn(move || {
            // Append once the replay has caught up, then stop it once all arrived.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while seen.load(Ordering::Acquire) < 10 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "replay never caught up"
                );
                std::thread::yield_now();
            }
            for i in 10..50u64 {
                log.append(&[i]).expect("append");
            }
            while seen.load(Ordering::Acquire) < 50 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "replay never followed"
                );
                std::thread::yield_now();
            }
            cancel.cancel();
        })
    };
    let out = execute(&EngineConfig::default(), move |worker| {
        let flow = Flow::new(4, 8).with_cancel(cancel.clone());
        let (items, out) = shared();
        let (log, seen) = (log.clone(), seen.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            log.replay(scope, 0, true, &flow)
                .inspect_records(move |(i, x): &(u64, u64)| {
                    items.borrow_mut().push((*i, *x));
                    seen.fetch_add(1, Ordering::Release);
                })
                .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
        out.take()
    })
    .expect("runs");
    writer.join().expect("writer");
    let items: Vec<(u64, u64)> = out.into_iter().flatten().collect();
    assert_eq!(items, (0..50).map(|i| (i, i)).collect::<Vec<_>>());
}
