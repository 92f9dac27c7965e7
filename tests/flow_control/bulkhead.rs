//! The bulkhead through `ServiceClient`: at most `max_concurrent` calls
//! reach the upstream, up to `max_queue` more wait at most `max_wait`, and
//! a refusal is not sent, not retried and not counted by the breaker (the
//! client's, below the bulkhead, never sees it; a breaker layered above
//! one, over a tower `service_fn`, reads it as not counted).

use std::time::Duration;

use meshguard::backoff::Backoff;
use meshguard::circuit_breaker::{BreakerError, CircuitBreaker, CircuitBreakerConfig, State};
use meshguard::classify::Outcome;
use meshguard::client::{ClientError, ServiceClient};
use meshguard::limit::{BulkheadConfig, BulkheadLayer, LimitExceeded, LimitReason};
use meshguard::retry::RetryPolicy;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::upstream::{Gated, client};

fn bulkhead(max_concurrent: usize, max_queue: usize, max_wait: Duration) -> BulkheadConfig {
    BulkheadConfig::builder()
        .max_concurrent(max_concurrent)
        .max_queue(max_queue)
        .max_wait(max_wait)
        .build()
        .unwrap()
}

/// A call made in a task of its own.
fn spawn_call(svc: &ServiceClient) -> JoinHandle<Result<(), ClientError>> {
    let svc = svc.clone();
    tokio::spawn(async move { svc.get("/").send::<()>().await })
}

/// A client with a bulkhead of one slot and no queue, the slot taken by a
/// call the upstream holds.
async fn one_slot_taken() -> (Gated, ServiceClient, JoinHandle<Result<(), ClientError>>) {
    let mut up = Gated::start().await;
    let svc = client(&up.base)
        .bulkhead(Some(bulkhead(1, 0, Duration::from_secs(1))))
        .build()
        .unwrap();
    let held = spawn_call(&svc);
    up.arrival().await;
    (up, svc, held)
}

