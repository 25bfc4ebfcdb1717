//! `orb pipeline`: the example pipelines run to completion, with the same
//! result on one worker, several workers, and a two-process timely cluster.

use std::collections::BTreeMap;
use std::process::Stdio;

use crate::{assert_fails, functions_dir, json, orb, run_orb, stdout};

fn totals(v: &serde_json::Value) -> BTreeMap<String, i64> {
    serde_json::from_value(v["totals"].clone()).expect("totals")
}

fn etl(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let fns = functions_dir();
    let mut args = vec![
        "pipeline",
        "run",
        "etl",
        "--json",
        "--functions",
        fns.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    let out = run_orb(dir, &args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)
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
fn an_unknown_pipeline_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_orb(dir.path(), &["pipeline", "run", "nope"], None);
    assert_fails(&out, 2, "no pipeline named `nope`");
}
