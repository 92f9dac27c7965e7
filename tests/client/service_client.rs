//! `ServiceClient` against real axum servers on 127.0.0.1:0: typed calls,
//! every `ClientError` variant, and the config file form.
//!
//! Tests whose upstream answers run on real time with no timer racing the
//! answer; tests of timeouts and deadlines use paused time with an upstream
//! that never answers, so the outcome cannot depend on scheduling.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use meshguard::backoff::Backoff;
use meshguard::circuit_breaker::CircuitBreakerConfig;
use meshguard::client::{ClientError, ServiceClient, ServiceClientConfig};
use meshguard::discovery::Endpoint;
use meshguard::retry::RetryPolicy;
use serde::{Deserialize, Serialize};

use crate::support::http::{closed_port, serve, stalling, truncating, url};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

async fn users() -> String {
    let app = axum::Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move {
                if id == 7 {
                    Ok(Json(User {
                        id,
                        name: "Ada".into(),
                    }))
                } else {
                    Err((StatusCode::NOT_FOUND, r#"{"error":"no such user"}"#))
                }
            }),
        )
        .route(
            "/users",
            post(|Json(u): Json<User>| async move { (StatusCode::CREATED, Json(u)) }),
        )
        .route(
            "/headers",
            axum::routing::any(|h: HeaderMap| async move {
                let mut pairs: Vec<(String, String)> = h
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                    .collect();
                pairs.sort();
                Json(pairs)
            }),
        )
        .route(
            "/bad",
            get(|| async { (StatusCode::BAD_REQUEST, "x".repeat(2000)) }),
        )
        .route(
            "/unavailable",
            get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
        )
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/text", get(|| async { "not json" }))
        .route("/big", get(|| async { "y".repeat(1024) }))
        .route("/empty", post(|| async { StatusCode::NO_CONTENT }))
        .route("/hang", get(std::future::pending::<()>));
    url(serve(app).await)
}

fn client(base: &str) -> ServiceClient {
    ServiceClient::builder("users")
        .urls([base])
        .build()
        .unwrap()
}

