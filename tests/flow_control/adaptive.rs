//! The adaptive concurrency limit: alone over a tower `service_fn` on
//! paused time, where the limit after each window can be read exactly,
//! and through `ServiceClient`, where a call beyond it fails at once.

use std::time::Duration;

use futures_util::future::join_all;
use meshguard::BoxError;
use meshguard::classify::HttpClassifier;
use meshguard::client::ClientError;
use meshguard::limit::{AdaptiveLimitConfig, AdaptiveLimitLayer, LimitAlgorithm, LimitReason};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use crate::upstream::{Gated, client};

const MS: fn(u64) -> Duration = Duration::from_millis;

type Limit = AdaptiveLimitLayer<HttpClassifier>;

fn layer(config: AdaptiveLimitConfig) -> Limit {
    AdaptiveLimitLayer::new("flow", config).classify(HttpClassifier::default())
}

/// A service answering `status` after `latency`, behind the limit.
fn service(
    limit: &Limit,
) -> impl Service<(Duration, u16), Response = http::Response<()>, Error = BoxError> + Clone {
    limit.layer(tower::service_fn(
        |(latency, status): (Duration, u16)| async move {
            tokio::time::sleep(latency).await;
            Ok::<_, BoxError>(http::Response::builder().status(status).body(()).unwrap())
        },
    ))
}

/// `n` calls one after the other, each answered `status` after `latency`.
async fn one_by_one(limit: &Limit, n: usize, latency: Duration, status: u16) {
    for _ in 0..n {
        let response = service(limit).oneshot((latency, status)).await.unwrap();
        assert_eq!(response.status(), status);
    }
}

/// As many calls at once as the limit allows now, all admitted, each
/// answered 200 after `latency`.
async fn at_the_limit(limit: &Limit, latency: Duration) {
    let calls = (0..limit.limit()).map(|_| service(limit).oneshot((latency, 200)));
    for result in join_all(calls).await {
        result.unwrap();
    }
}

fn aimd(initial: usize) -> AdaptiveLimitConfig {
    AdaptiveLimitConfig::builder()
        .algorithm(LimitAlgorithm::Aimd)
        .initial_limit(initial)
        .backoff_ratio(0.5)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_gradient_measures_at_the_probe_limit_for_one_window_then_opens_to_the_initial_limit() {
    // Initial limit 20, probe limit 3, windows of 100 ms.
    let limit = layer(AdaptiveLimitConfig::default());
    assert_eq!(limit.limit(), 3);
    // The 10th call of 10 ms ends the first window.
    one_by_one(&limit, 9, MS(10), 200).await;
    assert_eq!(limit.limit(), 3);
    one_by_one(&limit, 1, MS(10), 200).await;
    assert_eq!(limit.limit(), 20);
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_gets_slower_makes_the_gradient_limit_fall() {
    let limit = layer(AdaptiveLimitConfig::default());
    one_by_one(&limit, 10, MS(10), 200).await; // the minimum latency: 10 ms
    assert_eq!(limit.limit(), 20);
    let mut limits = Vec::new();
    for _ in 0..3 {
        // A window of 25 ms calls against 12.5 ms tolerated: gradient 0.5,
        // limit × 0.8 + (limit × 0.5 + √limit) × 0.2 (18.89, 17.87, 16.93).
        one_by_one(&limit, 4, MS(25), 200).await;
        limits.push(limit.limit());
    }
    assert_eq!(limits, [19, 18, 17]);
}

#[tokio::test(start_paused = true)]
async fn aimd_multiplies_the_limit_by_the_backoff_ratio_after_each_window_with_a_503() {
    let limit = layer(aimd(10));
    assert_eq!(limit.limit(), 10);
    let mut limits = Vec::new();
    for _ in 0..4 {
        one_by_one(&limit, 10, MS(10), 503).await;
        limits.push(limit.limit());
    }
    // 10 × 0.5 = 5, 2.5 (rounded to 3), 1.25, and never below the minimum 1.
    assert_eq!(limits, [5, 3, 1, 1]);
}

#[tokio::test(start_paused = true)]
async fn aimd_grows_the_limit_by_one_per_window_while_calls_fill_it() {
    let limit = layer(aimd(2));
    let mut limits = Vec::new();
    for _ in 0..4 {
        // Two rounds of 50 ms at the limit make a window.
        at_the_limit(&limit, MS(50)).await;
        at_the_limit(&limit, MS(50)).await;
        limits.push(limit.limit());
    }
    assert_eq!(limits, [3, 4, 5, 6]);
}

#[tokio::test(start_paused = true)]
async fn aimd_does_not_grow_a_limit_the_calls_leave_unused() {
    let limit = layer(aimd(10));
    // One call at a time never comes near a limit of 10.
    one_by_one(&limit, 30, MS(10), 200).await;
    assert_eq!(limit.limit(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_call_beyond_the_limit_fails_at_once_with_concurrency_limit_and_is_not_sent() {
    let mut up = Gated::start().await;
    // The gradient's first window: a limit of 3.
    let svc = client(&up.base)
        .adaptive_limit(Some(AdaptiveLimitConfig::default()))
        .build()
        .unwrap();
    let held: Vec<_> = (0..3)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.get("/").send::<()>().await })
        })
        .collect();
    for _ in 0..3 {
        up.arrival().await;
    }
    let started = Instant::now();
    let err = svc.get("/").send::<()>().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::LimitExceeded(LimitReason::ConcurrencyLimit)
        ),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(
        err.to_string(),
        "call refused: the adaptive concurrency limit is reached"
    );
    up.release(3);
    for call in held {
        call.await.unwrap().unwrap();
    }
    assert_eq!(up.hits(), 3);
}
