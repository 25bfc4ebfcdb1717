//! `flood` (adversarial): writes output forever. Orb stops it at the output limit.
use std::io::Write;

fn main() {
    let block = [b'x'; 4096];
    let mut out = std::io::stdout().lock();
    loop {
        if out.write_all(&block).is_err() {
            // Keep trying: a well-behaved host must stop us, not our politeness.
            continue;
        }
    }
}
