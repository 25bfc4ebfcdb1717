//! `asker`: a cognitive agent that asks other agents. `ask AGENT MESSAGE`
//! sends MESSAGE to AGENT once this step is durable (replying `asking N`);
//! the agent's reply comes back as a later message, which it keeps under
//! N (or the error, counted in `failed`). `get` replies with how many
//! answers it has.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Asker {
    /// Asks made so far.
    asked: u64,
    /// The answers by ask number.
    answers: BTreeMap<u64, String>,
    failed: u64,
}

fn main() {
    orb_guest::actor::<Asker, String, String, String>(|asker, message, ctx, effects| {
        if let Some(answer) = &ctx.answer {
            let n: u64 = answer
                .name
                .strip_prefix("ask-")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("an answer to an ask it did not make: {}", answer.name))?;
            if !answer.ok {
                asker.failed += 1;
            }
            asker.answers.insert(n, message);
            return Ok(format!("answer {n}"));
        }
        let words: Vec<&str> = message.splitn(3, ' ').collect();
        match words.as_slice() {
            ["ask", agent, text] => {
                asker.asked += 1;
                let n = asker.asked;
                effects.ask(format!("ask-{n}"), *agent, *text);
                Ok(format!("asking {n}"))
            }
            ["get"] => Ok(format!(
                "{} of {} answered",
                asker.answers.len(),
                asker.asked
            )),
            _ => Err("ask AGENT MESSAGE, or get".into()),
        }
    });
}
