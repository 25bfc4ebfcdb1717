//! Snowball: repeated sampling until a value wins β polls in a row.
//!
//! The state machine of one decision (one block height). Its caller samples
//! `k` committee members, asks each for its preference, and feeds the
//! answers to [`Snowball::record_poll`]; nothing here does I/O or reads a
//! clock, so a seeded simulator runs the very same code as a node.
//!
//! As in avalanchego's `snowball` package (the "nnary" variant):
//! - a poll is *successful for v* when at least α_preference answers name v;
//!   each such poll adds a win to v, and the preference is the value with the
//!   most wins (ties keep the current preference);
//! - a poll that gives v at least α_confidence answers extends v's run of
//!   consecutive successful polls (a different v, or fewer answers, resets
//!   it); after β in a row, v is decided and never changes.
//!
//! Parameters are checked like avalanchego's: K/2 < α_preference ≤
//! α_confidence ≤ K and 0 < β.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Snowball's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    k: usize,
    alpha_preference: usize,
    alpha_confidence: usize,
    beta: usize,
}

/// Why parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// α_preference must be a strict majority of k, at most α_confidence.
    #[error(
        "need k/2 < alpha_preference <= alpha_confidence <= k, got k={k}, alpha_preference={alpha_preference}, alpha_confidence={alpha_confidence}"
    )]
    Alpha {
        /// Sample size.
        k: usize,
        /// α_preference.
        alpha_preference: usize,
        /// α_confidence.
        alpha_confidence: usize,
    },
    /// β must be positive.
    #[error("need beta > 0")]
    Beta,
}

impl Params {
    /// Checked parameters.
    pub fn new(
        k: usize,
        alpha_preference: usize,
        alpha_confidence: usize,
        beta: usize,
    ) -> Result<Self, ParamsError> {
        if !(k / 2 < alpha_preference
            && alpha_preference <= alpha_confidence
            && alpha_confidence <= k)
        {
            return Err(ParamsError::Alpha {
                k,
                alpha_preference,
                alpha_confidence,
            });
        }
        if beta == 0 {
            return Err(ParamsError::Beta);
        }
        Ok(Self {
            k,
            alpha_preference,
            alpha_confidence,
            beta,
        })
    }

    /// How many members a poll samples.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Answers a value needs for a poll to count as its win.
    pub fn alpha_preference(&self) -> usize {
        self.alpha_preference
    }

    /// Answers a value needs for a poll to extend its confidence.
    pub fn alpha_confidence(&self) -> usize {
        self.alpha_confidence
    }

    /// Consecutive confident polls that decide.
    pub fn beta(&self) -> usize {
        self.beta
    }
}

impl Default for Params {
    /// avalanchego's defaults: k 20, α 15/15, β 20.
    fn default() -> Self {
        Self {
            k: 20,
            alpha_preference: 15,
            alpha_confidence: 15,
            beta: 20,
        }
    }
}

/// One Snowball decision over values of type `V`.
#[derive(Clone, Debug)]
pub struct Snowball<V> {
    params: Params,
    preference: V,
    /// Successful polls per value.
    wins: BTreeMap<V, usize>,
    /// The value of the current run of confident polls, and its length.
    run: Option<(V, usize)>,
    decided: bool,
    polls: usize,
}

impl<V: Ord + Clone> Snowball<V> {
    /// Starts with `initial` preferred.
    pub fn new(params: Params, initial: V) -> Self {
        Self {
            params,
            preference: initial,
            wins: BTreeMap::new(),
            run: None,
            decided: false,
            polls: 0,
        }
    }

    /// The parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// What this node answers when asked.
    pub fn preference(&self) -> &V {
        &self.preference
    }

    /// The decided value, once decided.
    pub fn decided(&self) -> Option<&V> {
        self.decided.then_some(&self.preference)
    }

    /// The current run of consecutive confident polls: its value and
    /// length (the decision comes at length β).
    pub fn run(&self) -> Option<(&V, usize)> {
        self.run.as_ref().map(|(v, n)| (v, *n))
    }

    /// Polls recorded so far.
    pub fn polls(&self) -> usize {
        self.polls
    }

