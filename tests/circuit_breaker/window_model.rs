//! The breaker's windows against a plain reference model: for any sequence
//! of successes, failures, slow calls and clock advances, the counts it
//! reports equal the model's.

use std::time::Duration;

use crate::support::{Call, MS, call, wrap};
use meshguard::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, Window};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const SLOW: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
enum Op {
    Ok,
    Fail,
    /// A call that succeeds after this many milliseconds.
    Slow(u64),
    /// A call that fails after this many milliseconds.
    SlowFail(u64),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Ok),
        3 => Just(Op::Fail),
        1 => (0u64..300).prop_map(Op::Slow),
        1 => (0u64..300).prop_map(Op::SlowFail),
        2 => (0u64..3_000).prop_map(Op::Advance),
    ]
}

fn window() -> impl Strategy<Value = Window> {
    prop_oneof![
        (1u32..=6, 1u32..=5).prop_map(|(buckets, per)| Window::Count {
            size: buckets * per,
            buckets
        }),
        (1u32..=6, 1u64..=1_000).prop_map(|(buckets, per_ms)| Window::Time {
            duration: MS(per_ms * buckets as u64),
            buckets
        }),
    ]
}

/// A finished call as the model sees it.
struct Done {
    at_ms: u64,
    failure: bool,
    slow: bool,
}

fn model(window: Window, done: &[Done], now_ms: u64) -> (u64, u64, u64) {
    let kept: Vec<&Done> = match window {
        Window::Count { size, buckets } => {
            let per = (size / buckets) as usize;
            let h = done.len() / per;
            let first = h.saturating_sub(buckets as usize) * per;
            done[first..].iter().collect()
        }
        Window::Time { duration, buckets } => {
            let width = duration.as_millis() as u64 / buckets as u64;
            let first = (now_ms / width + 1).saturating_sub(buckets as u64);
            done.iter().filter(|d| d.at_ms / width >= first).collect()
        }
    };
    (
        kept.len() as u64,
        kept.iter().filter(|d| d.failure).count() as u64,
        kept.iter().filter(|d| d.slow).count() as u64,
    )
}

proptest! {
    // Failures are saved next to this file, in
    // window_model.proptest-regressions: the default (`SourceParallel`)
    // would find main.rs beside it and write
    // tests/proptest-regressions/window_model.txt instead.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn window_counts_equal_the_reference_model(
        window in window(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let builder = CircuitBreakerConfig::builder().slow_call_duration(SLOW);
            let builder = match window {
                Window::Count { size, buckets } => builder.count_window(size, buckets).minimum_calls(1),
                Window::Time { duration, buckets } => builder.time_window(duration, buckets).minimum_calls(1),
            };
            let breaker = CircuitBreaker::new("model", builder.build().unwrap());
            // Metrics-only: records everything, never opens, so every call counts.
            breaker.metrics_only();
            let start = tokio::time::Instant::now();
            let mut svc = wrap(&breaker);
            let mut done = Vec::new();
            for op in ops {
                let (c, failure, took) = match op {
                    Op::Ok => (Call::Ok, false, 0),
                    Op::Fail => (Call::Fail, true, 0),
                    Op::Slow(ms) => (Call::Slow(MS(ms)), false, ms),
                    Op::SlowFail(ms) => (Call::SlowFail(MS(ms)), true, ms),
                    Op::Advance(ms) => {
                        tokio::time::advance(MS(ms)).await;
                        let now_ms = start.elapsed().as_millis() as u64;
                        let m = breaker.metrics();
                        prop_assert_eq!((m.calls, m.failures, m.slow_calls), model(window, &done, now_ms));
                        continue;
                    }
                };
                let _ = call(&mut svc, c).await;
                done.push(Done {
                    at_ms: start.elapsed().as_millis() as u64,
                    failure,
                    slow: MS(took) >= SLOW,
                });
                let now_ms = start.elapsed().as_millis() as u64;
                let m = breaker.metrics();
                prop_assert_eq!((m.calls, m.failures, m.slow_calls), model(window, &done, now_ms));
            }
            Ok(())
        })?;
    }
}
