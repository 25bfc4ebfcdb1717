//! `fib`: the n-th Fibonacci number by naive recursion (CPU-bound on purpose).
fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn main() {
    orb_guest::run_text(|text| {
        let n: u64 = text
            .trim()
            .parse()
            .map_err(|e| format!("fib wants a number, got {text:?}: {e}"))?;
        if n > 90 {
            return Err(format!("fib({n}) overflows u64; ask for at most 90"));
        }
        Ok(fib(n).to_string())
    });
}
