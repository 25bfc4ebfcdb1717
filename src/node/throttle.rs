//! Saying a limit was hit without flooding the log: at most once a minute,
//! overall or per peer.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How often a limit being hit is said in the log.
const EVERY: Duration = Duration::from_secs(60);

/// Peers remembered by a [`PerKey`] before it forgets those said long ago.
const REMEMBERED: usize = 1_024;

/// Says something at most once every [`EVERY`].
#[derive(Default)]
pub(crate) struct Throttle(Option<Instant>);

impl Throttle {
    /// Whether to say it now (then not again for a while).
    pub(crate) fn due(&mut self) -> bool {
        if self.0.is_some_and(|t| t.elapsed() < EVERY) {
            return false;
        }
        self.0 = Some(Instant::now());
        true
    }
}

/// A [`Throttle`] per key (per peer): each is told once a minute.
pub(crate) struct PerKey<K>(HashMap<K, Instant>);

impl<K> Default for PerKey<K> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<K: Hash + Eq> PerKey<K> {
    /// Whether to say it about `key` now.
    pub(crate) fn due(&mut self, key: K) -> bool {
        let now = Instant::now();
        if self.0.len() >= REMEMBERED {
            self.0.retain(|_, t| now.duration_since(*t) < EVERY);
        }
        match self.0.get(&key) {
            Some(t) if now.duration_since(*t) < EVERY => false,
            _ => {
                self.0.insert(key, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_said_once_a_minute() {
        let mut said = PerKey::default();
        assert!(said.due("a"));
        assert!(!said.due("a"));
        assert!(said.due("b"));
        let mut once = Throttle::default();
        assert!(once.due());
        assert!(!once.due());
    }
}
