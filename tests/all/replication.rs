//! Replicated execution on real `orb node` processes: calls reroute around
//! busy and killed providers without failing, a Byzantine executor is
//! outvoted and paid nothing, and every successful call is settled exactly
//! once in the finalized chain.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use orb_ledger::{Block, Chain, Effects, Genesis, PublicKey};
use serde_json::Value;

use crate::consensus::{audit_clean, height, key_of, wait_all, wait_committee};
use crate::network::NodeProc;
use crate::{example, json};

const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";
const FAUCET: u64 = 1_000_000_000_000;

/// Starts node `name` under `root`: a supernode when `boot` is `None`,
/// else joining through `boot`; `flags` come after.
pub(crate) fn node(root: &Path, name: &str, boot: Option<&str>, flags: &[&str]) -> NodeProc {
    let mut args = match boot {
        None => vec!["--supernode"],
        Some(b) => vec!["--bootstrap", b],
    };
    args.extend_from_slice(flags);
    NodeProc::start(&root.join(name), LOOPBACK, &args, None)
}

/// `orb deploy` through `node`, published by the client key in
/// `publisher` (one publisher can host one name on several nodes).
pub(crate) fn deploy_on(node: &NodeProc, function: &str, publisher: &Path) {
    deploy_file_on(node, &example(function), function, publisher);
}

