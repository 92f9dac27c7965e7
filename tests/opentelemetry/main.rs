//! The `opentelemetry` feature: one trace across two hops as a
//! tracing-opentelemetry layer exports it (an SDK tracer provider with an
//! in-memory exporter): test -> A (axum + PropagationLayer, calls B through
//! a ServiceClient) -> B (axum + PropagationLayer, reports the headers it
//! got).
//!
//! Each test runs on tokio's current-thread runtime with its own
//! subscriber as the thread's default: the servers are tasks on that
//! thread, so every span of the test reaches its exporter and no other
//! test's does.

#[path = "../support/mod.rs"]
mod support;

use axum::Json;
use axum::http::HeaderMap;
use axum::routing::get;
use meshguard::client::ServiceClient;
use meshguard::propagation::PropagationLayer;
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;

use support::http::{serve, url};

/// The exporter of the thread's subscriber, for the test's life.
struct Exported {
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
    _guard: DefaultGuard,
}

fn export_in_memory() -> Exported {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("meshguard-test")));
    Exported {
        exporter,
        _provider: provider,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}

impl Exported {
    /// The finished spans, once there are `n` (the servers end their spans
    /// when the response body is done, after the caller has it).
    async fn spans(&self, n: usize) -> Vec<SpanData> {
        for _ in 0..10_000 {
            let spans = self.exporter.get_finished_spans().unwrap();
            if spans.len() >= n {
                return spans;
            }
            tokio::task::yield_now().await;
        }
        panic!(
            "expected {n} spans, got {:#?}",
            self.exporter.get_finished_spans().unwrap()
        );
    }
}

/// The trace headers B got.
#[derive(Debug, Serialize, Deserialize)]
struct Seen {
    traceparent: String,
    tracestate: Vec<String>,
}

async fn b() -> String {
    let app = axum::Router::new()
        .route(
            "/b",
            get(|headers: HeaderMap| async move {
                Json(Seen {
                    traceparent: headers["traceparent"].to_str().unwrap().to_string(),
                    tracestate: headers
                        .get_all("tracestate")
                        .iter()
                        .map(|v| v.to_str().unwrap().to_string())
                        .collect(),
                })
            }),
        )
        .layer(PropagationLayer::new());
    url(serve(app).await)
}

async fn a(b: String) -> String {
    let client = ServiceClient::builder("b").urls([b]).build().unwrap();
    let app = axum::Router::new()
        .route(
            "/a",
            get(
                |axum::extract::State(client): axum::extract::State<ServiceClient>| async move {
                    Json(client.get("/b").send::<Seen>().await.unwrap())
                },
            ),
        )
        .with_state(client)
        .layer(PropagationLayer::new());
    url(serve(app).await)
}

/// Calls A with `headers`; what B saw.
async fn call_a(headers: &[(&str, &str)]) -> Seen {
    let a = a(b().await).await;
    let mut req = reqwest::Client::new().get(format!("{a}/a"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = req.send().await.unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// A span attribute's value as text.
fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The spans of the two hops: A's request span, A's call span, B's request
/// span.
fn hops(spans: &[SpanData]) -> (&SpanData, &SpanData, &SpanData) {
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let by = |name: &str, uri: Option<&str>| {
        let found: Vec<_> = spans
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| uri.is_none_or(|u| attribute(s, "uri").as_deref() == Some(u)))
            .collect();
        assert_eq!(found.len(), 1, "{name} {uri:?}: {spans:#?}");
        found[0]
    };
    (
        by("request", Some("/a")),
        by("call", None),
        by("request", Some("/b")),
    )
}

fn traceparent(span: &SpanData) -> String {
    let sc = &span.span_context;
    format!("00-{}-{}-01", sc.trace_id(), sc.span_id())
}

#[tokio::test]
async fn a_request_without_a_traceparent_makes_one_trace_across_both_hops() {
    let exported = export_in_memory();
    let seen = call_a(&[]).await;
    let spans = exported.spans(3).await;
    let (a_request, a_call, b_request) = hops(&spans);

    let trace = a_request.span_context.trace_id();
    assert_ne!(trace, TraceId::INVALID);
    assert_eq!(a_call.span_context.trace_id(), trace);
    assert_eq!(b_request.span_context.trace_id(), trace);

    // A's request span starts the trace; the call is its child; B's
    // request span is the call's child, across the wire.
    assert_eq!(a_request.parent_span_id, SpanId::INVALID);
    assert_eq!(a_call.parent_span_id, a_request.span_context.span_id());
    assert!(!a_call.parent_span_is_remote);
    assert_eq!(b_request.parent_span_id, a_call.span_context.span_id());
    assert!(b_request.parent_span_is_remote);
    assert_eq!(seen.traceparent, traceparent(a_call));
    assert_eq!(seen.tracestate, Vec::<String>::new());

    assert_eq!(a_request.span_kind, SpanKind::Server);
    assert_eq!(a_call.span_kind, SpanKind::Client);
    assert_eq!(b_request.span_kind, SpanKind::Server);
}

#[tokio::test]
async fn the_request_spans_log_the_ids_they_are_exported_with() {
    let exported = export_in_memory();
    call_a(&[]).await;
    let spans = exported.spans(3).await;
    let (a_request, _, b_request) = hops(&spans);
    for span in [a_request, b_request] {
        let sc = &span.span_context;
        assert_eq!(attribute(span, "trace_id"), Some(sc.trace_id().to_string()));
        assert_eq!(attribute(span, "span_id"), Some(sc.span_id().to_string()));
    }
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const STATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

#[tokio::test]
async fn an_incoming_traceparent_is_the_parent_and_its_tracestate_reaches_b() {
    let exported = export_in_memory();
    let incoming = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let seen = call_a(&[("traceparent", &incoming), ("tracestate", STATE)]).await;
    let spans = exported.spans(3).await;
    let (a_request, a_call, b_request) = hops(&spans);

    let trace = TraceId::from_hex(TRACE).unwrap();
    for span in [a_request, a_call, b_request] {
        assert_eq!(span.span_context.trace_id(), trace, "{span:#?}");
        assert_eq!(span.span_context.trace_state().header(), STATE);
    }
    assert_eq!(
        a_request.parent_span_id,
        SpanId::from_hex(CALLER_SPAN).unwrap()
    );
    assert!(a_request.parent_span_is_remote);
    assert_eq!(a_call.parent_span_id, a_request.span_context.span_id());
    assert_eq!(b_request.parent_span_id, a_call.span_context.span_id());
    assert_eq!(seen.traceparent, traceparent(a_call));
    assert_eq!(seen.tracestate, [STATE]);
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn the_reqwest_middleware_sends_the_current_spans_context() {
    use tracing::Instrument;

    let exported = export_in_memory();
    let b = b().await;
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(meshguard::reqwest::Resilience::builder().build().unwrap())
        .build();
    let response = http
        .get(format!("{b}/b"))
        .send()
        .instrument(tracing::info_span!("outer"))
        .await
        .unwrap();
    let seen: Seen = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let spans = exported.spans(2).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let outer = spans.iter().find(|s| s.name == "outer").unwrap();
    let b_request = spans.iter().find(|s| s.name == "request").unwrap();
    assert_eq!(seen.traceparent, traceparent(outer));
    assert_eq!(
        b_request.span_context.trace_id(),
        outer.span_context.trace_id()
    );
    assert_eq!(b_request.parent_span_id, outer.span_context.span_id());
}
