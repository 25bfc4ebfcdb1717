//! The web console in a real browser: headless Chromium from Debian's
//! packages driven over WebDriver (`tests/console/browser.py`, selenium)
//! against a three-node network. Skips, saying why, where no browser is.

use std::process::Command;

use crate::replication::{deploy_on, node, wait_providers};

#[test]
fn the_console_shows_the_node_and_calls_a_function_in_a_browser() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let s = node(r, "s", None, &["--no-autoscale"]);
    let a = node(r, "a", Some(&s.addrs[0]), &["--no-autoscale"]);
    let b = node(r, "b", Some(&s.addrs[0]), &["--no-autoscale"]);
    deploy_on(&a, "reverse", &r.join("publisher"));
    wait_providers(&[&b], "reverse", 1);
    b.wait_status("both other nodes connected", |st| {
        st["connected"].as_u64().unwrap_or(0) >= 2
    });
    let shots = crate::functions_dir()
        .parent()
        .expect("the target dir")
        .join("console");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/browser.py");
    let out = Command::new("python3")
        .args([script, &b.api, "reverse", "hello console", "elosnoc olleh"])
        .arg(&shots)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(77) {
        eprintln!("{stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    // The browser read this node's page, and the call ran on another.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), b.peer_id);
    for page in ["node", "invoke"] {
        for width in ["desktop", "phone"] {
            let shot = shots.join(format!("{page}-{width}.png"));
            let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
            assert!(len > 1000, "{} is {len} bytes", shot.display());
        }
    }
}
