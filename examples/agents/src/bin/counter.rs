//! `counter`: a passive agent. Its state is a count; the messages `inc`
//! (add one), `add N` and `get` each reply with the count after the step,
//! as decimal text. Anything else is an error and leaves the count as it
//! was.

fn main() {
    orb_guest::agent::<u64, String, _, _>(|count, message, _ctx| {
        let words: Vec<&str> = message.split_whitespace().collect();
        match words.as_slice() {
            ["inc"] => *count = count.checked_add(1).ok_or("the count would overflow")?,
            ["add", n] => {
                let n: u64 = n.parse().map_err(|e| format!("add {n}: {e}"))?;
                *count = count.checked_add(n).ok_or("the count would overflow")?;
            }
            ["get"] => {}
            _ => {
                return Err(format!(
                    "unknown message {message:?}: send inc, add N or get"
                ));
            }
        }
        Ok::<_, String>(count.to_string())
    });
}
