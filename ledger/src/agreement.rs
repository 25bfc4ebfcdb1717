//! Agreement: when the replicas of one call have answered it.
//!
//! The pure decision an invoking node takes over the answers of one call's
//! replicas. Nothing here does I/O or reads a clock: the caller asks
//! providers, feeds what they answer into an [`Agreement`], and does what
//! [`Agreement::decision`] says, so the rule is the same in a node, a test
//! and a simulator. The rule:
//!
//! - R replicas are asked at once. A provider that gives no answer (busy,
//!   unreachable, a bad receipt) is *rerouted*: another is asked in its
//!   place, so R answers are wanted while providers remain.
//! - Once every provider asked has answered or been rerouted, a result held
//!   by a strict majority of the answers is the call's result; executors
//!   that gave another are outvoted. Waiting for all of them, rather than
//!   stopping at the first majority, lets every receipt be settled.
//! - Without a strict majority one more provider is asked, until `limit`
//!   answers are in (the node uses R + 2); then there is no majority.
//! - When no provider is left to ask, the answers in decide alone: a strict
//!   majority of them, or none.
//!
//! Results compare as [`Outcome`]s: the output's hash and the fuel burned,
//! or the kind of a guest failure (calls are deterministic, so a failure is
//! voted on like an output).
//!
//! [`check_receipt`] is the other half of trusting an answer: the receipt
//! an executor returns with an output must be signed by it and state this
//! very call and output. The ledger pays by the same strict majority, over
//! receipts ([`Settlement::verdict`](crate::Settlement::verdict)).

use crate::keys::{Digest, PublicKey};
use crate::receipt::{Receipt, ReceiptBody};

/// What replicas' results are compared by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call returned an output.
    Output {
        /// blake3 of the output.
        hash: Digest,
        /// Fuel the execution burned.
        fuel: u64,
    },
    /// The guest failed (a trap, running out of fuel, …).
    Failed {
        /// The failure's kind, as the executor named it.
        kind: String,
    },
}

/// What the caller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<E, V = Outcome> {
    /// Answers are outstanding: wait for the next one.
    Wait,
    /// Ask this many more providers (then report each with
    /// [`Agreement::asked`], or [`Agreement::exhausted`] when none is left).
    AskAnother(usize),
    /// A strict majority of the answers agree.
    Majority {
        /// Their result.
        result: V,
        /// The executors that gave it, in the order they answered.
        agreed: Vec<E>,
        /// The executors that gave anything else, in the order they answered.
        outvoted: Vec<E>,
    },
    /// No strict majority, and no more providers will be asked: the limit
    /// is reached or none is left. With no answers at all, every provider
    /// failed.
    NoMajority,
}

/// The state of one call's replicas; see the module docs for the rule.
///
/// `E` identifies an executor (a peer id, a [`PublicKey`]); `V` is what
/// answers are compared by, an [`Outcome`] in a node.
///
/// ```
/// use orb_ledger::{Agreement, Decision};
///
/// let mut call: Agreement<&str, u32> = Agreement::new(3, 5);
/// assert_eq!(call.decision(), Decision::AskAnother(3));
/// (0..3).for_each(|_| call.asked());
/// call.answered("a", 42);
/// call.answered("b", 42);
/// assert_eq!(call.decision(), Decision::Wait);
/// call.answered("c", 7);
/// assert_eq!(
///     call.decision(),
///     Decision::Majority { result: 42, agreed: vec!["a", "b"], outvoted: vec!["c"] }
/// );
/// ```
#[derive(Clone, Debug)]
pub struct Agreement<E, V = Outcome> {
    replicas: usize,
    limit: usize,
    /// Providers asked that have neither answered nor been rerouted.
    outstanding: usize,
    /// No provider is left to ask.
    exhausted: bool,
    answers: Vec<(E, V)>,
}

