//! Names this node resolved, kept so a call by name does not ask the DHT
//! each time, and bounded so that a flood of distinct names cannot grow
//! memory or the event loop's work: at most [`KEPT`] names that resolved
//! (for [`TTL`]) and [`KEPT`] that did not (for [`MISS_TTL`], so a name
//! deployed a moment ago is found soon), the oldest forgotten first, and
//! at most [`LOOKUPS`] DHT lookups in flight: a call past them is answered
//! "busy" at once instead of queueing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use orb_functions::FunctionId;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a resolved name is used without asking the DHT again.
pub(crate) const TTL: Duration = Duration::from_secs(60);
/// How long a name that resolved to nothing is answered so from memory.
pub(crate) const MISS_TTL: Duration = Duration::from_secs(5);
/// Names kept at most, of each kind.
pub(crate) const KEPT: usize = 10_000;
/// DHT name lookups in flight at most.
pub(crate) const LOOKUPS: usize = 64;

/// What is known of a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    /// It names this function.
    Function(FunctionId),
    /// The DHT had no record of it a moment ago.
    Missing,
}

/// Entries by name, forgotten oldest first past `cap`.
#[derive(Debug)]
struct Bounded<V> {
    /// Value, when put, and the put's number.
    map: HashMap<String, (V, Instant, u64)>,
    /// Puts in order (a name once per put): an entry is dropped from the
    /// map only at its latest put's turn.
    order: VecDeque<(String, u64)>,
    puts: u64,
    cap: usize,
}

impl<V: Copy> Bounded<V> {
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            puts: 0,
            cap,
        }
    }

    fn get(&self, name: &str, ttl: Duration, now: Instant) -> Option<V> {
        self.map
            .get(name)
            .filter(|(_, at, _)| now.saturating_duration_since(*at) < ttl)
            .map(|(v, _, _)| *v)
    }

    fn put(&mut self, name: &str, value: V, now: Instant) {
        self.puts += 1;
        self.map.insert(name.to_owned(), (value, now, self.puts));
        self.order.push_back((name.to_owned(), self.puts));
        while self.map.len() > self.cap || self.order.len() > 2 * self.cap.max(1) {
            let Some((old, put)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|(_, _, p)| *p == put) {
                self.map.remove(&old);
            }
        }
    }

    fn remove(&mut self, name: &str) {
        self.map.remove(name);
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The pure part: what is known, by name.
#[derive(Debug)]
struct Names {
    found: Bounded<FunctionId>,
    missing: Bounded<()>,
}

impl Names {
    fn new(cap: usize) -> Self {
        Self {
            found: Bounded::new(cap),
            missing: Bounded::new(cap),
        }
    }

    fn get(&self, name: &str, now: Instant) -> Option<Known> {
        if let Some(id) = self.found.get(name, TTL, now) {
            return Some(Known::Function(id));
        }
        self.missing
            .get(name, MISS_TTL, now)
            .map(|()| Known::Missing)
    }

    fn put(&mut self, name: &str, known: Known, now: Instant) {
        match known {
            Known::Function(id) => {
                self.missing.remove(name);
                self.found.put(name, id, now);
            }
            Known::Missing => self.missing.put(name, (), now),
        }
    }
}

/// Names resolved recently, and the DHT lookups allowed at once.
pub(crate) struct NameCache {
    names: Mutex<Names>,
    lookups: Semaphore,
}

impl Default for NameCache {
    fn default() -> Self {
        Self {
            names: Mutex::new(Names::new(KEPT)),
            lookups: Semaphore::new(LOOKUPS),
        }
    }
}

impl NameCache {
    fn names(&self) -> std::sync::MutexGuard<'_, Names> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is known of `name`, if it is still fresh.
    pub(crate) fn get(&self, name: &str) -> Option<Known> {
        self.names().get(name, Instant::now())
    }

    /// Remembers that `name` names `id`.
    pub(crate) fn put(&self, name: &str, id: FunctionId) {
        self.names().put(name, Known::Function(id), Instant::now());
    }

    /// Remembers that the DHT has no record of `name`.
    pub(crate) fn missing(&self, name: &str) {
        self.names().put(name, Known::Missing, Instant::now());
    }

    /// A turn to look a name up in the DHT, if one is free.
    pub(crate) fn lookup(&self) -> Option<SemaphorePermit<'_>> {
        self.lookups.try_acquire().ok()
    }

    /// Names kept: (resolved, missing).
    pub(crate) fn kept(&self) -> (usize, usize) {
        let n = self.names();
        (n.found.len(), n.missing.len())
    }

    /// The names known to point at `function` (hex id).
    pub(crate) fn names_of(&self, function: &str) -> Vec<String> {
        let n = self.names();
        let mut names: Vec<String> = n
            .found
            .map
            .iter()
            .filter(|(_, (id, _, _))| id.to_hex() == function)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> FunctionId {
        FunctionId::of(&[n])
    }

    #[test]
    fn past_the_bound_the_oldest_names_are_forgotten() {
        let t0 = Instant::now();
        let mut names = Names::new(3);
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            names.put(name, Known::Function(id(i as u8)), t0);
        }
        assert_eq!(names.get("a", t0), None);
        assert_eq!(names.get("d", t0), Some(Known::Function(id(3))));
        // A name put again is young again: "b" goes before it.
        names.put("b", Known::Function(id(9)), t0);
        names.put("e", Known::Function(id(4)), t0);
        names.put("f", Known::Function(id(5)), t0);
        assert_eq!(names.get("b", t0), Some(Known::Function(id(9))));
        assert_eq!(names.get("c", t0), None);
        assert_eq!(names.found.len(), 3);
        // A million distinct misses keep at most the bound.
        for i in 0..1_000_000u32 {
            names.put(&format!("no-such-{i}"), Known::Missing, t0);
        }
        assert_eq!(names.missing.len(), 3);
        assert!(names.missing.order.len() <= 6);
    }

    #[test]
    fn a_miss_is_remembered_briefly_and_a_deploy_replaces_it() {
        let t0 = Instant::now();
        let mut names = Names::new(10);
        names.put("x", Known::Missing, t0);
        assert_eq!(names.get("x", t0 + MISS_TTL / 2), Some(Known::Missing));
        assert_eq!(names.get("x", t0 + MISS_TTL), None);
        names.put("x", Known::Missing, t0);
        names.put("x", Known::Function(id(1)), t0);
        assert_eq!(names.get("x", t0), Some(Known::Function(id(1))));
        assert_eq!(names.get("x", t0 + TTL), None);
    }
}
