//! `counter2`: the next version of `counter` (`orb agent upgrade counter
//! counter2.wasm`). It reads the same state, a count, and takes `dec`
//! (subtract one) besides `inc`, `add N` and `get`; each replies with the
//! count after the step, as decimal text.

fn main() {
    orb_guest::agent::<u64, String, _, _>(|count, message, _ctx| {
        let words: Vec<&str> = message.split_whitespace().collect();
        match words.as_slice() {
            ["inc"] => *count = count.checked_add(1).ok_or("the count would overflow")?,
            ["dec"] => *count = count.checked_sub(1).ok_or("the count is 0")?,
            ["add", n] => {
                let n: u64 = n.parse().map_err(|e| format!("add {n}: {e}"))?;
                *count = count.checked_add(n).ok_or("the count would overflow")?;
            }
            ["get"] => {}
            _ => {
                return Err(format!(
                    "unknown message {message:?}: send inc, dec, add N or get"
                ));
            }
        }
        Ok(count.to_string())
    });
}
