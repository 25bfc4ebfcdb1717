//! wasi:http functions through the gateway: the example router deployed
//! on one node answers real HTTP requests to `/fn/router/{path…}` sent to
//! another, with the component's status, headers and body and Orb's
//! `x-orb-*` headers; an HTTP request to a function that is not wasi:http
//! is a 400.

use crate::replication::{deploy_file_on, deploy_on, node, wait_providers, wait_providers_of_file};
use crate::{assert_fails, component, example, json, run_orb, stdout};

#[test]
fn orb_run_prints_the_routers_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = component("router");
    let path = router.to_str().expect("utf-8 path");
    let out = run_orb(
        dir.path(),
        &[
            "run",
            path,
            "--path",
            "/hello?name=orb",
            "--header",
            "accept: application/json",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        "HTTP 200\ncontent-type: application/json\nx-router: orb-example\n\n{\"hello\":\"orb\"}"
    );
    let args = [
        "run", path, "--method", "POST", "--path", "/sum", "--input", "[1,2,3]", "--json",
    ];
    let (one, two) = (
        json(&run_orb(dir.path(), &args, None)),
        json(&run_orb(dir.path(), &args, None)),
    );
    assert_eq!(
        (one["status"].as_u64(), one["body"].as_str()),
        (Some(200), Some(r#"{"sum":6.0}"#)),
        "{one}"
    );
    assert_eq!((&one["body"], &one["fuel"]), (&two["body"], &two["fuel"]));
    let echo = example("echo");
    let out = run_orb(
        dir.path(),
        &["run", echo.to_str().expect("utf-8"), "--path", "/"],
        None,
    );
    assert_fails(&out, 2, "are for wasi:http/proxy components");
}

/// Status, the router's `x-router` header, `x-orb-fuel`, and the body.
fn send(method: &str, url: &str, body: &str) -> (u16, String, String, String) {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = match method {
        "GET" => http.get(url).call(),
        _ => http.post(url).send(body),
    }
    .expect("the gateway answers");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (router, fuel) = (header("x-router"), header("x-orb-fuel"));
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().expect("body");
    (status, router, fuel, body)
}

#[test]
fn the_router_deployed_on_one_node_answers_http_through_another() {
    let root = tempfile::tempdir().expect("tempdir");
    let publisher = root.path().join("publisher");
    let flags = ["--no-autoscale", "--verify-fraction", "0"];
    let r = root.path();
    let s = node(r, "s", None, &flags);
    let boot = s.addrs[0].clone();
    let host = node(r, "h1", Some(&boot), &flags);
    let router = component("router");
    deploy_file_on(&host, &router, "router", &publisher);
    deploy_on(&host, "echo", &publisher);
    wait_providers_of_file(&[&s], &router, 1);
    wait_providers(&[&s], "echo", 1);

    let (status, tag, fuel, body) = send("GET", &format!("{}/fn/router/hello?name=orb", s.api), "");
    assert_eq!((status, tag.as_str()), (200, "orb-example"), "{body}");
    assert_eq!(body, r#"{"hello":"orb"}"#);
    assert!(fuel.parse::<u64>().is_ok_and(|f| f > 0), "{fuel}");

    let (status, tag, _, body) = send("POST", &format!("{}/fn/router/sum", s.api), "[1,2,3]");
    assert_eq!((status, tag.as_str()), (200, "orb-example"), "{body}");
    assert_eq!(body, r#"{"sum":6.0}"#);

    let (status, _, _, body) = send("GET", &format!("{}/fn/router/missing", s.api), "");
    assert_eq!(status, 404, "{body}");

    // A raw POST /fn/router is POST / with that body (no route: 404).
    let (status, tag, _, _) = send("POST", &format!("{}/fn/router", s.api), "[1]");
    assert_eq!((status, tag.as_str()), (404, "orb-example"));

    // An HTTP request to a function that takes raw input.
    let (status, _, _, body) = send("GET", &format!("{}/fn/echo/x", s.api), "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a wasi:http/proxy component"), "{body}");

    // `orb invoke` sends the same requests and prints the response as
    // `orb run` does.
    let out = s.client(&[
        "invoke",
        "router",
        "--path",
        "/hello?name=cli",
        "--header",
        "accept: application/json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(text.starts_with("HTTP 200\n"), "{text}");
    assert!(text.contains("\nx-router: orb-example\n"), "{text}");
    assert!(text.ends_with("\n\n{\"hello\":\"cli\"}"), "{text}");
    let out = s.client(&[
        "invoke", "router", "--method", "POST", "--path", "/sum", "--input", "[1,2]", "--json",
    ]);
    let v = json(&out);
    assert_eq!(
        (v["status"].as_u64(), v["body"].as_str()),
        (Some(200), Some(r#"{"sum":3.0}"#)),
        "{v}"
    );
    assert!(v["fuel"].as_u64() > Some(0), "{v}");
    let out = s.client(&["invoke", "router", "--path", "/nowhere"]);
    assert!(out.status.success(), "a function's 404 is its answer");
    assert!(stdout(&out).starts_with("HTTP 404\n"));
    let out = s.client(&["invoke", "echo", "--path", "/"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a wasi:http/proxy component"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.client(&["invoke", "router", "--path", "hello"]);
    assert_fails(&out, 2, "a path starts with `/`");
}
