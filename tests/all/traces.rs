//! Trace export (`--otlp-endpoint`): one call is one trace across the nodes
//! it touched. The collector is played by a small OTLP/HTTP receiver in the
//! test (a loopback TCP listener that answers 200 to every
//! `POST /v1/traces` and keeps the bodies), and what arrived is decoded
//! with opentelemetry-proto's types.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use crate::consensus::{deploy_echo, ledger_network};
use crate::replication::wait_providers;

/// What one `POST` brought: its path and body.
type Post = (String, Vec<u8>);

/// An OTLP/HTTP receiver on a loopback port: every request is kept and
/// answered 200 with an empty (valid) protobuf answer. It stops accepting
/// when dropped; a connection's thread ends when its peer closes it.
struct Receiver {
    url: String,
    posts: Arc<Mutex<Vec<Post>>>,
    stop: Arc<AtomicBool>,
    accepting: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let posts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopping) = (posts.clone(), stop.clone());
        let accepting = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Self {
            url,
            posts,
            stop,
            accepting: Some(accepting),
        }
    }

    fn posts(&self) -> Vec<Post> {
        self.posts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.accepting.take() {
            let _ = thread.join();
        }
    }
}

/// Answers the HTTP/1.1 requests on one connection until it closes.
fn serve(stream: TcpStream, posts: &Mutex<Vec<Post>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let mut length = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        // The exporter sends whole bodies with a length (no chunks): a
        // request without one is kept with an empty body, and the test
        // fails on it.
        let mut body = vec![0; length.unwrap_or(0)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        posts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((path, body));
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A string attribute.
fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) => Some(s.as_str()),
            _ => None,
        })
}

/// One span as it arrived, with the node that sent it.
#[derive(Clone, Debug)]
struct Got {
    /// The exporting process's `service.instance.id` (its peer id).
    node: String,
    span: Span,
}

/// Every span in `posts`, each with its node; every post must be an OTLP
/// traces request from the service `orb`.
fn spans(posts: &[Post]) -> Vec<Got> {
    let mut all = Vec::new();
    for (path, body) in posts {
        assert_eq!(path, "/v1/traces", "OTLP/HTTP traces go to /v1/traces");
        let request = ExportTraceServiceRequest::decode(body.as_slice())
            .unwrap_or_else(|e| panic!("not an OTLP traces request ({e}), {} bytes", body.len()));
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            assert_eq!(attribute(&resource.attributes, "service.name"), Some("orb"));
            let node = attribute(&resource.attributes, "service.instance.id")
                .expect("a node names itself")
                .to_owned();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    all.push(Got {
                        node: node.clone(),
                        span,
                    });
                }
            }
        }
    }
    all
}

#[test]
fn one_call_is_one_trace_across_the_nodes_it_touched() {
    let started = std::time::Instant::now();
    let receiver = Receiver::start();
    let root = tempfile::tempdir().unwrap();
    let exported = ["--otlp-endpoint", receiver.url.as_str(), "--no-autoscale"];
    // A ledger, so that the entry node checks a receipt and settles.
    let (nodes, _, _) = ledger_network(
        root.path(),
        2,
        "traced",
        orb_ledger::Params::new(2, 2, 2, 4).expect("params"),
        "200",
        &[&exported, &exported],
    );
    let (entry, executor) = (&nodes[0], &nodes[1]);
    deploy_echo(executor, "1", &[]);
    wait_providers(&[entry], "echo", 1);

    // The caller traces too: its `traceparent` is the root of the trace.
    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let http: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let response = http
        .post(&format!("{}/fn/echo", entry.api))
        .header("traceparent", &format!("00-{trace_id}-{caller_span}-01"))
        .send("traced")
        .expect("a call");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let invocation = header("x-orb-invocation");
    assert_eq!(
        header("x-orb-executor"),
        executor.peer_id,
        "ran on the other node"
    );
    let (entry_id, executor_id) = (entry.peer_id.clone(), executor.peer_id.clone());

    // Stopped as an operator stops them, right after the call: its spans
    // are still in the exporters' batches and must go out on the way down.
    for node in nodes {
        let status = node.terminate();
        assert!(
            status.success(),
            "a node stops cleanly on SIGTERM: {status}"
        );
    }
    let all = spans(&receiver.posts());
    let nodes_heard: std::collections::BTreeSet<&str> =
        all.iter().map(|g| g.node.as_str()).collect();
    assert!(
        nodes_heard.contains(entry_id.as_str()) && nodes_heard.contains(executor_id.as_str()),
        "spans from both nodes: heard from {nodes_heard:?}"
    );

    let trace = hex::decode(trace_id).expect("hex");
    let call: Vec<&Got> = all.iter().filter(|g| g.span.trace_id == trace).collect();
    let names = |node: &str| -> Vec<&str> {
        call.iter()
            .filter(|g| g.node == node)
            .map(|g| g.span.name.as_str())
            .collect()
    };
    let (at_entry, at_executor) = (names(&entry_id), names(&executor_id));
    for hop in [
        "POST /fn/{target}",
        "invoke",
        "resolve",
        "schedule",
        "vote",
        "send",
        "receipt_check",
        "settle",
    ] {
        assert!(
            at_entry.contains(&hop),
            "no {hop} span of the call on the entry node: {at_entry:?}"
        );
    }
    assert_eq!(at_executor, ["execute"], "the executor's spans of the call");

    // One tree: the caller's span above the HTTP hop, every other span under
    // a span of the call, and the executor's under the entry node's send.
    let by_id: HashMap<&[u8], &Got> = call.iter().map(|g| (&g.span.span_id[..], *g)).collect();
    for got in &call {
        let parent = got.span.parent_span_id.as_slice();
        if got.span.name == "POST /fn/{target}" {
            assert_eq!(hex::encode(parent), caller_span, "the HTTP hop's parent");
            continue;
        }
        assert!(
            by_id.contains_key(parent),
            "the parent of {} on {} is not a span of the call",
            got.span.name,
            got.node
        );
    }
    let execute = call
        .iter()
        .find(|g| g.node == executor_id)
        .expect("the execute span");
    let sent_by = by_id[execute.span.parent_span_id.as_slice()];
    assert_eq!(
        (sent_by.node.as_str(), sent_by.span.name.as_str()),
        (entry_id.as_str(), "send"),
        "the executor's span is a child of the entry node's send"
    );
    assert_eq!(
        attribute(&sent_by.span.attributes, "peer"),
        Some(executor_id.as_str())
    );
    assert_eq!(
        attribute(&execute.span.attributes, "invocation"),
        Some(invocation.as_str()),
        "the executor's span names the invocation"
    );
    eprintln!(
        "traces: {} spans in {} posts, {} of the call, {:.1} s",
        all.len(),
        receiver.posts().len(),
        call.len(),
        started.elapsed().as_secs_f64()
    );
}
