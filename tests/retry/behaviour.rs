//! The retry layer's behaviour, on paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use meshguard::BoxError;
use meshguard::backoff::Backoff;
use meshguard::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitOpen};
use meshguard::deadline::{Deadline, DeadlineExceeded, DeadlineLayer, HasDeadline};
use meshguard::retry::{
    ErrorsOnly, HedgeConfig, HedgeLayer, NoReplay, Replay, ReplayBody, RetryBudget,
    RetryBudgetConfig, RetryLayer, RetryPolicy, RetryPolicyBuilder,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use crate::support::upstream::{Reply, Upstream};

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn get() -> Request<String> {
    Request::get("http://upstream/")
        .body(String::new())
        .unwrap()
}

fn policy() -> RetryPolicyBuilder {
    RetryPolicy::builder()
}

async fn send(
    layer: &RetryLayer,
    upstream: &Upstream,
    req: Request<String>,
) -> Result<Response<String>, BoxError> {
    layer.layer(upstream.clone()).oneshot(req).await
}

/// As [`send`], under a deadline layer ending calls `after` from their start.
async fn send_within(
    after: Duration,
    layer: &RetryLayer,
    upstream: &Upstream,
    req: Request<String>,
) -> Result<Response<String>, BoxError> {
    DeadlineLayer::new(after)
        .layer(layer.layer(upstream.clone()))
        .oneshot(req)
        .await
}

#[tokio::test(start_paused = true)]
async fn retries_until_an_attempt_succeeds() {
    let upstream = Upstream::new(|n| Reply::Status(if n < 2 { 503 } else { 200 }));
    let layer = RetryLayer::new(policy().build().unwrap());
    let response = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_request_keeps_its_budget_after_its_service_is_dropped() {
    // `oneshot` drops the service once it has called it; nothing else holds
    // the budget.
    let upstream = Upstream::new(|n| Reply::Status(if n < 2 { 503 } else { 200 }));
    let response = RetryLayer::new(policy().build().unwrap())
        .layer(upstream.clone())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_and_returns_the_last_response() {
    let upstream = Upstream::new(|_| Reply::Status(502));
    let layer = RetryLayer::new(policy().max_attempts(4).build().unwrap());
    let response = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(upstream.attempts(), 4);
}

#[tokio::test(start_paused = true)]
async fn connection_errors_are_retried_and_the_last_error_returned() {
    let upstream = Upstream::new(|_| Reply::Refused);
    let layer = RetryLayer::new(policy().build().unwrap());
    let err = send(&layer, &upstream, get()).await.unwrap_err();
    let io = err.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(upstream.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn other_statuses_are_not_retried() {
    for code in [200, 400, 404, 500] {
        let upstream = Upstream::new(move |_| Reply::Status(code));
        let layer = RetryLayer::new(policy().build().unwrap());
        let response = send(&layer, &upstream, get()).await.unwrap();
        assert_eq!(response.status().as_u16(), code);
        assert_eq!(upstream.attempts(), 1, "status {code}");
    }
}

#[tokio::test(start_paused = true)]
async fn each_backoff_delay_lies_within_its_full_jitter_bounds_and_below_the_cap() {
    // The default backoff: exponential from 25 ms, capped at 250 ms, full jitter.
    let upstream = Upstream::new(|_| Reply::Status(503));
    let layer = RetryLayer::new(
        policy()
            .max_attempts(8)
            .budget(
                RetryBudgetConfig::builder()
                    .ratio(1000.0)
                    .min_per_second(1000)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap(),
    );
    for _ in 0..50 {
        let before = upstream.attempts();
        send(&layer, &upstream, get()).await.unwrap();
        let times = upstream.times()[before..].to_vec();
        assert_eq!(times.len(), 8);
        for (k, pair) in times.windows(2).enumerate() {
            let delay = pair[1] - pair[0];
            let nominal = MS(25 * (1 << k)).min(MS(250));
            assert!(delay <= nominal, "retry {k}: {delay:?} > {nominal:?}");
        }
    }
}

/// Sends 1,000 GETs, one a millisecond, to an upstream that always answers
/// 503, and returns the attempts it received.
async fn attempts_for_a_thousand_failing_requests(budget: RetryBudgetConfig) -> usize {
    let upstream = Upstream::new(|_| Reply::Status(503));
    let layer = RetryLayer::new(
        policy()
            .budget(budget)
            .backoff(Backoff::constant(MS(1)))
            .build()
            .unwrap(),
    );
    let start = Instant::now();
    for i in 0..1000 {
        tokio::time::sleep_until(start + MS(i)).await;
        let response = send(&layer, &upstream, get()).await.unwrap();
        // An exhausted budget returns the real response, not a made-up error.
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    // Well inside the budget's 10 s window: no deposit has expired.
    assert!(start.elapsed() < SECS(2), "{:?}", start.elapsed());
    upstream.attempts()
}

#[tokio::test(start_paused = true)]
async fn the_default_budget_allows_one_point_three_attempts_per_request_at_a_thousand_requests() {
    // 20% of 1,000 requests plus the floor, 10 a second over 10 s: 300
    // retries, 0.1 of them per request from the floor.
    let attempts = attempts_for_a_thousand_failing_requests(RetryBudgetConfig::default()).await;
    assert_eq!(attempts, 1300);
}

#[tokio::test(start_paused = true)]
async fn without_the_floor_the_budget_keeps_attempts_per_request_at_one_plus_the_ratio() {
    let no_floor = RetryBudgetConfig::builder()
        .ratio(0.2)
        .min_per_second(0)
        .build()
        .unwrap();
    let attempts = attempts_for_a_thousand_failing_requests(no_floor).await;
    // Every fifth request earns one retry: exactly 200 in 1,000.
    assert_eq!(attempts, 1200);
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_is_honoured() {
    let upstream = Upstream::new(|n| {
        if n == 0 {
            Reply::After(503, "2")
        } else {
            Reply::Status(200)
        }
    });
    let layer = RetryLayer::new(policy().build().unwrap());
    let response = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let times = upstream.times();
    assert_eq!(times[1] - times[0], SECS(2));
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_maximum_returns_the_response_at_once() {
    let upstream = Upstream::new(|_| Reply::After(429, "60"));
    let layer = RetryLayer::new(policy().max_retry_after(SECS(30)).build().unwrap());
    let start = Instant::now();
    let response = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(upstream.attempts(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_deadline_returns_the_response_at_once() {
    let upstream = Upstream::new(|_| Reply::After(503, "5"));
    let layer = RetryLayer::new(policy().build().unwrap());
    let start = Instant::now();
    let response = send_within(SECS(3), &layer, &upstream, get())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.attempts(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_backoff_short() {
    let upstream = Upstream::new(|_| Reply::Status(503));
    let layer = RetryLayer::new(
        policy()
            .max_attempts(10)
            .backoff(Backoff::constant(MS(80)))
            .build()
            .unwrap(),
    );
    let start = Instant::now();
    let response = send_within(MS(200), &layer, &upstream, get())
        .await
        .unwrap();
    // Attempts at 0, 80 and 160 ms; the next would start at 240 ms.
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.attempts(), 3);
    assert_eq!(start.elapsed(), MS(160));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_outliving_the_deadline_fails_with_deadline_exceeded() {
    let upstream = Upstream::new(|_| Reply::Hang);
    let layer = RetryLayer::new(policy().build().unwrap());
    let start = Instant::now();
    let err = send_within(SECS(2), &layer, &upstream, get())
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(start.elapsed(), SECS(2));
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_carry_the_deadline_is_still_ended_by_the_deadline_layer() {
    /// A request whose `HasDeadline` keeps the default, no-op `set_deadline`.
    #[derive(Debug, Clone, Copy)]
    struct Job;
    impl HasDeadline for Job {}
    impl Replay for Job {
        fn replay(&self, _: bool) -> Result<Self, NoReplay> {
            Ok(Job)
        }
    }
    let slow = tower::service_fn(|_: Job| async {
        tokio::time::sleep(SECS(5)).await;
        Ok::<_, BoxError>("done")
    });
    let layer = RetryLayer::new(
        policy()
            .attempt_timeout(SECS(3))
            .max_attempts(1)
            .build()
            .unwrap(),
    )
    .retry_on(ErrorsOnly);
    let start = Instant::now();
    let err = DeadlineLayer::new(SECS(2))
        .layer(layer.layer(slow))
        .oneshot(Job)
        .await
        .unwrap_err();
    // Cut by the 2 s deadline, before the 3 s attempt timeout.
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(start.elapsed(), SECS(2));
}

#[tokio::test(start_paused = true)]
async fn each_attempt_carries_the_deadline_of_the_whole_call() {
    let upstream = Upstream::new(|n| Reply::Status(if n == 0 { 503 } else { 200 }));
    let layer = RetryLayer::new(policy().build().unwrap());
    let start = Instant::now();
    send_within(SECS(2), &layer, &upstream, get())
        .await
        .unwrap();
    let seen = upstream.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (_, deadline) in seen {
        assert_eq!(deadline, Some(Deadline::at(start + SECS(2))));
    }
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_from_upstream_wins() {
    let upstream = Upstream::new(|_| Reply::Status(200));
    let layer = RetryLayer::new(policy().build().unwrap());
    let mut req = get();
    let theirs = Deadline::at(Instant::now() + MS(500));
    req.extensions_mut().insert(theirs);
    send_within(SECS(2), &layer, &upstream, req).await.unwrap();
    assert_eq!(upstream.seen.lock().unwrap()[0].1, Some(theirs));
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_deadline_has_passed_is_not_sent() {
    let upstream = Upstream::new(|_| Reply::Status(200));
    let layer = RetryLayer::new(policy().build().unwrap());
    let mut req = get();
    req.extensions_mut().insert(Deadline::at(Instant::now()));
    let err = send_within(SECS(2), &layer, &upstream, req)
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(upstream.attempts(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_retry_layer_sends_no_attempt_whose_deadline_has_passed() {
    // No deadline layer above to cut the call: the attempt itself checks.
    let upstream = Upstream::new(|_| Reply::Status(200));
    let layer = RetryLayer::new(policy().build().unwrap());
    let mut req = get();
    req.extensions_mut().insert(Deadline::at(Instant::now()));
    let err = send(&layer, &upstream, req).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(upstream.attempts(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried() {
    let upstream = Upstream::new(|n| {
        if n == 0 {
            Reply::Hang
        } else {
            Reply::Slow(MS(10))
        }
    });
    let layer = RetryLayer::new(
        policy()
            .attempt_timeout(MS(100))
            .backoff(Backoff::constant(MS(5)))
            .build()
            .unwrap(),
    );
    let start = Instant::now();
    let response = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.attempts(), 2);
    assert_eq!(start.elapsed(), MS(100 + 5 + 10));
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_requests_are_not_retried_unless_allowed() {
    let post = || {
        Request::builder()
            .method(Method::POST)
            .uri("http://upstream/orders")
            .body("{}".to_string())
            .unwrap()
    };
    let upstream = Upstream::new(|_| Reply::Status(503));
    let layer = RetryLayer::new(policy().build().unwrap());
    send(&layer, &upstream, post()).await.unwrap();
    assert_eq!(upstream.attempts(), 1);

    let upstream = Upstream::new(|_| Reply::Status(503));
    let layer = RetryLayer::new(policy().retry_non_idempotent(true).build().unwrap());
    send(&layer, &upstream, post()).await.unwrap();
    assert_eq!(upstream.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_body_cannot_be_replayed_goes_out_once() {
    /// A body that was a stream: it can be sent once.
    #[derive(Debug)]
    struct Streamed;
    impl ReplayBody for Streamed {
        fn replay_body(&self) -> Option<Self> {
            None
        }
    }
    let attempts = Arc::new(Mutex::new(0));
    let upstream = {
        let attempts = attempts.clone();
        tower::service_fn(move |_: Request<Streamed>| {
            *attempts.lock().unwrap() += 1;
            std::future::ready(Ok::<_, BoxError>(
                Response::builder().status(503).body(()).unwrap(),
            ))
        })
    };
    let response = RetryLayer::new(policy().build().unwrap())
        .layer(upstream)
        .oneshot(Request::get("http://upstream/").body(Streamed).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(*attempts.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_service_level_circuit_open_is_not_retried() {
    let breaker = CircuitBreaker::new("orders", CircuitBreakerConfig::default());
    breaker.force_open();
    let upstream = Upstream::new(|_| Reply::Status(200));
    let calls = Arc::new(Mutex::new(0));
    let counted = {
        let calls = calls.clone();
        tower::ServiceBuilder::new()
            .map_request(move |r: Request<String>| {
                *calls.lock().unwrap() += 1;
                r
            })
            .map_err(BoxError::from)
            .layer(breaker.layer())
            .service(upstream.clone())
    };
    let layer = RetryLayer::new(policy().build().unwrap());
    let err = layer.layer(counted).oneshot(get()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(*calls.lock().unwrap(), 1);
    assert_eq!(upstream.attempts(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_request_is_hedged_and_the_hedge_counts_against_the_budget() {
    // 20 requests teach the hedge that 10 ms is normal; the 21st hangs and
    // its hedge answers.
    let upstream = Upstream::new(|n| {
        if n == 20 {
            Reply::Hang
        } else {
            Reply::Slow(MS(10))
        }
    });
    let budget = RetryBudget::new(
        RetryBudgetConfig::builder()
            .ratio(0.0)
            .min_per_second(1)
            .build()
            .unwrap(),
    );
    let config = HedgeConfig::builder()
        .percentile(90.0)
        .min_data_points(20)
        .period(SECS(1))
        .build()
        .unwrap();
    let hedge = HedgeLayer::new(config, budget.clone());
    let mut svc = hedge.layer(upstream.clone());
    for _ in 0..20 {
        svc.ready().await.unwrap().call(get()).await.unwrap();
    }
    // tower's hedge reads the latencies of the previous period.
    tokio::time::sleep(SECS(1)).await;
    assert_eq!(budget.balance(), 10);
    let start = Instant::now();
    let response = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.attempts(), 22);
    // The hedge left at the 90th percentile (10 ms) and took 10 ms.
    assert_eq!(start.elapsed(), MS(20));
    assert_eq!(budget.balance(), 9);
}
