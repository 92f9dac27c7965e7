//! `ServiceClientBuilder::reqwest`: a `ServiceClient`'s calls through a
//! `reqwest::Client` of the caller's own, against real axum servers on
//! 127.0.0.1:0: the same headers, limits, timeouts and outcomes as through
//! the built-in pool.
//!
//! As in `service_client.rs`: tests whose upstream answers run on real
//! time with no timer racing the answer; tests of timeouts use paused time
//! with an upstream that never answers (or never finishes its body).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::get;
use meshguard::backoff::Backoff;
use meshguard::classify::Outcome;
use meshguard::client::{ClientError, ServiceClient, ServiceClientBuilder};
use meshguard::retry::RetryPolicy;
use serde::Deserialize;

use crate::support::http::{closed_port, serve, stalling, truncating, url};

#[derive(Debug, PartialEq, Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// `/users/7`, `/headers` (the request's headers as sorted pairs), `/big`
/// (1 KiB) and `/hang` (never answers).
async fn upstream() -> String {
    let app = axum::Router::new()
        .route(
            "/users/7",
            get(|| async { Json(serde_json::json!({ "id": 7, "name": "Ada" })) }),
        )
        .route(
            "/headers",
            get(|h: HeaderMap| async move {
                let mut pairs: Vec<(String, String)> = h
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                    .collect();
                pairs.sort();
                Json(pairs)
            }),
        )
        .route("/big", get(|| async { "y".repeat(1024) }))
        .route("/hang", get(std::future::pending::<()>));
    url(serve(app).await)
}

/// A client of `urls` through `client`.
fn through<I: IntoIterator<Item = String>>(
    client: reqwest::Client,
    urls: I,
) -> ServiceClientBuilder {
    ServiceClient::builder("users").urls(urls).reqwest(client)
}

fn once() -> RetryPolicy {
    RetryPolicy::builder().max_attempts(1).build().unwrap()
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A reqwest client sending `user-agent: mine/1.0` and `x-team: reqwest`
/// by default.
fn with_defaults() -> reqwest::Client {
    let mut defaults = reqwest::header::HeaderMap::new();
    defaults.insert("user-agent", HeaderValue::from_static("mine/1.0"));
    defaults.insert("x-team", HeaderValue::from_static("reqwest"));
    reqwest::Client::builder()
        .default_headers(defaults)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_typed_call_through_a_reqwest_client_decodes_the_answer() {
    let users = through(reqwest::Client::new(), [upstream().await])
        .build()
        .unwrap();
    let ada: User = users.get("/users/7").send().await.unwrap();
    assert_eq!(
        ada,
        User {
            id: 7,
            name: "Ada".into()
        }
    );
}

#[tokio::test]
async fn a_call_through_reqwest_carries_the_propagated_headers() {
    use meshguard::propagation::{CallContext, TraceParent};
    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let users = through(reqwest::Client::new(), [upstream().await])
        .deadline(Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let context = CallContext::new()
        .with_request_id(HeaderValue::from_static("req-42"))
        .with_trace(TraceParent::parse(TRACE.as_bytes()).unwrap());
    let seen: Vec<(String, String)> = context.scope(users.get("/headers").send()).await.unwrap();
    assert_eq!(header(&seen, "x-request-id"), ["req-42"]);
    assert_eq!(header(&seen, "traceparent"), [TRACE]);
    let left: Vec<u64> = header(&seen, "x-deadline-ms")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        matches!(left[..], [ms] if ms > 0 && ms <= 10_000),
        "{left:?}"
    );
    assert_eq!(header(&seen, "accept"), ["application/json"]);
}

#[tokio::test]
async fn the_reqwest_clients_default_headers_are_sent_unless_the_call_sets_its_own() {
    let users = through(with_defaults(), [upstream().await])
        .build()
        .unwrap();
    let plain: Vec<(String, String)> = users.get("/headers").send().await.unwrap();
    assert_eq!(header(&plain, "user-agent"), ["mine/1.0"]);
    let own: Vec<(String, String)> = users
        .get("/headers")
        .header("user-agent", "call/2")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&own, "user-agent"), ["call/2"]);
}

