//! The calls this node ran, newest kept: what `orb logs` gathers from the
//! hosts of a function and the console's Functions page lists.
//!
//! One ring of [`KEPT`] records for the whole node, numbered from 1 in the
//! order they ended, so an asker can say "after record n" and get exactly
//! the ones it has not seen (or learn, from a gap, that some were dropped).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use orb_functions::{Error as FnError, FunctionId, Outcome};
use orb_net::{CALL_LOG_BATCH, CallRecord, Invoke};

/// Records kept.
pub(crate) const KEPT: usize = 4096;

/// Bytes of a guest's stderr kept per record (its end).
pub(crate) const LOG_TAIL: usize = 512;

/// The node's call records.
#[derive(Default)]
pub(crate) struct CallLog {
    inner: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    last: u64,
    records: VecDeque<CallRecord>,
}

/// The end of `bytes` as text, at most [`LOG_TAIL`] bytes, cut at a
/// character boundary.
pub(crate) fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    let mut start = text.len().saturating_sub(LOG_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// The record of `invoke` (a step of `agent`, if one) ending as `result`.
pub(crate) fn record(
    invoke: &Invoke,
    agent: Option<String>,
    result: &Result<Outcome, FnError>,
) -> CallRecord {
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (outcome, fuel, duration_us, log) = match result {
        Ok(o) => (
            "ok".to_owned(),
            o.fuel,
            o.duration.as_micros() as u64,
            tail(&o.log),
        ),
        Err(e) => (
            e.kind().to_owned(),
            e.fuel().unwrap_or(0),
            0,
            tail(e.to_string().as_bytes()),
        ),
    };
    CallRecord {
        seq: 0,
        at_ms,
        invocation: invoke.invocation,
        function: invoke.function,
        agent,
        outcome,
        fuel,
        duration_us,
        log,
    }
}

impl CallLog {
    /// Keeps `record` (its `seq` is set here).
    pub(crate) fn push(&self, mut record: CallRecord) {
        let mut ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        ring.last += 1;
        record.seq = ring.last;
        if ring.records.len() >= KEPT {
            ring.records.pop_front();
        }
        ring.records.push_back(record);
    }

    /// `function`'s records after number `after`, oldest first, at most
    /// [`CALL_LOG_BATCH`]; and the latest number given.
    pub(crate) fn after(&self, function: &FunctionId, after: u64) -> (Vec<CallRecord>, u64) {
        let ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let records = ring
            .records
            .iter()
            .filter(|r| r.seq > after && r.function == *function)
            .take(CALL_LOG_BATCH)
            .cloned()
            .collect();
        (records, ring.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(function: FunctionId) -> CallRecord {
        CallRecord {
            seq: 0,
            at_ms: 1,
            invocation: 7,
            function,
            agent: None,
            outcome: "ok".into(),
            fuel: 10,
            duration_us: 5,
            log: String::new(),
        }
    }

    #[test]
    fn records_are_numbered_filtered_by_function_and_bounded() {
        let log = CallLog::default();
        let (f, g) = (FunctionId::of(b"f"), FunctionId::of(b"g"));
        for i in 0..10 {
            log.push(record(if i % 2 == 0 { f } else { g }));
        }
        let (mine, last) = log.after(&f, 0);
        assert_eq!(last, 10);
        assert_eq!(
            mine.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 3, 5, 7, 9]
        );
        let (newer, _) = log.after(&f, 5);
        assert_eq!(newer.iter().map(|r| r.seq).collect::<Vec<_>>(), [7, 9]);
        for _ in 0..KEPT {
            log.push(record(g));
        }
        assert!(log.after(&f, 0).0.is_empty(), "the oldest are dropped");
        assert_eq!(
            log.after(&g, 0).0.len(),
            CALL_LOG_BATCH,
            "an answer is bounded"
        );
    }

    #[test]
    fn a_log_tail_keeps_the_end_whole_characters() {
        assert_eq!(tail(b"short\n"), "short");
        let long = "é".repeat(LOG_TAIL);
        let t = tail(long.as_bytes());
        assert!(t.len() <= LOG_TAIL && t.chars().all(|c| c == 'é'));
    }
}
