//! `meshguard::reqwest::Resilience`, the reqwest_middleware middleware,
//! against real axum servers on 127.0.0.1:0.

#[path = "../support/mod.rs"]
mod support;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use meshguard::circuit_breaker::{CircuitBreakerConfig, CircuitOpen, Rejection, State};
use meshguard::classify::HttpClassifier;
use meshguard::deadline::{DeadlineExceeded, Timeout};
use meshguard::propagation::{CallContext, TraceParent, TraceState};
use meshguard::reqwest::Resilience;
use meshguard::retry::{HttpRetryOn, RetryBudgetConfig, RetryPolicy};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Error};
use support::http::{closed_port, serve, url};
use tokio::time::Instant;

/// What a server saw: each request's arrival time (tokio's clock), method
/// and headers.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(Instant, Method, HeaderMap)>>>);

impl Seen {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.0.lock().unwrap().iter().map(|s| s.0).collect()
    }

    fn headers(&self, i: usize) -> HeaderMap {
        self.0.lock().unwrap()[i].2.clone()
    }
}

/// A server answering every request with what `answer` returns for the
/// request's index (0 for the first), recording what it saw.
async fn server(
    answer: impl Fn(usize) -> (StatusCode, Vec<(&'static str, &'static str)>)
    + Clone
    + Send
    + Sync
    + 'static,
) -> (String, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(any(move |method: Method, headers: HeaderMap| {
        let (record, answer) = (record.clone(), answer.clone());
        async move {
            let i = {
                let mut seen = record.0.lock().unwrap();
                seen.push((Instant::now(), method, headers));
                seen.len() - 1
            };
            let (status, headers) = answer(i);
            let mut response = axum::http::Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(axum::body::Body::from("{}")).unwrap()
        }
    }));
    (url(serve(app).await), seen)
}

