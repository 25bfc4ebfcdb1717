//! How figures read to a person, the same in the console, `orb logs` and
//! `orb top`.

/// A peer id shortened to its first 8 and last 6 characters:
/// `12D3KooW…abcdef`.
pub fn short_peer(peer: &str) -> String {
    if peer.len() > 16 {
        format!("{}…{}", &peer[..8], &peer[peer.len() - 6..])
    } else {
        peer.to_owned()
    }
}

/// Microseconds as a person reads them: `840 µs`, `12.3 ms`, `1.52 s`.
pub fn duration_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_in_their_unit() {
        assert_eq!(short_peer("12D3KooWAbCdEfGhIjKlMnOp"), "12D3KooW…KlMnOp");
        assert_eq!(short_peer("short"), "short");
        assert_eq!(duration_us(840), "840 µs");
        assert_eq!(duration_us(12_345), "12.3 ms");
        assert_eq!(duration_us(1_520_000), "1.52 s");
    }
}
