//! `--otlp-endpoint URL`: the process's spans, exported over OTLP/HTTP
//! (protobuf bodies, `POST URL/v1/traces`) to a collector, Jaeger or
//! anything else that speaks OTLP. `main` layers the tracer this builds
//! onto its `tracing` subscriber ([`tracing_opentelemetry`]); the node
//! library links the spans of one call across nodes (see its `trace`
//! module), so each call is one trace.
//!
//! Lifecycle: [`Export::start`] builds the tracer provider. Its batch
//! processor runs on a thread of its own (the SDK's, no async runtime),
//! which sends each batch with ureq, blocking, when 512 spans are waiting
//! or every 5 s. [`Export::shutdown`], called by `main` once the command
//! returned (for `orb node`: after the node shut down on Ctrl-C or
//! SIGTERM), exports what is left and joins that thread, so the spans of a
//! short run are not lost; a collector that does not answer delays the exit
//! by [`SHUTDOWN`] at most, and those spans are lost.
//!
//! Only `http://`: ureq is built here without TLS (run a collector or
//! agent close to the node, as OpenTelemetry suggests anyway).

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// How long one export may take (connect, send, answer).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the last export may delay the process's exit.
pub(crate) const SHUTDOWN: Duration = Duration::from_secs(5);

/// A collector's answer, read at most this far (it is a small protobuf).
const MAX_ANSWER: u64 = 1 << 20;

/// Where spans go: the traces URL of an OTLP/HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint(String);

/// Parses `--otlp-endpoint`: the base URL of an OTLP/HTTP receiver
/// (`http://127.0.0.1:4318`, to which `/v1/traces` is added as the OTLP
/// specification says), or its traces URL itself.
pub(crate) fn endpoint(url: &str) -> Result<Endpoint, String> {
    const EXAMPLE: &str = "e.g. http://127.0.0.1:4318";
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("not a URL ({e}); {EXAMPLE}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "https is not supported: send to a collector over http, {EXAMPLE}"
            ));
        }
        _ => return Err(format!("not an http:// URL; {EXAMPLE}")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("no host in the URL; {EXAMPLE}"));
    }
    if uri.query().is_some() {
        return Err(format!("a query in the URL; {EXAMPLE}"));
    }
    let base = url.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        Ok(Endpoint(base.to_owned()))
    } else {
        Ok(Endpoint(format!("{base}/v1/traces")))
    }
}

/// The running export: a tracer provider and its batch thread.
pub(crate) struct Export {
    provider: SdkTracerProvider,
}

impl Export {
    /// Starts exporting to `endpoint`, as the service `orb` with `instance`
    /// (a node's peer id) as its `service.instance.id`.
    pub(crate) fn start(endpoint: &Endpoint, instance: Option<String>) -> anyhow::Result<Self> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(EXPORT_TIMEOUT))
            .build()
            .into();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Ureq(agent))
            .with_endpoint(endpoint.0.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .with_context(|| format!("cannot export traces to {}", endpoint.0))?;
        let mut resource = Resource::builder().with_service_name("orb");
        if let Some(peer) = instance {
            resource = resource.with_attribute(KeyValue::new("service.instance.id", peer));
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Self { provider })
    }

    /// The tracer for `tracing-opentelemetry`'s layer.
    pub(crate) fn tracer(&self) -> SdkTracer {
        self.provider.tracer("orb")
    }

    /// Exports the spans still waiting and stops the batch thread.
    pub(crate) fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN) {
            tracing::warn!("traces: the last spans may not have been exported: {e}");
        }
    }
}

/// The exporter's HTTP client: ureq, already here for the client commands.
/// It blocks, which is what the SDK's batch thread expects of an export.
#[derive(Debug)]
struct Ureq(ureq::Agent);

#[async_trait::async_trait]
impl HttpClient for Ureq {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let response = self.0.run(request.map(Vec::from))?;
        let (parts, mut body) = response.into_parts();
        let body = body.with_config().limit(MAX_ANSWER).read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_a_base_url_or_the_traces_url() {
        let traces = |url: &str| endpoint(url).map(|e| e.0);
        let want = Ok("http://127.0.0.1:4318/v1/traces".to_owned());
        assert_eq!(traces("http://127.0.0.1:4318"), want);
        assert_eq!(traces("http://127.0.0.1:4318/"), want);
        assert_eq!(traces("http://127.0.0.1:4318/v1/traces"), want);
        assert_eq!(
            traces("http://collector:4318/otel"),
            Ok("http://collector:4318/otel/v1/traces".to_owned())
        );
        for bad in [
            "",
            "127.0.0.1:4318",
            "localhost",
            "ftp://x",
            "http://",
            "http://a b",
            "http://x/?q=1",
        ] {
            assert!(traces(bad).is_err(), "{bad:?} accepted");
        }
        assert!(traces("https://x").is_err_and(|e| e.contains("https")));
    }
}
