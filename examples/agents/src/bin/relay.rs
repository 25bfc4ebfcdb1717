//! `relay`: an agent that sends other agents messages. A message `NAME`
//! makes it send `inc` to `counter/NAME` (delivered exactly once, after
//! this step is durable); it counts what it relayed and replies with that
//! count.

fn main() {
    orb_guest::actor::<u64, String, _, _>(|relayed, message, _ctx, effects| {
        let name = message.trim();
        if name.is_empty() {
            return Err("send the id of a counter to increment".to_owned());
        }
        effects.send(format!("counter/{name}"), "inc");
        *relayed += 1;
        Ok(relayed.to_string())
    });
}