#[tokio::test]
async fn the_service_clients_default_headers_win_over_the_reqwest_clients() {
    let users = through(with_defaults(), [upstream().await])
        .header("x-team", "payments")
        .build()
        .unwrap();
    let seen: Vec<(String, String)> = users.get("/headers").send().await.unwrap();
    assert_eq!(header(&seen, "x-team"), ["payments"]);
}

#[tokio::test]
async fn one_dead_instance_of_three_costs_no_idempotent_call_through_reqwest() {
    let (a, b) = (upstream().await, upstream().await);
    let dead = url(closed_port().await);
    let users = through(reqwest::Client::new(), [a, dead, b])
        .build()
        .unwrap();
    for _ in 0..200 {
        let u: User = users.get("/users/7").send().await.unwrap();
        assert_eq!(u.id, 7);
    }
}

#[tokio::test]
async fn a_body_over_the_limit_through_reqwest_is_body_too_large() {
    let users = through(reqwest::Client::new(), [upstream().await])
        .max_body_size(16)
        .build()
        .unwrap();
    let err = users.get("/big").send_raw().await.unwrap_err();
    assert!(
        matches!(err, ClientError::BodyTooLarge { limit: 16 }),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_through_reqwest_ends_with_the_attempt_timeout() {
    let users = through(reqwest::Client::new(), [stalling().await])
        .timeout(Some(Duration::from_secs(1)))
        .deadline(None)
        .retry(once())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let sent = users.get("/stall").send::<User>();
    let err = tokio::time::timeout(Duration::from_secs(60), sent)
        .await
        .expect("the call outlived every timeout")
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn the_reqwest_clients_own_timeout_is_a_timeout() {
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let users = through(impatient, [upstream().await])
        .timeout(None)
        .deadline(None)
        .retry(once())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = users.get("/hang").send::<()>().await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    assert_eq!(err.outcome(), Outcome::Timeout);
    assert_eq!(started.elapsed(), Duration::from_millis(200));
}

#[tokio::test]
async fn a_refused_connection_through_reqwest_is_a_connect_outcome() {
    let users = through(reqwest::Client::new(), [url(closed_port().await)])
        .retry(once())
        .build()
        .unwrap();
    let err = users.get("/users/7").send::<User>().await.unwrap_err();
    assert_eq!(err.outcome(), Outcome::Connect);
    assert!(err.is_retryable());
    match err {
        ClientError::Transport(e) => {
            let reqwest = e.downcast_ref::<reqwest::Error>();
            assert!(reqwest.is_some_and(|r| r.is_connect()), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_body_cut_off_midway_through_reqwest_is_a_transport_error_retried() {
    let (base, requests) = truncating().await;
    let users = through(reqwest::Client::new(), [base])
        .retry(
            RetryPolicy::builder()
                .max_attempts(3)
                .backoff(Backoff::constant(Duration::from_millis(1)))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = users.get("/users/7").send_raw().await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    assert_eq!(err.outcome(), Outcome::Transport);
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_status_through_reqwest_is_a_status_error() {
    let app = axum::Router::new().route(
        "/",
        get(|| async { (StatusCode::BAD_REQUEST, "no such thing") }),
    );
    let users = through(reqwest::Client::new(), [url(serve(app).await)])
        .build()
        .unwrap();
    let err = users.get("/").send::<()>().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Status { status: StatusCode::BAD_REQUEST, body, .. } if body == "no such thing"),
        "{err:?}"
    );
}

#[tokio::test]
async fn pool_settings_with_a_reqwest_client_are_rejected_naming_the_field() {
    let idle = through(reqwest::Client::new(), ["http://127.0.0.1:1".to_string()])
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap_err();
    assert_eq!(idle.field(), "pool_idle_timeout");
    let per_host = through(reqwest::Client::new(), ["http://127.0.0.1:1".to_string()])
        .pool_max_idle_per_host(4)
        .build()
        .unwrap_err();
    assert_eq!(per_host.field(), "pool_max_idle_per_host");
}
