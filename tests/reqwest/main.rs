//! `meshguard::reqwest::Resilience`, the reqwest_middleware middleware,
//! against real axum servers on 127.0.0.1:0.

#[path = "../support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use meshguard::circuit_breaker::{CircuitBreakerConfig, CircuitOpen};
use meshguard::deadline::{DeadlineExceeded, Timeout};
use meshguard::propagation::{CallContext, TraceParent, TraceState};
use meshguard::reqwest::Resilience;
use meshguard::retry::{RetryBudgetConfig, RetryPolicy};
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
    let http = client(
        Resilience::builder()
            .circuit_breaker(Some(breaker))
            .build()
            .unwrap(),
    );
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

#[tokio::test]
async fn every_attempt_carries_the_request_id_traceparent_and_deadline() {
    let (base, seen) = server(|i| match i {
        0 => (StatusCode::BAD_GATEWAY, vec![]),
        _ => (StatusCode::OK, vec![]),
    })
    .await;
    let http = client(Resilience::builder().build().unwrap());
    http.get(format!("{base}/")).send().await.unwrap();
    let (first, second) = (seen.headers(0), seen.headers(1));
    assert_eq!(first["x-request-id"].len(), 36);
    assert_eq!(first["x-request-id"], second["x-request-id"]);
    assert_eq!(first["traceparent"].len(), 55);
    let deadline: u64 = first["x-deadline-ms"].to_str().unwrap().parse().unwrap();
    assert!((9_000..=10_000).contains(&deadline), "{deadline}");
}

#[tokio::test]
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
    let deadline: u64 = headers["x-deadline-ms"].to_str().unwrap().parse().unwrap();
    assert!((1_000..=2_000).contains(&deadline), "{deadline}");
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
async fn a_refused_connection_is_retried_then_given_back_as_reqwests_error() {
    let base = url(closed_port().await);
    let http = client(Resilience::builder().circuit_breaker(None).build().unwrap());
    let err = http.get(format!("{base}/")).send().await.unwrap_err();
    assert!(
        matches!(&err, Error::Reqwest(e) if e.is_connect()),
        "{err:?}"
    );
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
fn a_zero_timeout_is_refused_naming_the_field() {
    let err = Resilience::builder()
        .timeout(Some(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "timeout");
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
