//! The circuit breaker's behaviour, one rule per test, on paused time.

use crate::support;

use std::time::Duration;

use meshguard::backoff::{Backoff, Jitter};
use meshguard::circuit_breaker::{
    BreakerError, CircuitBreaker, CircuitBreakerConfig, Event, Rejection, State,
};
use support::{Call, MS, SECS, call, rejected, wrap};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt};

fn rate_config(window: u32, min_calls: u32, threshold: f64) -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .count_window(window, window)
        .minimum_calls(min_calls)
        .failure_rate_threshold(threshold)
        .open_duration(Backoff::constant(SECS(10)))
        .half_open_calls(2)
        .build()
        .unwrap()
}

fn rate_config_buckets(window: u32, buckets: u32, threshold: f64) -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .count_window(window, buckets)
        .minimum_calls(window)
        .failure_rate_threshold(threshold)
        .build()
        .unwrap()
}

/// A 10 s time window in 10 buckets, opening at 50% of at least 3 calls.
fn ten_second_window() -> (CircuitBreaker, support::TestService) {
    let config = CircuitBreakerConfig::builder()
        .time_window(SECS(10), 10)
        .minimum_calls(3)
        .failure_rate_threshold(50.0)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let svc = wrap(&breaker);
    (breaker, svc)
}

/// Opens on one failure, for 10 s, with `probes` half-open calls.
fn opens_on_one_failure(probes: u32) -> meshguard::circuit_breaker::CircuitBreakerConfigBuilder {
    CircuitBreakerConfig::builder()
        .count_window(1, 1)
        .minimum_calls(1)
        .open_duration(Backoff::constant(SECS(10)))
        .half_open_calls(probes)
}

async fn trip(svc: &mut support::TestService, breaker: &CircuitBreaker) {
    while breaker.state() != State::Open {
        let _ = call(svc, Call::Fail).await;
    }
}

#[tokio::test(start_paused = true)]
async fn opens_exactly_when_failure_rate_reaches_threshold_after_minimum_calls() {
    let breaker = CircuitBreaker::new("t", rate_config(10, 10, 50.0));
    let mut svc = wrap(&breaker);
    for _ in 0..5 {
        call(&mut svc, Call::Ok).await.unwrap();
    }
    for i in 0..4 {
        let _ = call(&mut svc, Call::Fail).await;
        assert_eq!(breaker.state(), State::Closed, "after {} failures", i + 1);
    }
    // The tenth call: 5 failures of 10 is 50%, the threshold.
    let _ = call(&mut svc, Call::Fail).await;
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn does_not_open_before_minimum_calls() {
    let breaker = CircuitBreaker::new("t", rate_config(10, 5, 50.0));
    let mut svc = wrap(&breaker);
    for _ in 0..4 {
        let _ = call(&mut svc, Call::Fail).await;
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().failures, 4);
    let _ = call(&mut svc, Call::Fail).await;
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn stays_closed_just_below_the_threshold() {
    let breaker = CircuitBreaker::new("t", rate_config(10, 10, 50.0));
    let mut svc = wrap(&breaker);
    for c in [Call::Ok; 6].into_iter().chain([Call::Fail; 4]) {
        let _ = call(&mut svc, c).await;
    }
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures, m.state), (10, 4, State::Closed));
}

#[tokio::test(start_paused = true)]
async fn count_window_forgets_calls_older_than_its_size() {
    let breaker = CircuitBreaker::new("t", rate_config(4, 4, 75.0));
    let mut svc = wrap(&breaker);
    for c in [
        Call::Fail,
        Call::Fail,
        Call::Ok,
        Call::Ok,
        Call::Ok,
        Call::Ok,
    ] {
        let _ = call(&mut svc, c).await;
    }
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (4, 0));
    // Two failures of the last four: 50%, below 75%.
    for _ in 0..2 {
        let _ = call(&mut svc, Call::Fail).await;
    }
    assert_eq!(breaker.state(), State::Closed);
    let _ = call(&mut svc, Call::Fail).await;
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn count_window_slides_one_bucket_at_a_time() {
    // 6 calls in 3 buckets of 2: the window holds 6 or 7 calls.
    let config = CircuitBreakerConfig::builder()
        .count_window(6, 3)
        .minimum_calls(6)
        .failure_rate_threshold(100.0)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut svc = wrap(&breaker);
    for _ in 0..7 {
        call(&mut svc, Call::Ok).await.unwrap();
    }
    assert_eq!(breaker.metrics().calls, 7);
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.metrics().calls, 6);
}

