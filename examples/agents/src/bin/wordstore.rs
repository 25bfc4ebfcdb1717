//! `wordstore`: a cognitive agent. A message of text makes it call the
//! `wordcount` function with it (replying `counting N`); when the answer
//! arrives as a later message it stores the word counts under N. `get`
//! replies with how many texts were counted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Store {
    /// Texts sent to `wordcount` so far.
    asked: u64,
    /// Its answers by text number: the word counts (JSON), or the error.
    counts: BTreeMap<u64, String>,
    failed: u64,
}

fn main() {
    orb_guest::actor::<Store, String, String, String>(|store, message, ctx, effects| {
        if let Some(answer) = &ctx.answer {
            let n: u64 = answer
                .name
                .strip_prefix("text-")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("an answer to a call it did not make: {}", answer.name))?;
            if !answer.ok {
                store.failed += 1;
            }
            store.counts.insert(n, message);
            return Ok(format!("stored {n}"));
        }
        if message.trim() == "get" {
            return Ok(format!("{} of {} counted", store.counts.len(), store.asked));
        }
        store.asked += 1;
        let n = store.asked;
        effects.call(format!("text-{n}"), "wordcount", message);
        Ok(format!("counting {n}"))
    });
}
