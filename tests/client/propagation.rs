//! Request ID, trace context and deadline propagated across two hops:
//! test -> front (axum + PropagationLayer, calls back through a
//! ServiceClient) -> back (axum + PropagationLayer, reports what it got).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Extension, Json};
use meshguard::client::{ClientError, ServiceClient};
use meshguard::propagation::{CallContext, PropagationLayer, TraceParent};
use serde::{Deserialize, Serialize};

use crate::support::http::{serve, url};

/// What the back service saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seen {
    request_id: String,
    traceparent: String,
    /// Every `tracestate` line it got.
    tracestate: Vec<String>,
    deadline_ms: Option<u64>,
    /// The trace ID of its own context, as the layer made it.
    context_trace: String,
}

async fn back(hits: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new()
        .route(
            "/seen",
            get(
                move |headers: HeaderMap, Extension(ctx): Extension<CallContext>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let text = |name: &str| {
                            headers
                                .get(name)
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default()
                        };
                        Json(Seen {
                            request_id: text("x-request-id"),
                            traceparent: text("traceparent"),
                            tracestate: headers
                                .get_all("tracestate")
                                .iter()
                                .map(|v| v.to_str().unwrap().to_string())
                                .collect(),
                            deadline_ms: headers
                                .get("x-deadline-ms")
                                .map(|v| v.to_str().unwrap().parse().unwrap()),
                            context_trace: format!("{:032x}", ctx.trace().unwrap().trace_id()),
                        })
                    }
                },
            ),
        )
        .layer(PropagationLayer::new());
    url(serve(app).await)
}

