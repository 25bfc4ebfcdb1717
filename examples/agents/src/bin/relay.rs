//! `relay`: an agent that sends other agents messages. A message `NAME`
//! makes it send `inc` to `counter/NAME` (delivered exactly once, after
//! this step is durable); `later NAME SECS` schedules that `inc` SECS
//! seconds later, `blocks NAME N` once the network's reward chain has
//! finalized N more blocks, and `cancel NAME` cancels a scheduled one that
//! has not gone yet. It counts the messages it relayed or scheduled and replies
//! with that count.

fn main() {
    orb_guest::actor::<u64, String, _, _>(|relayed, message, _ctx, effects| {
        let words: Vec<&str> = message.split_whitespace().collect();
        match words.as_slice() {
            [name] => effects.send(format!("counter/{name}"), "inc"),
            ["later", name, secs] => {
                let secs: u64 = secs
                    .parse()
                    .map_err(|_| format!("later NAME SECS, not {secs:?}"))?;
                effects.send_after(
                    format!("later-{name}"),
                    std::time::Duration::from_secs(secs),
                    format!("counter/{name}"),
                    "inc",
                );
            }
            ["blocks", name, n] => {
                let n: u64 = n.parse().map_err(|_| format!("blocks NAME N, not {n:?}"))?;
                effects.send_after_blocks(
                    format!("later-{name}"),
                    n,
                    format!("counter/{name}"),
                    "inc",
                );
            }
            ["cancel", name] => {
                effects.cancel(format!("later-{name}"));
                return Ok(relayed.to_string());
            }
            _ => return Err("send the id of a counter to increment".to_owned()),
        }
        *relayed += 1;
        Ok(relayed.to_string())
    });
}