/// A client of `base` with this attempt timeout and call deadline.
fn timed(base: String, timeout: Option<Duration>, deadline: Option<Duration>) -> ServiceClient {
    ServiceClient::builder("users")
        .urls([base])
        .timeout(timeout)
        .deadline(deadline)
        .build()
        .unwrap()
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[tokio::test]
async fn send_decodes_the_json_body() {
    let users = client(&users().await);
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
async fn json_sends_the_body_with_its_content_type() {
    let users = client(&users().await);
    let grace = User {
        id: 8,
        name: "Grace".into(),
    };
    let created: User = users.post("/users").json(&grace).send().await.unwrap();
    assert_eq!(created, grace);
}

#[tokio::test]
async fn send_opt_turns_a_404_into_none() {
    let users = client(&users().await);
    let absent: Option<User> = users.get("/users/8").send_opt().await.unwrap();
    assert_eq!(absent, None);
    let present: Option<User> = users.get("/users/7").send_opt().await.unwrap();
    assert_eq!(present.map(|u| u.id), Some(7));
}

#[tokio::test]
async fn send_opt_still_fails_on_other_statuses() {
    let users = client(&users().await);
    let err = users.get("/bad").send_opt::<User>().await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
}

#[tokio::test]
async fn send_decodes_an_empty_204_as_unit() {
    let users = client(&users().await);
    let () = users.post("/empty").send().await.unwrap();
}

#[tokio::test]
async fn send_raw_returns_any_status_with_its_body() {
    let users = client(&users().await);
    let r = users.get("/users/9").send_raw().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(&r.body()[..], br#"{"error":"no such user"}"#);
}

#[tokio::test]
async fn default_headers_are_sent_and_a_call_header_replaces_them() {
    let base = users().await;
    let users = ServiceClient::builder("users")
        .urls([base])
        .header("user-agent", "orders/1.0")
        .header("x-team", "payments")
        .build()
        .unwrap();
    let seen: Vec<(String, String)> = users
        .get("/headers")
        .header("x-team", "billing")
        .query(&[("q", "a b&c")])
        .send()
        .await
        .unwrap();
    assert_eq!(header(&seen, "user-agent"), ["orders/1.0"]);
    assert_eq!(header(&seen, "x-team"), ["billing"]);
    assert_eq!(header(&seen, "accept"), ["application/json"]);
}

#[tokio::test]
async fn query_pairs_are_url_encoded() {
    let app = axum::Router::new().route(
        "/search",
        get(|uri: axum::http::Uri| async move { uri.query().unwrap_or("").to_string() }),
    );
    let svc = client(&url(serve(app).await));
    let r = svc
        .get("/search")
        .query(&[("q", "a b&c"), ("page", "2")])
        .send_raw()
        .await
        .unwrap();
    assert_eq!(&r.body()[..], b"q=a+b%26c&page=2");
}

// ---- ClientError, one variant each --------------------------------------

#[tokio::test(start_paused = true)]
async fn an_open_service_breaker_fails_fast_with_its_retry_after() {
    let base = users().await;
    let users = ServiceClient::builder("users")
        .urls([base])
        .timeout(None)
        .deadline(None)
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .circuit_breaker(Some(
            CircuitBreakerConfig::builder()
                .consecutive_failures(2)
                .open_duration(Backoff::constant(Duration::from_secs(30)))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap();
    for _ in 0..2 {
        let err = users.get("/fail").send::<()>().await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    }
    let err = users.get("/users/7").send::<User>().await.unwrap_err();
    assert!(
        matches!(err, ClientError::CircuitOpen { retry_after: Some(d) } if d == Duration::from_secs(30)),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(err.to_string(), "circuit open (retry after 30s)");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_outlives_its_timeout_is_a_timeout() {
    let base = users().await;
    let users = ServiceClient::builder("users")
        .urls([base])
        .timeout(Some(Duration::from_secs(1)))
        .deadline(None)
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = users.get("/hang").send::<()>().await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert!(err.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn a_call_that_outlives_its_deadline_is_deadline_exceeded() {
    let users = timed(users().await, None, Some(Duration::from_secs(2)));
    let started = tokio::time::Instant::now();
    let err = users.get("/hang").send::<()>().await.unwrap_err();
    assert!(matches!(err, ClientError::DeadlineExceeded), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(!err.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn a_per_call_deadline_shorter_than_the_clients_wins() {
    let users = timed(users().await, None, Some(Duration::from_secs(10)));
    let started = tokio::time::Instant::now();
    let err = users
        .get("/hang")
        .deadline(Duration::from_millis(300))
        .send::<()>()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DeadlineExceeded), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test]
async fn an_empty_endpoint_list_is_no_endpoints() {
    let users = ServiceClient::builder("users")
        .endpoints(Vec::new())
        .build()
        .unwrap();
    let err = users.get("/users/7").send::<User>().await.unwrap_err();
    assert!(matches!(err, ClientError::NoEndpoints), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_discovery_stream_that_answered_nothing_is_no_endpoints() {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let users = ServiceClient::builder("users")
        .discovery(UnboundedStream(rx))
        .build()
        .unwrap();
    let endpoint = Endpoint::from_url("http://127.0.0.1:9").unwrap();
    tx.send(Ok(meshguard::discovery::Change::Insert(
        "a".into(),
        endpoint,
    )))
    .unwrap();
    tx.send(Ok(meshguard::discovery::Change::Remove("a".into())))
        .unwrap();
    let err = users.get("/users/7").send::<User>().await.unwrap_err();
    assert!(matches!(err, ClientError::NoEndpoints), "{err:?}");
}

#[tokio::test]
async fn calls_made_before_discovery_answers_wait_and_all_complete() {
    let base = users().await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // No timers: a call left waiting would wait forever, not retry.
    let users = ServiceClient::builder("users")
        .discovery(UnboundedStream(rx))
        .timeout(None)
        .deadline(None)
        .build()
        .unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let users = users.clone();
        calls.spawn(async move { users.get("/users/7").send::<User>().await });
    }
    // Let every call reach the balancer and wait there.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.len(), 5);
    assert!(calls.try_join_next().is_none());
    let endpoint = Endpoint::from_url(&base).unwrap();
    tx.send(Ok(meshguard::discovery::Change::Insert(
        "a".into(),
        endpoint,
    )))
    .unwrap();
    let all = tokio::time::timeout(Duration::from_secs(5), calls.join_all())
        .await
        .expect("every waiting call was woken");
    for user in all {
        assert_eq!(user.unwrap().id, 7);
    }
}

struct UnboundedStream(
    tokio::sync::mpsc::UnboundedReceiver<
        Result<meshguard::discovery::Change, std::convert::Infallible>,
    >,
);

impl futures_core::Stream for UnboundedStream {
    type Item = Result<meshguard::discovery::Change, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_transport_error() {
    let users = ServiceClient::builder("users")
        .urls([url(closed_port().await)])
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .build()
        .unwrap();
    let err = users.get("/users/7").send::<User>().await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_error_status_keeps_the_start_of_its_body() {
    let users = client(&users().await);
    let err = users.get("/bad").send::<User>().await.unwrap_err();
    match &err {
        ClientError::Status { status, body, .. } => {
            assert_eq!(*status, StatusCode::BAD_REQUEST);
            assert_eq!(body.len(), meshguard::client::STATUS_BODY_LIMIT);
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_503_that_persists_is_a_retryable_status_after_every_attempt() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::SERVICE_UNAVAILABLE }
        }),
    );
    let svc = ServiceClient::builder("flaky")
        .urls([url(serve(app).await)])
        .retry(
            RetryPolicy::builder()
                .max_attempts(3)
                .backoff(Backoff::constant(Duration::from_millis(1)))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = svc.get("/").send::<()>().await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(err.is_retryable());
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_body_that_is_not_the_expected_json_is_a_decode_error() {
    let users = client(&users().await);
    let err = users.get("/text").send::<User>().await.unwrap_err();
    assert!(matches!(err, ClientError::Decode(_)), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_body_over_the_limit_is_body_too_large() {
    let base = users().await;
    let users = ServiceClient::builder("users")
        .urls([base])
        .max_body_size(16)
        .build()
        .unwrap();
    let err = users.get("/big").send_raw().await.unwrap_err();
    assert!(
        matches!(err, ClientError::BodyTooLarge { limit: 16 }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_invalid_header_is_an_invalid_request_and_nothing_is_sent() {
    let users = client(&users().await);
    let err = users
        .get("/users/7")
        .header("bad header", "x")
        .send::<User>()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::InvalidRequest(m) if m.starts_with("invalid header name")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_callers_own_accept_header_is_sent_instead_of_json() {
    let users = client(&users().await);
    let seen: Vec<(String, String)> = users
        .get("/headers")
        .header("accept", "application/vnd.users+json")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&seen, "accept"), ["application/vnd.users+json"]);
}

#[tokio::test]
async fn a_json_body_is_sent_as_application_json_unless_the_caller_says_otherwise() {
    let users = client(&users().await);
    let plain: Vec<(String, String)> = users.post("/headers").json(&7).send().await.unwrap();
    assert_eq!(header(&plain, "content-type"), ["application/json"]);
    let own: Vec<(String, String)> = users
        .post("/headers")
        .header("content-type", "application/merge-patch+json")
        .json(&7)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&own, "content-type"),
        ["application/merge-patch+json"]
    );
}

#[tokio::test]
async fn a_path_that_is_not_a_valid_uri_path_is_an_invalid_request_naming_it() {
    let users = client(&users().await);
    let err = users.get("/users/a b").send::<User>().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::InvalidRequest(m) if m.starts_with("path \"/users/a b\": ")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_path_without_a_leading_slash_is_an_invalid_request() {
    let users = client(&users().await);
    let err = users
        .get("http://elsewhere/users/7")
        .send::<User>()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidRequest(_)), "{err:?}");
}

// ---- resilience through the whole stack ---------------------------------

#[tokio::test]
async fn one_instance_refusing_connections_costs_no_idempotent_call() {
    let (a, b) = (users().await, users().await);
    let down = url(closed_port().await);
    let users = ServiceClient::builder("users")
        .urls([a, down, b])
        .build()
        .unwrap();
    for _ in 0..200 {
        let u: User = users.get("/users/7").send().await.unwrap();
        assert_eq!(u.id, 7);
    }
}

// ---- configuration -------------------------------------------------------

#[tokio::test]
async fn invalid_settings_fail_at_build_naming_the_field() {
    let err = ServiceClient::builder("users")
        .urls(["http://a:1", "ftp://b:2"])
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "urls[1]");
    let err = ServiceClient::builder("users")
        .urls(["http://a:1"])
        .header("bad header", "x")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "headers.bad header");
    let err = ServiceClient::builder("users").build().unwrap_err();
    assert_eq!(err.field(), "discovery");
    let config: ServiceClientConfig =
        toml::from_str("service = \"users\"\nurls = [\"http://a:1\"]\nmax_body_size = 0").unwrap();
    assert_eq!(
        ServiceClient::from_config(config).unwrap_err().field(),
        "max_body_size"
    );
    let err = toml::from_str::<ServiceClientConfig>(
        "service = \"users\"\nurls = [\"http://a:1\"]\n[retry]\nmax_attempts = 0",
    )
    .unwrap_err();
    assert!(err.to_string().contains("`max_attempts`"), "{err}");
}

/// What a scripted scenario saw: each call's outcome and the attempts the
/// upstream received for it.
async fn scenario(make: impl FnOnce(String) -> ServiceClient) -> Vec<(String, usize)> {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new()
        .route(
            "/flaky",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { StatusCode::SERVICE_UNAVAILABLE }
            }),
        )
        .route("/ok", get(|| async { "fine" }));
    let svc = make(url(serve(app).await));
    let mut seen = Vec::new();
    for path in ["/flaky", "/flaky", "/flaky", "/ok"] {
        let before = hits.load(Ordering::SeqCst);
        let outcome = match svc.get(path).send_raw().await {
            Ok(r) => format!("{} {}", r.status(), String::from_utf8_lossy(r.body())),
            Err(e) => format!(
                "{} {:?}",
                e.kind(),
                e.retry_after().map(|d| d.as_secs().div_ceil(60))
            ),
        };
        seen.push((outcome, hits.load(Ordering::SeqCst) - before));
    }
    seen
}

#[tokio::test]
async fn the_config_file_form_behaves_as_the_builder_form() {
    let from_builder = scenario(|base| {
        ServiceClient::builder("flaky")
            .urls([base])
            .retry(
                RetryPolicy::builder()
                    .max_attempts(2)
                    .backoff(Backoff::constant(Duration::from_millis(1)))
                    .build()
                    .unwrap(),
            )
            .circuit_breaker(Some(
                CircuitBreakerConfig::builder()
                    .consecutive_failures(4)
                    .open_duration(Backoff::constant(Duration::from_secs(60)))
                    .build()
                    .unwrap(),
            ))
            .header("user-agent", "orders/2")
            .max_body_size(64)
            .build()
            .unwrap()
    })
    .await;
    let from_file = scenario(|base| {
        let config: ServiceClientConfig = toml::from_str(&format!(
            r#"
            service = "flaky"
            urls = ["{base}"]
            max_body_size = 64
            headers = {{ "user-agent" = "orders/2" }}

            [retry]
            max_attempts = 2
            backoff = {{ kind = "constant", base = "1ms" }}

            [circuit_breaker]
            consecutive_failures = 4
            open_duration = {{ kind = "constant", base = "60s" }}
            "#
        ))
        .unwrap();
        ServiceClient::from_config(config).unwrap()
    })
    .await;
    let expected: Vec<(String, usize)> = vec![
        // Two attempts each; the fourth failure opens the breaker...
        ("503 Service Unavailable ".into(), 2),
        ("503 Service Unavailable ".into(), 2),
        // ...so the third call is rejected without reaching the upstream.
        // (retry after a minute at most: real time passes)
        ("circuit_open Some(1)".into(), 0),
        ("circuit_open Some(1)".into(), 0),
    ];
    assert_eq!(from_builder, expected);
    assert_eq!(from_file, expected);
}

#[tokio::test]
async fn the_config_file_form_sets_headers_and_the_body_limit_as_the_builder() {
    async fn run(svc: ServiceClient) -> (String, String) {
        let agent = svc.get("/agent").send_raw().await.unwrap();
        let big = svc.get("/big").send_raw().await.unwrap_err();
        (
            String::from_utf8_lossy(agent.body()).into(),
            big.to_string(),
        )
    }
    let app = axum::Router::new()
        .route("/big", get(|| async { "z".repeat(100) }))
        .route(
            "/agent",
            get(|h: HeaderMap| async move { h["user-agent"].to_str().unwrap().to_string() }),
        );
    let base = url(serve(app).await);
    let built = ServiceClient::builder("s")
        .urls([base.clone()])
        .header("user-agent", "orders/2")
        .max_body_size(64)
        .build()
        .unwrap();
    let config: ServiceClientConfig = toml::from_str(&format!(
        "service = \"s\"\nurls = [\"{base}\"]\nmax_body_size = 64\nheaders = {{ \"user-agent\" = \"orders/2\" }}"
    ))
    .unwrap();
    let filed = ServiceClient::from_config(config).unwrap();
    let expected = (
        "orders/2".to_string(),
        "response body larger than 64 bytes".to_string(),
    );
    assert_eq!(run(built).await, expected);
    assert_eq!(run(filed).await, expected);
}

#[tokio::test]
async fn a_500_is_retried_only_when_asked_for() {
    async fn attempts(make: impl FnOnce(String) -> ServiceClient) -> usize {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { StatusCode::INTERNAL_SERVER_ERROR }
            }),
        );
        let svc = make(url(serve(app).await));
        let err = svc.get("/").send::<()>().await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
        hits.load(Ordering::SeqCst)
    }
    let quick = || {
        RetryPolicy::builder()
            .backoff(Backoff::constant(Duration::from_millis(1)))
            .build()
            .unwrap()
    };
    let default = attempts(|base| {
        ServiceClient::builder("s")
            .urls([base])
            .retry(quick())
            .build()
            .unwrap()
    })
    .await;
    let asked = attempts(|base| {
        ServiceClient::builder("s")
            .urls([base])
            .retry(quick())
            .retry_on_status(StatusCode::INTERNAL_SERVER_ERROR, true)
            .build()
            .unwrap()
    })
    .await;
    let filed = attempts(|base| {
        let config: ServiceClientConfig = toml::from_str(&format!(
            "service = \"s\"\nurls = [\"{base}\"]\nretry_statuses = [500]\n[retry]\nbackoff = {{ kind = \"constant\", base = \"1ms\" }}"
        ))
        .unwrap();
        ServiceClient::from_config(config).unwrap()
    })
    .await;
    assert_eq!((default, asked, filed), (1, 3, 3));
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stalls_after_the_headers_ends_with_the_attempt_timeout() {
    let users = ServiceClient::builder("users")
        .urls([stalling().await])
        .timeout(Some(Duration::from_secs(1)))
        .deadline(None)
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
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
async fn a_stalled_body_counts_against_the_instance() {
    let users = ServiceClient::builder("users")
        .urls([stalling().await])
        .timeout(Some(Duration::from_secs(1)))
        .deadline(None)
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .circuit_breaker(None)
        .balance(
            meshguard::balance::BalanceConfig::builder()
                .ejection(Some(
                    CircuitBreakerConfig::builder()
                        .consecutive_failures(1)
                        .rejection(meshguard::circuit_breaker::Rejection::Wait)
                        .build()
                        .unwrap(),
                ))
                .max_ejection_percent(100.0)
                .panic_threshold(0.0)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let sent = users.get("/stall").send_raw();
    let err = tokio::time::timeout(Duration::from_secs(60), sent)
        .await
        .expect("the call outlived every timeout")
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    let endpoints = users.endpoints();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(
        endpoints[0].breaker.state(),
        meshguard::circuit_breaker::State::Open
    );
}

#[tokio::test(start_paused = true)]
async fn a_callers_deadline_bounds_a_stalled_body() {
    let users = timed(stalling().await, None, None);
    let started = tokio::time::Instant::now();
    let sent = users
        .get("/stall")
        .deadline(Duration::from_millis(300))
        .send::<User>();
    let err = tokio::time::timeout(Duration::from_secs(60), sent)
        .await
        .expect("the call outlived its deadline")
        .unwrap_err();
    assert!(matches!(err, ClientError::DeadlineExceeded), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test]
async fn a_body_cut_off_midway_is_a_transport_error_retried_for_idempotent_requests() {
    let (base, requests) = truncating().await;
    let users = ServiceClient::builder("users")
        .urls([base])
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
    assert_eq!(requests.load(Ordering::SeqCst), 3);

    let err = users.post("/users").send_raw().await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 4, "a POST was replayed");
}

/// A server answering every request with `status`.
async fn always(status: StatusCode) -> String {
    url(serve(axum::Router::new().route("/", get(move || async move { status }))).await)
}

#[tokio::test]
async fn a_status_the_client_retries_is_retryable_in_its_error_and_no_other() {
    let base = always(StatusCode::INTERNAL_SERVER_ERROR).await;
    let once = || RetryPolicy::builder().max_attempts(1).build().unwrap();
    let default = ServiceClient::builder("s")
        .urls([base.clone()])
        .retry(once())
        .build()
        .unwrap();
    let asked = ServiceClient::builder("s")
        .urls([base])
        .retry(once())
        .retry_on_status(StatusCode::INTERNAL_SERVER_ERROR, true)
        .build()
        .unwrap();
    let by_default = default.get("/").send::<()>().await.unwrap_err();
    let when_asked = asked.get("/").send::<()>().await.unwrap_err();
    assert_eq!(
        (by_default.is_retryable(), when_asked.is_retryable()),
        (false, true)
    );
    assert!(matches!(
        when_asked,
        ClientError::Status {
            retryable: true,
            ..
        }
    ));
}

#[tokio::test]
async fn an_error_gives_back_the_outcome_of_the_last_attempt() {
    use meshguard::classify::Outcome;
    let refused = ServiceClient::builder("users")
        .urls([url(closed_port().await)])
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .build()
        .unwrap();
    let err = refused.get("/").send::<()>().await.unwrap_err();
    assert_eq!(err.outcome(), Outcome::Connect);
    let busy = ServiceClient::builder("s")
        .urls([always(StatusCode::SERVICE_UNAVAILABLE).await])
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .build()
        .unwrap();
    let err = busy.get("/").send::<()>().await.unwrap_err();
    assert_eq!(
        err.outcome(),
        Outcome::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: None
        }
    );
}

#[tokio::test]
async fn a_retry_policy_with_its_own_attempt_timeout_is_rejected_naming_the_field() {
    let err = ServiceClient::builder("s")
        .urls(["http://127.0.0.1:1"])
        .retry(
            RetryPolicy::builder()
                .attempt_timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry.attempt_timeout");
}

#[tokio::test]
async fn a_client_built_without_a_service_breaker_has_none() {
    let plain = ServiceClient::builder("s")
        .urls(["http://127.0.0.1:1"])
        .circuit_breaker(None)
        .build()
        .unwrap();
    assert!(plain.breaker().is_none());
    let guarded = ServiceClient::builder("s")
        .urls(["http://127.0.0.1:1"])
        .build()
        .unwrap();
    assert_eq!(guarded.breaker().map(|b| b.name()), Some("s"));
}

#[tokio::test]
async fn a_default_header_set_twice_is_sent_with_both_values() {
    let users = ServiceClient::builder("users")
        .urls([users().await])
        .header("x-team", "payments")
        .header("x-team", "billing")
        .build()
        .unwrap();
    let seen: Vec<(String, String)> = users.get("/headers").send().await.unwrap();
    // The server lists the pairs sorted.
    assert_eq!(header(&seen, "x-team"), ["billing", "payments"]);
}

#[tokio::test]
async fn a_wait_mode_service_breaker_is_rejected_naming_the_field() {
    use meshguard::circuit_breaker::Rejection;
    let err = ServiceClient::builder("s")
        .urls(["http://127.0.0.1:1"])
        .circuit_breaker(Some(
            CircuitBreakerConfig::builder()
                .rejection(Rejection::Wait)
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit_breaker.rejection");
}

#[tokio::test]
async fn a_transport_error_holds_the_transports_own_error_to_downcast() {
    let refused = ServiceClient::builder("users")
        .urls([url(closed_port().await)])
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .build()
        .unwrap();
    match refused.get("/").send::<()>().await.unwrap_err() {
        ClientError::Transport(e) => {
            let hyper = e.downcast_ref::<hyper_util::client::legacy::Error>();
            assert!(hyper.is_some_and(|h| h.is_connect()), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_per_call_deadline_too_far_for_the_clock_is_no_deadline() {
    let users = client(&users().await);
    let ada: User = users
        .get("/users/7")
        .deadline(Duration::MAX)
        .send()
        .await
        .unwrap();
    assert_eq!(ada.id, 7);
}

#[tokio::test(flavor = "current_thread")]
async fn a_caller_looping_on_invalid_requests_still_lets_other_tasks_run() {
    let users = ServiceClient::builder("users")
        .urls(["http://127.0.0.1:1"])
        .build()
        .unwrap();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    for _ in 0..1_000 {
        let err = users.get("no-slash").send::<()>().await.unwrap_err();
        assert!(matches!(err, ClientError::InvalidRequest(_)), "{err:?}");
        if ran.load(Ordering::SeqCst) {
            return;
        }
    }
    panic!("1,000 rejected calls in a row never yielded the worker");
}