/// [`deploy_on`] of the function in `file`, under `name`.
pub(crate) fn deploy_file_on(node: &NodeProc, file: &Path, name: &str, publisher: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_orb"))
        .args(["deploy", file.to_str().expect("utf-8 path")])
        .args(["--name", name, "--json", "--node", &node.api])
        .env("ORB_DATA_DIR", publisher)
        .env_remove("ORB_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run orb deploy");
    assert!(
        out.status.success(),
        "deploy {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `orb invoke … --json` through `api`, with extra flags.
fn invoke(api: &str, client: &Path, target: &str, input: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orb"))
        .args(["invoke", target, "--input", input, "--json", "--node", api])
        .args(extra)
        .env("ORB_DATA_DIR", client)
        .env_remove("ORB_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run orb invoke")
}

/// [`invoke`] that must succeed; its JSON.
pub(crate) fn invoke_ok(
    api: &str,
    client: &Path,
    target: &str,
    input: &str,
    extra: &[&str],
) -> Value {
    let out = invoke(api, client, target, input, extra);
    assert!(
        out.status.success(),
        "{target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)
}

/// Waits until every node's routing table lists `function` at `hosts`
/// providers (they announce on gossip).
pub(crate) fn wait_providers(nodes: &[&NodeProc], function: &str, hosts: usize) {
    wait_providers_of_file(nodes, &example(function), hosts);
}

/// [`wait_providers`] of the function in `file`.
pub(crate) fn wait_providers_of_file(nodes: &[&NodeProc], file: &Path, hosts: usize) {
    let module = std::fs::read(file).expect("read the function");
    let id = orb_functions::FunctionId::of(&module).to_hex();
    for node in nodes {
        node.wait_status(&format!("{hosts} providers of {}", file.display()), |_| {
            providers_of_id(node, &id).len() >= hosts
        });
    }
}

#[test]
fn a_busy_provider_is_skipped_and_the_call_lands_elsewhere() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let publisher = root.path().join("publisher");
    let r = root.path();
    let s = node(
        r,
        "s",
        None,
        &["--no-autoscale", "--busy-window-ms", "5000"],
    );
    let boot = s.addrs[0].clone();
    // `a` runs one call at a time and queues none: a second call is "busy".
    let one = [
        "--executor-threads",
        "1",
        "--executor-pool",
        "1",
        "--executor-queue",
        "0",
        "--no-autoscale",
    ];
    let a = node(r, "a", Some(&boot), &one);
    let b = node(r, "b", Some(&boot), &["--no-autoscale"]);
    deploy_on(&a, "spin", &publisher);
    deploy_on(&a, "echo", &publisher);
    deploy_on(&b, "echo", &publisher);
    wait_providers(&[&s], "echo", 2);
    wait_providers(&[&s], "spin", 1);

    // Occupy a's only executor thread with a long call (it loops until
    // its fuel runs out, a few hundred ms), and while a is seen busy, call
    // echo on two replicas: a answers "busy", so the call takes b's answer
    // alone instead of failing. A call can miss a's busy moment (the spin
    // ended first); it must still succeed, and one of a few must see it.
    let load_of = |node: &NodeProc| -> u64 {
        let body = ureq::get(format!("{}/api/status", node.api))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        serde_json::from_str::<Value>(&body).map_or(0, |v| v["load"].as_u64().unwrap_or(0))
    };
    let mut rerouted = false;
    for _ in 0..20 {
        let (api, client) = (s.api.clone(), s.dir.join("client"));
        let long = std::thread::spawn(move || invoke(&api, &client, "spin", "", &[]));
        while load_of(&a) == 0 && !long.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let v = invoke_ok(
            &s.api,
            &s.dir.join("client"),
            "echo",
            "hello",
            &["--replicas", "2"],
        );
        assert_eq!(v["output"], "hello");
        let stderr = String::from_utf8_lossy(&long.join().unwrap().stderr).into_owned();
        assert!(stderr.contains("out of fuel"), "{stderr}");
        if v["replicas"] == 1 {
            assert_eq!(v["executor"], b.peer_id.as_str(), "{v}");
            rerouted = true;
            break;
        }
        assert_eq!(v["replicas"], 2, "{v}");
    }
    assert!(rerouted, "a was never found busy in 20 tries");
    // s counts that one call as rerouted (a's busy answer was replaced);
    // the calls both replicas answered were not.
    let text = crate::metrics::scrape(&s.api);
    assert_eq!(
        crate::metrics::sample(&text, r#"orb_invocations_rerouted_total{function="echo"}"#),
        Some(1.0),
        "{text}"
    );
    // Within s's busy window (5 s here) a is not even tried, though it
    // is idle again.
    for _ in 0..3 {
        let v = invoke_ok(
            &s.api,
            &s.dir.join("client"),
            "echo",
            "again",
            &["--replicas", "2"],
        );
        assert_eq!(
            (&v["executor"], &v["replicas"]),
            (&Value::from(b.peer_id.as_str()), &Value::from(1)),
            "{v}"
        );
    }
}

#[test]
fn long_calls_of_one_function_leave_threads_for_another() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let publisher = root.path().join("publisher");
    // One call of a function at a time, in a pool of four threads.
    let n = node(
        root.path(),
        "n",
        None,
        &["--executor-threads", "1", "--no-autoscale"],
    );
    deploy_on(&n, "spin", &publisher);
    deploy_on(&n, "echo", &publisher);
    // Ten spin calls, each looping until its fuel runs out: they run one
    // after another on spin's one thread.
    let spins: Vec<_> = (0..10)
        .map(|_| {
            let (api, client) = (n.api.clone(), n.dir.join("client"));
            std::thread::spawn(move || invoke(&api, &client, "spin", "", &[]))
        })
        .collect();
    n.wait_status("spin running", |s| s["load"].as_u64() >= Some(1));
    // echo does not wait behind them: it is answered while spin's calls
    // are still running or queued (first come, first served on one
    // thread, it would come after all ten).
    for i in 0..3 {
        let input = format!("beside spin {i}");
        let v = invoke_ok(&n.api, &n.dir.join("client"), "echo", &input, &[]);
        assert_eq!(v["output"], input.as_str());
    }
    let unfinished = spins.iter().filter(|t| !t.is_finished()).count();
    assert!(unfinished > 0, "echo waited for every spin call");
    for t in spins {
        let out = t.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(stderr.contains("out of fuel"), "{stderr}");
    }
}

#[test]
fn a_peer_past_its_fuel_budget_is_answered_busy_and_others_are_not() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let publisher = root.path().join("publisher");
    let r = root.path();
    let s = node(r, "s", None, &["--no-autoscale"]);
    let boot = s.addrs[0].clone();
    // a lets each peer burn 100 million fuel a second; one spin call (it
    // loops until its 2,000 million fuel are gone) overdraws that by 19 s.
    let a = node(
        r,
        "a",
        Some(&boot),
        &["--no-autoscale", "--fuel-per-invoker", "100000000"],
    );
    let b = node(r, "b", Some(&boot), &["--no-autoscale"]);
    deploy_on(&a, "spin", &publisher);
    deploy_on(&a, "echo", &publisher);
    wait_providers(&[&b, &s], "echo", 1);
    wait_providers(&[&b], "spin", 1);

    let out = invoke(&b.api, &b.dir.join("client"), "spin", "", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("out of fuel"), "{stderr}");
    // b owes a: its next calls there are "busy" (a is echo's only host),
    for i in 0..2 {
        let out = invoke(&b.api, &b.dir.join("client"), "echo", &format!("{i}"), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success() && stderr.contains("busy"), "{stderr}");
    }
    // b counts both as exhausted: every provider it tried was busy.
    let text = crate::metrics::scrape(&b.api);
    assert_eq!(
        crate::metrics::sample(
            &text,
            r#"orb_invocations_total{function="echo",outcome="exhausted"}"#
        ),
        Some(2.0),
        "{text}"
    );
    // while another peer, within its budget, is served,
    let v = invoke_ok(&s.api, &s.dir.join("client"), "echo", "from s", &[]);
    assert_eq!(v["output"], "from s");
    assert_eq!(v["executor"], a.peer_id.as_str());
    // and a says so once for b, not once per call.
    let said = a.log().matches("over its fuel budget").count();
    assert_eq!(said, 1, "{}", a.log());
    assert!(a.log().contains(&b.peer_id), "{}", a.log());
}

#[test]
fn replicas_without_a_majority_fail_naming_the_disagreement() {
    let root = tempfile::tempdir().unwrap();
    let publisher = root.path().join("publisher");
    let flags = ["--no-autoscale", "--verify-fraction", "0"];
    let r = root.path();
    let s = node(r, "s", None, &flags);
    let boot = s.addrs[0].clone();
    let honest = node(r, "h", Some(&boot), &flags);
    let liar = node(
        r,
        "l",
        Some(&boot),
        &[&["--byzantine"][..], &flags].concat(),
    );
    deploy_on(&honest, "echo", &publisher);
    deploy_on(&liar, "echo", &publisher);
    wait_providers(&[&s], "echo", 2);
    // One against one, and no third provider to break the tie.
    let out = invoke(
        &s.api,
        &s.dir.join("client"),
        "echo",
        "hi",
        &["--replicas", "2"],
    );
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("disagree, no strict majority"), "{stderr}");
    for node in [&honest, &liar] {
        let short = &node.peer_id[node.peer_id.len() - 8..];
        assert!(stderr.contains(short), "{stderr} does not name {short}");
    }
}

