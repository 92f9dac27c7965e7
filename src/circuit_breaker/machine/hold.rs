//! Holding a breaker open for as long as its callee asked: an endpoint that
//! answers 429 or 503 with a `Retry-After` (or a gRPC pushback) is out of
//! rotation for exactly that long (`BreakerOptions::hold_cap`).

use std::time::Duration;

use super::Core;
use crate::circuit_breaker::State;
use crate::circuit_breaker::slot::Slot;
use crate::circuit_breaker::word::{CLOSED, HALF_OPEN, OPEN, generation, kind, pack, state_of};
use crate::classify::Outcome;
use crate::sync::{Ordering::*, spin};

/// How long the callee asked to be left alone, if the outcome says: a
/// failed status's `Retry-After` (the classifier reads it on 429 and 503
/// only), a gRPC status's non-negative pushback.
#[inline]
pub(crate) fn asked_for(outcome: &Outcome) -> Option<Duration> {
    match outcome {
        Outcome::Status { .. } | Outcome::GrpcStatus { .. } => outcome.retry_after(),
        _ => None,
    }
}

impl Core {
    /// Opens the breaker until `delay` after `now`, as its callee asked, if
    /// the state the call was admitted in (`generation_`) still stands:
    /// from closed only if the open limit (the balancer's ejection pool)
    /// allows, from half-open (a probe answered so) always. Returns whether
    /// it did; when it did not (a refused limit, a state that changed
    /// meanwhile or was set by hand), the failure is recorded as any other.
    ///
    /// The hold ends as an open period does: a caller waiting in wait mode
    /// has a timer armed for its end (`CircuitBreakerService::poll_wait`),
    /// and the first call after it is a probe. The breaker's own backoff
    /// is untouched: the callee said how long, it did not fail a probe.
    #[cold]
    pub(crate) fn hold_open(
        &self,
        slot: &Slot,
        generation_: u32,
        delay: Duration,
        now: u64,
    ) -> bool {
        let until = now.saturating_add(delay.as_nanos().min(u64::MAX as u128) as u64);
        let mut word = slot.word();
        loop {
            let from = kind(word);
            if generation(word) != generation_ || !matches!(from, CLOSED | HALF_OPEN) {
                return false;
            }
            if from == HALF_OPEN && slot.state.deadline_gen.load(Acquire) != generation_ as u64 {
                // The thread that turned it half-open has yet to publish
                // its deadline; replacing the state now would let that late
                // store land on ours.
                spin();
                word = slot.word();
                continue;
            }
            let limited = from == CLOSED && self.open_limit.is_some();
            if limited && !self.open_limit.as_ref().is_some_and(|l| l.try_acquire()) {
                tracing::debug!(
                    breaker = %self.name,
                    retry_after = ?delay,
                    "not ejecting at the endpoint's request: the ejection limit is reached"
                );
                return false;
            }
            let g = generation_.wrapping_add(1);
            match slot
                .state
                .word
                .compare_exchange(word, pack(g, OPEN, 0), AcqRel, Acquire)
            {
                Ok(_) => {
                    slot.state.deadline.store(until, Relaxed);
                    slot.state.deadline_gen.store(g as u64, Release);
                    tracing::debug!(
                        breaker = %self.name,
                        retry_after = ?delay,
                        "ejected for as long as the endpoint asked (Retry-After)"
                    );
                    self.announce(state_of(word), State::Open, Some(delay));
                    return true;
                }
                Err(actual) => {
                    if limited {
                        self.release_open_place();
                    }
                    // Another probe admitted (half-open) changes the word
                    // but not its generation: try again.
                    word = actual;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tower::{Service, ServiceExt};

    use super::*;
    use crate::circuit_breaker::{
        BreakerOptions, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerService, OpenLimit,
        Rejection,
    };

    /// An open limit that refuses every opening.
    #[derive(Debug)]
    struct Refuse;

    impl OpenLimit for Refuse {
        fn try_acquire(&self) -> bool {
            false
        }
        fn acquire(&self) {}
        fn release(&self) {}
    }

    fn breaker(limit: Option<Arc<dyn OpenLimit>>) -> CircuitBreaker {
        let config = CircuitBreakerConfig::builder()
            .consecutive_failures(5)
            .rejection(Rejection::Wait)
            .build()
            .unwrap();
        let options = BreakerOptions {
            open_limit: limit,
            track_failures: true,
            hold_cap: Duration::from_secs(60),
            single_stripe: true,
        };
        CircuitBreaker::with_options("endpoint", config, options)
    }

    /// One call whose outcome is `outcome`.
    async fn answer(breaker: &CircuitBreaker, outcome: Outcome) {
        let svc = tower::service_fn(|()| async { Ok::<_, std::io::Error>(()) });
        let classify = move |_: &Result<(), std::io::Error>| outcome;
        let mut svc = CircuitBreakerService::new(svc, breaker.clone(), classify);
        svc.ready().await.unwrap().call(()).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_grpc_pushback_holds_the_breaker_open_that_long() {
        let b = breaker(None);
        let pushback = Outcome::GrpcStatus {
            code: 14,
            pushback_ms: Some(2_500),
        };
        answer(&b, pushback).await;
        assert_eq!(b.state(), State::Open);
        let owner = &b.owner;
        let until = owner.core.wait_until(owner.slot, owner.slot.word());
        assert_eq!(
            until,
            Some(tokio::time::Instant::now() + Duration::from_millis(2_500))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_negative_pushback_or_a_status_without_retry_after_is_one_failure() {
        let b = breaker(None);
        let refuse = Outcome::GrpcStatus {
            code: 14,
            pushback_ms: Some(-1),
        };
        let plain = Outcome::Status {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            retry_after: None,
        };
        answer(&b, refuse).await;
        answer(&b, plain).await;
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.health().recent_failures(u64::MAX), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_for_time_the_open_limit_refuses_is_counted_as_a_failure() {
        let b = breaker(Some(Arc::new(Refuse)));
        let busy = Outcome::Status {
            status: http::StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(Duration::from_secs(5)),
        };
        answer(&b, busy).await;
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.health().recent_failures(u64::MAX), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_breaker_made_without_a_hold_cap_ignores_retry_after() {
        let b = CircuitBreaker::new(
            "service",
            CircuitBreakerConfig::builder()
                .consecutive_failures(5)
                .build()
                .unwrap(),
        );
        let busy = Outcome::Status {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some(Duration::from_secs(5)),
        };
        answer(&b, busy).await;
        assert_eq!(b.state(), State::Closed);
    }
}