impl<E: Clone + Eq, V: Clone + Eq> Agreement<E, V> {
    /// Wants `replicas` answers (at least one) and asks for more, while
    /// they disagree, up to `limit` answers (at least `replicas`).
    pub fn new(replicas: usize, limit: usize) -> Self {
        let replicas = replicas.max(1);
        Self {
            replicas,
            limit: limit.max(replicas),
            outstanding: 0,
            exhausted: false,
            answers: Vec::new(),
        }
    }

    /// One more provider was asked.
    pub fn asked(&mut self) {
        self.outstanding += 1;
    }

    /// No provider is left to ask: the answers in, and those outstanding,
    /// decide alone.
    pub fn exhausted(&mut self) {
        self.exhausted = true;
    }

    /// A provider asked gave no answer; another is wanted in its place.
    pub fn rerouted(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    /// `executor` answered `result`. An executor votes once: a second
    /// answer from it counts as no answer (a reroute) and gives `false`.
    pub fn answered(&mut self, executor: E, result: V) -> bool {
        self.outstanding = self.outstanding.saturating_sub(1);
        if self.answers.iter().any(|(e, _)| *e == executor) {
            return false;
        }
        self.answers.push((executor, result));
        true
    }

    /// The answers counted so far, in the order they came.
    pub fn answers(&self) -> &[(E, V)] {
        &self.answers
    }

    /// Providers asked that have not answered yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// What to do next.
    pub fn decision(&self) -> Decision<E, V> {
        let in_flight = self.answers.len() + self.outstanding;
        if !self.exhausted && in_flight < self.replicas {
            return Decision::AskAnother(self.replicas - in_flight);
        }
        if self.outstanding > 0 {
            return Decision::Wait;
        }
        if let Some(result) = self.majority() {
            let (agreed, outvoted) = self.answers.iter().fold(
                (Vec::new(), Vec::new()),
                |(mut agreed, mut outvoted), (e, v)| {
                    if *v == result {
                        agreed.push(e.clone());
                    } else {
                        outvoted.push(e.clone());
                    }
                    (agreed, outvoted)
                },
            );
            return Decision::Majority {
                result,
                agreed,
                outvoted,
            };
        }
        if self.exhausted || self.answers.len() >= self.limit {
            Decision::NoMajority
        } else {
            Decision::AskAnother(1)
        }
    }

    /// The result more than half of the answers hold, if any. (A handful
    /// of answers: counting by pairs is cheaper than hashing.)
    fn majority(&self) -> Option<V> {
        let total = self.answers.len();
        self.answers.iter().find_map(|(_, v)| {
            let n = self.answers.iter().filter(|(_, w)| w == v).count();
            (2 * n > total).then(|| v.clone())
        })
    }
}

/// Why an executor's receipt does not vouch for its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// An output came without a receipt.
    #[error("no receipt came with the output")]
    Missing,
    /// The receipt is for another invocation.
    #[error("the receipt is for invocation {got:032x}, not {expected:032x}")]
    Invocation {
        /// The call's invocation id.
        expected: u128,
        /// The receipt's.
        got: u128,
    },
    /// The receipt names another function.
    #[error("the receipt names function {got}, not {expected}")]
    Function {
        /// The function called.
        expected: Digest,
        /// The one the receipt names.
        got: Digest,
    },
    /// The receipt states another input.
    #[error("the receipt's input hash is {got}, the call's {expected}")]
    Input {
        /// blake3 of the call's input.
        expected: Digest,
        /// The receipt's.
        got: Digest,
    },
    /// The receipt states another output than the one returned.
    #[error("the receipt's output hash is {got}, the answer's {expected}")]
    Output {
        /// blake3 of the output returned.
        expected: Digest,
        /// The receipt's.
        got: Digest,
    },
    /// The receipt states other fuel than the answer.
    #[error("the receipt states fuel {got}, the answer {expected}")]
    Fuel {
        /// The fuel the answer states.
        expected: u64,
        /// The receipt's.
        got: u64,
    },
    /// The receipt is another executor's.
    #[error("the receipt is from executor {got}, not {expected}")]
    Executor {
        /// The key of the provider that answered.
        expected: PublicKey,
        /// The receipt's.
        got: PublicKey,
    },
    /// The receipt charges another invoker.
    #[error("the receipt names invoker {got}, not {expected}")]
    Invoker {
        /// The node that made the call.
        expected: PublicKey,
        /// The receipt's.
        got: PublicKey,
    },
    /// The executor's signature does not verify.
    #[error("the receipt's signature does not verify")]
    Signature,
}

