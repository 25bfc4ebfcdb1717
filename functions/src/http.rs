//! `wasi:http/proxy` components: a request in, a response out, as bytes.
//!
//! The rest of Orb treats every call as input bytes → output bytes, so an
//! http call's input is the postcard encoding of an [`HttpRequest`] and its
//! output the encoding of an [`HttpResponse`], whose headers are in a
//! canonical order ([`HttpResponse::canonical`]): replicas compare, and
//! receipts hash, the whole response.
//!
//! A call runs on an executor thread with no tokio runtime: wasmtime-wasi's
//! sync bindings enter their own (`wasmtime_wasi::runtime::in_tokio`) for
//! each host call that waits. The guest writes its response body into a
//! channel of [`BODY_CHUNKS`] chunks, which the executor thread drains
//! once the handler returned and the store is gone: a response written in
//! fewer chunks (nearly all of them) never leaves the thread, so a call
//! costs no thread switch. A guest that writes more would wait for room
//! while nothing reads, so every call still running after an epoch tick
//! or two is handed to a drain task on wasmtime-wasi's runtime
//! ([`Bodies::rescue`], from the epoch thread) that reads while the guest
//! writes. Past the call's output limit the bytes are counted, not kept.
//!
//! Outbound requests (`wasi:http/outgoing-handler`) are linked, because
//! every proxy component imports them, and each one is answered
//! `HttpRequestDenied` ([`Denied`]): functions have no network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use wasmtime::Store;
use wasmtime_wasi::runtime::AbortOnDropJoinHandle;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::bindings::sync::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpHooks, WasiHttpView};

use crate::Error;
use crate::component::ComponentState;

/// What an encoded [`HttpRequest`] starts with: how an http function tells
/// a request from a raw input (which it takes as `POST /` with that body),
/// and how a command or a module refuses a request it cannot take.
pub const REQUEST_TAG: &[u8] = b"\0orb-http-request\0";
/// What an encoded [`HttpResponse`] starts with: how a node tells an http
/// function's output from a raw one.
pub const RESPONSE_TAG: &[u8] = b"\0orb-http-response\0";

/// The authority of every request a function sees: the node's own address
/// would differ between replicas.
const AUTHORITY: &str = "function.orb";

/// An HTTP request, as an http function's input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// `GET`, `POST`, ….
    pub method: String,
    /// The path and the query, `/hello?name=x`.
    pub path_and_query: String,
    /// Header names and values, in the order they came.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A `POST /` with `body` and no headers: how a raw input reaches an
    /// http function.
    pub fn post(body: Vec<u8>) -> Self {
        Self {
            method: "POST".into(),
            path_and_query: "/".into(),
            headers: Vec::new(),
            body,
        }
    }

    /// The canonical encoding (a call's input bytes): [`REQUEST_TAG`],
    /// then postcard.
    pub fn encode(&self) -> Vec<u8> {
        encode(REQUEST_TAG, self)
    }

    /// Reads what [`HttpRequest::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        bytes
            .strip_prefix(REQUEST_TAG)
            .and_then(|b| postcard::from_bytes(b).ok())
            .ok_or_else(|| Error::InvalidRequest("the input is not an encoded HTTP request".into()))
    }

    fn to_hyper(&self) -> Result<http::Request<Full<Bytes>>, Error> {
        let invalid =
            |what: &str, e: &dyn std::fmt::Display| Error::InvalidRequest(format!("{what}: {e}"));
        let method = http::Method::from_bytes(self.method.as_bytes())
            .map_err(|e| invalid(&format!("method `{}`", self.method), &e))?;
        let path = if self.path_and_query.is_empty() {
            "/"
        } else {
            &self.path_and_query
        };
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(AUTHORITY)
            .path_and_query(path)
            .build()
            .map_err(|e| invalid(&format!("path `{path}`"), &e))?;
        let mut request = http::Request::builder().method(method).uri(uri);
        for (name, value) in &self.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| invalid(&format!("header name `{name}`"), &e))?;
            let value = http::HeaderValue::from_bytes(value)
                .map_err(|e| invalid(&format!("value of header `{name}`"), &e))?;
            request = request.header(name, value);
        }
        request
            .body(Full::new(Bytes::from(self.body.clone())))
            .map_err(|e| invalid("request", &e))
    }
}

