//! The retry budget, and the settings of retries, budgets and hedges.

use std::time::Duration;

use meshguard::retry::{HedgeConfig, RetryBudget, RetryBudgetConfig, RetryPolicy};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
    RetryBudget::new(
        RetryBudgetConfig::builder()
            .ratio(ratio)
            .min_per_second(min_per_second)
            .ttl(SECS(10))
            .build()
            .unwrap(),
    )
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
fn the_budget_builders_defaults_are_the_default_budget() {
    let built = RetryBudgetConfig::builder().build().unwrap();
    assert_eq!(built, RetryBudgetConfig::default());
    assert_eq!(
        (built.ratio(), built.min_per_second(), built.ttl()),
        (0.2, 10, SECS(10))
    );
}

#[test]
fn invalid_budget_values_name_their_field() {
    let ratio = |r| RetryBudgetConfig::builder().ratio(r).build().unwrap_err();
    let ttl = |t| RetryBudgetConfig::builder().ttl(t).build().unwrap_err();
    let cases = [
        (
            ratio(-0.1),
            "ratio",
            "must be in [0, 1000] (retries per request), got -0.1",
        ),
        (
            ratio(1000.5),
            "ratio",
            "must be in [0, 1000] (retries per request), got 1000.5",
        ),
        (
            ratio(f64::NAN),
            "ratio",
            "must be in [0, 1000] (retries per request), got NaN",
        ),
        (
            ttl(Duration::from_millis(10)),
            "ttl",
            "must be in [1s, 1h], got 10ms",
        ),
        (ttl(SECS(3601)), "ttl", "must be in [1s, 1h], got 3601s"),
    ];
    for (err, field, message) in cases {
        assert_eq!((err.field(), err.message()), (field, message));
    }
}

#[test]
fn a_budget_deserializes_to_what_the_builder_builds() {
    let parsed: RetryBudgetConfig =
        toml::from_str("ratio = 0.5\nmin_per_second = 3\nttl = \"30s\"").unwrap();
    let built = RetryBudgetConfig::builder()
        .ratio(0.5)
        .min_per_second(3)
        .ttl(SECS(30))
        .build()
        .unwrap();
    assert_eq!(parsed, built);
}

#[test]
fn a_policys_budget_section_deserializes_to_what_the_builder_builds() {
    let policy: RetryPolicy =
        toml::from_str(r#"budget = { ratio = 0.5, min_per_second = 3, ttl = "30s" }"#).unwrap();
    let built = RetryBudgetConfig::builder()
        .ratio(0.5)
        .min_per_second(3)
        .ttl(SECS(30))
        .build()
        .unwrap();
    assert_eq!(*policy.budget(), built);
}

#[test]
fn a_budget_with_no_fields_deserializes_to_the_defaults() {
    let parsed: RetryBudgetConfig = toml::from_str("").unwrap();
    assert_eq!(parsed, RetryBudgetConfig::default());
}

#[test]
fn a_budget_with_an_unknown_field_does_not_deserialize() {
    let err = toml::from_str::<RetryBudgetConfig>("ratio = 0.5\nfloor = 3").unwrap_err();
    assert!(err.message().contains("unknown field `floor`"), "{err}");
}

#[test]
fn the_hedge_defaults_are_the_p90_of_twenty_latencies_over_ten_seconds() {
    let built = HedgeConfig::builder().build().unwrap();
    assert_eq!(built, HedgeConfig::default());
    assert_eq!(built.percentile(), 90.0);
    assert_eq!(built.min_data_points(), 20);
    assert_eq!(built.period(), SECS(10));
    assert!(!built.allows_non_idempotent());
    assert!(built.deposits());
}

#[test]
fn invalid_hedge_values_name_their_field() {
    let percentile = |p| HedgeConfig::builder().percentile(p).build().unwrap_err();
    let cases = [
        (
            percentile(-1.0),
            "percentile",
            "must be in [0, 100], got -1",
        ),
        (
            percentile(100.5),
            "percentile",
            "must be in [0, 100], got 100.5",
        ),
        (
            percentile(f64::NAN),
            "percentile",
            "must be in [0, 100], got NaN",
        ),
        (
            HedgeConfig::builder()
                .min_data_points(0)
                .build()
                .unwrap_err(),
            "min_data_points",
            "must be at least 1 (with none, hedges go out at once while no latency is known), got 0",
        ),
        (
            HedgeConfig::builder()
                .period(Duration::ZERO)
                .build()
                .unwrap_err(),
            "period",
            "must be greater than zero, got 0s",
        ),
    ];
    for (err, field, message) in cases {
        assert_eq!((err.field(), err.message()), (field, message));
    }
}

#[test]
fn the_hedge_percentile_may_be_zero_or_a_hundred() {
    for p in [0.0, 100.0] {
        let config = HedgeConfig::builder().percentile(p).build().unwrap();
        assert_eq!(config.percentile(), p);
    }
}

#[test]
fn a_hedge_config_deserializes_to_what_the_builder_builds() {
    let parsed: HedgeConfig = toml::from_str(
        r#"
        percentile = 99.5
        min_data_points = 50
        period = "2s"
        allow_non_idempotent = true
        deposit = false
        "#,
    )
    .unwrap();
    let built = HedgeConfig::builder()
        .percentile(99.5)
        .min_data_points(50)
        .period(SECS(2))
        .allow_non_idempotent(true)
        .deposit(false)
        .build()
        .unwrap();
    assert_eq!(parsed, built);
}

#[test]
fn a_hedge_config_with_no_fields_deserializes_to_the_defaults() {
    let parsed: HedgeConfig = toml::from_str("").unwrap();
    assert_eq!(parsed, HedgeConfig::default());
}

#[test]
fn invalid_deserialized_hedge_values_name_their_field() {
    let cases = [
        (
            "percentile = 120",
            "invalid `percentile`: must be in [0, 100], got 120",
        ),
        (
            "percentile = nan",
            "invalid `percentile`: must be in [0, 100], got NaN",
        ),
        (
            "period = \"0s\"",
            "invalid `period`: must be greater than zero, got 0s",
        ),
    ];
    for (text, message) in cases {
        let err = toml::from_str::<HedgeConfig>(text).unwrap_err();
        assert_eq!(err.message(), message, "{text}");
    }
    let err = toml::from_str::<HedgeConfig>("quantile = 0.9").unwrap_err();
    assert!(err.message().contains("unknown field `quantile`"), "{err}");
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
    let b = rt.block_on(async {
        RetryBudget::new(
            RetryBudgetConfig::builder()
                .ratio(1.0)
                .min_per_second(0)
                .ttl(SECS(3600))
                .build()
                .unwrap(),
        )
    });
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
