//! `orb pipeline`: the example pipelines run to completion, with the same
//! result on one worker, several workers, and a two-process timely cluster.

use std::collections::BTreeMap;
use std::process::Stdio;

use crate::{assert_fails, functions_dir, json, orb, run_orb, stdout};

fn totals(v: &serde_json::Value) -> BTreeMap<String, i64> {
    serde_json::from_value(v["totals"].clone()).expect("totals")
}

/// Runs `orb pipeline run NAME --json EXTRA...` and returns its JSON.
fn pipeline(dir: &std::path::Path, name: &str, extra: &[&str]) -> serde_json::Value {
    let fns = functions_dir();
    let mut args = vec![
        "pipeline",
        "run",
        name,
        "--json",
        "--functions",
        fns.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    let out = run_orb(dir, &args, None);
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)
}

fn etl(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    pipeline(dir, "etl", extra)
}

#[test]
fn list_names_every_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = stdout(&run_orb(dir.path(), &["pipeline", "list"], None));
    assert!(text.contains("etl"), "{text}");
}

#[test]
fn etl_counts_words_the_same_on_one_or_two_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "a b c\nb c\nc\n\nA, b!\n").expect("write");
    let one = etl(dir.path(), &["--input", input.to_str().expect("path")]);
    let expected: BTreeMap<String, i64> = [("a", 2), ("b", 3), ("c", 3)]
        .map(|(w, n)| (w.to_owned(), n))
        .into();
    assert_eq!(totals(&one), expected);
    let two = etl(
        dir.path(),
        &["--input", input.to_str().expect("path"), "-w", "2"],
    );
    assert_eq!(totals(&two), expected);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn a_two_process_cluster_gives_the_same_result_as_one_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostfile = dir.path().join("hosts");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .expect("write");
    let single = totals(&etl(dir.path(), &["-w", "2"]));

    let fns = functions_dir();
    let spawn = |index: &str| {
        orb(dir.path())
            .args([
                "pipeline", "run", "etl", "--json", "-w", "2", "-n", "2", "-p", index,
            ])
            .args([
                "--hostfile",
                hostfile.to_str().expect("path"),
                "--functions",
                fns.to_str().expect("path"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let (p0, p1) = (spawn("0"), spawn("1"));
    let mut merged = BTreeMap::new();
    for child in [p0, p1] {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success());
        // timely prints connection progress on stdout before the result line.
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let last = text.lines().last().expect("a result line");
        let part = totals(&serde_json::from_str(last).expect("JSON"));
        for (word, n) in part {
            assert!(
                merged.insert(word, n).is_none(),
                "a word reported by both processes"
            );
        }
    }
    assert_eq!(merged, single);
    assert!(!single.is_empty());
}

#[test]
fn an_unknown_pipeline_or_a_bad_cluster_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_orb(dir.path(), &["pipeline", "run", "nope"], None);
    assert_fails(&out, 2, "no pipeline named `nope`");
    let out = run_orb(
        dir.path(),
        &["pipeline", "run", "etl", "-n", "2", "-p", "2"],
        None,
    );
    assert_fails(&out, 2, "not a process index");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1:1\n").expect("write");
    let hostfile = hosts.to_str().expect("path");
    let out = run_orb(
        dir.path(),
        &["pipeline", "run", "etl", "-n", "2", "--hostfile", hostfile],
        None,
    );
    assert_fails(&out, 2, "lists 1 addresses for 2 processes");
}

#[test]
fn windows_cover_every_event_once_per_tumbling_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    for workers in ["1", "2"] {
        let v = pipeline(dir.path(), "windows", &["-w", workers]);
        let count = |w: &serde_json::Value| -> i64 {
            w.as_array()
                .expect("windows")
                .iter()
                .map(|e| e[1][0].as_i64().expect("count"))
                .sum()
        };
        // 4,000 events, one every 2.5 ms: each in exactly one tumbling
        // window, and in 4 sliding windows (2 s every 0.5 s), except the 200
        // events of each of the first three half-seconds, which fall into
        // 1, 2 and 3 windows: 16,000 - 200 × (3 + 2 + 1).
        assert_eq!(count(&v["tumbling"]), 4_000);
        assert_eq!(count(&v["sliding"]), 14_800);
    }
}

#[test]
fn enrich_sees_table_changes_while_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = pipeline(dir.path(), "enrich", &["-w", "2"]);
    let enriched: Vec<(u64, String, String, String)> =
        serde_json::from_value(v["enriched"].clone()).expect("enriched");
    let carol: Vec<_> = enriched
        .iter()
        .filter(|e| e.1 == "carol")
        .map(|e| (e.0, e.3.as_str()))
        .collect();
    assert!(
        carol
            .iter()
            .all(|(t, c)| if *t < 3 { *c == "DK" } else { *c == "DE" }),
        "{carol:?}"
    );
    assert_eq!(carol.len(), 8);
    assert!(
        !enriched.iter().any(|e| e.1 == "dave" && e.0 >= 5),
        "deleted users are not enriched"
    );
    assert_eq!(v["unmatched"], 3);
    assert_eq!(v["carol"], serde_json::json!(["DE"]));
    let changes = v["changes"].as_array().expect("changes");
    assert!(
        changes.iter().all(|c| c[1] != "dave" && c[1] != "erin"),
        "only a..d are subscribed"
    );
    assert!(changes.contains(&serde_json::json!([3, "carol", "DE", 1])));
}