/// An HTTP response, as an http function's output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values, sorted by name; the values of
    /// one name keep the order the guest gave them.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// `headers` in canonical order: by lowercase name, then as given.
    pub fn canonical(status: u16, headers: &http::HeaderMap, body: Vec<u8>) -> Self {
        let mut headers: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        // Stable: the values of one name stay in order.
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            status,
            headers,
            body,
        }
    }

    /// The canonical encoding (a call's output bytes): [`RESPONSE_TAG`],
    /// then postcard.
    pub fn encode(&self) -> Vec<u8> {
        encode(RESPONSE_TAG, self)
    }

    /// Reads what [`HttpResponse::encode`] wrote; `None` for any other bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        bytes
            .strip_prefix(RESPONSE_TAG)
            .and_then(|b| postcard::from_bytes(b).ok())
    }
}

fn encode(tag: &[u8], value: &impl Serialize) -> Vec<u8> {
    let mut bytes = tag.to_vec();
    // Writing to a Vec fails only on a type serde cannot encode: not these.
    if let Ok(body) = postcard::to_stdvec(value) {
        bytes.extend_from_slice(&body);
    }
    bytes
}

/// The hooks of an http call: every outbound request is denied.
#[derive(Default)]
pub(crate) struct Denied;

/// Chunks a response body holds before a write waits for a reader.
pub(crate) const BODY_CHUNKS: usize = 32;

impl WasiHttpHooks for Denied {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        BODY_CHUNKS
    }

    fn send_request(
        &mut self,
        _request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// A response body drained while the guest writes it.
struct Drained {
    body: Vec<u8>,
    /// Bytes past the output limit (not kept).
    over: usize,
}

/// What the guest set as its response, once it did.
enum Answer {
    Response {
        status: u16,
        headers: http::HeaderMap,
        body: Body,
    },
    Error(ErrorCode),
}

/// A response body being written.
enum Body {
    /// In its channel, read once the call is done.
    Kept(HyperOutgoingBody, usize),
    /// Read by a task while the guest writes (the call ran past a tick).
    Draining(AbortOnDropJoinHandle<Result<Drained, String>>),
    /// Taken out for a moment.
    Moving,
}

/// The response of one call, filled by the guest's `response-outparam.set`.
#[derive(Clone, Default)]
pub(crate) struct Slot(Arc<Mutex<Option<Answer>>>);

/// The responses of the http calls running now, with the epoch tick each
/// began at.
#[derive(Default)]
pub(crate) struct Bodies {
    running: Mutex<Vec<(u64, Slot)>>,
    /// Ticks so far (counted by [`Bodies::rescue`]).
    ticks: AtomicU64,
}

impl Bodies {
    /// A slot for a call's response, kept here until the guard drops.
    pub(crate) fn slot(&self) -> Running<'_> {
        let slot = Slot::default();
        let began = self.ticks.load(Ordering::Relaxed);
        self.lock().push((began, slot.clone()));
        Running { bodies: self, slot }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Slot)>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One epoch tick: the body of every call that began two ticks ago or
    /// more, and is not read yet, goes to a drain task (its guest may be
    /// waiting for room in the channel).
    pub(crate) fn rescue(&self) {
        let now = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        let running = self.lock();
        for (began, slot) in running.iter() {
            if now.saturating_sub(*began) >= 2 {
                slot.drain_now();
            }
        }
    }
}

/// A call's [`Slot`], forgotten by its [`Bodies`] when dropped.
pub(crate) struct Running<'a> {
    bodies: &'a Bodies,
    pub(crate) slot: Slot,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.bodies
            .lock()
            .retain(|(_, slot)| !Arc::ptr_eq(&slot.0, &self.slot.0));
    }
}

/// How an http call ended, once the store is gone.
pub(crate) enum Handled {
    Response(HttpResponse),
    /// The body passed the output limit.
    TooLarge,
    /// The guest answered with an error, or not at all, or its body failed.
    Failed(String),
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Answer>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a body still kept in its channel to a drain task.
    fn drain_now(&self) {
        let mut answer = self.lock();
        if let Some(Answer::Response { body, .. }) = answer.as_mut() {
            *body = match std::mem::replace(body, Body::Moving) {
                Body::Kept(kept, limit) => {
                    Body::Draining(wasmtime_wasi::runtime::spawn(drain(kept, limit)))
                }
                other => other,
            };
        }
    }