#[test]
fn a_pipeline_calls_a_function_deployed_on_the_network() {
    let root = tempfile::tempdir().unwrap();
    let publisher = root.path().join("publisher");
    let flags = ["--no-autoscale", "--verify-fraction", "0"];
    let r = root.path();
    let s = node(r, "s", None, &flags);
    let boot = s.addrs[0].clone();
    let hosts: Vec<NodeProc> = ["h1", "h2"]
        .iter()
        .map(|h| node(r, h, Some(&boot), &flags))
        .collect();
    for h in &hosts {
        deploy_on(h, "wordcount", &publisher);
    }
    wait_providers(&[&s], "wordcount", 2);
    let fns = crate::functions_dir();
    let run = |extra: &[&str]| {
        let mut args = vec!["pipeline", "run", "etl", "--json", "--functions"];
        args.push(fns.to_str().expect("utf-8 path"));
        args.extend_from_slice(extra);
        let out = crate::run_orb(&root.path().join("client"), &args, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&out)
    };
    let local = run(&[]);
    // Every line a call on both hosts (two replicas agreeing), through s.
    let remote = run(&["--remote", "--node", &s.api, "--replicas", "2"]);
    assert_eq!(remote["failed_lines"], 0, "{remote}");
    assert!(!local["totals"].as_object().unwrap().is_empty());
    assert_eq!(remote["totals"], local["totals"]);
    let out = crate::run_orb(
        &root.path().join("client"),
        &["pipeline", "run", "windows", "--remote", "--node", &s.api],
        None,
    );
    crate::assert_fails(&out, 2, "only the etl pipeline calls a function");
}

/// The providers of `function` in `node`'s routing table.
pub(crate) fn providers_of(node: &NodeProc, function: &str) -> Vec<String> {
    let module = std::fs::read(example(function)).expect("read the module");
    providers_of_id(node, &orb_functions::FunctionId::of(&module).to_hex())
}

