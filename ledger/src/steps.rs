//! Checking an agent's log against the chain: every applied step should be
//! stated by a receipt (its digests are the step's state hashes, see
//! [`AgentStep`]) and each step should apply to the state the one before
//! left. Pure: the caller reads the log and the chain.

use std::collections::{BTreeMap, BTreeSet};

use crate::{AgentStep, Digest, PublicKey, Receipt};

/// One entry of an agent's log, as `orb agent log --json` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedStep {
    /// Its place in the agent's order.
    pub seq: u64,
    /// The message's id.
    pub message_id: [u8; 16],
    /// The message.
    pub message: Vec<u8>,
    /// blake3 of the state before.
    pub before: [u8; 32],
    /// blake3 of the state after.
    pub after: [u8; 32],
    /// The reply.
    pub reply: Vec<u8>,
}

impl LoggedStep {
    /// The step as `agent`'s receipts state it.
    pub fn step<'a>(&'a self, agent: &'a str) -> AgentStep<'a> {
        AgentStep {
            agent,
            seq: self.seq,
            message_id: &self.message_id,
            message: &self.message,
            before: &self.before,
            after: &self.after,
            reply: &self.reply,
        }
    }
}

/// What [`check_steps`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepsReport {
    /// Steps checked.
    pub steps: usize,
    /// Steps stated by at least one receipt.
    pub stated: usize,
    /// Receipts stating the steps.
    pub receipts: usize,
    /// The hosts that signed them.
    pub executors: BTreeSet<PublicKey>,
    /// The lowest and highest height they are in.
    pub heights: Option<(u64, u64)>,
    /// What is wrong, step by step (empty: the log agrees with the chain).
    pub problems: Vec<String>,
}

/// Checks `steps` of `agent` (in log order) against `receipts` (each with
/// the height of its block).
pub fn check_steps<'r>(
    agent: &str,
    steps: &[LoggedStep],
    receipts: impl IntoIterator<Item = (u64, &'r Receipt)>,
) -> StepsReport {
    let mut by_digests: BTreeMap<(Digest, Digest), Vec<(u64, &Receipt)>> = BTreeMap::new();
    for (height, r) in receipts {
        by_digests
            .entry((r.body.input, r.body.output))
            .or_default()
            .push((height, r));
    }
    let mut report = StepsReport {
        steps: steps.len(),
        ..StepsReport::default()
    };
    let mut previous: Option<&LoggedStep> = None;
    for s in steps {
        if let Some(p) = previous {
            if s.seq != p.seq + 1 {
                report.problems.push(format!(
                    "step {} follows step {}: the log has a gap",
                    s.seq, p.seq
                ));
            } else if s.before != p.after {
                report.problems.push(format!(
                    "step {} applies to another state than step {} left",
                    s.seq, p.seq
                ));
            }
        }
        previous = Some(s);
        let step = s.step(agent);
        match by_digests.get(&(step.input(), step.output())) {
            Some(found) => {
                report.stated += 1;
                for (height, r) in found {
                    report.receipts += 1;
                    report.executors.insert(r.body.executor);
                    report.heights = Some(match report.heights {
                        None => (*height, *height),
                        Some((lo, hi)) => (lo.min(*height), hi.max(*height)),
                    });
                }
            }
            None => report
                .problems
                .push(format!("no receipt in the chain states step {}", s.seq)),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Keypair, ReceiptBody};

    fn step(seq: u64, before: u8, after: u8) -> LoggedStep {
        LoggedStep {
            seq,
            message_id: [seq as u8; 16],
            message: b"inc".to_vec(),
            before: [before; 32],
            after: [after; 32],
            reply: seq.to_string().into_bytes(),
        }
    }

    fn receipt_of(agent: &str, s: &LoggedStep, key: &Keypair) -> Receipt {
        let step = s.step(agent);
        ReceiptBody {
            invocation: u128::from(s.seq),
            function: Digest([0; 32]),
            input: step.input(),
            output: step.output(),
            fuel: 1,
            executor: key.public(),
            invoker: key.public(),
        }
        .sign(key)
    }

    #[test]
    fn a_log_agrees_with_its_receipts_and_each_change_is_named() {
        let key = Keypair::generate();
        let steps = vec![step(1, 0, 1), step(2, 1, 2), step(3, 2, 3)];
        let receipts: Vec<Receipt> = steps.iter().map(|s| receipt_of("c/a", s, &key)).collect();
        fn at(rs: &[Receipt]) -> Vec<(u64, &Receipt)> {
            rs.iter()
                .enumerate()
                .map(|(i, r)| (i as u64 + 5, r))
                .collect()
        }
        let clean = check_steps("c/a", &steps, at(&receipts));
        assert_eq!(
            (
                clean.stated,
                clean.receipts,
                clean.heights,
                clean.problems.len()
            ),
            (3, 3, Some((5, 7)), 0)
        );
        // A reply the host did not give, a state it did not reach, another
        // agent's name: each step no longer stated.
        let mut lied = steps.clone();
        lied[1].reply = b"99".to_vec();
        let r = check_steps("c/a", &lied, at(&receipts));
        assert_eq!(r.problems, ["no receipt in the chain states step 2"]);
        let mut forked = steps.clone();
        forked[2].before = [9; 32];
        let r = check_steps("c/a", &forked, at(&receipts));
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r.problems[0].contains("another state"));
        assert_eq!(check_steps("c/b", &steps, at(&receipts)).stated, 0);
        let gap = vec![steps[0].clone(), steps[2].clone()];
        assert!(check_steps("c/a", &gap, at(&receipts)).problems[0].contains("gap"));
    }
}
