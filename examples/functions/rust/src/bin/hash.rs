//! `hash`: the blake3 hash of the input, as 64 hex digits.
fn main() {
    orb_guest::run(|bytes| Ok::<_, String>(blake3::hash(&bytes).to_hex().as_bytes().to_vec()));
}
