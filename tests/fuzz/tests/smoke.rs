//! Every fuzz target on its seeds (real messages) and on thousands of
//! seeded mutations of them: bit flips, byte changes, cuts, insertions and
//! splices. The long runs are `scripts/fuzz TARGET SECONDS` (libFuzzer);
//! this is the short one the test suite runs each time, with inputs that
//! once crashed a target kept in `regressions/`.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const MUTATIONS: usize = 3000;

/// Mutations for `target`: each `wasm-smith` input is compiled, so fewer.
fn mutations(target: &str) -> usize {
    if target == "wasm-smith" {
        300
    } else {
        MUTATIONS
    }
}

fn mutated(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..4) {
        let len = data.len();
        match rng.random_range(0..5) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                data[i] = rng.random();
            }
            2 if len > 0 => data.truncate(rng.random_range(0..len)),
            3 => {
                let i = rng.random_range(0..=len);
                let extra: Vec<u8> = (0..rng.random_range(1..9)).map(|_| rng.random()).collect();
                data.splice(i..i, extra);
            }
            _ => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let at = rng.random_range(0..=len);
                    data.truncate(at);
                    data.extend_from_slice(&other[from..]);
                }
            }
        }
    }
    data
}

#[test]
fn every_target_survives_its_seeds_and_their_mutations() {
    for (name, target) in orb_fuzz::TARGETS {
        let seeds = orb_fuzz::seeds(name);
        assert!(!seeds.is_empty(), "{name} has no seeds");
        for seed in &seeds {
            target(seed);
        }
        let regressions = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("regressions")
            .join(name);
        if let Ok(dir) = std::fs::read_dir(&regressions) {
            for entry in dir.flatten() {
                target(&std::fs::read(entry.path()).expect("a regression input"));
            }
        }
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..mutations(name) {
            target(&mutated(&mut rng, &seeds));
        }
    }
}

#[test]
fn the_seeds_are_what_they_claim() {
    // The unmutated signed objects pass their own checks (otherwise the
    // "never accepts a mutation" property would hold vacuously).
    let seeds = orb_fuzz::seeds("wire");
    assert!(seeds.len() > 5);
    for k in 0..4u8 {
        assert!(orb_fuzz::accepts_unmutated(k), "object kind {k}");
    }
}
