//! `reverse`: returns its text input reversed, character by character.
fn main() {
    orb_guest::run_text(|text| Ok::<_, String>(text.chars().rev().collect()));
}
