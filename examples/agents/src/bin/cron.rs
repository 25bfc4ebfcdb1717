//! `cron`: a periodic trigger for a function. `every SECS FUNCTION INPUT`
//! calls the function FUNCTION with INPUT every SECS seconds (a scheduled
//! call, set again by the step its answer brings); `stop` stops it; `get`
//! replies with the number of runs and the last output. Each run is a call
//! made once and settled once, whatever restarts in between.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The reminder the scheduled call is kept under.
const RUN: &str = "run";

#[derive(Default, Serialize, Deserialize)]
struct Cron {
    job: Option<Job>,
    /// Answers received, and how many of them were errors.
    runs: u64,
    failed: u64,
    /// The last answer's output (or error).
    last: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct Job {
    every_ms: u64,
    function: String,
    input: String,
}

impl Job {
    fn schedule(&self, effects: &mut orb_guest::agent::Effects) {
        effects.call_after(
            RUN,
            Duration::from_millis(self.every_ms),
            self.function.clone(),
            self.input.clone(),
        );
    }
}

fn main() {
    orb_guest::actor::<Cron, String, String, String>(|cron, message, ctx, effects| {
        if let Some(answer) = &ctx.answer {
            if answer.name != RUN {
                return Err(format!(
                    "an answer to a call it did not make: {}",
                    answer.name
                ));
            }
            cron.runs += 1;
            if !answer.ok {
                cron.failed += 1;
            }
            cron.last = message;
            // Stopped while the call was out: it is not set again.
            if let Some(job) = &cron.job {
                job.schedule(effects);
            }
            return Ok(format!("run {}", cron.runs));
        }
        let mut words = message.trim().splitn(4, ' ');
        match words.next() {
            Some("every") => {
                let usage =
                    || "every SECS FUNCTION INPUT, e.g. every 60 wordcount the cat".to_owned();
                let secs: f64 = words
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(usage)?;
                if !(0.1..=31_536_000.0).contains(&secs) {
                    return Err(format!("every {secs} s: from 0.1 s to a year"));
                }
                let function = words.next().ok_or_else(usage)?.to_owned();
                let job = Job {
                    every_ms: (secs * 1000.0).round() as u64,
                    function,
                    input: words.next().unwrap_or("").to_owned(),
                };
                job.schedule(effects);
                let reply = format!("every {secs} s: {}", job.function);
                cron.job = Some(job);
                Ok(reply)
            }
            Some("stop") => {
                effects.cancel(RUN);
                cron.job = None;
                Ok(format!("stopped after {} runs", cron.runs))
            }
            Some("get") => Ok(format!(
                "{} runs, {} failed; last: {}",
                cron.runs, cron.failed, cron.last
            )),
            _ => Err("every SECS FUNCTION INPUT, stop or get".to_owned()),
        }
    });
}