#[tokio::test(start_paused = true)]
async fn slow_successes_trip_the_breaker() {
    let config = CircuitBreakerConfig::builder()
        .count_window(4, 4)
        .minimum_calls(4)
        .failure_rate_threshold(100.0)
        .slow_call_duration(MS(500))
        .slow_call_rate_threshold(50.0)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut svc = wrap(&breaker);
    call(&mut svc, Call::Ok).await.unwrap();
    call(&mut svc, Call::Slow(MS(499))).await.unwrap();
    call(&mut svc, Call::Slow(MS(500))).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().slow_calls, 1);
    call(&mut svc, Call::Slow(SECS(2))).await.unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_calls() {
    let (breaker, mut svc) = ten_second_window();
    let _ = call(&mut svc, Call::Fail).await;
    let _ = call(&mut svc, Call::Fail).await;
    assert_eq!(breaker.metrics().failures, 2);
    advance(SECS(10)).await;
    // The failures are ten seconds old: out of the window.
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (0, 0));
    call(&mut svc, Call::Ok).await.unwrap();
    call(&mut svc, Call::Ok).await.unwrap();
    let _ = call(&mut svc, Call::Fail).await;
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn time_window_keeps_calls_younger_than_its_duration() {
    let (breaker, mut svc) = ten_second_window();
    let _ = call(&mut svc, Call::Fail).await;
    advance(MS(8_999)).await;
    let _ = call(&mut svc, Call::Fail).await;
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_regardless_of_rate() {
    let config = CircuitBreakerConfig::builder()
        .consecutive_failures(3)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut svc = wrap(&breaker);
    for c in [Call::Fail, Call::Fail, Call::Ok, Call::Fail, Call::Fail] {
        let _ = call(&mut svc, c).await;
    }
    assert_eq!(breaker.state(), State::Closed);
    let _ = call(&mut svc, Call::Fail).await;
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_rejects_without_calling_and_says_when_to_retry() {
    let breaker = CircuitBreaker::new("t", rate_config(2, 2, 50.0));
    let mut svc = wrap(&breaker);
    trip(&mut svc, &breaker).await;
    advance(SECS(4)).await;
    match call(&mut svc, Call::Ok).await {
        Err(BreakerError::Open(open)) => {
            assert_eq!(open.state(), State::Open);
            assert_eq!(open.retry_after(), Some(SECS(6)));
            assert_eq!(open.to_string(), "circuit open, retry after 6s");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // The window still holds the two failures that tripped it, and only them.
    assert_eq!(breaker.metrics().calls, 2, "rejections are not recorded");
}

#[tokio::test(start_paused = true)]
async fn half_open_begins_when_the_open_period_ends() {
    let breaker = CircuitBreaker::new("t", rate_config(2, 2, 50.0));
    let mut svc = wrap(&breaker);
    trip(&mut svc, &breaker).await;
    advance(SECS(10) - Duration::from_nanos(1)).await;
    assert!(rejected(&mut svc, Call::Ok).await);
    advance(Duration::from_nanos(1)).await;
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_the_permitted_probes() {
    let breaker = CircuitBreaker::new("t", rate_config(2, 2, 50.0));
    let mut svc = wrap(&breaker);
    trip(&mut svc, &breaker).await;
    advance(SECS(10)).await;
    let first = svc.ready().await.unwrap().call(Call::Hang);
    let second = svc.ready().await.unwrap().call(Call::Hang);
    match call(&mut svc, Call::Ok).await {
        Err(BreakerError::Open(open)) => assert_eq!(open.state(), State::HalfOpen),
        other => panic!("a third probe was admitted: {other:?}"),
    }
    drop((first, second));
}

#[tokio::test(start_paused = true)]
async fn half_open_closes_when_the_probes_succeed() {
    let breaker = CircuitBreaker::new("t", rate_config(2, 2, 50.0));
    let mut svc = wrap(&breaker);
    trip(&mut svc, &breaker).await;
    advance(SECS(10)).await;
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    let m = breaker.metrics();
    assert_eq!(
        (m.calls, m.failures),
        (0, 0),
        "closing starts a fresh window"
    );
}

/// Opens at 50% of 2 calls for 10 s, doubling per re-open up to `cap`;
/// one probe.
fn growing_open_period(cap: std::time::Duration) -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .count_window(2, 2)
        .minimum_calls(2)
        .failure_rate_threshold(50.0)
        .open_duration(Backoff::exponential(SECS(10), cap).unwrap())
        .half_open_calls(1)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn half_open_reopens_on_failure_with_a_longer_open_period() {
    let breaker = CircuitBreaker::new("t", growing_open_period(SECS(25)));
    let mut svc = wrap(&breaker);
    trip(&mut svc, &breaker).await;
    let mut open_for = Vec::new();
    for _ in 0..3 {
        let opened = Instant::now();
        // Wait for the first call that is let through: it is the probe.
        while let Err(BreakerError::Open(o)) = call(&mut svc, Call::Fail).await {
            advance(o.retry_after().unwrap()).await;
        }
        open_for.push(opened.elapsed());
        assert_eq!(breaker.state(), State::Open);
    }
    assert_eq!(open_for, [SECS(10), SECS(20), SECS(25)]);
}

#[tokio::test(start_paused = true)]
async fn a_successful_half_open_resets_the_open_period() {
    let breaker = CircuitBreaker::new("t", growing_open_period(SECS(100)));
    let mut svc = wrap(&breaker);
    trip(&mut svc, &breaker).await;
    advance(SECS(10)).await;
    let _ = call(&mut svc, Call::Fail).await; // re-opens for 20 s
    advance(SECS(20)).await;
    call(&mut svc, Call::Ok).await.unwrap(); // closes
    assert_eq!(breaker.state(), State::Closed);
    trip(&mut svc, &breaker).await;
    match call(&mut svc, Call::Ok).await {
        Err(BreakerError::Open(o)) => assert_eq!(o.retry_after(), Some(SECS(10))),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn open_duration_jitter_stays_within_its_bounds() {
    let config = CircuitBreakerConfig::builder()
        .count_window(1, 1)
        .minimum_calls(1)
        .open_duration(
            Backoff::exponential(SECS(10), SECS(60))
                .unwrap()
                .with_jitter(Jitter::Equal),
        )
        .seed(7)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut svc = wrap(&breaker);
    let _ = call(&mut svc, Call::Fail).await;
    match call(&mut svc, Call::Ok).await {
        Err(BreakerError::Open(o)) => {
            let d = o.retry_after().unwrap();
            assert!(d >= SECS(5) && d <= SECS(10), "{d:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn max_wait_in_half_open_reopens_when_probes_do_not_finish() {
    let config = opens_on_one_failure(1)
        .max_wait_in_half_open(SECS(5))
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut svc = wrap(&breaker);
    let _ = call(&mut svc, Call::Fail).await;
    advance(SECS(10)).await;
    let _hung = svc.ready().await.unwrap().call(Call::Hang);
    advance(MS(4_999)).await;
    assert!(rejected(&mut svc, Call::Ok).await);
    assert_eq!(breaker.state(), State::HalfOpen);
    advance(MS(1)).await;
    assert!(rejected(&mut svc, Call::Ok).await);
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_returns_its_permit_and_counts_nothing() {
    let config = opens_on_one_failure(1).build().unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut svc = wrap(&breaker);
    let _ = call(&mut svc, Call::Fail).await;
    advance(SECS(10)).await;
    let probe = svc.ready().await.unwrap().call(Call::Hang);
    assert!(rejected(&mut svc, Call::Ok).await);
    drop(probe);
    assert_eq!(breaker.state(), State::HalfOpen);
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_closed_call_is_not_recorded() {
    let breaker = CircuitBreaker::new("t", rate_config(4, 1, 50.0));
    let mut svc = wrap(&breaker);
    let fut = svc.ready().await.unwrap().call(Call::Fail);
    drop(fut);
    assert_eq!(breaker.metrics().calls, 0);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_are_not_recorded() {
    use meshguard::classify::Outcome;
    let breaker = CircuitBreaker::new("t", rate_config(4, 1, 50.0));
    let classify = |r: &Result<&'static str, &'static str>| match r {
        Err("boom") => Outcome::Ignored,
        Err(_) => Outcome::Failure,
        Ok(_) => Outcome::Success,
    };
    let mut svc = tower::Layer::layer(&breaker.layer().classify(classify), support::scripted());
    let _ = svc.ready().await.unwrap().call(Call::Fail).await;
    assert_eq!(breaker.metrics().calls, 0);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn forced_open_rejects_every_call_until_reset() {
    let breaker = CircuitBreaker::new("t", rate_config(4, 4, 50.0));
    let mut svc = wrap(&breaker);
    breaker.force_open();
    advance(SECS(3600)).await;
    match call(&mut svc, Call::Ok).await {
        Err(BreakerError::Open(o)) => {
            assert_eq!((o.state(), o.retry_after()), (State::ForcedOpen, None))
        }
        other => panic!("{other:?}"),
    }
    breaker.reset();
    call(&mut svc, Call::Ok).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn disabled_lets_everything_through_and_records_nothing() {
    let breaker = CircuitBreaker::new("t", rate_config(2, 1, 50.0));
    let mut svc = wrap(&breaker);
    breaker.disable();
    for _ in 0..10 {
        assert_eq!(
            call(&mut svc, Call::Fail).await.unwrap_err().into_inner(),
            Some("boom")
        );
    }
    assert_eq!(breaker.state(), State::Disabled);
    breaker.reset();
    assert_eq!(breaker.metrics().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn metrics_only_never_rejects_but_records_and_emits_events() {
    let breaker = CircuitBreaker::new("t", rate_config(4, 4, 50.0));
    let mut svc = wrap(&breaker);
    breaker.metrics_only();
    let mut events = breaker.subscribe();
    for _ in 0..8 {
        assert!(!rejected(&mut svc, Call::Fail).await);
    }
    assert_eq!(breaker.state(), State::MetricsOnly);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (4, 4));
    assert_eq!(
        events.try_recv().unwrap(),
        Event::ThresholdCrossed {
            above: true,
            failure_rate: 100.0,
            slow_call_rate: 0.0
        }
    );
    assert!(events.try_recv().is_err(), "announced once, on crossing");
}

#[tokio::test(start_paused = true)]
async fn metrics_only_announces_falling_below_from_successes_alone() {
    // A window of 4 calls in 4 buckets: successes push the failures out.
    let breaker = CircuitBreaker::new("t", rate_config(4, 4, 50.0));
    let mut svc = wrap(&breaker);
    breaker.metrics_only();
    for _ in 0..4 {
        let _ = call(&mut svc, Call::Fail).await;
    }
    let mut events = breaker.subscribe();
    // 2 failures in 4 calls is still 50%: at the threshold, not below it.
    for _ in 0..2 {
        call(&mut svc, Call::Ok).await.unwrap();
    }
    assert!(events.try_recv().is_err());
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        Event::ThresholdCrossed {
            above: false,
            failure_rate: 25.0,
            slow_call_rate: 0.0
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_that_reaches_the_minimum_calls_trips_the_breaker() {
    let breaker = CircuitBreaker::new("t", rate_config(10, 4, 50.0));
    let mut svc = wrap(&breaker);
    for c in [Call::Fail, Call::Fail, Call::Ok] {
        let _ = call(&mut svc, c).await;
    }
    assert_eq!(breaker.state(), State::Closed);
    call(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn successes_alone_slide_the_count_window_exactly() {
    // 6 calls in 3 buckets of 2, opening at 100% so it stays closed.
    let breaker = CircuitBreaker::new("t", rate_config_buckets(6, 3, 100.0));
    let mut svc = wrap(&breaker);
    let _ = call(&mut svc, Call::Fail).await;
    for _ in 0..7 {
        call(&mut svc, Call::Ok).await.unwrap();
    }
    // 8 calls: buckets [F,ok] [ok,ok] [ok,ok] [ok,ok]; the first is out.
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (6, 0));
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_every_transition_in_order() {
    let breaker = CircuitBreaker::new("t", rate_config(2, 2, 50.0));
    let mut svc = wrap(&breaker);
    let mut events = breaker.subscribe();
    let mut watch = breaker.watch();
    trip(&mut svc, &breaker).await;
    assert_eq!(*watch.borrow_and_update(), State::Open);
    advance(SECS(10)).await;
    call(&mut svc, Call::Ok).await.unwrap();
    call(&mut svc, Call::Ok).await.unwrap();
    let mut seen = Vec::new();
    while let Ok(Event::StateChanged { from, to }) = events.try_recv() {
        seen.push((from, to));
    }
    assert_eq!(
        seen,
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
    assert!(watch.has_changed().unwrap());
    assert_eq!(*watch.borrow_and_update(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn wait_mode_wakes_the_task_exactly_when_half_open_begins() {
    let config = opens_on_one_failure(1)
        .rejection(Rejection::Wait)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut svc = wrap(&breaker);
    let _ = call(&mut svc, Call::Fail).await;
    assert_eq!(breaker.state(), State::Open);

    let ready = support::Task::default();
    assert!(ready.poll(|cx| svc.poll_ready(cx)).is_pending());
    advance(SECS(10) - MS(1)).await;
    assert!(!ready.is_woken());
    assert!(ready.poll(|cx| svc.poll_ready(cx)).is_pending());
    advance(MS(1)).await;
    assert!(ready.is_woken());
    assert!(ready.poll(|cx| svc.poll_ready(cx)).is_ready());
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(svc.call(Call::Ok).await, Ok("ok"));
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn wait_mode_wakes_on_reset() {
    let config = CircuitBreakerConfig::builder()
        .rejection(Rejection::Wait)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut svc = wrap(&breaker);
    breaker.force_open();
    let ready = support::Task::default();
    assert!(ready.poll(|cx| svc.poll_ready(cx)).is_pending());
    breaker.reset();
    assert!(ready.is_woken());
    assert!(ready.poll(|cx| svc.poll_ready(cx)).is_ready());
}

#[tokio::test(start_paused = true)]
async fn wait_mode_wakes_a_parked_task_when_a_cancelled_probe_gives_its_permit_back() {
    let config = opens_on_one_failure(1)
        .rejection(Rejection::Wait)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut prober = wrap(&breaker);
    let mut parked = prober.clone();
    let _ = call(&mut prober, Call::Fail).await;
    advance(SECS(10)).await;
    let probe = prober.ready().await.unwrap().call(Call::Hang);
    assert_eq!(breaker.state(), State::HalfOpen);

    let task = support::Task::default();
    assert!(task.poll(|cx| parked.poll_ready(cx)).is_pending());
    // An attempt timeout (or a hedge, or a caller giving up) drops the probe.
    drop(probe);
    assert!(task.is_woken(), "the parked task was never woken");
    assert!(task.poll(|cx| parked.poll_ready(cx)).is_ready());
    assert_eq!(parked.call(Call::Ok).await, Ok("ok"));
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn wait_mode_wakes_a_parked_task_when_the_half_open_wait_ends() {
    let config = opens_on_one_failure(1)
        .rejection(Rejection::Wait)
        .max_wait_in_half_open(SECS(5))
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut prober = wrap(&breaker);
    let mut parked = prober.clone();
    let _ = call(&mut prober, Call::Fail).await;
    advance(SECS(10)).await;
    let _hung = prober.ready().await.unwrap().call(Call::Hang);

    let task = support::Task::default();
    assert!(task.poll(|cx| parked.poll_ready(cx)).is_pending());
    advance(SECS(5) - MS(1)).await;
    assert!(!task.is_woken());
    advance(MS(1)).await;
    assert!(task.is_woken(), "no timer was armed for the half-open wait");
    // The wait re-opened the breaker; its next open period has a timer too.
    assert!(task.poll(|cx| parked.poll_ready(cx)).is_pending());
    assert_eq!(breaker.state(), State::Open);
    let started = Instant::now();
    parked.ready().await.unwrap();
    assert_eq!(started.elapsed(), SECS(10));
    assert_eq!(breaker.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_fail_fast_breakers_rejection_says_fail_fast() {
    let breaker = CircuitBreaker::new("t", CircuitBreakerConfig::default());
    let mut svc = wrap(&breaker);
    breaker.force_open();
    match call(&mut svc, Call::Ok).await {
        Err(BreakerError::Open(open)) => assert_eq!(open.rejection(), Rejection::FailFast),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_wait_mode_breakers_rejection_says_wait() {
    let config = CircuitBreakerConfig::builder()
        .rejection(Rejection::Wait)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut svc = wrap(&breaker);
    breaker.force_open();
    // A call made without waiting for readiness is rejected.
    match svc.call(Call::Ok).await {
        Err(BreakerError::Open(open)) => assert_eq!(open.rejection(), Rejection::Wait),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn the_wait_rejection_deserializes_from_wait() {
    let config: CircuitBreakerConfig = toml::from_str(r#"rejection = "wait""#).unwrap();
    assert_eq!(config.rejection(), Rejection::Wait);
}

#[test]
fn the_wait_rejection_deserializes_from_its_earlier_name_gate() {
    let config: CircuitBreakerConfig = toml::from_str(r#"rejection = "gate""#).unwrap();
    assert_eq!(config.rejection(), Rejection::Wait);
}

/// A service that is never ready, counting how often it is asked.
#[derive(Clone, Default)]
struct NeverReady(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Service<Call> for NeverReady {
    type Response = &'static str;
    type Error = &'static str;
    type Future = std::future::Ready<Result<&'static str, &'static str>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), &'static str>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::task::Poll::Pending
    }

    fn call(&mut self, _: Call) -> Self::Future {
        panic!("called without being ready")
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_fail_fast_breaker_answers_ready_without_polling_the_inner_service() {
    let breaker = CircuitBreaker::new("t", opens_on_one_failure(1).build().unwrap());
    let inner = NeverReady::default();
    let mut svc = breaker.layer().layer(inner.clone());
    breaker.force_open();
    let ready = tokio::time::timeout(SECS(1), svc.ready()).await;
    let svc = ready
        .expect("poll_ready waited for the inner service")
        .unwrap();
    match svc.call(Call::Ok).await {
        Err(BreakerError::Open(open)) => assert_eq!(open.state(), State::ForcedOpen),
        _ => panic!("the call was not rejected"),
    }
    assert_eq!(inner.0.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn an_open_fail_fast_breaker_keeps_its_decision_until_the_call() {
    // Open for 10 s; ready is asked just before the period ends and the call
    // made just after: the call fails as ready said, and the inner service,
    // never polled, is never called.
    let config = opens_on_one_failure(1).build().unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut failing = wrap(&breaker);
    let _ = call(&mut failing, Call::Fail).await;
    let mut svc = breaker.layer().layer(NeverReady::default());
    advance(SECS(10) - MS(1)).await;
    let ready = tokio::time::timeout(MS(1), svc.ready()).await;
    let svc = ready
        .expect("poll_ready waited for the inner service")
        .unwrap();
    advance(MS(1)).await;
    assert!(matches!(
        svc.call(Call::Ok).await,
        Err(BreakerError::Open(_))
    ));
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn per_service_layer_gives_each_service_its_own_breaker() {
    use meshguard::circuit_breaker::CircuitBreakerLayer;
    let layer = CircuitBreakerLayer::per_service("endpoint", rate_config(1, 1, 50.0));
    let mut a = tower::Layer::layer(&layer, support::scripted());
    let mut b = tower::Layer::layer(&layer, support::scripted());
    let _ = a.ready().await.unwrap().call(Call::Fail).await;
    assert_eq!(a.breaker().state(), State::Open);
    assert_eq!(b.breaker().state(), State::Closed);
    assert_eq!(
        (a.breaker().name(), b.breaker().name()),
        ("endpoint-1", "endpoint-2")
    );
    assert_eq!(b.ready().await.unwrap().call(Call::Ok).await.unwrap(), "ok");
}

#[tokio::test(start_paused = true)]
async fn rejections_downcast_from_a_boxed_error() {
    let breaker = CircuitBreaker::new("t", rate_config(1, 1, 50.0));
    breaker.force_open();
    let mut svc = tower::ServiceBuilder::new()
        .map_err(meshguard::BoxError::from)
        .layer(breaker.layer())
        .service(support::scripted());
    let err = svc.ready().await.unwrap().call(Call::Ok).await.unwrap_err();
    assert!(
        err.downcast_ref::<meshguard::circuit_breaker::CircuitOpen>()
            .is_some()
    );
    breaker.reset();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Call::Fail)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "boom");
}

/// Not on paused time: what is tested is the scheduler's real behaviour. On
/// paused time the clock only moves while every task is idle, which tasks
/// hammering an open breaker never are.
#[tokio::test(flavor = "current_thread")]
async fn rejections_yield_to_the_scheduler_so_timers_keep_their_schedule() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let breaker = CircuitBreaker::new("t", CircuitBreakerConfig::default());
    breaker.force_open();
    let stop = Arc::new(AtomicBool::new(false));
    // Each hammer stops by itself after 2 s of real time, so a starved
    // runtime makes the test fail rather than hang.
    let hammers: Vec<_> = (0..16)
        .map(|_| {
            let mut svc = wrap(&breaker);
            let stop = stop.clone();
            tokio::spawn(async move {
                let until = tokio::time::Instant::now() + Duration::from_secs(2);
                while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < until {
                    assert!(rejected(&mut svc, Call::Ok).await);
                }
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let due = Instant::now() + MS(10);
        tokio::time::sleep_until(due).await;
        worst = worst.max(Instant::now() - due);
    }
    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        h.await.unwrap();
    }
    assert!(
        worst < MS(100),
        "a 10 ms timer fired {worst:?} late while tasks hammered an open breaker"
    );
}

#[test]
fn the_default_open_period_starts_at_one_second_and_grows_to_a_minute() {
    let expected = Backoff::exponential(SECS(1), SECS(60))
        .unwrap()
        .with_jitter(Jitter::Upward);
    assert_eq!(CircuitBreakerConfig::default().open_duration(), &expected);
    let ejection = meshguard::balance::BalanceConfig::default();
    assert_eq!(ejection.ejection().unwrap().open_duration(), &expected);
}

#[tokio::test(start_paused = true)]
async fn default_open_periods_grow_from_one_second_on_each_reopen_and_reset_after_a_success() {
    // The defaults but for the trip condition: one failure opens.
    let config = CircuitBreakerConfig::builder()
        .count_window(1, 1)
        .minimum_calls(1)
        .half_open_calls(1)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("t", config);
    let mut svc = wrap(&breaker);
    let _ = call(&mut svc, Call::Fail).await;
    let first = time_until_admitted(&mut svc).await;
    assert!(first >= SECS(1) && first <= MS(1_510), "{first:?}");
    // The probe above succeeded: closed, back to the first step.
    assert_eq!(breaker.state(), State::Closed);
    let _ = call(&mut svc, Call::Fail).await;
    advance(MS(1_500)).await;
    // A failed probe re-opens for the second step, 2 to 3 s.
    let _ = call(&mut svc, Call::Fail).await;
    assert_eq!(breaker.state(), State::Open);
    let second = time_until_admitted(&mut svc).await;
    assert!(second >= SECS(2) && second <= MS(3_010), "{second:?}");
}

/// How long until the breaker lets a call through (checked every 10 ms),
/// making that call succeed.
async fn time_until_admitted(svc: &mut support::TestService) -> Duration {
    let started = Instant::now();
    loop {
        match call(svc, Call::Ok).await {
            Err(BreakerError::Open(_)) => advance(MS(10)).await,
            _ => return started.elapsed(),
        }
    }
}
