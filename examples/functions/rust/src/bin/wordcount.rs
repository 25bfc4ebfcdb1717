//! `wordcount`: text in, JSON object of word counts out (lowercased,
//! sorted); how many words and distinct words it saw goes to stderr (the
//! guest's log, which `orb logs` shows).
use std::collections::BTreeMap;

fn main() {
    orb_guest::run_text(|text| {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for word in text
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
        {
            *counts.entry(word.to_lowercase()).or_default() += 1;
        }
        let words: u64 = counts.values().sum();
        eprintln!("{words} words, {} distinct", counts.len());
        serde_json::to_string(&counts).map_err(|e| e.to_string())
    });
}
