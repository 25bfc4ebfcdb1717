//! The web console in a real browser: headless Chromium from Debian's
//! packages driven over WebDriver (`tests/console/browser.py`, selenium)
//! against a three-node network with a ledger. Skips, saying why, where no
//! browser is.

use std::process::Command;

use crate::consensus::ledger_network;

#[test]
fn the_console_deploys_calls_charts_and_audits_in_a_browser() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let (nodes, _, _) = ledger_network(
        root.path(),
        3,
        "console",
        orb_ledger::Params::new(3, 2, 2, 2).expect("params"),
        "200",
        &[
            &["--no-autoscale"],
            &["--no-autoscale"],
            &["--no-autoscale"],
        ],
    );
    // The first node holds the genesis funds: its calls are paid.
    let n0 = &nodes[0];
    n0.wait_status("both other nodes connected", |st| {
        st["connected"].as_u64().unwrap_or(0) >= 2
    });
    let shots = crate::functions_dir()
        .parent()
        .expect("the target dir")
        .join("console");
    let module = crate::example("reverse");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/browser.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&n0.api)
        .arg(&module)
        .args(["reverse", "hello console", "elosnoc olleh"])
        .arg(&shots)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(77) {
        eprintln!("{stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}\nnode log:\n{}", n0.log());
    // The browser read this node's page.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), n0.peer_id);
    // What the browser deployed is on the network: another node routes
    // it to two providers.
    crate::replication::wait_providers(&[&nodes[1]], "reverse", 2);
    for page in [
        "node",
        "deploy",
        "invoke",
        "functions",
        "ledger",
        "block",
        "agents",
    ] {
        for width in ["desktop", "phone"] {
            let shot = shots.join(format!("{page}-{width}.png"));
            let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
            assert!(len > 1000, "{} is {len} bytes", shot.display());
        }
    }
}
