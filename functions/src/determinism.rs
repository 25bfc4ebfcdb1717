//! Everything a guest could observe of the world, made a function of the call.
//!
//! Replicas of one call must produce the same output bytes and the same fuel,
//! which is what makes receipts comparable. The engine side (NaN
//! canonicalization, deterministic relaxed SIMD, no threads) is set in
//! [`crate::Runtime::new`]; the WASI side is here: no environment, no
//! preopened directories, no network (sockets are refused), clocks derived from the call, random
//! bytes drawn from a generator seeded by the call's seed. Modules (WASI
//! preview 1) and components (WASI 0.2) get the same context.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use crate::pipe::CappedPipe;

/// The 32-byte seed of one call: the only source of randomness a guest sees.
///
/// A node derives it from the invocation id, so every replica of an
/// invocation draws the same random bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Seed(pub [u8; 32]);

impl Seed {
    /// A seed derived from arbitrary bytes (an invocation id, a test name ...).
    pub fn derive(material: &[u8]) -> Self {
        Self(blake3::derive_key("orb 2026 call seed", material))
    }

    /// Three independent 32-byte streams (secure random, insecure random,
    /// insecure seed) from one blake3 XOF: one hash per call, not three.
    fn streams(&self) -> [[u8; 32]; 3] {
        let mut h = blake3::Hasher::new_derive_key("orb 2026 guest random");
        h.update(&self.0);
        let mut out = [[0u8; 32]; 3];
        let mut xof = h.finalize_xof();
        for s in &mut out {
            xof.fill(s);
        }
        out
    }
}

/// The wall clock: fixed at the call's timestamp.
struct FixedWallClock(Duration);

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// The monotonic clock: starts at zero and advances one microsecond per
/// reading, so time moves forward yet depends only on what the guest does.
struct CountingMonotonicClock(AtomicU64);

const MONOTONIC_STEP_NS: u64 = 1_000;

impl HostMonotonicClock for CountingMonotonicClock {
    fn resolution(&self) -> u64 {
        MONOTONIC_STEP_NS
    }

    fn now(&self) -> u64 {
        self.0.fetch_add(MONOTONIC_STEP_NS, Ordering::Relaxed)
    }
}

/// The WASI context of one call: stdin holds the input, stdout and stderr
/// are capped pipes, and nothing else of the host is visible. Modules and
/// components get the same context ([`Wasi::p1`] and [`Wasi::p2`]): one
/// builder, so both kinds see the same world.
pub(crate) struct Wasi<'a> {
    pub(crate) program: &'a str,
    pub(crate) input: &'a [u8],
    pub(crate) stdout: CappedPipe,
    pub(crate) stderr: CappedPipe,
    pub(crate) seed: &'a Seed,
    pub(crate) wall_clock: Duration,
}

impl Wasi<'_> {
    fn builder(self) -> WasiCtxBuilder {
        let [random, insecure_random, insecure_seed] = self.seed.streams();
        let mut insecure_seed_128 = [0u8; 16];
        insecure_seed_128.copy_from_slice(&insecure_seed[..16]);
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdin(MemoryInputPipe::new(self.input.to_vec()))
            .stdout(self.stdout)
            .stderr(self.stderr)
            .args(&[self.program])
            .secure_random(StdRng::from_seed(random))
            .insecure_random(StdRng::from_seed(insecure_random))
            .insecure_random_seed(u128::from_le_bytes(insecure_seed_128))
            .wall_clock(FixedWallClock(self.wall_clock))
            .monotonic_clock(CountingMonotonicClock(AtomicU64::new(0)))
            .allow_blocking_current_thread(true)
            // A component may import wasi:sockets (CPython's libc does):
            // every socket and name lookup is refused before the host
            // opens anything.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        builder
    }

    /// The context of a WASI preview-1 module.
    pub(crate) fn p1(self) -> WasiP1Ctx {
        self.builder().build_p1()
    }

    /// The context of a WASI 0.2 component (its resource table is apart).
    pub(crate) fn p2(self) -> WasiCtx {
        self.builder().build()
    }
}
