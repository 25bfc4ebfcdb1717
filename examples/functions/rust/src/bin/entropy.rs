//! `entropy`: prints the clock and random values it sees. Under Orb these
//! are functions of the call, so two runs of the same call print the same.
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let t0 = Instant::now();
    let hashed = RandomState::new().hash_one("orb");
    let mut random = [0u8; 16];
    // std has no public API for random bytes; the seeded hasher keys come
    // from WASI random_get, so hashing distinct values exposes them.
    for (i, b) in random.iter_mut().enumerate() {
        *b = RandomState::new().hash_one(i) as u8;
    }
    let elapsed = t0.elapsed().as_nanos();
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    orb_guest::output(
        format!("wall_clock_ns={wall}\nmonotonic_elapsed_ns={elapsed}\nhasher={hashed:016x}\nrandom={hex}\n")
            .as_bytes(),
    );
}
