//! Hedging in `ServiceClient`, against three axum servers on 127.0.0.1:0
//! of which one answers after 2 s and two at once: a hedge to another
//! instance cuts the tail the slow one adds, for idempotent calls only,
//! within the retry budget.
//!
//! On paused time: the slow instance's delay, the latencies the hedge
//! learns and the hedge's own delay are all on tokio's clock, so every
//! call's duration is exact. The clients have no attempt timeout and no
//! deadline, so no other timer runs while a call waits for an answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::get;
use http::Method;
use meshguard::balance::BalanceConfig;
use meshguard::client::{ServiceClient, ServiceClientBuilder, ServiceClientConfig};
use meshguard::retry::{HedgeConfig, RetryBudgetConfig, RetryPolicy};
use tokio::time::Instant;

use crate::support::http::{serve, url};

/// How long the slow instance takes to answer `/item`.
const SLOW: Duration = Duration::from_secs(2);

/// How long every instance takes to answer `/warm`: the latency the hedge
/// learns as normal, and so its delay.
const NORMAL: Duration = Duration::from_millis(50);

/// Calls made to teach the hedge (its `min_data_points`).
const WARM_UP: usize = 10;

/// Three instances, and the `/item` requests each kind received.
struct Fleet {
    urls: Vec<String>,
    slow: Arc<AtomicUsize>,
    fast: Arc<AtomicUsize>,
}

impl Fleet {
    async fn start() -> Fleet {
        let slow = Arc::new(AtomicUsize::new(0));
        let fast = Arc::new(AtomicUsize::new(0));
        let urls = vec![
            instance(SLOW, slow.clone()).await,
            instance(Duration::ZERO, fast.clone()).await,
            instance(Duration::ZERO, fast.clone()).await,
        ];
        Fleet { urls, slow, fast }
    }

    fn slow_hits(&self) -> usize {
        self.slow.load(Ordering::SeqCst)
    }

    fn fast_hits(&self) -> usize {
        self.fast.load(Ordering::SeqCst)
    }
}

/// An instance answering `/warm` after [`NORMAL`] and `/item` (GET and
/// POST) after `delay`, counting its `/item` requests in `hits`.
async fn instance(delay: Duration, hits: Arc<AtomicUsize>) -> String {
    let item = move || {
        hits.fetch_add(1, Ordering::SeqCst);
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            "item"
        }
    };
    let app = axum::Router::new()
        .route(
            "/warm",
            get(|| async {
                tokio::time::sleep(NORMAL).await;
                "warm"
            }),
        )
        .route("/item", get(item.clone()).post(item));
    url(serve(app).await)
}

/// A client of the fleet, with no timer but the hedge's. PeakEwma's
/// estimates start at the normal latency and hardly decay over the test,
/// so no instance ever looks more than twice as fast as another: the
/// balancer, which counts the original call in its instance's load, then
/// sends the hedge elsewhere, as it does with real latencies.
fn builder(fleet: &Fleet) -> ServiceClientBuilder {
    ServiceClient::builder("items")
        .urls(fleet.urls.clone())
        .timeout(None)
        .deadline(None)
        .balance(
            BalanceConfig::builder()
                .default_rtt(NORMAL)
                .decay(Duration::from_secs(3600))
                .build()
                .unwrap(),
        )
}

/// Hedges at the p90 of the previous 10 s, once 10 latencies are known.
fn hedge() -> HedgeConfig {
    HedgeConfig::builder()
        .min_data_points(WARM_UP as u64)
        .build()
        .unwrap()
}

/// What the calls to `/item` took, one entry per call.
struct Run {
    took: Vec<Duration>,
}

impl Run {
    /// How many calls took exactly `d`.
    fn took(&self, d: Duration) -> usize {
        self.took.iter().filter(|&&t| t == d).count()
    }

    fn calls(&self) -> usize {
        self.took.len()
    }
}