/// The front service: calls back and returns what back saw, with its own
/// span's trace context in `x-front-trace`.
async fn front(back_url: String) -> String {
    let client = ServiceClient::builder("back")
        .urls([back_url])
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route(
            "/front",
            get(|State(client): State<ServiceClient>| async move {
                let me = CallContext::current().unwrap().trace().unwrap().to_string();
                match client.get("/seen").send::<Seen>().await {
                    Ok(seen) => Ok(([("x-front-trace", me)], Json(seen))),
                    Err(ClientError::DeadlineExceeded) => Err(StatusCode::GATEWAY_TIMEOUT),
                    Err(e) => panic!("{e}"),
                }
            }),
        )
        .with_state(client)
        .layer(PropagationLayer::new());
    url(serve(app).await)
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn call_front(headers: &[(&str, &str)]) -> (reqwest::Response, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let front = front(back(hits.clone()).await).await;
    let mut req = reqwest::Client::new().get(format!("{front}/front"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    (req.send().await.unwrap(), hits)
}

#[tokio::test]
async fn the_request_id_reaches_the_second_hop_and_comes_back() {
    let (r, _) = call_front(&[("x-request-id", "req-42")]).await;
    assert_eq!(r.headers()["x-request-id"], "req-42");
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(seen.request_id, "req-42");
}

#[tokio::test]
async fn a_request_without_an_id_gets_one_that_travels_on() {
    let (r, _) = call_front(&[]).await;
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(seen.request_id, made);
}

#[tokio::test]
async fn the_trace_continues_with_the_front_span_as_parent() {
    let incoming = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let (r, _) = call_front(&[("traceparent", &incoming)]).await;
    let front_span = TraceParent::parse(r.headers()["x-front-trace"].as_bytes()).unwrap();
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let sent = TraceParent::parse(seen.traceparent.as_bytes()).unwrap();
    assert_eq!(format!("{:032x}", sent.trace_id()), TRACE);
    // The second hop's parent is the front's own span, not the caller's.
    assert_eq!(sent, front_span);
    assert_ne!(format!("{:016x}", sent.span_id()), CALLER_SPAN);
    assert!(sent.sampled());
    assert_eq!(seen.context_trace, TRACE);
}

const STATE: &str = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7";

#[tokio::test]
async fn the_tracestate_travels_on_unchanged_beside_the_trace() {
    let incoming = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let (r, _) = call_front(&[("traceparent", &incoming), ("tracestate", STATE)]).await;
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(seen.tracestate, [STATE]);
}

#[tokio::test]
async fn a_tracestate_of_several_lines_travels_on_as_one() {
    let incoming = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let (r, _) = call_front(&[
        ("traceparent", &incoming),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("tracestate", "rojo=00f067aa0ba902b7"),
    ])
    .await;
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(seen.tracestate, ["congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"]);
}

#[tokio::test]
async fn an_invalid_tracestate_is_dropped() {
    let incoming = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let (r, _) = call_front(&[("traceparent", &incoming), ("tracestate", "Rojo=1")]).await;
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(seen.tracestate, Vec::<String>::new());
}

#[tokio::test]
async fn a_tracestate_over_thirty_two_members_is_dropped() {
    let incoming = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let state = members.join(",");
    let (r, _) = call_front(&[("traceparent", &incoming), ("tracestate", &state)]).await;
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(seen.tracestate, Vec::<String>::new());
}

#[tokio::test]
async fn a_tracestate_over_512_characters_is_dropped() {
    let incoming = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let state = format!("a={},b={}", "x".repeat(252), "y".repeat(256));
    assert_eq!(state.len(), 513);
    let (r, _) = call_front(&[("traceparent", &incoming), ("tracestate", &state)]).await;
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(seen.tracestate, Vec::<String>::new());
}

#[tokio::test]
async fn a_tracestate_without_a_valid_traceparent_is_dropped() {
    let (r, _) = call_front(&[("tracestate", STATE)]).await;
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(seen.tracestate, Vec::<String>::new());
}

#[tokio::test]
async fn a_malformed_traceparent_starts_a_new_trace() {
    let (r, _) = call_front(&[("traceparent", "00-nothex-00f067aa0ba902b7-01")]).await;
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let sent = TraceParent::parse(seen.traceparent.as_bytes()).unwrap();
    assert_ne!(format!("{:032x}", sent.trace_id()), TRACE);
}

#[tokio::test]
async fn the_deadline_shrinks_across_the_hop() {
    let (r, _) = call_front(&[("x-deadline-ms", "5000")]).await;
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let left = seen.deadline_ms.unwrap();
    // Time spent in the front comes off (whole milliseconds, rounded down).
    assert!((4000..5000).contains(&left), "{left}");
}

#[tokio::test]
async fn without_an_incoming_deadline_the_clients_own_is_sent() {
    let (r, _) = call_front(&[]).await;
    let seen: Seen = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let left = seen.deadline_ms.unwrap();
    // The front's client has the default 10 s deadline.
    assert!((9000..10_000).contains(&left), "{left}");
}

#[tokio::test]
async fn an_expired_incoming_deadline_fails_the_next_call_without_sending_it() {
    let (r, back_hits) = call_front(&[("x-deadline-ms", "0")]).await;
    assert_eq!(r.status(), 504);
    assert_eq!(back_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn every_attempt_of_a_retried_call_carries_the_trace_and_tracestate() {
    use std::sync::Mutex;
    use std::time::Duration;

    use meshguard::backoff::Backoff;
    use meshguard::propagation::TraceState;
    use meshguard::retry::RetryPolicy;

    /// Each attempt's `traceparent` and `tracestate` lines.
    type Attempts = Arc<Mutex<Vec<(String, Vec<String>)>>>;
    let seen = Attempts::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/flaky",
        get(move |headers: HeaderMap| {
            let mut seen = record.lock().unwrap();
            seen.push((
                headers["traceparent"].to_str().unwrap().to_string(),
                headers
                    .get_all("tracestate")
                    .iter()
                    .map(|v| v.to_str().unwrap().to_string())
                    .collect(),
            ));
            let status = match seen.len() {
                1 => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::OK,
            };
            async move { status }
        }),
    );
    let client = ServiceClient::builder("flaky")
        .urls([url(serve(app).await)])
        .retry(
            RetryPolicy::builder()
                .backoff(Backoff::constant(Duration::from_millis(1)))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let trace = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let context = CallContext::new()
        .with_trace(TraceParent::parse(trace.as_bytes()).unwrap())
        .with_trace_state(TraceState::parse(STATE.as_bytes()).unwrap());
    let r = client
        .get("/flaky")
        .context(context)
        .send_raw()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let expected = (trace, vec![STATE.to_string()]);
    assert_eq!(*seen.lock().unwrap(), [expected.clone(), expected]);
}

/// A call with no context sends the deadline, and neither an
/// `x-request-id` nor a `traceparent`: it has no id or span to pass on,
/// and the next hop makes its own.
#[tokio::test]
async fn a_call_with_no_context_sends_its_deadline_and_no_ids() {
    let app = axum::Router::new().route(
        "/headers",
        get(|headers: HeaderMap| async move {
            let mut names: Vec<String> = headers.keys().map(|k| k.to_string()).collect();
            names.sort();
            Json(names)
        }),
    );
    let client = ServiceClient::builder("plain")
        .urls([url(serve(app).await)])
        .build()
        .unwrap();
    let names: Vec<String> = client.get("/headers").send().await.unwrap();
    assert_eq!(names, ["accept", "host", "x-deadline-ms"]);
}

/// A send's future made before the context is current and awaited inside
/// `CallContext::scope` carries the scope's context: the request is built
/// at the first poll, not when `send` is called.
#[tokio::test]
async fn a_send_made_outside_a_scope_and_awaited_in_it_carries_the_scopes_context() {
    let hits = Arc::new(AtomicUsize::new(0));
    let client = ServiceClient::builder("back")
        .urls([back(hits).await])
        .build()
        .unwrap();
    let trace = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let context = CallContext::new()
        .with_request_id(http::HeaderValue::from_static("req-42"))
        .with_trace(TraceParent::parse(trace.as_bytes()).unwrap());
    let send = client.get("/seen").send::<Seen>();
    let seen = context.scope(send).await.unwrap();
    assert_eq!(seen.request_id, "req-42");
    assert_eq!(seen.traceparent, trace);
}

/// An axum service behind `layer` answering with the request id and the
/// deadline its handler got.
async fn reporting(layer: PropagationLayer) -> String {
    let app = axum::Router::new()
        .route(
            "/ctx",
            get(|| async {
                let ctx = CallContext::current().unwrap();
                let id = ctx.request_id().unwrap().to_str().unwrap().to_string();
                let deadline = ctx.deadline().is_some();
                format!("{id} {deadline}")
            }),
        )
        .layer(layer);
    url(serve(app).await)
}

async fn report(base: &str, headers: &[(&str, &str)]) -> (String, bool) {
    let mut req = reqwest::Client::new().get(format!("{base}/ctx"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let text = req.send().await.unwrap().text().await.unwrap();
    let (id, deadline) = text.split_once(' ').unwrap();
    (id.to_string(), deadline == "true")
}

#[tokio::test]
async fn a_request_id_over_128_bytes_or_with_odd_characters_is_replaced() {
    let base = reporting(PropagationLayer::new()).await;
    let long = "a".repeat(129);
    for bad in [long.as_str(), "has space", "tab\there", "caf\u{e9}"] {
        let (id, _) = report(&base, &[("x-request-id", bad)]).await;
        assert_ne!(id, bad);
        assert_eq!(id.len(), 36, "a new UUID for {bad:?}: {id}");
    }
    let longest = "b".repeat(128);
    let (id, _) = report(&base, &[("x-request-id", &longest)]).await;
    assert_eq!(id, longest);
}

#[tokio::test]
async fn an_untrusted_edge_ignores_the_callers_request_id_and_deadline() {
    let edge = reporting(PropagationLayer::untrusted()).await;
    let (id, deadline) = report(
        &edge,
        &[("x-request-id", "planted"), ("x-deadline-ms", "0")],
    )
    .await;
    assert_ne!(id, "planted");
    assert_eq!(id.len(), 36);
    assert!(!deadline);
    let inside = reporting(PropagationLayer::new()).await;
    let (id, deadline) = report(
        &inside,
        &[("x-request-id", "planted"), ("x-deadline-ms", "5000")],
    )
    .await;
    assert_eq!(id, "planted");
    assert!(deadline);
}

#[tokio::test]
async fn a_status_errors_message_names_the_status_not_the_upstreams_body() {
    let app = axum::Router::new().route(
        "/boom",
        get(|| async {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "panic: postgres://admin:hunter2@db.internal/prod",
            )
        }),
    );
    let users = ServiceClient::builder("users")
        .urls([url(serve(app).await)])
        .build()
        .unwrap();
    let err = users.get("/boom").send::<()>().await.unwrap_err();
    assert_eq!(err.to_string(), "HTTP 500 Internal Server Error");
    match err {
        ClientError::Status { body, .. } => {
            assert_eq!(body, "panic: postgres://admin:hunter2@db.internal/prod");
        }
        other => panic!("{other:?}"),
    }
}
