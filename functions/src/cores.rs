//! `LongCalls`: how many calls may run long at once.
//!
//! A call that has run for a few epoch ticks is long; it needs one of a
//! fixed number of slots to go on, and waits for one, paused in its epoch
//! callback, when they are all taken. A node keeps the slots below its
//! cores (`RuntimeConfig::long_call_slots`), so however many calls loop
//! until their fuel runs out, a core stays free for the short calls beside
//! them. The time a call waits paused does not count towards its timeout.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// The slots long calls share.
pub(crate) struct LongCalls {
    slots: usize,
    taken: Mutex<usize>,
    freed: Condvar,
}

/// A slot held by one long call; dropping it frees the slot.
pub(crate) struct LongSlot {
    calls: Arc<LongCalls>,
}

impl LongCalls {
    pub(crate) fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: slots.max(1),
            taken: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    /// Takes a slot, waiting while all are taken.
    pub(crate) fn take(self: &Arc<Self>) -> LongSlot {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        while *taken >= self.slots {
            taken = self
                .freed
                .wait(taken)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *taken += 1;
        LongSlot {
            calls: self.clone(),
        }
    }

    /// Slots taken right now.
    pub(crate) fn taken(&self) -> usize {
        *self.taken.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for LongSlot {
    fn drop(&mut self) {
        let mut taken = self
            .calls
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *taken -= 1;
        self.calls.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn no_more_than_the_slots_are_held_at_once() {
        let calls = LongCalls::new(2);
        let (held, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (calls, held, most) = (calls.clone(), held.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _slot = calls.take();
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        held.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
        assert_eq!(calls.taken(), 0);
    }
}