    /// Reads the body (call it after the store is dropped: the guest's
    /// half of the body closes with it, so a kept body is read at once).
    pub(crate) fn take(&self) -> Handled {
        let answer = self.lock().take();
        match answer {
            None => Handled::Failed("the handler returned without setting a response".into()),
            Some(Answer::Error(code)) => {
                Handled::Failed(format!("the handler answered with an error: {code:?}"))
            }
            Some(Answer::Response {
                status,
                headers,
                body,
            }) => match match body {
                Body::Kept(kept, limit) => wasmtime_wasi::runtime::in_tokio(drain(kept, limit)),
                Body::Draining(task) => wasmtime_wasi::runtime::in_tokio(task),
                Body::Moving => Err("the response body was lost".into()),
            } {
                Err(e) => Handled::Failed(format!("the response body failed: {e}")),
                Ok(d) if d.over > 0 => Handled::TooLarge,
                Ok(d) => Handled::Response(HttpResponse::canonical(status, &headers, d.body)),
            },
        }
    }
}

/// Instantiates the proxy in `store` and runs its handler on `request`;
/// the response goes to `slot`, its body kept up to `limit` bytes.
pub(crate) fn handle(
    store: &mut Store<ComponentState>,
    pre: &ProxyPre<ComponentState>,
    request: http::Request<Full<Bytes>>,
    slot: &Slot,
    limit: usize,
) -> wasmtime::Result<()> {
    let proxy = pre.instantiate(&mut *store)?;
    let request = store.data_mut().http().new_incoming_request(
        wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http,
        request,
    )?;
    let answer = slot.clone();
    let out = store
        .data_mut()
        .http()
        .new_response_outparam_from_callback(move |result| {
            let set = match result {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    Answer::Response {
                        status: parts.status.as_u16(),
                        headers: parts.headers,
                        body: Body::Kept(body, limit),
                    }
                }
                Err(code) => Answer::Error(code),
            };
            *answer.lock() = Some(set);
        })?;
    proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, request, out)
}

async fn drain(mut body: HyperOutgoingBody, limit: usize) -> Result<Drained, String> {
    let mut drained = Drained {
        body: Vec::new(),
        over: 0,
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("{e:?}"))?;
        if let Ok(data) = frame.into_data() {
            if drained.over == 0 && drained.body.len() + data.len() <= limit {
                drained.body.extend_from_slice(&data);
            } else {
                drained.over += data.len();
            }
        }
    }
    Ok(drained)
}

/// The request as wasmtime-wasi-http takes it, or why the input is not
/// one; an input without [`REQUEST_TAG`] is the body of a `POST /`.
pub(crate) fn request(input: &[u8]) -> Result<http::Request<Full<Bytes>>, Error> {
    if input.starts_with(REQUEST_TAG) {
        HttpRequest::decode(input)?.to_hyper()
    } else {
        HttpRequest::post(input.to_vec()).to_hyper()
    }
}

/// A command's or a module's input, unless it is an HTTP request.
pub(crate) fn refuse_request(input: &[u8]) -> Result<(), Error> {
    if input.starts_with(REQUEST_TAG) {
        return Err(Error::InvalidRequest(
            "this function is not a wasi:http/proxy component: it takes a raw input, not an HTTP request".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_sorted_by_name_and_keep_the_order_of_values() {
        let mut map = http::HeaderMap::new();
        map.append("x-b", http::HeaderValue::from_static("2"));
        map.append("content-type", http::HeaderValue::from_static("text/plain"));
        map.append("x-b", http::HeaderValue::from_static("1"));
        let r = HttpResponse::canonical(200, &map, b"hi".to_vec());
        let names: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        assert_eq!(
            names,
            [
                ("content-type", &b"text/plain"[..]),
                ("x-b", b"2"),
                ("x-b", b"1")
            ]
        );
        assert_eq!(HttpResponse::decode(&r.encode()), Some(r));
        assert_eq!(HttpResponse::decode(b"raw"), None);
    }

    #[test]
    fn a_request_round_trips_and_a_bad_one_is_refused() {
        let r = HttpRequest {
            method: "GET".into(),
            path_and_query: "/a?b=c".into(),
            headers: vec![("accept".into(), b"*/*".to_vec())],
            body: vec![],
        };
        assert_eq!(HttpRequest::decode(&r.encode()).ok(), Some(r.clone()));
        assert!(request(&r.encode()).is_ok());
        let bad = HttpRequest {
            method: "G ET".into(),
            ..r.clone()
        };
        let err = request(&bad.encode()).err();
        assert!(
            matches!(&err, Some(Error::InvalidRequest(m)) if m.contains("method")),
            "{err:?}"
        );
        let truncated = [REQUEST_TAG, b"\xff"].concat();
        assert!(matches!(request(&truncated), Err(Error::InvalidRequest(_))));
        assert!(request(b"raw body").is_ok());
        assert!(refuse_request(b"raw").is_ok());
        assert!(refuse_request(&r.encode()).is_err());
    }
}
