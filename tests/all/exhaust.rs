//! Resource exhaustion on a real node: a peer floods it with requests to
//! host large modules, a client with calls to names nobody deployed. The
//! node's disk stays within its store quotas, its name memory within its
//! bound, and it keeps answering calls throughout.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::hostile::echo_through;
use crate::network::NodeProc;
use crate::replication::{deploy_on, node, wait_providers};

/// A valid module of about `size` bytes (a data segment of pseudo-random
/// bytes drawn from `salt`, so each salt is another function).
fn big_module(size: usize, salt: u64) -> Vec<u8> {
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = String::with_capacity(size * 3);
    for _ in 0..size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.push_str(&format!("\\{:02x}", x as u8));
    }
    let pages = size / 65_536 + 1;
    wat::parse_str(format!(
        r#"(module (memory (export "memory") {pages}) (data (i32.const 0) "{data}") (func (export "_start")))"#
    ))
    .expect("wat")
}

/// `orb deploy FILE --name NAME --replicas R --json` through `node`,
/// signed with the key in `publisher`.
fn deploy_file(
    node: &NodeProc,
    file: &Path,
    name: &str,
    replicas: &str,
    publisher: &Path,
) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orb"))
        .args(["deploy", file.to_str().expect("utf-8 path")])
        .args([
            "--name",
            name,
            "--replicas",
            replicas,
            "--json",
            "--node",
            &node.api,
        ])
        .env("ORB_DATA_DIR", publisher)
        .env_remove("ORB_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run orb deploy");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[test]
fn floods_of_large_modules_and_unknown_names_stay_within_bounds_and_calls_go_on() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    const TOTAL: u64 = 6 << 20;
    let s = node(
        r,
        "s",
        None,
        &[
            "--no-autoscale",
            "--max-module-bytes",
            "600KiB",
            "--publisher-quota-bytes",
            "3MiB",
            "--store-quota-bytes",
            "6MiB",
        ],
    );
    let boot = s.addrs[0].clone();
    deploy_on(&s, "echo", &r.join("publisher"));
    // f's own store is not bounded: it hosts every module it deploys and
    // asks s to host a replica of each.
    let f = node(r, "f", Some(&boot), &["--no-autoscale"]);
    wait_providers(&[&f], "echo", 1);

    // A module over s's size limit is refused by its API, with the limit.
    let modules = r.join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    let large = modules.join("large.wasm");
    std::fs::write(&large, big_module(700 << 10, 0)).unwrap();
    let (ok, _, stderr) = deploy_file(&s, &large, "large", "1", &r.join("publisher"));
    assert!(!ok);
    assert!(stderr.contains("over this node's limit"), "{stderr}");

    // f floods s with requests to host 500 KiB modules: s takes them
    // until f's quota is used, then declines each, saying why.
    let mut hosted_on_s = 0;
    let mut declined = Vec::new();
    for i in 1..=10u64 {
        let file = modules.join(format!("m{i}.wasm"));
        std::fs::write(&file, big_module(500 << 10, i)).unwrap();
        let (ok, v, stderr) = deploy_file(&f, &file, &format!("m{i}"), "2", &r.join("flooder"));
        assert!(ok, "{stderr}");
        if v["providers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == s.peer_id.as_str()))
        {
            hosted_on_s += 1;
        } else {
            declined.push(v["declined"].to_string());
        }
        echo_through(&s, &format!("during the deploys {i}"));
    }
    assert!(hosted_on_s >= 1, "{declined:?}");
    assert!(!declined.is_empty(), "s hosted all {hosted_on_s}");
    assert!(declined.iter().all(|d| d.contains("quota")), "{declined:?}");
    // What s stores stays within f's quota (past it by one compiled
    // module at most) and the total; the disk agrees.
    let status = s.status();
    let stored = status["stored_bytes"].as_u64().unwrap();
    assert!(stored <= TOTAL, "{status}");
    let on_disk = du(&s.dir.join("functions"));
    assert!(
        on_disk <= stored + (64 << 10),
        "{on_disk} bytes under functions/, {stored} charged"
    );

    // A flood of calls to distinct names nobody deployed: each is told
    // "no provider" (404) or "busy" (503) at once, s remembers at most its
    // bound of missing names, and echo is answered meanwhile.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let stop = AtomicBool::new(false);
    let (lookups, other) = (AtomicU64::new(0), AtomicU64::new(0));
    let rss_before = s.peak_rss_mib();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (agent, stop, lookups, other) = (&agent, &stop, &lookups, &other);
            let api = s.api.clone();
            scope.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < 2_000 {
                    let url = format!("{api}/fn/nobody-deployed-{t}-{i}");
                    match agent.post(&url).send("x") {
                        Ok(r) if matches!(r.status().as_u16(), 404 | 503) => {
                            lookups.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
            });
        }
        for i in 0..5 {
            echo_through(&s, &format!("during the lookups {i}"));
        }
        while lookups.load(Ordering::Relaxed) + other.load(Ordering::Relaxed) < 16_000
            && started.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(other.load(Ordering::Relaxed), 0);
    assert!(lookups.load(Ordering::Relaxed) >= 1_000);
    let status = s.status();
    let missing = status["names"]["missing"].as_u64().unwrap();
    assert!(missing <= 10_000, "{status}");
    echo_through(&s, "after the lookups");
    eprintln!(
        "exhaust: {hosted_on_s} of 10 modules hosted on s, {} declined; {stored} bytes stored, {on_disk} on disk; {} lookups answered in {:.1} s; {missing} missing names kept; RSS peak {rss_before} -> {} MiB",
        declined.len(),
        lookups.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        s.peak_rss_mib()
    );
}
