//! `echo`: returns its input unchanged.
fn main() {
    orb_guest::run(Ok::<_, String>);
}
