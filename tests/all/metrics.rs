//! `GET /metrics`: a node's counters match what was done through it, in
//! the Prometheus text format.

use std::time::Duration;

use crate::replication::{deploy_on, node, wait_providers};

fn scrape(api: &str) -> String {
    let mut r = ureq::get(&format!("{api}/metrics"))
        .call()
        .expect("GET /metrics");
    let kind = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    r.body_mut().read_to_string().expect("a body")
}

/// The value of the sample `name{labels}` (labels as written, in order).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn post(api: &str, path: &str, body: &str) -> u16 {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    http.post(&format!("{api}{path}"))
        .send(body)
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[test]
fn the_counts_a_node_exports_are_the_calls_and_steps_made_through_it() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let publisher = r.join("publisher");
    let s = node(r, "s", None, &["--no-autoscale"]);
    let a = node(r, "a", Some(&s.addrs[0]), &["--no-autoscale"]);
    deploy_on(&s, "echo", &publisher);
    deploy_on(&s, "balloon", &publisher);
    wait_providers(&[&a], "echo", 1);
    wait_providers(&[&a], "balloon", 1);
    for i in 0..7 {
        assert_eq!(post(&a.api, "/fn/echo", &format!("hello {i}")), 200);
    }
    for _ in 0..2 {
        assert_eq!(post(&a.api, "/fn/balloon", ""), 422);
    }
    for i in 0..3 {
        assert_eq!(post(&a.api, &format!("/fn/nobody-{i}"), ""), 404);
    }
    let text = scrape(&a.api);
    assert_eq!(
        sample(
            &text,
            r#"orb_invocations_total{function="echo",outcome="ok"}"#
        ),
        Some(7.0),
        "{text}"
    );
    // A guest error counts under its kind.
    let ballooned: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(r#"orb_invocations_total{function="balloon","#))
        .collect();
    assert_eq!(ballooned.len(), 1, "{text}");
    assert!(
        ballooned[0].ends_with(" 2") && !ballooned[0].contains(r#"outcome="ok""#),
        "{ballooned:?}"
    );
    // Unknown names share one label value.
    assert_eq!(
        sample(
            &text,
            r#"orb_invocations_total{function="unknown",outcome="no_provider"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"orb_invoke_duration_seconds_count{hop="total"}"#),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"orb_invoke_duration_seconds_count{hop="network"}"#),
        Some(7.0)
    );
    assert!(sample(&text, "orb_fuel_consumed_total").is_some_and(|f| f > 0.0));
    assert_eq!(
        sample(&text, r#"orb_peers{kind="direct"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("# TYPE orb_invoke_duration_seconds histogram"));
    assert!(text.trim_end().ends_with("# EOF"));
    // The executing node counted nothing: the calls entered at `a`.
    let there = scrape(&s.api);
    assert_eq!(
        sample(
            &there,
            r#"orb_invocations_total{function="echo",outcome="ok"}"#
        ),
        None
    );
    assert_eq!(sample(&there, "orb_functions_hosted"), Some(2.0), "{there}");
}
