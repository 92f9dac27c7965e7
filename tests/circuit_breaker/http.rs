//! The breaker around a real HTTP call: an axum server on 127.0.0.1:0 that
//! fails on demand, called with reqwest through the breaker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::routing::get;
use meshguard::backoff::Backoff;
use meshguard::circuit_breaker::{BreakerError, CircuitBreaker, CircuitBreakerConfig, State};
use meshguard::classify::HttpClassifier;
use tower::{Layer, Service, ServiceExt};

#[derive(Default)]
struct Upstream {
    failing: AtomicBool,
    hits: AtomicUsize,
}

async fn serve(upstream: Arc<Upstream>) -> String {
    async fn handler(Extract(u): Extract<Arc<Upstream>>) -> (StatusCode, &'static str) {
        u.hits.fetch_add(1, Ordering::SeqCst);
        if u.failing.load(Ordering::SeqCst) {
            (StatusCode::INTERNAL_SERVER_ERROR, "down")
        } else {
            (StatusCode::OK, "up")
        }
    }
    let app = Router::new().route("/", get(handler)).with_state(upstream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/")
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_rejects_half_opens_and_recovers_over_http() {
    let upstream = Arc::new(Upstream::default());
    let url = serve(upstream.clone()).await;
    let client = reqwest::Client::builder()
        .pool_idle_timeout(None)
        .build()
        .unwrap();
    let transport = tower::service_fn(move |()| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client.get(&url).send().await?;
            let response: http::Response<reqwest::Body> = response.into();
            Ok::<_, reqwest::Error>(response)
        }
    });
    let breaker = CircuitBreaker::new(
        "upstream",
        CircuitBreakerConfig::builder()
            .count_window(4, 4)
            .minimum_calls(4)
            .failure_rate_threshold(50.0)
            .open_duration(Backoff::constant(Duration::from_secs(5)))
            .half_open_calls(1)
            .build()
            .unwrap(),
    );
    let mut svc = breaker
        .layer()
        .classify(HttpClassifier::default())
        .layer(transport);

    // Healthy: 200s pass through.
    for _ in 0..2 {
        let r = svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Failing on demand: two 500s make 50% of four calls.
    upstream.failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let r = svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(r.status(), 500);
    }
    assert_eq!(breaker.state(), State::Open);

    // Open: rejected without reaching the server.
    let hits = upstream.hits.load(Ordering::SeqCst);
    match svc.ready().await.unwrap().call(()).await {
        Err(BreakerError::Open(open)) => {
            assert_eq!(open.retry_after(), Some(Duration::from_secs(5)))
        }
        other => panic!("expected a rejection, got {:?}", other.map(|r| r.status())),
    }
    assert_eq!(upstream.hits.load(Ordering::SeqCst), hits);

    // The upstream recovers; after the open period one probe closes the breaker.
    upstream.failing.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(5)).await;
    let r = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(upstream.hits.load(Ordering::SeqCst), hits + 1);
}

/// The coarse clock is real time by design (it cannot follow tokio's paused
/// clock), so this test runs on real time with a wide margin.
#[tokio::test]
async fn the_coarse_clock_detects_slow_calls_on_real_time() {
    let breaker = CircuitBreaker::new(
        "coarse",
        CircuitBreakerConfig::builder()
            .count_window(2, 2)
            .minimum_calls(2)
            .slow_call_duration(Duration::from_millis(50))
            .slow_call_rate_threshold(50.0)
            .coarse_clock(true)
            .build()
            .unwrap(),
    );
    let mut svc = breaker
        .layer()
        .layer(tower::service_fn(|d: u64| async move {
            tokio::time::sleep(Duration::from_millis(d)).await;
            Ok::<_, std::convert::Infallible>(d)
        }));
    svc.ready().await.unwrap().call(0).await.unwrap();
    assert_eq!(breaker.metrics().slow_calls, 0);
    svc.ready().await.unwrap().call(120).await.unwrap();
    assert_eq!(breaker.metrics().slow_calls, 1);
    assert_eq!(breaker.state(), State::Open);
}