/// The providers of the function `id` (hex) in `node`'s routing table.
fn providers_of_id(node: &NodeProc, id: &str) -> Vec<String> {
    let out = node.client(&["ls", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["function"] == id)
        .flat_map(|f| f["providers"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["peer"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_busy_function_gets_a_replica_and_the_idle_replica_retires() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let publisher = root.path().join("publisher");
    let r = root.path();
    let s = node(r, "s", None, &["--no-autoscale"]);
    let boot = s.addrs[0].clone();
    // h hosts fib on one executor thread; x is idle and may scale.
    let h = node(
        r,
        "h",
        Some(&boot),
        &[
            "--executor-threads",
            "1",
            "--no-autoscale",
            "--fuel-per-invoker",
            "0",
        ],
    );
    // No per-peer fuel budget: s's callers burn fib's fuel faster than
    // the default allows, and this test is about scaling, not budgets.
    let scale = [
        "--scale-up-at",
        "0.5",
        "--scale-idle-secs",
        "3",
        "--fuel-per-invoker",
        "0",
    ];
    let x = node(r, "x", Some(&boot), &scale);
    deploy_on(&h, "fib", &publisher);
    wait_providers(&[&s], "fib", 1);
    assert_eq!(x.status()["hosted"], 0);

    // Load: four callers keep h's only thread busy until x takes fib on
    // and runs some of the calls.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let executors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (api, client) = (s.api.clone(), s.dir.join("client"));
            let (stop, executors) = (stop.clone(), executors.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = invoke(&api, &client, "fib", "32", &[]);
                    let err = String::from_utf8_lossy(&out.stderr);
                    if !out.status.success() && err.contains("busy") {
                        // Overload answered as such: the caller backs off.
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        continue;
                    }
                    assert!(out.status.success(), "fib: {err}");
                    let v = json(&out);
                    assert_eq!(v["output"], "2178309");
                    let by = v["executor"].as_str().expect("an executor").to_owned();
                    executors.lock().expect("executors").push(by);
                }
            })
        })
        .collect();
    x.wait_status("x hosts a replica of fib", |st| st["hosted"] == 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !providers_of(&s, "fib").contains(&x.peer_id) {
        assert!(
            std::time::Instant::now() < deadline,
            "s never learned x hosts fib"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Calls go on until x has run one of them.
    while !executors.lock().unwrap().contains(&x.peer_id) {
        assert!(
            std::time::Instant::now() < deadline,
            "the new replica ran none of {} calls",
            executors.lock().unwrap().len()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
    // Idle for 3 s: x retires its replica and s stops routing to it; h,
    // which was deployed to, keeps fib.
    x.wait_status("x retired fib", |st| st["hosted"] == 0);
    // x counted what it did: each replica it took on, it retired.
    let text = crate::metrics::scrape(&x.api);
    let scaled = |action: &str| {
        crate::metrics::sample(
            &text,
            &format!(r#"orb_autoscale_events_total{{action="{action}"}}"#),
        )
    };
    assert!(scaled("up").is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(scaled("retire"), scaled("up"), "{text}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while providers_of(&s, "fib") != vec![h.peer_id.clone()] {
        assert!(
            std::time::Instant::now() < deadline,
            "s still routes fib to {:?}",
            providers_of(&s, "fib")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(h.status()["hosted"], 1);
}

/// The finalized chain of a stopped node, block by block, with effects.
fn blocks(chain: &Chain) -> Vec<(Block, Effects)> {
    (1..=chain.height())
        .map(|h| {
            let block = chain.block(h).expect("readable").expect("a block");
            let effects = orb_ledger::stored_effects(chain.store(), h)
                .expect("readable")
                .expect("effects");
            (block, effects)
        })
        .collect()
}

#[test]
fn replicas_survive_a_kill_outvote_a_byzantine_executor_and_settle_once() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let publisher = root.path().join("publisher");
    let dirs: Vec<_> = (0..6).map(|i| root.path().join(format!("n{i}"))).collect();
    let payer = key_of(&dirs[0]);
    let mut genesis = Genesis::local("replication-test", vec![(payer, FAUCET)]);
    genesis.snowball = orb_ledger::Params::new(5, 4, 4, 4).unwrap();
    let genesis_file = root.path().join("genesis.json");
    std::fs::write(&genesis_file, serde_json::to_string(&genesis).unwrap()).unwrap();
    let g = genesis_file.to_str().unwrap();
    // No auto-scaling: the Byzantine node must not take on `reverse`.
    let common = [
        "--genesis",
        g,
        "--block-interval-ms",
        "200",
        "--no-autoscale",
    ];
    // n0, the caller, verifies every single-replica call.
    let r = root.path();
    let n0 = node(
        r,
        "n0",
        None,
        &[&["--verify-fraction", "1"][..], &common].concat(),
    );
    let boot = n0.addrs[0].clone();
    let mut nodes = vec![n0];
    for i in 1..6 {
        let byzantine = if i == 5 { &["--byzantine"][..] } else { &[] };
        let flags = [&common[..], byzantine].concat();
        nodes.push(node(r, &format!("n{i}"), Some(&boot), &flags));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_committee(&all, 60);
    let byzantine = nodes[5].peer_id.clone();
    // echo on n1, n2 and the Byzantine n5; reverse on n2, n3, n4.
    for i in [1, 2, 5] {
        deploy_on(&nodes[i], "echo", &publisher);
    }
    for i in [2, 3, 4] {
        deploy_on(&nodes[i], "reverse", &publisher);
    }
    wait_providers(&[&nodes[0]], "echo", 3);
    wait_providers(&[&nodes[0]], "reverse", 3);
    let client = nodes[0].dir.join("client");
    let mut invocations: Vec<String> = Vec::new();

    // One Byzantine executor of three: every answer is right, and the
    // Byzantine one is named as outvoted.
    for i in 0..20 {
        let input = format!("call {i}");
        let v = invoke_ok(&nodes[0].api, &client, "echo", &input, &["--replicas", "3"]);
        assert_eq!(v["output"], input.as_str(), "a wrong answer: {v}");
        assert_eq!(v["replicas"], 3, "{v}");
        assert_eq!(v["disputed"], serde_json::json!([byzantine]), "{v}");
        invocations.push(v["invocation"].as_str().unwrap().to_owned());
    }
    let disputes = nodes[0].status()["disputes"].clone();
    assert_eq!(disputes.as_array().map_or(0, Vec::len), 20, "{disputes}");
    let text = crate::metrics::scrape(&nodes[0].api);
    assert_eq!(
        crate::metrics::sample(&text, "orb_replicas_outvoted_total"),
        Some(20.0),
        "{text}"
    );

    // Sampled verification of single-replica calls: a random second
    // executor re-runs each; when the Byzantine one is involved, a third
    // decides and the Byzantine one is named (each call has a 1/3 chance
    // it is the first pick, else 1/2 that it verifies).
    for i in 0..20 {
        let v = invoke_ok(&nodes[0].api, &client, "echo", &format!("sampled {i}"), &[]);
        invocations.push(v["invocation"].as_str().unwrap().to_owned());
    }
    nodes[0].wait_status(
        "a sampled verification caught the Byzantine executor",
        |st| {
            st["disputes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d["by"] == "sampled verification" && d["executor"] == byzantine.as_str())
        },
    );

    // A replica killed during 200 calls: none fails.
    let api = nodes[0].api.clone();
    let done = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..4)
        .map(|t| {
            let (api, client, done) = (api.clone(), client.clone(), done.clone());
            std::thread::spawn(move || {
                let mut results = Vec::new();
                for i in 0..50 {
                    let input = format!("{t}-{i}");
                    let out = invoke(&api, &client, "reverse", &input, &[]);
                    done.fetch_add(1, Ordering::Relaxed);
                    results.push((input, out));
                }
                results
            })
        })
        .collect();
    while done.load(Ordering::Relaxed) < 60 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let victim = nodes.remove(4);
    victim.stop();
    let mut failed = Vec::new();
    for caller in callers {
        for (input, out) in caller.join().unwrap() {
            if !out.status.success() {
                failed.push(String::from_utf8_lossy(&out.stderr).into_owned());
                continue;
            }
            let v = json(&out);
            let reversed: String = input.chars().rev().collect();
            assert_eq!(v["output"], reversed.as_str());
            invocations.push(v["invocation"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 200 calls failed: {failed:?}",
        failed.len()
    );

    // Every settlement finalizes on every live node.
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_all(&all, "every settlement finalized everywhere", 120, |ls| {
        let h = height(&ls[0]);
        h >= 1 && ls.iter().all(|l| height(l) == h && l["mempool"] == 0)
    });
    let dir0 = nodes.remove(0).stop();
    for n in nodes.drain(..) {
        audit_clean(&n.stop());
    }
    audit_clean(&dir0);

    // Exactly once: each successful call in one finalized settlement.
    let chain = Chain::open_dir(&dir0.join("ledger"), None).unwrap();
    let blocks = blocks(&chain);
    let mut settled: HashMap<String, usize> = HashMap::new();
    let bad = orb_net::identity::ed25519_public(&byzantine.parse().unwrap()).unwrap();
    let bad = PublicKey(bad);
    let (mut debits, mut credits, mut rewards) = (0i128, 0i128, 0i128);
    let mut byzantine_rewards = 0i128;
    for (block, effects) in &blocks {
        rewards += i128::from(genesis.block_reward);
        if block.header.proposer.key == bad {
            byzantine_rewards += i128::from(genesis.block_reward);
        }
        for s in &block.settlements {
            *settled
                .entry(format!("{:032x}", s.body.invocation))
                .or_default() += 1;
            let verdict = s.verdict();
            for (i, r) in s.body.receipts.iter().enumerate() {
                if r.body.executor == bad {
                    assert!(
                        verdict.disputed.contains(&i),
                        "a Byzantine receipt was paid"
                    );
                }
            }
        }
        for change in effects.0.values() {
            if *change < 0 {
                debits -= change;
            } else {
                credits += change;
            }
        }
    }
    for id in &invocations {
        assert_eq!(settled.get(id), Some(&1), "invocation {id}");
    }
    assert_eq!(
        debits,
        credits - rewards,
        "debits = credits − block rewards"
    );
    // The Byzantine node earned block rewards at most, never fuel.
    assert_eq!(chain.balance(&bad) as i128, byzantine_rewards);
}

#[test]
fn a_gateway_at_its_call_limit_sheds_load_with_503_and_retry_after() {
    let _heavy = crate::HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let publisher = root.path().join("publisher");
    let r = root.path();
    let s = node(r, "s", None, &["--no-autoscale"]);
    let boot = s.addrs[0].clone();
    let g = node(r, "g", Some(&boot), &["--no-autoscale", "--max-calls", "1"]);
    deploy_on(&g, "spin", &publisher);
    deploy_on(&g, "echo", &publisher);
    // While g's one call slot holds a spin (a few hundred ms, until its
    // fuel runs out), another call through g is refused at once; a call
    // can miss the spin (it ended first) and must then succeed.
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut shed = 0;
    for _ in 0..20 {
        let (api, client) = (g.api.clone(), g.dir.join("client"));
        let long = std::thread::spawn(move || invoke(&api, &client, "spin", "", &[]));
        while g.status()["load"].as_u64().unwrap_or(0) == 0 && !long.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let mut answer = http
            .post(format!("{}/fn/echo", g.api))
            .send(&b"shed me"[..])
            .expect("POST /fn/echo");
        let status = answer.status().as_u16();
        let retry = answer
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let body = answer.body_mut().read_to_string().unwrap_or_default();
        match status {
            503 => {
                assert_eq!(retry.as_deref(), Some("1"), "{body}");
                assert!(body.contains("--max-calls"), "{body}");
                shed += 1;
            }
            200 => assert_eq!(body, "shed me"),
            other => panic!("{other}: {body}"),
        }
        long.join().unwrap();
        if shed >= 2 {
            break;
        }
    }
    assert!(shed >= 1, "no call was ever refused at the limit");
    // g counts each refused call as busy, under the function's name.
    let text = crate::metrics::scrape(&g.api);
    assert_eq!(
        crate::metrics::sample(
            &text,
            r#"orb_invocations_total{function="echo",outcome="busy"}"#
        ),
        Some(f64::from(shed)),
        "{text}"
    );
    // Below the limit again: calls go through.
    let v = invoke_ok(&g.api, &g.dir.join("client"), "echo", "after", &[]);
    assert_eq!(v["output"], "after");
}
