// A binary of its own: a breaker made by a test beside it could take the dropped breaker's slot.
//! A breaker's memory is recycled when it is dropped (see
//! `src/circuit_breaker/state.rs`). This file holds one test so that no other
//! test's breaker takes the recycled slot first: the new breaker below is
//! certain to reuse the old one's.

mod support;

use meshguard::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, State};
use support::{Call, SECS, wrap};
use tower::{Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn outcomes_of_a_dropped_breaker_do_not_reach_the_next_one() {
    let config = CircuitBreakerConfig::builder()
        .count_window(1, 1)
        .minimum_calls(1)
        .build()
        .unwrap();
    let old = CircuitBreaker::new("old", config.clone());
    let mut svc = wrap(&old);
    let late = svc.ready().await.unwrap().call(Call::SlowFail(SECS(1)));
    drop(svc);
    drop(old);
    let new = CircuitBreaker::new("new", config);
    // The late failure would open a one-call window if it were counted.
    let _ = late.await;
    assert_eq!(new.metrics().calls, 0);
    assert_eq!(new.state(), State::Closed);
}
