//! A seeded network harness for Snowball, in the manner of avalanchego's
//! `network_test`: many nodes, each with its own state machine; a random
//! undecided honest node polls k others and records their answers; after
//! every step no two decided nodes may disagree.

use orb_ledger::{Params, Snowball};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A simulated network deciding among `values` competing candidates.
struct Network {
    nodes: Vec<Snowball<u32>>,
    byzantine: Vec<bool>,
    rng: StdRng,
    decided: Option<u32>,
    steps: u64,
}

impl Network {
    /// `n` nodes; each knows a random subset of the candidates and prefers
    /// the best-ranked one it knows (candidate 0 ranks best, as a
    /// king-of-the-hill lottery would rank them identically everywhere).
    fn new(n: usize, values: u32, byzantine: usize, params: Params, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes = (0..n)
            .map(|_| {
                let known = (0..values).filter(|_| rng.random_bool(0.5));
                let initial = known.min().unwrap_or_else(|| rng.random_range(0..values));
                Snowball::new(params, initial)
            })
            .collect();
        Self::with_nodes(nodes, byzantine, rng)
    }

    /// `n` nodes split evenly between two values: no ranking helps, only
    /// Snowball's random sampling breaks the tie.
    fn split(n: usize, byzantine: usize, params: Params, seed: u64) -> Self {
        let rng = StdRng::seed_from_u64(seed);
        let nodes = (0..n)
            .map(|i| Snowball::new(params, (i % 2) as u32))
            .collect();
        Self::with_nodes(nodes, byzantine, rng)
    }

    fn with_nodes(nodes: Vec<Snowball<u32>>, byzantine: usize, rng: StdRng) -> Self {
        let n = nodes.len();
        let byzantine = (0..n).map(|i| i < byzantine).collect();
        Self {
            nodes,
            byzantine,
            rng,
            decided: None,
            steps: 0,
        }
    }

    fn honest_undecided(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.byzantine[i] && self.nodes[i].decided().is_none())
            .collect()
    }

    /// What node `j` answers node `asker`: its preference, or, for a
    /// Byzantine node, whatever splits the asker's view most (a value other
    /// than the asker's preference, chosen to keep polls unsuccessful).
    fn answer(&mut self, asker: usize, j: usize, values: u32) -> u32 {
        if self.byzantine[j] {
            let mine = *self.nodes[asker].preference();
            (mine + 1 + self.rng.random_range(0..values.max(2) - 1)) % values.max(2)
        } else {
            *self.nodes[j].preference()
        }
    }

    /// Runs until every honest node decided; panics on disagreement.
    fn run(&mut self, values: u32) -> u32 {
        let k = self.nodes[0].params().k();
        let n = self.nodes.len();
        loop {
            let waiting = self.honest_undecided();
            let Some(&asker) = waiting.get(self.rng.random_range(0..waiting.len().max(1))) else {
                break;
            };
            let sample = rand::seq::index::sample(&mut self.rng, n, k);
            let answers: Vec<u32> = sample
                .iter()
                .map(|j| self.answer(asker, j, values))
                .collect();
            self.steps += 1;
            assert!(self.steps < 5_000_000, "no decision after 5M polls");
            if let Some(&v) = self.nodes[asker].record_poll(&answers) {
                match self.decided {
                    None => self.decided = Some(v),
                    Some(d) => assert_eq!(d, v, "disagreement after {} polls", self.steps),
                }
            }
        }
        let decided = self.decided.expect("someone decided");
        for (i, node) in self.nodes.iter().enumerate() {
            if !self.byzantine[i] {
                assert_eq!(node.decided(), Some(&decided), "node {i}");
            }
        }
        decided
    }
}

#[test]
fn a_hundred_honest_nodes_agree_on_2_10_and_50_values() {
    for values in [2, 10, 50] {
        for seed in 0..3 {
            let mut net = Network::new(100, values, 0, Params::default(), seed);
            let decided = net.run(values);
            assert!(decided < values);
            eprintln!(
                "{values} values, seed {seed}: decided {decided} in {} polls",
                net.steps
            );
        }
    }
}

#[test]
fn an_even_split_between_two_values_still_decides_one() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..6 {
        let mut net = Network::split(100, 0, Params::default(), 200 + seed);
        seen.insert(net.run(2));
        let mut net = Network::split(100, 20, Params::default(), 300 + seed);
        net.run(2);
    }
    eprintln!("even split decided {seen:?} across seeds");
}

#[test]
fn twenty_percent_byzantine_nodes_cause_no_disagreement() {
    for values in [2, 10, 50] {
        for seed in 0..3 {
            let mut net = Network::new(100, values, 20, Params::default(), 100 + seed);
            net.run(values);
        }
    }
}

fn valid_params() -> impl Strategy<Value = Params> {
    (1usize..30).prop_flat_map(|k| {
        (k / 2 + 1..=k).prop_flat_map(move |ap| {
            (ap..=k, 1usize..8).prop_map(move |(ac, beta)| {
                Params::new(k, ap, ac, beta).expect("valid by construction")
            })
        })
    })
}

proptest! {
    #[test]
    fn unanimous_answers_decide_after_exactly_beta_polls(params in valid_params(), v in 0u8..4) {
        let mut sb = Snowball::new(params, 9u8);
        let answers = vec![v; params.k()];
        for i in 1..=params.beta() {
            let decided = sb.record_poll(&answers).copied();
            prop_assert_eq!(decided.is_some(), i == params.beta());
        }
        prop_assert_eq!(sb.decided(), Some(&v));
    }

    #[test]
    fn a_decision_never_changes(params in valid_params(), polls in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..30), 0..60)) {
        let mut sb = Snowball::new(params, 0u8);
        let mut first = None;
        for answers in &polls {
            sb.record_poll(answers);
            if let Some(&d) = sb.decided() {
                prop_assert_eq!(*first.get_or_insert(d), d);
                prop_assert_eq!(sb.preference(), &d);
            }
        }
    }

    #[test]
    fn invalid_parameters_are_rejected(k in 0usize..30, ap in 0usize..32, ac in 0usize..32, beta in 0usize..4) {
        let valid = k / 2 < ap && ap <= ac && ac <= k && beta > 0;
        prop_assert_eq!(Params::new(k, ap, ac, beta).is_ok(), valid);
    }
}