/// Checks the receipt an executor returned with an output against what it
/// must state, `expected`: the call's invocation, function and input hash,
/// the answer's output hash and fuel, the executor that answered and the
/// invoker. The first field that differs is named; then the executor's
/// signature is checked.
pub fn check_receipt(
    receipt: Option<&Receipt>,
    expected: &ReceiptBody,
) -> Result<(), ReceiptError> {
    let receipt = receipt.ok_or(ReceiptError::Missing)?;
    let (got, want) = (&receipt.body, expected);
    if got.invocation != want.invocation {
        return Err(ReceiptError::Invocation {
            expected: want.invocation,
            got: got.invocation,
        });
    }
    if got.function != want.function {
        return Err(ReceiptError::Function {
            expected: want.function,
            got: got.function,
        });
    }
    if got.input != want.input {
        return Err(ReceiptError::Input {
            expected: want.input,
            got: got.input,
        });
    }
    if got.output != want.output {
        return Err(ReceiptError::Output {
            expected: want.output,
            got: got.output,
        });
    }
    if got.fuel != want.fuel {
        return Err(ReceiptError::Fuel {
            expected: want.fuel,
            got: got.fuel,
        });
    }
    if got.executor != want.executor {
        return Err(ReceiptError::Executor {
            expected: want.executor,
            got: got.executor,
        });
    }
    if got.invoker != want.invoker {
        return Err(ReceiptError::Invoker {
            expected: want.invoker,
            got: got.invoker,
        });
    }
    if !receipt.verify() {
        return Err(ReceiptError::Signature);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::keys::Keypair;

    /// What the caller reports, in a script.
    #[derive(Clone, Debug)]
    enum Event {
        /// This many providers were asked.
        Asked(usize),
        Answer(&'static str, Outcome),
        Reroute,
        Exhausted,
    }
    use Event::*;

    fn out(hash: u8) -> Outcome {
        Outcome::Output {
            hash: Digest([hash; 32]),
            fuel: 10,
        }
    }

    fn failed(kind: &str) -> Outcome {
        Outcome::Failed { kind: kind.into() }
    }

    fn majority(
        result: Outcome,
        agreed: &[&'static str],
        outvoted: &[&'static str],
    ) -> Decision<&'static str> {
        Decision::Majority {
            result,
            agreed: agreed.to_vec(),
            outvoted: outvoted.to_vec(),
        }
    }

    struct Case {
        name: &'static str,
        replicas: usize,
        limit: usize,
        /// The decision before any event.
        first: Decision<&'static str>,
        /// Each event with the decision after it.
        script: Vec<(Event, Decision<&'static str>)>,
    }

    fn cases() -> Vec<Case> {
        use Decision::{AskAnother, NoMajority, Wait};
        vec![
            Case {
                name: "one replica: its answer is the majority",
                replicas: 1,
                limit: 3,
                first: AskAnother(1),
                script: vec![
                    (Asked(1), Wait),
                    (Answer("a", out(1)), majority(out(1), &["a"], &[])),
                ],
            },
            Case {
                name: "three replicas, two agree: the odd one is outvoted",
                replicas: 3,
                limit: 5,
                first: AskAnother(3),
                script: vec![
                    (Asked(3), Wait),
                    (Answer("a", out(1)), Wait),
                    // A majority already, but every asked replica is waited for.
                    (Answer("b", out(1)), Wait),
                    (Answer("c", out(2)), majority(out(1), &["a", "b"], &["c"])),
                ],
            },
            Case {
                name: "honest against liars: more are asked up to the limit, then no majority",
                replicas: 2,
                limit: 4,
                first: AskAnother(2),
                script: vec![
                    (Asked(2), Wait),
                    (Answer("honest", out(1)), Wait),
                    (Answer("liar", out(2)), AskAnother(1)),
                    (Asked(1), Wait),
                    (Answer("liar2", out(3)), AskAnother(1)),
                    (Asked(1), Wait),
                    (Answer("honest2", out(1)), NoMajority),
                ],
            },
            Case {
                name: "honest against a liar: a third provider breaks the tie",
                replicas: 2,
                limit: 4,
                first: AskAnother(2),
                script: vec![
                    (Asked(2), Wait),
                    (Answer("honest", out(1)), Wait),
                    (Answer("liar", out(2)), AskAnother(1)),
                    (Asked(1), Wait),
                    (
                        Answer("third", out(1)),
                        majority(out(1), &["honest", "third"], &["liar"]),
                    ),
                ],
            },
            Case {
                name: "honest against a liar with no provider left: no majority",
                replicas: 2,
                limit: 4,
                first: AskAnother(2),
                script: vec![
                    (Asked(2), Wait),
                    (Answer("honest", out(1)), Wait),
                    (Answer("liar", out(2)), AskAnother(1)),
                    (Exhausted, NoMajority),
                ],
            },
            Case {
                name: "a reroute asks another in its place",
                replicas: 2,
                limit: 4,
                first: AskAnother(2),
                script: vec![
                    (Asked(2), Wait),
                    (Reroute, AskAnother(1)),
                    (Asked(1), Wait),
                    (Answer("a", out(1)), Wait),
                    (Answer("b", out(1)), majority(out(1), &["a", "b"], &[])),
                ],
            },
            Case {
                name: "a reroute with no provider left: the answers in decide",
                replicas: 2,
                limit: 4,
                first: AskAnother(2),
                script: vec![
                    (Asked(2), Wait),
                    (Reroute, AskAnother(1)),
                    (Exhausted, Wait),
                    (Answer("a", out(1)), majority(out(1), &["a"], &[])),
                ],
            },
            Case {
                name: "fewer providers than replicas",
                replicas: 3,
                limit: 5,
                first: AskAnother(3),
                script: vec![
                    (Asked(1), AskAnother(2)),
                    (Exhausted, Wait),
                    (Answer("a", out(1)), majority(out(1), &["a"], &[])),
                ],
            },
            Case {
                name: "a guest failure wins a majority like an output",
                replicas: 3,
                limit: 5,
                first: AskAnother(3),
                script: vec![
                    (Asked(3), Wait),
                    (Answer("a", failed("trap")), Wait),
                    (Answer("b", out(1)), Wait),
                    (
                        Answer("c", failed("trap")),
                        majority(failed("trap"), &["a", "c"], &["b"]),
                    ),
                ],
            },
            Case {
                name: "failures of different kinds disagree",
                replicas: 2,
                limit: 2,
                first: AskAnother(2),
                script: vec![
                    (Asked(2), Wait),
                    (Answer("a", failed("trap")), Wait),
                    (Answer("b", failed("out of fuel")), NoMajority),
                ],
            },
            Case {
                name: "the same output with other fuel disagrees",
                replicas: 2,
                limit: 2,
                first: AskAnother(2),
                script: vec![
                    (Asked(2), Wait),
                    (Answer("a", out(1)), Wait),
                    (
                        Answer(
                            "b",
                            Outcome::Output {
                                hash: Digest([1; 32]),
                                fuel: 11,
                            },
                        ),
                        NoMajority,
                    ),
                ],
            },
            Case {
                name: "every provider fails: no majority and no answer",
                replicas: 1,
                limit: 3,
                first: AskAnother(1),
                script: vec![
                    (Asked(1), Wait),
                    (Reroute, AskAnother(1)),
                    (Exhausted, NoMajority),
                ],
            },
            Case {
                name: "an executor votes once",
                replicas: 2,
                limit: 2,
                first: AskAnother(2),
                script: vec![
                    (Asked(2), Wait),
                    (Answer("a", out(1)), Wait),
                    (Answer("a", out(1)), AskAnother(1)),
                    (Asked(1), Wait),
                    (Answer("b", out(2)), NoMajority),
                ],
            },
            Case {
                name: "sampled verification: one answer in, a second asked, a third on a mismatch",
                replicas: 2,
                limit: 3,
                first: AskAnother(2),
                script: vec![
                    (Asked(1), AskAnother(1)),
                    (Answer("first", out(1)), AskAnother(1)),
                    (Asked(1), Wait),
                    (Answer("checker", out(2)), AskAnother(1)),
                    (Asked(1), Wait),
                    (
                        Answer("third", out(2)),
                        majority(out(2), &["checker", "third"], &["first"]),
                    ),
                ],
            },
        ]
    }

    #[test]
    fn decisions_follow_the_rule() {
        for case in cases() {
            let mut a: Agreement<&'static str> = Agreement::new(case.replicas, case.limit);
            assert_eq!(a.decision(), case.first, "{}: before any event", case.name);
            for (i, (event, expected)) in case.script.into_iter().enumerate() {
                match event.clone() {
                    Asked(n) => (0..n).for_each(|_| a.asked()),
                    Answer(e, v) => {
                        a.answered(e, v);
                    }
                    Reroute => a.rerouted(),
                    Exhausted => a.exhausted(),
                }
                assert_eq!(
                    a.decision(),
                    expected,
                    "{}: after event {i} ({event:?})",
                    case.name
                );
            }
        }
    }

    #[test]
    fn bounds_are_raised_to_make_sense() {
        let a: Agreement<u8, u8> = Agreement::new(0, 0);
        assert_eq!(a.decision(), Decision::AskAnother(1));
        let mut a: Agreement<u8, u8> = Agreement::new(3, 1);
        (0..3).for_each(|_| a.asked());
        for (e, v) in [(1, 1), (2, 2), (3, 3)] {
            a.answered(e, v);
        }
        // The limit is at least R: three answers, no majority, no more asked.
        assert_eq!(a.decision(), Decision::NoMajority);
    }

    proptest! {
        /// Driven like a node drives it, over a pool of providers that each
        /// answer one of three results or fail, finishing in any order.
        #[test]
        fn decisions_keep_their_invariants(
            replicas in 1usize..5,
            extra in 0usize..3,
            pool in proptest::collection::vec(proptest::option::of(0u8..3), 0..12),
            order in proptest::collection::vec(any::<usize>(), 1..40),
        ) {
            let limit = replicas + extra;
            let mut a: Agreement<usize, u8> = Agreement::new(replicas, limit);
            let mut providers = pool.iter().copied().enumerate();
            let mut running: Vec<(usize, Option<u8>)> = Vec::new();
            let mut order = order.iter().cycle();
            let mut steps = 0;
            let decided = loop {
                steps += 1;
                prop_assert!(steps < 200, "no decision");
                prop_assert_eq!(a.outstanding(), running.len());
                prop_assert!(a.answers().len() <= limit);
                match a.decision() {
                    Decision::AskAnother(n) => {
                        prop_assert!(n > 0);
                        for _ in 0..n {
                            match providers.next() {
                                Some(p) => {
                                    a.asked();
                                    running.push(p);
                                }
                                None => {
                                    a.exhausted();
                                    break;
                                }
                            }
                        }
                    }
                    Decision::Wait => {
                        prop_assert!(!running.is_empty());
                        let pick = order.next().copied().unwrap_or(0) % running.len();
                        match running.swap_remove(pick) {
                            (id, Some(v)) => prop_assert!(a.answered(id, v)),
                            (_, None) => a.rerouted(),
                        }
                    }
                    decided => break decided,
                }
            };
            prop_assert!(running.is_empty(), "decided with answers outstanding");
            let answers = a.answers();
            match decided {
                Decision::Majority { result, agreed, outvoted } => {
                    prop_assert!(2 * agreed.len() > answers.len());
                    let mut all: Vec<usize> = agreed.iter().chain(&outvoted).copied().collect();
                    all.sort_unstable();
                    let mut answerers: Vec<usize> = answers.iter().map(|(e, _)| *e).collect();
                    answerers.sort_unstable();
                    prop_assert_eq!(all, answerers);
                    for (e, v) in answers {
                        prop_assert_eq!(agreed.contains(e), *v == result);
                    }
                }
                Decision::NoMajority => {
                    let strict = answers.iter().any(|(_, v)| {
                        2 * answers.iter().filter(|(_, w)| w == v).count() > answers.len()
                    });
                    prop_assert!(!strict);
                    prop_assert!(answers.len() >= limit || providers.next().is_none());
                }
                other => prop_assert!(false, "not a decision: {other:?}"),
            }
        }
    }

    fn call(executor: &Keypair, invoker: &Keypair) -> ReceiptBody {
        ReceiptBody {
            invocation: 7,
            function: Digest([1; 32]),
            input: Digest([2; 32]),
            output: Digest([3; 32]),
            fuel: 100,
            executor: executor.public(),
            invoker: invoker.public(),
        }
    }

    #[test]
    fn a_receipt_must_state_the_call_and_the_answer() {
        let (executor, invoker, other) = (
            Keypair::generate(),
            Keypair::generate(),
            Keypair::generate(),
        );
        let expected = call(&executor, &invoker);
        let good = expected.clone().sign(&executor);
        assert_eq!(check_receipt(Some(&good), &expected), Ok(()));
        assert_eq!(check_receipt(None, &expected), Err(ReceiptError::Missing));

        type Tamper = fn(&mut ReceiptBody, &Keypair);
        let tampered: [(Tamper, &str); 7] = [
            (|b, _| b.invocation = 8, "invocation"),
            (|b, _| b.function = Digest([9; 32]), "function"),
            (|b, _| b.input = Digest([9; 32]), "input"),
            (|b, _| b.output = Digest([9; 32]), "output"),
            (|b, _| b.fuel = 101, "fuel"),
            (|b, k| b.executor = k.public(), "executor"),
            (|b, k| b.invoker = k.public(), "invoker"),
        ];
        for (tamper, field) in tampered {
            let mut body = expected.clone();
            tamper(&mut body, &other);
            // Signed by whoever it names, so only the field differs.
            let signer = if field == "executor" {
                &other
            } else {
                &executor
            };
            let receipt = body.sign(signer);
            let err = check_receipt(Some(&receipt), &expected).unwrap_err();
            let named = match err {
                ReceiptError::Invocation { .. } => "invocation",
                ReceiptError::Function { .. } => "function",
                ReceiptError::Input { .. } => "input",
                ReceiptError::Output { .. } => "output",
                ReceiptError::Fuel { .. } => "fuel",
                ReceiptError::Executor { .. } => "executor",
                ReceiptError::Invoker { .. } => "invoker",
                ReceiptError::Missing | ReceiptError::Signature => "other",
            };
            assert_eq!(named, field, "{err}");
        }

        // The right fields, signed by someone else.
        let forged = crate::Receipt {
            body: expected.clone(),
            signature: expected.clone().sign(&other).signature,
        };
        assert_eq!(
            check_receipt(Some(&forged), &expected),
            Err(ReceiptError::Signature)
        );
    }
}
