//! Chat: an agent's topic as a timely stream → lines per speaker, merged
//! continuously → each line sent on to an agent.
//!
//! The source is an [`Inlet`]: a bounded channel that a reader fills with
//! the publications of a topic (`orb pipeline run chat --topic
//! chat/lobby/lines` reads them from a node as they come), so a slow
//! pipeline holds the reader back instead of piling lines up. Each line
//! `NAME: TEXT` (what `examples/agents/chat` publishes) counts for its
//! speaker in a differential collection, and goes to the sink: the `call`
//! operator with an [`Invoker`] that sends a message to an agent (`inc` to
//! `counter/NAME`) under an id derived from the publication's place, so a
//! line is counted by the agent once however often the pipeline runs over
//! it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use orb_engine::{
    CallConfig, Called, Flow, Inlet, InspectRecords, Invoker, call_with, execute, weighted,
};
use serde::{Deserialize, Serialize};

use timely::dataflow::operators::Probe;
use timely::dataflow::operators::vec::Map;

use crate::{Error, Options, apply_change};

/// One publication of the topic: its place (publishing step, index) and
/// its text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Line {
    /// The publishing step's sequence number.
    pub seq: u64,
    /// Its index among the step's publications.
    pub index: u32,
    /// The text.
    pub text: String,
}

/// What the sink asks its [`Invoker`] to deliver: `message` to `agent`
/// under `id` (JSON, the input of [`Invoker::invoke`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToAgent {
    /// The agent: `module/id`.
    pub agent: String,
    /// The message.
    pub message: String,
    /// The message id (32 hex digits): the same for the same line.
    pub id: String,
}

/// What the pipeline did (this process's share).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Speaker → lines said.
    pub per_speaker: BTreeMap<String, i64>,
    /// Lines the agent applied.
    pub sent: u64,
    /// Lines whose message failed (after the invoker's own retries).
    pub failed: u64,
    /// Lines that are not `NAME: TEXT`.
    pub unreadable: u64,
}

/// The message a line becomes: `inc` to `counter/NAME`, under an id
/// derived from the topic and the line's place.
pub fn to_agent(topic: &str, line: &Line) -> Option<ToAgent> {
    let (name, _) = line.text.split_once(": ")?;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !valid {
        return None;
    }
    let mut hasher = blake3::Hasher::new_derive_key("orb pipelines chat line v1");
    hasher.update(topic.as_bytes());
    hasher.update(&[0]);
    hasher.update(&line.seq.to_be_bytes());
    hasher.update(&line.index.to_be_bytes());
    let id: String = hasher.finalize().as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(ToAgent {
        agent: format!("counter/{name}"),
        message: "inc".into(),
        id,
    })
}

/// Runs the pipeline over what `lines` brings until its feeder closes it;
/// `sink` delivers [`ToAgent`] messages.
pub fn run(
    options: &Options,
    topic: &str,
    lines: Inlet<Line>,
    sink: Arc<dyn Invoker>,
) -> Result<Report, Error> {
    let engine = options.engine.clone();
    let topic = topic.to_owned();
    let per_worker = execute(&options.engine, move |worker| {
        let flow = Flow::new(engine.max_lag, engine.batch.min(8));
        let report = Rc::new(RefCell::new(Report::default()));
        let (r1, r2, r3) = (report.clone(), report.clone(), report.clone());
        let (sink, lines, topic) = (sink.clone(), lines.clone(), topic.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            let lines = lines.into_stream(scope, "topic", &flow);
            let readable = lines.flat_map(move |line: Line| {
                let message = to_agent(&topic, &line);
                if message.is_none() {
                    r1.borrow_mut().unreadable += 1;
                }
                message
            });
            let speakers = readable.clone().map(|m: ToAgent| {
                let name = m.agent.trim_start_matches("counter/").to_owned();
                (name, 1isize)
            });
            weighted(speakers)
                .count()
                .inspect(move |((speaker, total), _time, diff)| {
                    apply_change(
                        &mut r2.borrow_mut().per_speaker,
                        speaker,
                        &(*total as i64),
                        *diff,
                    );
                })
                .probe_with(&flow.probe);
            call_with(readable, sink, CallConfig::default(), |m: &ToAgent| {
                serde_json::to_vec(m).unwrap_or_default()
            })
            .inspect_records(move |c: &Called<ToAgent>| {
                let mut r = r3.borrow_mut();
                match c.result {
                    Ok(_) => r.sent += 1,
                    Err(_) => r.failed += 1,
                }
            })
            .probe_with(&flow.probe);
        });
        orb_engine::run_to_completion(worker);
        report.take()
    })?;
    let mut all = Report::default();
    for r in per_worker {
        all.per_speaker.extend(r.per_speaker);
        all.sent += r.sent;
        all.failed += r.failed;
        all.unreadable += r.unreadable;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_becomes_an_inc_for_its_speaker_under_an_id_of_its_place() {
        let line = |seq, text: &str| Line {
            seq,
            index: 0,
            text: text.into(),
        };
        let a = to_agent("chat/lobby/lines", &line(3, "ann: hi")).unwrap();
        assert_eq!(
            (a.agent.as_str(), a.message.as_str()),
            ("counter/ann", "inc")
        );
        assert_eq!(a.id.len(), 32);
        // The same place gives the same id; another place or topic another.
        assert_eq!(
            a,
            to_agent("chat/lobby/lines", &line(3, "ann: hi")).unwrap()
        );
        assert_ne!(
            a.id,
            to_agent("chat/lobby/lines", &line(4, "ann: hi"))
                .unwrap()
                .id
        );
        assert_ne!(
            a.id,
            to_agent("chat/hall/lines", &line(3, "ann: hi")).unwrap().id
        );
        for unreadable in ["no speaker", ": hi", "Ann: hi", "a/b: hi"] {
            assert_eq!(
                to_agent("chat/lobby/lines", &line(1, unreadable)),
                None,
                "{unreadable}"
            );
        }
    }

    #[test]
    fn the_pipeline_counts_speakers_and_sends_each_line_once() {
        use std::sync::Mutex;
        /// An invoker that keeps what it was asked to deliver.
        struct Kept(Mutex<Vec<ToAgent>>);
        impl Invoker for Kept {
            fn invoke(
                &self,
                input: Vec<u8>,
                done: orb_engine::OnDone,
            ) -> Result<(), orb_engine::Saturated> {
                let m: ToAgent = serde_json::from_slice(&input).unwrap();
                self.0.lock().unwrap().push(m);
                done(Ok((b"1".to_vec(), 0)));
                Ok(())
            }
        }
        let kept = Arc::new(Kept(Mutex::new(Vec::new())));
        let (feed, inlet) = orb_engine::channel(4);
        let texts = ["ann: hi", "bob: yo", "garbage", "ann: bye"];
        let feeder = std::thread::spawn(move || {
            for (i, text) in texts.iter().enumerate() {
                let line = Line {
                    seq: i as u64 + 1,
                    index: 0,
                    text: (*text).into(),
                };
                feed.send(line).unwrap();
            }
        });
        let report = run(&Options::default(), "chat/lobby/lines", inlet, kept.clone()).unwrap();
        feeder.join().unwrap();
        assert_eq!(
            report.per_speaker,
            BTreeMap::from([("ann".to_owned(), 2), ("bob".to_owned(), 1)])
        );
        assert_eq!((report.sent, report.failed, report.unreadable), (3, 0, 1));
        let mut sent: Vec<String> = kept
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.agent.clone())
            .collect();
        sent.sort();
        assert_eq!(sent, ["counter/ann", "counter/ann", "counter/bob"]);
    }
}
