//! Live tables: changes reach joins and subscribers; lookups see the latest
//! value; compaction folds history.

use differential_dataflow::input::Input;
use orb_engine::{Change, EngineConfig, execute, table};
use timely::dataflow::ProbeHandle;

use crate::shared;

#[test]
fn table_changes_reach_joins_subscribers_and_lookups_and_history_is_compacted() {
    let results = execute(&EngineConfig::default(), |worker| {
        let probe = ProbeHandle::new();
        let (joined, out) = shared();
        let (subscriber, changes) = flume::bounded(64);
        let (mut routes, mut queries) = worker.dataflow::<u64, _, _>(|scope| {
            let (routes, streams) = table::<String, u32>(scope);
            let (queries, query_stream) = scope.new_collection::<(String, u64), isize>();
            streams.subscribe(String::from("f")..String::from("g"), subscriber);
            streams
                .join(query_stream)
                .inspect(move |((k, q, v), t, d)| {
                    joined.borrow_mut().push((k.clone(), *q, *v, *t, *d))
                })
                .probe_with(&probe);
            (routes, queries)
        });
        let mut step = |routes: &mut orb_engine::LiveTable<String, u32>,
                        queries: &mut differential_dataflow::input::InputSession<
            u64,
            (String, u64),
            isize,
        >,
                        t: u64| {
            routes.advance_to(t);
            queries.advance_to(t);
            queries.flush();
            while probe.less_than(&t) {
                worker.step();
            }
        };
        routes.upsert("fib".into(), 1);
        routes.upsert("hash".into(), 7);
        queries.insert(("fib".into(), 100));
        step(&mut routes, &mut queries, 1);
        routes.upsert("fib".into(), 2);
        step(&mut routes, &mut queries, 2);
        routes.upsert("fib".into(), 3);
        routes.delete(&"hash".to_owned());
        step(&mut routes, &mut queries, 3);
        for t in 4..10 {
            step(&mut routes, &mut queries, t);
        }
        let fib = routes.lookup(&"fib".to_owned());
        let hash = routes.lookup(&"hash".to_owned());
        let history = routes.entries();
        (
            out.take(),
            changes.drain().collect::<Vec<_>>(),
            fib,
            hash,
            history,
        )
    })
    .expect("runs");
    let (joined, changes, fib, hash, history) = results.into_iter().next().expect("one worker");

    // The standing query follows the value: 1, then 2, then 3.
    let f = |k: &str, q, v, t, d| (k.to_owned(), q, v, t, d);
    assert_eq!(
        joined,
        vec![
            f("fib", 100, 1, 0, 1),
            f("fib", 100, 1, 1, -1),
            f("fib", 100, 2, 1, 1),
            f("fib", 100, 2, 2, -1),
            f("fib", 100, 3, 2, 1)
        ]
    );
    // The subscriber saw only keys in f..g, each change once, in order.
    let c = |value, time, diff| Change {
        key: "fib".to_owned(),
        value,
        time,
        diff,
    };
    let mut changes = changes;
    changes.sort_by_key(|c| (c.time, c.diff));
    assert_eq!(
        changes,
        vec![c(1, 0, 1), c(1, 1, -1), c(2, 1, 1), c(2, 2, -1), c(3, 2, 1)]
    );
    assert_eq!(fib, vec![3]);
    assert!(hash.is_empty());
    // Compaction folded the history: what is left is the current table,
    // at times no earlier than the compaction frontier.
    let keys: Vec<_> = history.iter().map(|((k, v), _)| (k.as_str(), *v)).collect();
    assert_eq!(keys, vec![("fib", 3)], "{history:?}");
    assert!(
        history.iter().all(|(_, times)| times.len() == 1),
        "{history:?}"
    );
}
