//! `balloon` (adversarial): grows its memory forever. Orb stops it at the memory limit.
fn main() {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&chunks);
    }
}