/// Teaches the client that `/warm`'s 50 ms are normal, waits out the hedge's
/// period (tower's hedge reads the latencies of the previous one), then
/// sends `method /item` three calls at a time until one lands on the slow
/// instance. Three at once, so that the balancer spreads them by load.
async fn run(client: &ServiceClient, fleet: &Fleet, method: Method) -> Run {
    for _ in 0..WARM_UP {
        client.get("/warm").send_raw().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut took = Vec::new();
    for _ in 0..20 {
        let one = || async {
            let started = Instant::now();
            let r = client.request(method.clone(), "/item").send_raw().await;
            assert_eq!(r.unwrap().status(), 200);
            started.elapsed()
        };
        let (a, b, c) = tokio::join!(one(), one(), one());
        took.extend([a, b, c]);
        if fleet.slow_hits() > 0 {
            return Run { took };
        }
    }
    panic!("60 calls and none reached the slow instance");
}

/// Every call that reached the slow instance was hedged after the normal
/// latency and answered at once by a fast one; the others were answered at
/// once, unhedged.
fn assert_hedged(run: &Run, fleet: &Fleet) {
    assert_eq!(run.took(NORMAL), fleet.slow_hits(), "{:?}", run.took);
    assert_eq!(
        run.took(Duration::ZERO),
        run.calls() - fleet.slow_hits(),
        "{:?}",
        run.took
    );
    // Each call once, plus a hedge for each call on the slow instance.
    assert_eq!(fleet.fast_hits(), run.calls());
}

/// Every call that reached the slow instance waited for it; no call was
/// sent twice.
fn assert_not_hedged(run: &Run, fleet: &Fleet) {
    assert_eq!(run.took(SLOW), fleet.slow_hits(), "{:?}", run.took);
    assert_eq!(
        run.took(Duration::ZERO),
        run.calls() - fleet.slow_hits(),
        "{:?}",
        run.took
    );
    assert_eq!(fleet.fast_hits() + fleet.slow_hits(), run.calls());
}

#[tokio::test(start_paused = true)]
async fn a_hedge_to_another_instance_cuts_the_slow_instances_tail() {
    let fleet = Fleet::start().await;
    let client = builder(&fleet).hedge(Some(hedge())).build().unwrap();
    let run = run(&client, &fleet, Method::GET).await;
    assert_hedged(&run, &fleet);
    assert!(run.took.iter().all(|&t| t < SLOW), "{:?}", run.took);
}

#[tokio::test(start_paused = true)]
async fn without_hedging_a_call_on_the_slow_instance_takes_its_delay() {
    let fleet = Fleet::start().await;
    let client = builder(&fleet).build().unwrap();
    let run = run(&client, &fleet, Method::GET).await;
    assert_not_hedged(&run, &fleet);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_never_hedged() {
    let fleet = Fleet::start().await;
    let client = builder(&fleet).hedge(Some(hedge())).build().unwrap();
    let run = run(&client, &fleet, Method::POST).await;
    assert_not_hedged(&run, &fleet);
}

#[tokio::test(start_paused = true)]
async fn hedges_draw_on_the_retry_budget() {
    let fleet = Fleet::start().await;
    let empty = RetryBudgetConfig::builder()
        .ratio(0.0)
        .min_per_second(0)
        .build()
        .unwrap();
    let client = builder(&fleet)
        .retry(RetryPolicy::builder().budget(empty).build().unwrap())
        .hedge(Some(hedge()))
        .build()
        .unwrap();
    let run = run(&client, &fleet, Method::GET).await;
    assert_not_hedged(&run, &fleet);
}

#[tokio::test(start_paused = true)]
async fn the_config_file_form_hedges_as_the_builder_form() {
    let fleet = Fleet::start().await;
    let config: ServiceClientConfig = toml::from_str(&format!(
        r#"
        service = "items"
        urls = ["{}", "{}", "{}"]

        [hedge]
        percentile = 90
        min_data_points = {WARM_UP}
        period = "10s"

        [balance]
        default_rtt = "50ms"
        decay = "1h"
        "#,
        fleet.urls[0], fleet.urls[1], fleet.urls[2]
    ))
    .unwrap();
    assert_eq!(config.hedge, Some(hedge()));
    // The config file form has no "no timeout": set in code.
    let client = config
        .into_builder()
        .unwrap()
        .timeout(None)
        .deadline(None)
        .build()
        .unwrap();
    let run = run(&client, &fleet, Method::GET).await;
    assert_hedged(&run, &fleet);
}

#[test]
fn an_invalid_hedge_section_names_its_field() {
    let err = toml::from_str::<ServiceClientConfig>(
        "service = \"items\"\nurls = [\"http://a:1\"]\n[hedge]\npercentile = 120",
    )
    .unwrap_err();
    // The format's error: the section, then the field and what is wrong.
    let err = err.to_string();
    assert!(err.contains("[hedge]"), "{err}");
    assert!(
        err.contains("invalid `percentile`: must be in [0, 100], got 120"),
        "{err}"
    );
}