#[tokio::test(start_paused = true)]
async fn a_call_beyond_the_slots_with_no_queue_fails_at_once_and_never_reaches_the_upstream() {
    let (up, svc, held) = one_slot_taken().await;
    let started = Instant::now();
    let err = svc.get("/").send::<()>().await.unwrap_err();
    assert!(
        matches!(err, ClientError::LimitExceeded(LimitReason::QueueFull)),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    up.release(1);
    held.await.unwrap().unwrap();
    assert_eq!(up.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_a_retryable_limit_exceeded_read_as_rejected_by_limit() {
    let (up, svc, held) = one_slot_taken().await;
    let err = svc.get("/").send::<()>().await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.kind(), "limit_exceeded");
    assert_eq!(err.outcome(), Outcome::RejectedByLimit);
    assert_eq!(err.retry_after(), None);
    assert_eq!(
        err.to_string(),
        "call refused: the bulkhead and its queue are full"
    );
    up.release(1);
    held.await.unwrap().unwrap();
}

// Real time: the held call's answer must travel back while the queued
// call's timer waits (paused, the clock would jump to it); the timer is
// far beyond the test.
#[tokio::test]
async fn a_queued_call_is_served_when_a_slot_frees_and_never_alongside() {
    let mut up = Gated::start().await;
    let svc = client(&up.base)
        .bulkhead(Some(bulkhead(1, 1, Duration::from_secs(60))))
        .build()
        .unwrap();
    let first = spawn_call(&svc);
    up.arrival().await;
    let queued = spawn_call(&svc);
    // One turn of the scheduler takes the spawned call into the queue.
    tokio::task::yield_now().await;
    // The queue's one place is taken, and nothing more reached the upstream.
    let err = svc.get("/").send::<()>().await.unwrap_err();
    assert!(
        matches!(err, ClientError::LimitExceeded(LimitReason::QueueFull)),
        "{err:?}"
    );
    assert_eq!(up.hits(), 1);
    up.release(1);
    first.await.unwrap().unwrap();
    up.arrival().await;
    up.release(1);
    queued.await.unwrap().unwrap();
    assert_eq!((up.hits(), up.max_in_handler()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_fails_with_queue_timeout_after_exactly_max_wait() {
    let mut up = Gated::start().await;
    let svc = client(&up.base)
        .bulkhead(Some(bulkhead(1, 1, Duration::from_millis(250))))
        .build()
        .unwrap();
    let held = spawn_call(&svc);
    up.arrival().await;
    let started = Instant::now();
    let err = svc.get("/").send::<()>().await.unwrap_err();
    assert!(
        matches!(err, ClientError::LimitExceeded(LimitReason::QueueTimeout)),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    up.release(1);
    held.await.unwrap().unwrap();
    assert_eq!(up.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refused_call_is_not_retried() {
    let mut up = Gated::start().await;
    let svc = client(&up.base)
        .retry(
            RetryPolicy::builder()
                .max_attempts(3)
                .backoff(Backoff::constant(Duration::from_millis(100)))
                .build()
                .unwrap(),
        )
        .bulkhead(Some(bulkhead(1, 0, Duration::from_secs(1))))
        .build()
        .unwrap();
    let held = spawn_call(&svc);
    up.arrival().await;
    let started = Instant::now();
    let err = svc.get("/").send::<()>().await.unwrap_err();
    // A retry would come after 100 ms of backoff.
    assert!(
        matches!(err, ClientError::LimitExceeded(LimitReason::QueueFull)),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    up.release(1);
    held.await.unwrap().unwrap();
    assert_eq!(up.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn refusals_are_not_counted_by_the_service_breaker() {
    let mut up = Gated::start().await;
    let svc = client(&up.base)
        .circuit_breaker(Some(
            CircuitBreakerConfig::builder()
                .consecutive_failures(2)
                .build()
                .unwrap(),
        ))
        .bulkhead(Some(bulkhead(1, 0, Duration::from_secs(1))))
        .build()
        .unwrap();
    let held = spawn_call(&svc);
    up.arrival().await;
    for _ in 0..20 {
        let err = svc.get("/").send::<()>().await.unwrap_err();
        assert!(matches!(err, ClientError::LimitExceeded(_)), "{err:?}");
    }
    let breaker = svc.breaker().unwrap().metrics();
    assert_eq!(
        (breaker.state, breaker.calls, breaker.failures),
        (State::Closed, 0, 0)
    );
    up.release(1);
    held.await.unwrap().unwrap();
    let breaker = svc.breaker().unwrap().metrics();
    assert_eq!(
        (breaker.state, breaker.calls, breaker.failures),
        (State::Closed, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_breaker_above_a_bulkhead_does_not_count_its_refusals() {
    let breaker = CircuitBreaker::new(
        "flow",
        CircuitBreakerConfig::builder()
            .consecutive_failures(1)
            .build()
            .unwrap(),
    );
    let svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .layer(BulkheadLayer::new(
            "flow",
            bulkhead(1, 0, Duration::from_secs(1)),
        ))
        .service_fn(|rx: oneshot::Receiver<()>| async move {
            rx.await.map_err(meshguard::BoxError::from)
        });
    let (release, rx) = oneshot::channel();
    let mut held_svc = svc.clone();
    let held = held_svc.ready().await.unwrap().call(rx);
    for _ in 0..5 {
        let err = svc.clone().oneshot(oneshot::channel().1).await.unwrap_err();
        let BreakerError::Inner(e) = err else {
            panic!("{err:?}")
        };
        let refusal = e.downcast_ref::<LimitExceeded>().expect("a refusal");
        assert_eq!(refusal.reason(), LimitReason::QueueFull);
    }
    let metrics = breaker.metrics();
    assert_eq!(
        (metrics.state, metrics.calls, metrics.failures),
        (State::Closed, 0, 0)
    );
    release.send(()).unwrap();
    held.await.unwrap();
    assert_eq!(breaker.metrics().calls, 1);
}
