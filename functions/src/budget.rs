//! Fuel budgets: how much fuel each invoker may burn on a node per second.
//!
//! Executor shares keep one *function* from taking every thread; a budget
//! keeps one *invoker* from taking every thread by calling many functions
//! (or one function on many nodes). Each invoker has a bucket that fills
//! at `rate` fuel per second up to one second's worth; a call is admitted
//! while the bucket is above zero and its fuel is charged when it ends, so
//! an expensive call may leave the bucket in debt, and the invoker's next
//! calls wait until the debt is repaid. A pure core: time comes in as an
//! argument.
//!
//! ```
//! use std::time::Duration;
//! use orb_functions::FuelBudget;
//!
//! let mut budget = FuelBudget::new(1_000);
//! let t = Duration::ZERO;
//! assert!(budget.admit(&"alice", t));
//! budget.charge(&"alice", 3_000, t); // 2,000 in debt
//! assert!(!budget.admit(&"alice", t));
//! assert!(budget.admit(&"bob", t)); // another invoker is not held back
//! assert!(!budget.admit(&"alice", t + Duration::from_millis(1_500)));
//! assert!(budget.admit(&"alice", t + Duration::from_millis(2_100)));
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// Invokers tracked before full buckets are forgotten (a full bucket is
/// the same as none).
const TRACKED: usize = 4_096;

/// Per-invoker fuel buckets.
#[derive(Debug)]
pub struct FuelBudget<K> {
    rate: u64,
    buckets: HashMap<K, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Fuel left; negative is debt.
    level: i128,
    at: Duration,
}

impl<K: Hash + Eq + Clone> FuelBudget<K> {
    /// `rate` fuel per second per invoker (0: no budget, all admitted).
    pub fn new(rate: u64) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Fuel per second per invoker.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    fn refilled(&self, bucket: Bucket, now: Duration) -> Bucket {
        let full = i128::from(self.rate);
        let elapsed = now.saturating_sub(bucket.at).as_nanos() as i128;
        let gained = elapsed.saturating_mul(full) / 1_000_000_000;
        Bucket {
            level: bucket.level.saturating_add(gained).min(full),
            at: now.max(bucket.at),
        }
    }

    /// Whether `invoker` may start a call at `now`.
    pub fn admit(&mut self, invoker: &K, now: Duration) -> bool {
        if self.rate == 0 {
            return true;
        }
        match self.buckets.get(invoker).copied() {
            None => true,
            Some(b) => {
                let b = self.refilled(b, now);
                self.buckets.insert(invoker.clone(), b);
                b.level > 0
            }
        }
    }

    /// Charges `fuel` a call of `invoker`'s burnt, at `now`.
    pub fn charge(&mut self, invoker: &K, fuel: u64, now: Duration) {
        if self.rate == 0 {
            return;
        }
        let start = Bucket {
            level: i128::from(self.rate),
            at: now,
        };
        let b = self.buckets.get(invoker).copied().unwrap_or(start);
        let mut b = self.refilled(b, now);
        b.level -= i128::from(fuel);
        self.buckets.insert(invoker.clone(), b);
        if self.buckets.len() > TRACKED {
            self.forget_full(now);
        }
    }

    fn forget_full(&mut self, now: Duration) {
        let full = i128::from(self.rate);
        let rate = self.rate;
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_sub(b.at).as_nanos() as i128;
            b.level + elapsed.saturating_mul(i128::from(rate)) / 1_000_000_000 < full
        });
    }

    /// Invokers with a bucket (not full).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_budget_of_zero_admits_everything() {
        let mut b = FuelBudget::new(0);
        b.charge(&1, u64::MAX, Duration::ZERO);
        assert!(b.admit(&1, Duration::ZERO));
        assert_eq!(b.tracked(), 0);
    }

    #[test]
    fn debt_is_repaid_at_the_rate_and_the_bucket_holds_one_second() {
        let mut b = FuelBudget::new(1_000);
        b.charge(&1, 1_500, Duration::ZERO); // -500
        assert!(!b.admit(&1, 400 * MS)); // -100
        assert!(b.admit(&1, 600 * MS)); // +100
        // Idle for a minute: back to one second's worth, not sixty.
        b.charge(&1, 1_000, 60_000 * MS);
        assert!(!b.admit(&1, 60_000 * MS));
    }

    #[test]
    fn an_invoker_in_debt_does_not_hold_back_another() {
        let mut b = FuelBudget::new(10);
        b.charge(&"a", 1_000_000, Duration::ZERO);
        assert!(!b.admit(&"a", 10 * MS));
        assert!(b.admit(&"b", 10 * MS));
        b.charge(&"b", 5, 10 * MS);
        assert!(b.admit(&"b", 10 * MS));
    }

    #[test]
    fn full_buckets_are_forgotten_past_the_tracked_limit() {
        let mut b = FuelBudget::new(1_000);
        for i in 0..TRACKED {
            b.charge(&i, 1, Duration::ZERO);
        }
        assert_eq!(b.tracked(), TRACKED);
        // A second later every one of them is full again.
        b.charge(&usize::MAX, 2_000, Duration::from_secs(1));
        assert_eq!(b.tracked(), 1);
        assert!(!b.admit(&usize::MAX, Duration::from_secs(1)));
    }

    #[test]
    fn time_going_backwards_neither_panics_nor_refills() {
        let mut b = FuelBudget::new(1_000);
        b.charge(&1, 2_000, Duration::from_secs(5));
        assert!(!b.admit(&1, Duration::from_secs(1)));
    }
}
