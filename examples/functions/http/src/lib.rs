//! `router`: a `wasi:http/proxy` function, JSON in and JSON out.
//!
//! - `GET /hello?name=x` answers `{"hello":"x"}` (`name` defaults to `world`);
//! - `POST /sum` with a JSON array of numbers answers `{"sum":6}`;
//! - `POST /echo` answers the JSON it was sent;
//! - `GET /fetch` tries an outbound request and answers 502 with the error
//!   the host gave (Orb refuses every outbound request);
//! - `GET /connect` tries to open a TCP socket, a UDP socket and to look up
//!   a name (`wasi:sockets`), and answers 502 with what the host said to
//!   each (Orb refuses them all);
//! - anything else is a 404 with `{"error":"no route","path":…}`.
//!
//! Every answer carries `content-type: application/json` and
//! `x-router: orb-example`.

use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

struct Router;

impl wasi::exports::http::incoming_handler::Guest for Router {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_and_query = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path.to_owned(), query.to_owned()),
            None => (path_and_query.clone(), String::new()),
        };
        let (status, body) = match (request.method(), path.as_str()) {
            (Method::Get, "/hello") => {
                let name = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("name="))
                    .unwrap_or("world");
                (200, serde_json::json!({ "hello": name }))
            }
            (Method::Post, "/sum") => match serde_json::from_slice::<Vec<f64>>(&read_body(request))
            {
                Ok(numbers) => (
                    200,
                    serde_json::json!({ "sum": numbers.iter().sum::<f64>() }),
                ),
                Err(e) => (400, serde_json::json!({ "error": e.to_string() })),
            },
            // Any JSON back as it came (a large one is written in many
            // chunks).
            (Method::Post, "/echo") => match serde_json::from_slice(&read_body(request)) {
                Ok(value) => (200, value),
                Err(e) => (400, serde_json::json!({ "error": e.to_string() })),
            },
            (Method::Get, "/fetch") => (502, serde_json::json!({ "error": fetch() })),
            (Method::Get, "/connect") => (502, connect()),
            _ => (
                404,
                serde_json::json!({ "error": "no route", "path": path }),
            ),
        };
        respond(out, status, &body);
    }
}

/// The whole body of `request`.
fn read_body(request: IncomingRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    let Ok(body) = request.consume() else {
        return bytes;
    };
    if let Ok(stream) = body.stream() {
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            bytes.extend_from_slice(&chunk);
        }
    }
    bytes
}

/// An outbound request's error, as the host reports it.
fn fetch() -> String {
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Https));
    let _ = request.set_authority(Some("example.com"));
    let _ = request.set_path_with_query(Some("/"));
    // A refusal may come at once or as the response's outcome.
    let response = match outgoing_handler::handle(request, None) {
        Err(code) => return format!("{code:?}"),
        Ok(response) => response,
    };
    response.subscribe().block();
    match response.get() {
        Some(Ok(Err(code))) => format!("{code:?}"),
        Some(Ok(Ok(_))) => "the request went out".into(),
        _ => "no answer".into(),
    }
}

/// What the host says to a TCP socket, a UDP socket and a name lookup.
fn connect() -> serde_json::Value {
    use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    let network = wasi::sockets::instance_network::instance_network();
    let tcp = match wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
        Err(code) => code.name().to_owned(),
        Ok(socket) => {
            let to = IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: 80,
                address: (127, 0, 0, 1),
            });
            match socket.start_connect(&network, to) {
                Err(code) => code.name().to_owned(),
                Ok(()) => {
                    socket.subscribe().block();
                    match socket.finish_connect() {
                        Err(code) => code.name().to_owned(),
                        Ok(_) => "connected".into(),
                    }
                }
            }
        }
    };
    let udp = match wasi::sockets::udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4) {
        Err(code) => code.name().to_owned(),
        Ok(_) => "created".into(),
    };
    let lookup = match wasi::sockets::ip_name_lookup::resolve_addresses(&network, "example.com") {
        Err(code) => code.name().to_owned(),
        Ok(addresses) => {
            addresses.subscribe().block();
            match addresses.resolve_next_address() {
                Err(code) => code.name().to_owned(),
                Ok(first) => format!("resolved: {first:?}"),
            }
        }
    };
    serde_json::json!({ "tcp": tcp, "udp": udp, "lookup": lookup })
}

fn respond(out: ResponseOutparam, status: u16, body: &serde_json::Value) {
    let headers = Fields::from_list(&[
        ("content-type".into(), b"application/json".to_vec()),
        ("x-router".into(), b"orb-example".to_vec()),
    ])
    .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        let bytes = body.to_string().into_bytes();
        for chunk in bytes.chunks(4096) {
            let _ = stream.blocking_write_and_flush(chunk);
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

wasi::http::proxy::export!(Router);
