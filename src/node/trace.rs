//! A call's trace across nodes: the context that goes with an
//! [`Invoke`](orb_net::Invoke) to the node that runs it, and the one that
//! comes in with `POST /fn/{target}` (a `traceparent` header).
//!
//! The spans of a call are ordinary `tracing` spans (`invoke`, `resolve`,
//! `schedule`, `vote`, `send`, `receipt_check`, `settle` where it entered;
//! `execute` where it ran). Whether they leave the process is the binary's
//! business (`orb --otlp-endpoint`, which layers `tracing-opentelemetry`
//! onto the subscriber); this module only links them: [`outgoing`] reads the
//! OpenTelemetry context of the current span, [`adopt`] makes a span the
//! child of a context that came from elsewhere. Without that layer (or with
//! the span filtered out) [`outgoing`] is `None`, so a call carries one byte
//! more and nothing else happens.

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use orb_net::TraceContext;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The current span's context, to send with a call: `None` unless the span
/// is exported.
pub(crate) fn outgoing() -> Option<TraceContext> {
    let span = Span::current();
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let sent = context.span().span_context().clone();
    sent.is_valid().then(|| TraceContext::W3c {
        trace_id: sent.trace_id().to_bytes(),
        parent_id: sent.span_id().to_bytes(),
        flags: sent.trace_flags().to_u8(),
    })
}

/// Makes `span` (not entered yet) the child of the span that sent the call,
/// when the call came with a context.
pub(crate) fn adopt(span: &Span, from: Option<&TraceContext>) {
    let Some(TraceContext::W3c {
        trace_id,
        parent_id,
        flags,
    }) = from
    else {
        return;
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(*trace_id),
        SpanId::from_bytes(*parent_id),
        TraceFlags::new(*flags),
        true,
        TraceState::NONE,
    );
    if remote.is_valid() {
        // Fails only without the OpenTelemetry layer: then nothing is
        // exported and there is nothing to link.
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
}

/// Makes `span` the child of the W3C `traceparent` in `headers`, when there
/// is a valid one (a caller that traces its own requests).
pub(crate) fn adopt_http(span: &Span, headers: &axum::http::HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_a_call_carries_no_context() {
        let span = tracing::info_span!("send");
        let _entered = span.enter();
        assert_eq!(outgoing(), None);
    }

    #[test]
    fn a_span_becomes_the_child_of_the_context_it_came_with() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let came = TraceContext::W3c {
                trace_id: [0xab; 16],
                parent_id: [0xcd; 8],
                flags: 1,
            };
            let execute = tracing::info_span!("execute");
            adopt(&execute, Some(&came));
            let TraceContext::W3c {
                trace_id,
                parent_id,
                ..
            } = execute.in_scope(outgoing).expect("a context");
            assert_eq!(trace_id, [0xab; 16], "the same trace");
            assert_ne!(parent_id, [0xcd; 8], "its own span, under the sender's");

            let mut headers = axum::http::HeaderMap::new();
            headers.insert(
                "traceparent",
                axum::http::HeaderValue::from_static(
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            );
            let http = tracing::info_span!("http");
            adopt_http(&http, &headers);
            let Some(TraceContext::W3c { trace_id, .. }) = http.in_scope(outgoing) else {
                panic!("no context");
            };
            assert_eq!(
                TraceId::from_bytes(trace_id),
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex")
            );
        });
    }
}