fn client(resilience: Resilience) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(resilience)
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_is_retried_exactly_that_long_later() {
    let (base, seen) = server(|i| match i {
        0 => (StatusCode::SERVICE_UNAVAILABLE, vec![("retry-after", "1")]),
        _ => (StatusCode::OK, vec![]),
    })
    .await;
    let http = client(Resilience::builder().build().unwrap());
    let response = http.get(format!("{base}/users/7")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let arrivals = seen.arrivals();
    assert_eq!(arrivals.len(), 2);
    assert_eq!(arrivals[1] - arrivals[0], Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn an_always_503_host_gets_at_most_one_attempt_plus_the_budget_per_request() {
    let (base, seen) = server(|_| (StatusCode::SERVICE_UNAVAILABLE, vec![])).await;
    let budget = RetryBudgetConfig::builder()
        .ratio(0.2)
        .min_per_second(0)
        .build()
        .unwrap();
    let retry = RetryPolicy::builder().budget(budget).build().unwrap();
    let http = client(
        Resilience::builder()
            .retry(retry)
            .circuit_breaker(None)
            .build()
            .unwrap(),
    );
    for _ in 0..1000 {
        let response = http.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let attempts = seen.count();
    assert!(
        (1001..=1200).contains(&attempts),
        "{attempts} attempts for 1,000 requests with a 20% budget"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_host_is_cut_off_by_its_breaker_while_another_keeps_working() {
    let (failing, failing_seen) = server(|_| (StatusCode::INTERNAL_SERVER_ERROR, vec![])).await;
    let (healthy, healthy_seen) = server(|_| (StatusCode::OK, vec![])).await;
    let breaker = CircuitBreakerConfig::builder()
        .count_window(10, 1)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        .build()
        .unwrap();
    let resilience = Resilience::builder()
        .circuit_breaker(Some(breaker))
        .build()
        .unwrap();
    let http = client(resilience.clone());
    let mut open = 0;
    for _ in 0..30 {
        match http.get(format!("{failing}/")).send().await {
            Ok(r) => assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR),
            Err(Error::Middleware(e)) if e.downcast_ref::<CircuitOpen>().is_some() => open += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
        let ok = http.get(format!("{healthy}/")).send().await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }
    assert_eq!(failing_seen.count(), 10);
    assert_eq!(open, 20);
    assert_eq!(healthy_seen.count(), 30);
    let breaker = |base: &str| resilience.breaker(&reqwest::Url::parse(base).unwrap());
    assert_eq!(breaker(&failing).unwrap().state(), State::Open);
    assert_eq!(breaker(&healthy).unwrap().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_sent_once() {
    let (base, seen) = server(|_| (StatusCode::SERVICE_UNAVAILABLE, vec![])).await;
    let http = client(Resilience::builder().build().unwrap());
    let response = http
        .post(format!("{base}/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_retried_when_the_policy_allows_it() {
    let (base, seen) = server(|i| match i {
        0 => (StatusCode::SERVICE_UNAVAILABLE, vec![]),
        _ => (StatusCode::OK, vec![]),
    })
    .await;
    let retry = RetryPolicy::builder()
        .retry_non_idempotent(true)
        .build()
        .unwrap();
    let http = client(Resilience::builder().retry(retry).build().unwrap());
    let response = http
        .post(format!("{base}/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.count(), 2);
    assert_eq!(seen.0.lock().unwrap()[1].1, Method::POST);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_carries_the_request_id_traceparent_and_deadline() {
    let (base, seen) = server(|i| match i {
        0 => (StatusCode::BAD_GATEWAY, vec![]),
        _ => (StatusCode::OK, vec![]),
    })
    .await;
    let http = client(Resilience::builder().build().unwrap());
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    CallContext::new()
        .with_request_id(axum::http::HeaderValue::from_static("req-42"))
        .with_trace(TraceParent::parse(trace.as_bytes()).unwrap())
        .scope(http.get(format!("{base}/")).send())
        .await
        .unwrap();
    let (first, second) = (seen.headers(0), seen.headers(1));
    assert_eq!(first["x-request-id"], "req-42");
    assert_eq!(first["x-request-id"], second["x-request-id"]);
    assert_eq!(first["traceparent"], trace);
    assert_eq!(second["traceparent"], trace);
    // Paused time: the first attempt leaves at once, the second after its
    // backoff.
    assert_eq!(first["x-deadline-ms"], "10000");
    let gap = seen.arrivals()[1] - seen.arrivals()[0];
    assert_eq!(
        second["x-deadline-ms"],
        (10_000 - gap.as_millis() as u64).to_string().as_str()
    );
}

/// With no context there is no id or trace to pass on: the attempt sends
/// the deadline alone, and the next hop makes its own ids.
#[tokio::test(start_paused = true)]
async fn a_call_with_no_context_sends_the_deadline_and_no_ids() {
    let (base, seen) = server(|_| (StatusCode::OK, vec![])).await;
    let http = client(Resilience::builder().build().unwrap());
    http.get(format!("{base}/")).send().await.unwrap();
    let first = seen.headers(0);
    assert!(!first.contains_key("x-request-id"));
    assert!(!first.contains_key("traceparent"));
    assert_eq!(first["x-deadline-ms"], "10000");
}

#[tokio::test(start_paused = true)]
async fn propagation_off_sends_none_of_the_three_headers() {
    let (base, seen) = server(|_| (StatusCode::OK, vec![])).await;
    let http = client(Resilience::builder().propagate(false).build().unwrap());
    http.get(format!("{base}/")).send().await.unwrap();
    let headers = seen.headers(0);
    for name in ["x-request-id", "traceparent", "x-deadline-ms"] {
        assert!(!headers.contains_key(name), "{name} was sent");
    }
}

#[tokio::test(start_paused = true)]
async fn the_request_being_served_gives_its_request_id_and_shorter_deadline() {
    let (base, seen) = server(|_| (StatusCode::OK, vec![])).await;
    let http = client(Resilience::builder().build().unwrap());
    let context = CallContext::new()
        .with_request_id(http::HeaderValue::from_static("req-42"))
        .with_deadline(meshguard::deadline::Deadline::after(Duration::from_secs(2)));
    context
        .scope(async { http.get(format!("{base}/")).send().await.unwrap() })
        .await;
    let headers = seen.headers(0);
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(headers["x-deadline-ms"], "2000");
}

#[tokio::test]
async fn every_attempt_carries_the_served_requests_trace_and_tracestate() {
    let (base, seen) = server(|i| match i {
        0 => (StatusCode::BAD_GATEWAY, vec![]),
        _ => (StatusCode::OK, vec![]),
    })
    .await;
    let http = client(Resilience::builder().build().unwrap());
    let trace =
        TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let state = TraceState::parse(b"congo=t61rcWkgMzE, rojo=00f067aa0ba902b7").unwrap();
    let context = CallContext::new().with_trace(trace).with_trace_state(state);
    context
        .scope(async { http.get(format!("{base}/")).send().await.unwrap() })
        .await;
    for i in 0..2 {
        let headers = seen.headers(i);
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(
            headers.get_all("tracestate").iter().collect::<Vec<_>>(),
            ["congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"]
        );
    }
}

#[tokio::test]
async fn a_callers_own_traceparent_goes_without_the_served_requests_tracestate() {
    let (base, seen) = server(|_| (StatusCode::OK, vec![])).await;
    let http = client(Resilience::builder().build().unwrap());
    let context = CallContext::new()
        .with_trace(TraceParent::new_root())
        .with_trace_state(TraceState::parse(b"congo=t61rcWkgMzE").unwrap());
    let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    context
        .scope(async {
            http.get(format!("{base}/"))
                .header("traceparent", own)
                .send()
                .await
                .unwrap()
        })
        .await;
    let headers = seen.headers(0);
    assert_eq!(headers["traceparent"], own);
    assert_eq!(headers.get("tracestate"), None);
}

#[tokio::test(start_paused = true)]
async fn a_slow_host_ends_the_call_at_its_deadline() {
    let app = axum::Router::new().fallback(any(|| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        "late"
    }));
    let base = url(serve(app).await);
    let http = client(
        Resilience::builder()
            .timeout(None)
            .deadline(Some(Duration::from_secs(5)))
            .build()
            .unwrap(),
    );
    let started = Instant::now();
    let err = http.get(format!("{base}/")).send().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert!(
        matches!(&err, Error::Middleware(e) if e.downcast_ref::<DeadlineExceeded>().is_some()),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_per_call_timeout_in_the_extensions_shortens_the_deadline() {
    let app = axum::Router::new().fallback(any(|| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        "late"
    }));
    let base = url(serve(app).await);
    let http = client(Resilience::builder().timeout(None).build().unwrap());
    let started = Instant::now();
    let err = http
        .get(format!("{base}/"))
        .with_extension(Timeout(Duration::from_millis(1500)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(1500));
    assert!(
        matches!(&err, Error::Middleware(e) if e.downcast_ref::<DeadlineExceeded>().is_some()),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_given_back_as_reqwests_error() {
    let base = url(closed_port().await);
    let http = client(Resilience::builder().circuit_breaker(None).build().unwrap());
    let err = http.get(format!("{base}/")).send().await.unwrap_err();
    assert!(
        matches!(&err, Error::Reqwest(e) if e.is_connect()),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_closed_before_the_answer_is_retried_up_to_the_attempts() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(tcp);
        }
    });
    let http = client(Resilience::builder().circuit_breaker(None).build().unwrap());
    let err = http.get(format!("{base}/")).send().await.unwrap_err();
    assert!(matches!(&err, Error::Reqwest(_)), "{err:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_is_retried_after_it() {
    let (base, seen) = server(|i| match i {
        0 => (StatusCode::TOO_MANY_REQUESTS, vec![("retry-after", "2")]),
        _ => (StatusCode::OK, vec![]),
    })
    .await;
    let http = client(Resilience::builder().build().unwrap());
    let response = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let arrivals = seen.arrivals();
    assert_eq!(arrivals[1] - arrivals[0], Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_the_policy_allows_returns_the_response() {
    let (base, seen) = server(|_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            vec![("retry-after", "120")],
        )
    })
    .await;
    let http = client(Resilience::builder().build().unwrap());
    let started = Instant::now();
    let response = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.count(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_is_sent_once() {
    let (base, seen) = server(|_| (StatusCode::SERVICE_UNAVAILABLE, vec![])).await;
    let http = client(Resilience::builder().build().unwrap());
    let body = reqwest::Body::wrap(http_body_util::Full::new(bytes::Bytes::from("{}")));
    let response = http
        .put(format!("{base}/orders/7"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_requests_own_timeout_sets_its_attempts_limit() {
    let app = axum::Router::new().fallback(any(|| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        "slow but fine"
    }));
    let base = url(serve(app).await);
    let http = client(
        Resilience::builder()
            .timeout(Some(Duration::from_secs(1)))
            .build()
            .unwrap(),
    );
    let response = http
        .get(format!("{base}/"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "slow but fine");
}

#[tokio::test(start_paused = true)]
async fn a_classifier_without_429_keeps_a_rate_limited_hosts_breaker_closed() {
    let (base, seen) = server(|_| (StatusCode::TOO_MANY_REQUESTS, vec![])).await;
    let breaker = CircuitBreakerConfig::builder()
        .count_window(10, 1)
        .minimum_calls(10)
        .build()
        .unwrap();
    let resilience = Resilience::builder()
        .retry_on(HttpRetryOn::default().status(StatusCode::TOO_MANY_REQUESTS, false))
        .classify(HttpClassifier::default().success(StatusCode::TOO_MANY_REQUESTS))
        .circuit_breaker(Some(breaker))
        .build()
        .unwrap();
    let http = client(resilience.clone());
    for _ in 0..30 {
        let response = http.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(seen.count(), 30);
    let url = reqwest::Url::parse(&base).unwrap();
    assert_eq!(resilience.breaker(&url).unwrap().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn past_max_hosts_the_least_recently_used_idle_host_is_forgotten() {
    let (a, _) = server(|_| (StatusCode::OK, vec![])).await;
    let (b, _) = server(|_| (StatusCode::OK, vec![])).await;
    let (c, _) = server(|_| (StatusCode::OK, vec![])).await;
    let resilience = Resilience::builder().max_hosts(2).build().unwrap();
    let http = client(resilience.clone());
    for base in [&a, &b, &a, &c] {
        http.get(format!("{base}/")).send().await.unwrap();
    }
    assert_eq!(resilience.hosts(), 2);
    let url = |base: &str| reqwest::Url::parse(base).unwrap();
    assert!(resilience.breaker(&url(&a)).is_some());
    assert!(resilience.breaker(&url(&b)).is_none());
    assert!(resilience.breaker(&url(&c)).is_some());
}

#[tokio::test(start_paused = true)]
async fn extensions_left_by_a_later_middleware_reach_the_caller() {
    #[derive(Clone, Debug, PartialEq)]
    struct Served(&'static str);
    /// A middleware after meshguard's that leaves a mark.
    fn mark<'a>(
        req: reqwest::Request,
        ext: &'a mut http::Extensions,
        next: reqwest_middleware::Next<'a>,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send + 'a>,
    > {
        ext.insert(Served("inner"));
        next.run(req, ext)
    }
    let (base, _) = server(|_| (StatusCode::OK, vec![])).await;
    let http = ClientBuilder::new(reqwest::Client::new())
        .with(Resilience::builder().build().unwrap())
        .with(mark)
        .build();
    let mut extensions = http::Extensions::new();
    let request = http.get(format!("{base}/")).build().unwrap();
    http.execute_with_extensions(request, &mut extensions)
        .await
        .unwrap();
    assert_eq!(extensions.get::<Served>(), Some(&Served("inner")));
}

#[test]
fn a_retry_policy_with_its_own_attempt_timeout_is_refused_naming_the_field() {
    let retry = RetryPolicy::builder()
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = Resilience::builder().retry(retry).build().unwrap_err();
    assert_eq!(err.field(), "retry.attempt_timeout");
}

#[test]
fn zero_limits_an_empty_name_and_a_waiting_breaker_are_refused_naming_the_field() {
    let zero = Some(Duration::ZERO);
    let waiting = CircuitBreakerConfig::builder()
        .rejection(Rejection::Wait)
        .build()
        .unwrap();
    for (builder, field) in [
        (Resilience::builder().timeout(zero), "timeout"),
        (Resilience::builder().deadline(zero), "deadline"),
        (Resilience::builder().max_hosts(0), "max_hosts"),
        (Resilience::builder().name(""), "name"),
        (
            Resilience::builder().circuit_breaker(Some(waiting)),
            "circuit_breaker.rejection",
        ),
    ] {
        assert_eq!(builder.build().unwrap_err().field(), field);
    }
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_times_out_is_retried_and_the_retry_answers() {
    let seen = Seen::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(any(move |method: Method, headers: HeaderMap| {
        let record = record.clone();
        async move {
            let first = {
                let mut seen = record.0.lock().unwrap();
                seen.push((Instant::now(), method, headers));
                seen.len() == 1
            };
            if first {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            "ok"
        }
    }));
    let base = url(serve(app).await);
    let http = client(
        Resilience::builder()
            .timeout(Some(Duration::from_secs(1)))
            .build()
            .unwrap(),
    );
    let response = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    let arrivals = seen.arrivals();
    assert_eq!(arrivals.len(), 2);
    assert!(arrivals[1] - arrivals[0] >= Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stalls_after_the_headers_ends_with_the_attempt_timeout() {
    use futures_util::StreamExt;
    let app = axum::Router::new().fallback(any(|| async {
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("{"))])
            .chain(futures_util::stream::pending());
        axum::body::Body::from_stream(chunks)
    }));
    let base = url(serve(app).await);
    let http = client(Resilience::builder().build().unwrap());
    let started = Instant::now();
    let response = http.get(format!("{base}/")).send().await.unwrap();
    let err = response.bytes().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}
