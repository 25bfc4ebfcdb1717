//! Enrichment: a stream of events joined against a live table that changes
//! while the pipeline runs, with a subscription printing the table's changes.
//!
//! Events `(user, action)` arrive epoch by epoch; the table maps users to
//! countries. At epoch 3 `carol` moves from DK to DE, at epoch 5 `dave` is
//! deleted, and events after that see the table as it is then. Events live
//! for one epoch each, so each is enriched once, with the table of its epoch. A subscriber watches the users `a`..`d`.

use std::cell::RefCell;
use std::rc::Rc;

use differential_dataflow::input::Input;
use orb_engine::{Change, execute, table};
use timely::dataflow::ProbeHandle;

use crate::{Error, Options};

/// Epochs the example runs for.
pub const EPOCHS: u64 = 8;

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const ACTIONS: [&str; 3] = ["login", "search", "buy"];

/// What the enrichment pipeline saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `(epoch, user, action, country)` for every joined event.
    pub enriched: Vec<(u64, String, String, String)>,
    /// Changes of users `a`..`d`, as the subscriber received them.
    pub changes: Vec<Change<String, String>>,
    /// Events without a table entry (their user was deleted).
    pub unmatched: u64,
    /// `carol`'s country, looked up in the trace at the end.
    pub carol: Vec<String>,
}

/// The table's changes at `epoch`: upserts `(user, Some(country))`, deletes `(user, None)`.
fn table_changes(epoch: u64) -> Vec<(&'static str, Option<&'static str>)> {
    match epoch {
        0 => vec![
            ("alice", Some("NO")),
            ("bob", Some("SE")),
            ("carol", Some("DK")),
            ("dave", Some("FI")),
        ],
        3 => vec![("carol", Some("DE"))],
        5 => vec![("dave", None)],
        6 => vec![("erin", Some("IS"))],
        _ => vec![],
    }
}

/// Runs the pipeline (single process; `-w` workers share the events).
pub fn run(options: &Options) -> Result<Report, Error> {
    let per_worker = execute(&options.engine, |worker| {
        let report = Rc::new(RefCell::new(Report::default()));
        let (r1, r2) = (report.clone(), report.clone());
        let probe = ProbeHandle::new();
        let (subscriber, changes) = flume::bounded(1024);
        let (mut users, mut events) = worker.dataflow::<u64, _, _>(|scope| {
            let (users, streams) = table::<String, String>(scope);
            // An event: (user, (action, epoch)); the epoch keeps equal events distinct.
            let (events, event_stream) = scope.new_collection::<(String, (String, u64)), isize>();
            streams.subscribe(String::from("a")..String::from("d"), subscriber);
            streams
                .join(event_stream.clone())
                .inspect(move |((user, (action, _), country), time, diff)| {
                    if *diff > 0 {
                        r1.borrow_mut().enriched.push((
                            *time,
                            user.clone(),
                            action.clone(),
                            country.clone(),
                        ));
                    }
                })
                .probe_with(&probe);
            let known = streams.changes.clone().map(|(user, _)| user).distinct();
            event_stream
                .antijoin(known)
                .consolidate()
                .inspect(move |(_, _, diff)| {
                    if *diff > 0 {
                        r2.borrow_mut().unmatched += *diff as u64;
                    }
                })
                .probe_with(&probe);
            (users, events)
        });
        let (index, peers) = (worker.index(), worker.peers());
        let mut previous = Vec::new();
        for epoch in 0..EPOCHS {
            if index == 0 {
                for (user, country) in table_changes(epoch) {
                    match country {
                        Some(c) => users.upsert(user.to_owned(), c.to_owned()),
                        None => users.delete(&user.to_owned()),
                    }
                }
            }
            // Events are a stream, not a table: each lives for one epoch
            // (inserted now, retracted at the next), so the join enriches it
            // with the table as of its arrival and never revisits it.
            for event in previous.drain(..) {
                events.remove(event);
            }
            // Each worker contributes its share of the epoch's events.
            for (i, user) in USERS.iter().enumerate() {
                if (epoch as usize + i) % peers == index {
                    let action = ACTIONS[(epoch as usize + i) % ACTIONS.len()];
                    let event = (user.to_string(), (action.to_owned(), epoch));
                    events.insert(event.clone());
                    previous.push(event);
                }
            }
            users.advance_to(epoch + 1);
            events.advance_to(epoch + 1);
            events.flush();
            while probe.less_than(&(epoch + 1)) {
                worker.step();
            }
        }
        drop(events);
        users.advance_to(EPOCHS);
        let carol = users.lookup(&"carol".to_owned());
        drop(users);
        orb_engine::run_to_completion(worker);
        let mut r = report.take();
        r.changes = changes.drain().collect();
        r.carol = carol;
        r
    })?;
    let mut all = Report::default();
    for r in per_worker {
        all.enriched.extend(r.enriched);
        all.changes.extend(r.changes);
        all.unmatched += r.unmatched;
        all.carol.extend(r.carol);
    }
    all.enriched.sort();
    all.changes.sort_by_key(|c| (c.time, c.key.clone(), c.diff));
    Ok(all)
}
