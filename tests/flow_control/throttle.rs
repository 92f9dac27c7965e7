//! Client-side throttling (the SRE book's): alone over a tower
//! `service_fn`, where its probability can be read, and through
//! `ServiceClient` against an upstream that rejects, recovers, or never
//! rejects.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use meshguard::BoxError;
use meshguard::classify::HttpClassifier;
use meshguard::client::{ClientError, ServiceClient};
use meshguard::limit::{LimitExceeded, LimitReason, ThrottleConfig, ThrottleLayer};
use tower::{Layer, ServiceExt};

use crate::upstream::{Switch, client};

/// How one call through the client ended.
#[derive(Debug, PartialEq)]
enum Ended {
    Served,
    Rejected,
    Throttled,
}

async fn call(svc: &ServiceClient) -> Ended {
    match svc.get("/").send::<()>().await {
        Ok(()) => Ended::Served,
        Err(e) if e.status() == Some(StatusCode::SERVICE_UNAVAILABLE) => Ended::Rejected,
        Err(ClientError::LimitExceeded(LimitReason::Throttled)) => Ended::Throttled,
        Err(e) => panic!("unexpected {e:?}"),
    }
}

/// `n` calls one after the other: how many ended each way.
async fn calls(svc: &ServiceClient, n: usize) -> [usize; 3] {
    let mut ended = [0; 3];
    for _ in 0..n {
        ended[call(svc).await as usize] += 1;
    }
    ended
}

fn throttled(base: &str) -> ServiceClient {
    client(base)
        .throttle(Some(ThrottleConfig::default()))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn with_every_call_rejected_the_refusal_probability_after_n_calls_is_n_over_n_plus_one() {
    // k = 2: max(0, (requests - 2 × accepts) / (requests + 1)), where a
    // call refused here counts as a request too.
    let throttle =
        ThrottleLayer::new("flow", ThrottleConfig::default()).classify(HttpClassifier::default());
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let svc = throttle.layer(tower::service_fn(move |()| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, BoxError>(http::Response::builder().status(503).body(()).unwrap()) }
    }));
    let mut refused = 0;
    for n in 1..=200u32 {
        match svc.clone().oneshot(()).await {
            Ok(response) => assert_eq!(response.status(), 503),
            Err(e) => {
                let e = e.downcast_ref::<LimitExceeded>().expect("a refusal");
                assert_eq!(e.reason(), LimitReason::Throttled);
                refused += 1;
            }
        }
        assert_eq!(throttle.probability(), f64::from(n) / (f64::from(n) + 1.0));
    }
    assert_eq!(refused + sent.load(Ordering::SeqCst), 200);
}

#[tokio::test]
async fn no_call_is_refused_while_requests_stay_within_k_times_accepts() {
    let up = Switch::start(false).await;
    let svc = throttled(&up.base);
    assert_eq!(calls(&svc, 10).await, [10, 0, 0]);
    up.set_failing(true);
    // 10 accepts: the 11th to 21st calls see at most 20 = 2 × 10 requests.
    assert_eq!(calls(&svc, 11).await, [0, 11, 0]);
    assert_eq!(up.hits(), 21);
}

#[tokio::test]
async fn an_upstream_rejecting_everything_is_sent_a_shrinking_share_of_the_calls() {
    let up = Switch::start(true).await;
    let svc = throttled(&up.base);
    let [served, rejected, throttled] = calls(&svc, 1000).await;
    assert_eq!(served, 0);
    assert_eq!(rejected, up.hits());
    assert_eq!(rejected + throttled, 1000);
    // Call i is sent with probability 1 - (i - 1) / i = 1 / i: the number
    // sent is distributed as the cycles of a random permutation of 1000,
    // mean H(1000) = 7.49, and P(more than 40) < 1e-19.
    assert!((1..=40).contains(&rejected), "{rejected} sent");
}

#[tokio::test(start_paused = true)]
async fn once_the_upstream_recovers_and_the_window_passes_no_call_is_refused() {
    let up = Switch::start(true).await;
    let svc = throttled(&up.base);
    // Until the throttle refuses one (each call after the first is refused
    // with probability at least 1/2).
    let mut made = 0;
    while call(&svc).await != Ended::Throttled {
        made += 1;
        assert!(made < 60, "no call refused");
    }
    up.set_failing(false);
    tokio::time::sleep(ThrottleConfig::default().window()).await;
    let before = up.hits();
    assert_eq!(calls(&svc, 100).await, [100, 0, 0]);
    assert_eq!(up.hits() - before, 100);
}

#[tokio::test]
async fn an_upstream_that_always_succeeds_is_never_throttled() {
    let up = Switch::start(false).await;
    let svc = client(&up.base)
        .pool_max_idle_per_host(32)
        .throttle(Some(ThrottleConfig::default()))
        .build()
        .unwrap();
    assert_eq!(calls(&svc, 1000).await, [1000, 0, 0]);
    assert_eq!(up.hits(), 1000);
}
