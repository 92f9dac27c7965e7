//! The retry budget and the retry policy's configuration.

use std::time::Duration;

use meshguard::retry::{RetryBudget, RetryBudgetConfig, RetryPolicy};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
    RetryBudget::new(RetryBudgetConfig::new(ratio, min_per_second, SECS(10)).unwrap())
}

fn drain(budget: &RetryBudget) -> usize {
    std::iter::from_fn(|| budget.withdraw().then_some(())).count()
}

#[tokio::test(start_paused = true)]
async fn the_floor_allows_min_per_second_times_ttl_retries_without_traffic() {
    assert_eq!(drain(&budget(0.2, 10)), 100);
}

#[tokio::test(start_paused = true)]
async fn deposits_earn_the_ratio_of_a_retry_each() {
    let b = budget(0.25, 0);
    for _ in 0..40 {
        b.deposit();
    }
    assert_eq!(drain(&b), 10);
}

#[tokio::test(start_paused = true)]
async fn deposits_expire_after_the_ttl() {
    let b = budget(0.5, 0);
    for _ in 0..100 {
        b.deposit();
    }
    tokio::time::advance(SECS(11)).await;
    assert_eq!(b.balance(), 0);
    assert!(!b.withdraw());
}

#[tokio::test(start_paused = true)]
async fn withdrawals_are_returned_to_the_budget_after_the_ttl() {
    let b = budget(0.0, 1);
    assert_eq!(drain(&b), 10);
    tokio::time::advance(SECS(11)).await;
    assert_eq!(drain(&b), 10);
}

#[tokio::test(start_paused = true)]
async fn steady_traffic_looked_at_every_second_keeps_the_last_ttl_of_deposits() {
    let b = budget(1.0, 0);
    for _ in 0..20 {
        assert!(b.balance() <= 100);
        for _ in 0..10 {
            b.deposit();
        }
        tokio::time::advance(SECS(1)).await;
    }
    // The window is the last 10 s in 1 s buckets, the current one empty:
    // the deposits of seconds 11 to 19.
    assert_eq!(b.balance(), 90);
}

#[tokio::test(start_paused = true)]
async fn deposits_not_looked_at_are_dated_at_the_last_look() {
    // 100 deposits in the first second and none after: when the budget is
    // next looked at, 11 s later, they are all out of the window, however
    // they were spread.
    let b = budget(1.0, 0);
    tokio::time::advance(SECS(1)).await;
    for _ in 0..50 {
        b.deposit();
    }
    tokio::time::advance(Duration::from_millis(900)).await;
    for _ in 0..50 {
        b.deposit();
    }
    tokio::time::advance(SECS(10)).await;
    assert_eq!(b.balance(), 0);
}

#[test]
fn budget_settings_are_checked() {
    let err = RetryBudgetConfig::new(-0.1, 10, SECS(10)).unwrap_err();
    assert_eq!(err.field(), "ratio");
    let err = RetryBudgetConfig::new(0.2, 10, Duration::from_millis(10)).unwrap_err();
    assert_eq!(err.field(), "ttl");
}

#[test]
fn the_defaults_are_envoys_backoff_and_finagles_budget() {
    let p = RetryPolicy::default();
    assert_eq!(p.max_attempts(), 3);
    assert_eq!(p.backoff().base(), Duration::from_millis(25));
    assert_eq!(p.backoff().max(), Duration::from_millis(250));
    assert_eq!(p.backoff().jitter(), meshguard::backoff::Jitter::Full);
    assert!(!p.retries_non_idempotent());
    assert_eq!(p.max_retry_after(), SECS(30));
    assert_eq!(p.attempt_timeout(), None);
    assert_eq!(
        (
            p.budget().ratio(),
            p.budget().min_per_second(),
            p.budget().ttl()
        ),
        (0.2, 10, SECS(10))
    );
}

#[test]
fn a_policy_deserializes_with_human_durations() {
    let p: RetryPolicy = toml::from_str(
        r#"
        max_attempts = 5
        retry_non_idempotent = true
        max_retry_after = "5s"
        attempt_timeout = "300ms"
        backoff = { kind = "constant", base = "10ms" }
        budget = { ratio = 0.1 }
        "#,
    )
    .unwrap();
    assert_eq!(p.max_attempts(), 5);
    assert!(p.retries_non_idempotent());
    assert_eq!(p.attempt_timeout(), Some(Duration::from_millis(300)));
    assert_eq!(p.backoff().base(), Duration::from_millis(10));
    assert_eq!(p.budget().ratio(), 0.1);
    assert_eq!(p.budget().min_per_second(), 10);
}

#[test]
fn invalid_policy_values_name_their_field() {
    let cases = [
        (
            "max_attempts = 0",
            "invalid `max_attempts`: must be in [1, 100], got 0",
        ),
        (
            "max_retry_after = \"2h\"",
            "invalid `max_retry_after`: must be at most 1h, got 7200s",
        ),
        (
            "attempt_timeout = \"0s\"",
            "invalid `attempt_timeout`: must be greater than zero",
        ),
        (
            "budget = { ratio = -1.0 }",
            "invalid `budget.ratio`: must be in [0, 1000] (retries per request), got -1",
        ),
        (
            "backoff = { kind = \"exponential\", base = \"1s\" }",
            "invalid `backoff.max`: an exponential backoff needs a cap, e.g. \"30s\"",
        ),
    ];
    for (text, message) in cases {
        let err = toml::from_str::<RetryPolicy>(text).unwrap_err();
        assert_eq!(err.message(), message, "{text}");
    }
    assert!(toml::from_str::<RetryPolicy>("retries = 3").is_err());
}

#[test]
fn deposits_from_more_threads_than_stripes_coming_and_going_are_all_counted() {
    // Waves of threads that exit, so ids are given back and reused, and
    // more threads at once than there are owned stripes.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let b = rt
        .block_on(async { RetryBudget::new(RetryBudgetConfig::new(1.0, 0, SECS(3600)).unwrap()) });
    const THREADS: usize = 40;
    for _ in 0..2 {
        let start = std::sync::Barrier::new(THREADS);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                let (b, start) = (b.clone(), &start);
                s.spawn(move || {
                    start.wait();
                    for _ in 0..50_000 {
                        b.deposit();
                    }
                });
            }
        });
    }
    let _guard = rt.enter();
    assert_eq!(b.balance(), 2 * THREADS as u64 * 50_000);
}
