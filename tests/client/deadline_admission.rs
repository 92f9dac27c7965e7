//! A call's attempt is never sent to an instance whose latency estimate,
//! learnt from its responses, is longer than the time left before the
//! call's deadline: another instance that fits serves it, or, when none
//! does, it fails at once with `DeadlineExceeded`, unsent. `ServiceClient`
//! over real servers on 127.0.0.1:0, in paused time: a round trip takes
//! exactly the time the server sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use meshguard::balance::BalanceConfig;
use meshguard::client::{ClientError, ServiceClient};
use meshguard::retry::RetryPolicy;
use tokio::time::Instant;

use crate::support::http::{serve, url};

struct Instance {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl Instance {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An instance that answers 200 after `latency`, but `first` to its first
/// request.
async fn instance(latency: Duration, first: StatusCode) -> Instance {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(latency).await;
                if n == 0 { first } else { StatusCode::OK }
            }
        }),
    );
    Instance {
        url: url(serve(app).await),
        hits,
    }
}

const SLOW: Duration = Duration::from_millis(300);

/// One attempt a call, no service breaker, no client-wide deadline.
fn client(instances: &[&Instance], balance: BalanceConfig) -> ServiceClient {
    ServiceClient::builder("flow")
        .urls(instances.iter().map(|i| i.url.clone()))
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .circuit_breaker(None)
        .deadline(None)
        .balance(balance)
        .build()
        .unwrap()
}

/// Two calls at once, without a deadline: p2c sends the second to the
/// instance the first did not take (its load counts the first), so each
/// of the two instances answers one and its estimate is learnt.
async fn learn(svc: &ServiceClient, instances: [&Instance; 2]) {
    let (x, y) = tokio::join!(svc.get("/").send_raw(), svc.get("/").send_raw());
    let _ = (x, y);
    assert_eq!(instances.map(Instance::hits), [1, 1]);
}

#[tokio::test(start_paused = true)]
async fn an_instance_too_slow_for_the_time_left_is_skipped_for_one_that_fits() {
    let slow = instance(SLOW, StatusCode::OK).await;
    // Fast, but its first answer is a 503: by the failure ranking alone the
    // slow instance would win the next pick.
    let fast = instance(Duration::ZERO, StatusCode::SERVICE_UNAVAILABLE).await;
    let svc = client(&[&slow, &fast], BalanceConfig::default());
    learn(&svc, [&slow, &fast]).await;

    let start = Instant::now();
    let response = svc
        .get("/")
        .deadline(Duration::from_millis(200))
        .send_raw()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!((slow.hits(), fast.hits()), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn every_call_with_little_time_goes_to_the_one_instance_that_fits_whichever_two_are_drawn() {
    let (a, b) = (
        instance(SLOW, StatusCode::OK).await,
        instance(SLOW, StatusCode::OK).await,
    );
    let fast = instance(Duration::ZERO, StatusCode::SERVICE_UNAVAILABLE).await;
    let svc = client(&[&a, &b, &fast], BalanceConfig::default());
    // Pairs of calls at once until each instance has answered one.
    for _ in 0..20 {
        if [&a, &b, &fast].iter().all(|i| i.hits() > 0) {
            break;
        }
        let _ = tokio::join!(svc.get("/").send_raw(), svc.get("/").send_raw());
    }
    let slow_hits = a.hits() + b.hits();
    assert!(slow_hits >= 2 && fast.hits() >= 1);

    // p2c draws both slow instances one time in three: the pick then
    // looks for one that fits.
    let start = Instant::now();
    for _ in 0..30 {
        let response = svc
            .get("/")
            .deadline(Duration::from_millis(200))
            .send_raw()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(a.hits() + b.hits(), slow_hits);
}

#[tokio::test(start_paused = true)]
async fn a_call_no_instance_can_answer_in_time_fails_at_once_unsent() {
    let (a, b) = (
        instance(SLOW, StatusCode::OK).await,
        instance(SLOW, StatusCode::OK).await,
    );
    let svc = client(&[&a, &b], BalanceConfig::default());
    learn(&svc, [&a, &b]).await;

    let start = Instant::now();
    let err = svc
        .get("/")
        .deadline(Duration::from_millis(100))
        .send_raw()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DeadlineExceeded), "{err:?}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_call_with_time_enough_is_sent_to_a_slow_instance() {
    let (a, b) = (
        instance(SLOW, StatusCode::OK).await,
        instance(SLOW, StatusCode::OK).await,
    );
    let svc = client(&[&a, &b], BalanceConfig::default());
    learn(&svc, [&a, &b]).await;

    let start = Instant::now();
    let response = svc
        .get("/")
        .deadline(Duration::from_millis(400))
        .send_raw()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(start.elapsed(), SLOW);
    assert_eq!(a.hits() + b.hits(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_instance_with_no_answer_yet_is_not_kept_out_by_its_first_guess() {
    let fresh = instance(Duration::ZERO, StatusCode::OK).await;
    // A first guess far beyond the call's deadline.
    let config = BalanceConfig::builder()
        .default_rtt(Duration::from_secs(1))
        .build()
        .unwrap();
    let svc = client(&[&fresh], config);
    let response = svc
        .get("/")
        .deadline(Duration::from_millis(100))
        .send_raw()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fresh.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_instance_left_alone_is_tried_again_once_its_estimate_has_decayed() {
    let (a, b) = (
        instance(SLOW, StatusCode::OK).await,
        instance(SLOW, StatusCode::OK).await,
    );
    let svc = client(&[&a, &b], BalanceConfig::default());
    learn(&svc, [&a, &b]).await;
    // PeakEwma decays an estimate over `decay` (10 s) without traffic:
    // 300 ms is below 100 ms after 10 s × ln 3 (about 11 s).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let response = svc
        .get("/")
        .deadline(Duration::from_millis(100))
        .send_raw()
        .await;
    // Sent, and cut off by the deadline: the instance is slow after all.
    assert!(
        matches!(response, Err(ClientError::DeadlineExceeded)),
        "{response:?}"
    );
    assert_eq!(a.hits() + b.hits(), 3);
}
