//! `wasi:http/proxy` components: the example router answers each route
//! with its status, headers and body, the same bytes and fuel every time;
//! outbound requests are denied; limits give the errors they give modules.

use orb_functions::{CallOptions, Error, HttpRequest, HttpResponse, Limits};

use crate::{component, runtime};

fn request(method: &str, path: &str, body: &[u8]) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        path_and_query: path.into(),
        headers: vec![("accept".into(), b"application/json".to_vec())],
        body: body.to_vec(),
    }
}

fn serve(request: &HttpRequest, limits: Limits) -> Result<(HttpResponse, Vec<u8>, u64), Error> {
    let rt = runtime();
    let f = rt.load(&component("router"))?;
    assert!(f.serves_http());
    let out = rt.call(&f, &request.encode(), &CallOptions::with_limits(limits))?;
    let response = HttpResponse::decode(&out.output).expect("an encoded response");
    Ok((response, out.output, out.fuel))
}

fn header<'a>(r: &'a HttpResponse, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

#[test]
fn the_router_answers_its_routes_and_404_otherwise() {
    let cases = [
        (
            request("GET", "/hello?name=orb", b""),
            200,
            r#"{"hello":"orb"}"#,
        ),
        (request("POST", "/sum", b"[1,2,3]"), 200, r#"{"sum":6.0}"#),
        (
            request("GET", "/nowhere", b""),
            404,
            r#"{"error":"no route","path":"/nowhere"}"#,
        ),
    ];
    for (req, status, body) in cases {
        let (r, _, fuel) = serve(&req, Limits::default()).expect("the router answers");
        assert_eq!(r.status, status, "{req:?}");
        assert_eq!(String::from_utf8_lossy(&r.body), body, "{req:?}");
        assert_eq!(header(&r, "x-router"), Some(&b"orb-example"[..]));
        assert_eq!(header(&r, "content-type"), Some(&b"application/json"[..]));
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.is_sorted(), "{names:?}");
        assert!(fuel > 0);
    }
}

#[test]
fn the_same_request_gives_the_same_bytes_and_fuel() {
    let req = request("POST", "/sum", b"[1,2,3,4]");
    let (_, a, fuel_a) = serve(&req, Limits::default()).expect("first");
    let (_, b, fuel_b) = serve(&req, Limits::default()).expect("second");
    assert_eq!((a, fuel_a), (b, fuel_b));
}

#[test]
fn outbound_requests_are_denied() {
    let (r, _, _) = serve(&request("GET", "/fetch", b""), Limits::default()).expect("answers");
    assert_eq!(r.status, 502);
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("HttpRequestDenied"), "{body}");
}

#[test]
fn sockets_and_name_lookups_are_refused() {
    let (r, _, _) = serve(&request("GET", "/connect", b""), Limits::default()).expect("answers");
    assert_eq!(r.status, 502);
    let said = String::from_utf8_lossy(&r.body).into_owned();
    // Both sockets are refused as they are made; the lookup never resolves.
    assert!(said.contains(r#""tcp":"access-denied""#), "{said}");
    assert!(said.contains(r#""udp":"access-denied""#), "{said}");
    assert!(
        said.contains(r#""lookup":"permanent-resolver-failure""#),
        "{said}"
    );
}

#[test]
fn a_body_of_more_chunks_than_its_channel_holds_is_read_while_it_is_written() {
    // 256 KiB of JSON goes back in 4 KiB writes: 64 chunks, twice what the
    // body's channel holds, so the guest waits for a reader mid-body.
    let json = format!("\"{}\"", "orb ".repeat(64 * 1024)).into_bytes();
    let (r, _, _) =
        serve(&request("POST", "/echo", &json), Limits::default()).expect("the router answers");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json);
    // Over the output limit it is refused as a module's output is.
    let small = Limits {
        output_bytes: 64 * 1024,
        ..Limits::default()
    };
    let err = serve(&request("POST", "/echo", &json), small).err();
    assert!(
        matches!(err, Some(Error::OutputTooLarge { limit: 65_536, .. })),
        "{err:?}"
    );
}

#[test]
fn limits_give_the_module_errors() {
    let req = request("GET", "/hello?name=orb", b"");
    let small = Limits {
        output_bytes: 4,
        ..Limits::default()
    };
    let err = serve(&req, small).err();
    assert!(
        matches!(err, Some(Error::OutputTooLarge { limit: 4, fuel }) if fuel > 0),
        "{err:?}"
    );
    let starved = Limits {
        fuel: 1_000,
        ..Limits::default()
    };
    let err = serve(&req, starved).err();
    assert!(matches!(err, Some(Error::OutOfFuel { .. })), "{err:?}");
}

#[test]
fn a_raw_input_is_a_post_to_the_root_and_a_command_refuses_a_request() {
    let rt = runtime();
    let f = rt.load(&component("router")).expect("loads");
    let out = rt
        .call(&f, b"[1]", &CallOptions::default())
        .expect("answers");
    let r = HttpResponse::decode(&out.output).expect("a response");
    assert_eq!(r.status, 404);
    let echo = rt.load(&component("echo")).expect("loads");
    let req = request("GET", "/", b"").encode();
    let err = rt.call(&echo, &req, &CallOptions::default()).err();
    assert!(
        matches!(&err, Some(e @ Error::InvalidRequest(_)) if e.kind() == "invalid_request"),
        "{err:?}"
    );
}