    /// Records one poll: the answers of the sampled members (at most k; a
    /// member that did not answer is simply absent). Returns the decided
    /// value when this poll decided it.
    pub fn record_poll(&mut self, answers: &[V]) -> Option<&V> {
        if self.decided {
            return None;
        }
        self.polls += 1;
        let mut counts: BTreeMap<&V, usize> = BTreeMap::new();
        for answer in answers.iter().take(self.params.k) {
            *counts.entry(answer).or_default() += 1;
        }
        // At most one value can reach a strict majority of k.
        let top = counts
            .into_iter()
            .find(|(_, n)| *n >= self.params.alpha_preference)
            .map(|(v, n)| (v.clone(), n));
        let Some((value, count)) = top else {
            self.run = None;
            return None;
        };
        let wins = {
            let w = self.wins.entry(value.clone()).or_default();
            *w += 1;
            *w
        };
        let preferred_wins = self.wins.get(&self.preference).copied().unwrap_or(0);
        if wins > preferred_wins {
            self.preference = value.clone();
        }
        if count >= self.params.alpha_confidence {
            let length = match &self.run {
                Some((v, n)) if *v == value => n + 1,
                _ => 1,
            };
            self.run = Some((value.clone(), length));
            if length >= self.params.beta {
                // As avalanchego: β confident polls in a row decide the
                // run's value (it has at least β wins by then).
                self.preference = value;
                self.decided = true;
                return Some(&self.preference);
            }
        } else {
            self.run = None;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_parameters_are_refused() {
        assert!(
            Params::new(20, 10, 15, 20).is_err(),
            "alpha_preference not a majority"
        );
        assert!(
            Params::new(20, 16, 15, 20).is_err(),
            "alpha_preference > alpha_confidence"
        );
        assert!(Params::new(20, 15, 21, 20).is_err(), "alpha_confidence > k");
        assert_eq!(Params::new(20, 15, 15, 0), Err(ParamsError::Beta));
        assert!(Params::new(1, 1, 1, 1).is_ok());
        assert_eq!(Params::new(20, 15, 15, 20).unwrap(), Params::default());
    }

    #[test]
    fn decides_after_beta_confident_polls_in_a_row() {
        let mut sb = Snowball::new(Params::new(5, 3, 4, 3).unwrap(), 0u8);
        assert_eq!(sb.record_poll(&[1, 1, 1, 1, 0]), None);
        assert_eq!(sb.preference(), &1);
        // A poll that only reaches alpha_preference breaks the run.
        assert_eq!(sb.record_poll(&[1, 1, 1, 0, 0]), None);
        assert_eq!(sb.record_poll(&[1, 1, 1, 1, 1]), None);
        assert_eq!(sb.record_poll(&[1, 1, 1, 1, 1]), None);
        assert_eq!(sb.record_poll(&[1, 1, 1, 1, 1]), Some(&1));
        assert_eq!(sb.decided(), Some(&1));
        // Decided is final.
        assert_eq!(sb.record_poll(&[0, 0, 0, 0, 0]), None);
        assert_eq!(sb.preference(), &1);
    }

    #[test]
    fn preference_follows_accumulated_wins_not_the_last_poll() {
        let mut sb = Snowball::new(Params::new(5, 3, 5, 10).unwrap(), 'a');
        sb.record_poll(&['b', 'b', 'b', 'a', 'a']);
        sb.record_poll(&['b', 'b', 'b', 'a', 'a']);
        assert_eq!(sb.preference(), &'b');
        sb.record_poll(&['a', 'a', 'a', 'b', 'b']);
        assert_eq!(sb.preference(), &'b', "b still has more wins (2 vs 1)");
        sb.record_poll(&['a', 'a', 'a', 'b', 'b']);
        assert_eq!(sb.preference(), &'b', "a tie keeps the preference");
        sb.record_poll(&['a', 'a', 'a', 'b', 'b']);
        assert_eq!(sb.preference(), &'a');
    }

    #[test]
    fn an_unsuccessful_poll_resets_confidence() {
        let mut sb = Snowball::new(Params::new(4, 3, 3, 2).unwrap(), 0u8);
        sb.record_poll(&[0, 0, 0, 1]);
        sb.record_poll(&[0, 0, 1, 1]);
        assert_eq!(sb.record_poll(&[0, 0, 0, 0]), None, "the run restarted");
        assert_eq!(sb.record_poll(&[0, 0, 0, 0]), Some(&0));
    }
}
