//! `orb sim`: seeded 100-node runs of the real consensus and call
//! agreement in simulated time, one per fault kind, each checked for
//! safety, liveness and a clean ledger.

use std::process::Output;

use serde_json::Value;

/// A small committee so a run takes seconds: k 10, α 8/8, β 8, 32 slots.
const SMALL: &str =
    "--nodes 100 --slots 32 --k 10 --alpha-preference 8 --alpha-confidence 8 --beta 8";

fn sim(extra: &str) -> (Output, Option<Value>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<&str> = ["sim", "--json"]
        .into_iter()
        .chain(SMALL.split_whitespace())
        .chain(extra.split_whitespace())
        .chain(
            (!extra.contains("--heights"))
                .then_some(["--heights", "3"])
                .into_iter()
                .flatten(),
        )
        .collect();
    let out = crate::orb(dir.path())
        .args(&args)
        .output()
        .expect("orb sim runs");
    let report = serde_json::from_slice(&out.stdout).ok();
    (out, report)
}

/// Runs and insists every check passed; the report.
fn passing(extra: &str) -> Value {
    let (out, report) = sim(extra);
    let report = report.unwrap_or_else(|| {
        panic!(
            "orb sim {extra}: no report; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success() && report["passed"] == true,
        "orb sim {extra} failed: {}\n{}",
        report["failed"],
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["safety"]["violations"], 0);
    assert!(report["liveness"]["lowest_height"].as_u64() >= Some(3));
    assert_eq!(report["ledger"]["audited"], report["ledger"]["clean"]);
    assert_eq!(report["ledger"]["conserved"], true);
    assert_eq!(report["ledger"]["lying_receipts_paid"], 0);
    report
}

#[test]
fn the_same_seed_gives_the_same_trace_and_another_seed_another() {
    let a = passing("--seed 5 --loss 0.01");
    let b = passing("--seed 5 --loss 0.01");
    let c = passing("--seed 6 --loss 0.01");
    assert_eq!(a["trace"], b["trace"]);
    assert_ne!(a["trace"], c["trace"]);
    assert!(a["calls"]["ok"].as_u64() > Some(0), "calls were settled");
}

#[test]
fn each_byzantine_voter_behaviour_is_survived() {
    for behaviour in ["against", "split", "equivocate", "silent"] {
        let r = passing(&format!("--byzantine 0.2 --behaviour {behaviour} --seed 3"));
        assert_eq!(r["byzantine"][behaviour], 20, "{behaviour}");
        if behaviour == "equivocate" {
            assert!(
                r["equivocators_excluded"].as_u64() > Some(0),
                "equivocators were caught and excluded"
            );
            assert!(
                r["equivocators_on_chain"].as_u64() > Some(0),
                "the chain recorded them (and the audit of the sampled chains passed)"
            );
        }
    }
}

#[test]
fn many_candidates_a_height_are_decided_by_the_tie_break_and_by_a_round_timeout() {
    // Every member with settlements proposes at once and takes the first
    // candidate it sees: heights start split.
    for rule in ["tie-break", "timeout"] {
        let r = passing(&format!(
            "--proposer-step 0s --gather 0s --liveness {rule} --seed 8 --byzantine 0.1"
        ));
        assert!(
            r["liveness"]["candidates_max"].as_u64() > Some(1),
            "{rule}: heights had competing candidates"
        );
    }
}

#[test]
fn byzantine_executors_are_outvoted_and_never_paid() {
    let r = passing("--byzantine 0.2 --seed 4 --hosts 20 --calls 40");
    assert!(r["ledger"]["lying_executors"].as_u64() > Some(0));
    assert!(
        r["ledger"]["lying_receipts"].as_u64() > Some(0),
        "routing sent calls to liars and their receipts were settled: {}",
        r["ledger"]
    );
    assert_eq!(
        r["calls"]["wrong"], 0,
        "no liar majority (liars do not collude)"
    );
}

#[test]
fn pipelined_proposals_commit_in_height_order_under_byzantine_voters_and_loss() {
    // A block interval below the finality time: the next height is
    // proposed while the current one is decided.
    let r = passing("--block-interval 50ms --byzantine 0.2 --loss 0.01 --seed 9 --heights 6");
    assert!(
        r["liveness"]["pipelined"].as_u64() > Some(0),
        "no proposal went out ahead of its parent: {}",
        r["liveness"]
    );
    assert_eq!(r["liveness"]["out_of_order"], 0);
}

#[test]
fn a_partition_heals_and_every_node_catches_up() {
    let r = passing("--partition 0.3@3s+20s --seed 2 --heights 6");
    let catch_up = r["partition"]["catch_up_secs"].as_f64().expect("healed");
    assert!(catch_up <= 30.0, "caught up in {catch_up} simulated s");
}

#[test]
fn crashed_nodes_restart_from_what_they_persisted() {
    let r = passing("--churn 0.1/3s,down=2s --seed 8 --heights 5");
    assert!(r["churn"]["crashes"].as_u64() > Some(0));
    assert_eq!(r["churn"]["lost_blocks"], 0);
}

#[test]
fn a_failing_run_names_its_seed_and_the_command_that_reproduces_it() {
    let (out, report) = sim("--seed 11 --max-time 1s");
    assert_eq!(out.status.code(), Some(1));
    let report = report.expect("a report");
    assert_eq!(report["passed"], false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("liveness"), "{stderr}");
    assert!(
        stderr.contains("orb sim --seed 11") && stderr.contains("--max-time 1s"),
        "{stderr}"
    );
}

#[test]
fn bad_specs_are_usage_errors() {
    for bad in [
        "--byzantine 1",
        "--partition 0.001@1s+1s",
        "--nodes 10",
        "--churn nonsense",
    ] {
        let (out, _) = sim(bad);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(!out.stderr.is_empty(), "{bad}: says why");
    }
}

#[test]
fn agents_on_crashing_hosts_lose_no_acknowledged_message_and_apply_none_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |seed: &str| {
        let out = crate::orb(dir.path())
            .args([
                "sim",
                "--json",
                "--agents",
                "50",
                "--nodes",
                "100",
                "--messages",
                "1500",
                "--calls",
                "100",
                "--churn",
                "0.1/1s,down=2s",
                "--loss",
                "0.02",
                "--seed",
                seed,
            ])
            .output()
            .expect("orb sim runs");
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("no report: {}", String::from_utf8_lossy(&out.stderr)));
        assert!(out.status.success(), "{report}");
        report
    };
    let report = run("4");
    assert_eq!(report["safety"]["violations"], 0, "{report}");
    assert_eq!(report["messages"]["acknowledged"], 1500, "{report}");
    // Hosts did crash and sequencers did fail over.
    assert!(report["crashes"].as_u64() > Some(50), "{report}");
    assert!(report["takeovers"].as_u64() > Some(100), "{report}");
    assert!(report["messages"]["retries"].as_u64() > Some(0), "{report}");
    assert_eq!(run("4")["trace"], report["trace"]);
}
