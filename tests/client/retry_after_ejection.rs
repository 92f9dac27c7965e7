//! An instance that answers 429 or 503 with a `Retry-After` is taken out
//! of rotation for exactly that long (capped by
//! `BalanceConfig::max_retry_after_ejection`), within the ejection limits,
//! and comes back by itself: `ServiceClient` over real servers on
//! 127.0.0.1:0, in paused time (every round trip takes no time, so the
//! instants the servers record are exact).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use meshguard::balance::BalanceConfig;
use meshguard::circuit_breaker::State;
use meshguard::client::ServiceClient;
use meshguard::retry::RetryPolicy;
use tokio::time::Instant;

use crate::support::http::{serve, url};

/// What an instance answers its `n`-th request (0-based): a status and a
/// `Retry-After`, or `None` for 200.
type Script = fn(usize) -> Option<(u16, &'static str)>;

struct Instance {
    url: String,
    /// When each request arrived.
    times: Arc<Mutex<Vec<Instant>>>,
}

impl Instance {
    fn hits(&self) -> usize {
        self.times.lock().unwrap().len()
    }

    fn times(&self) -> Vec<Instant> {
        self.times.lock().unwrap().clone()
    }
}

async fn instance(script: Script) -> Instance {
    let times = Arc::new(Mutex::new(Vec::new()));
    let seen = times.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let seen = seen.clone();
            async move {
                let n = {
                    let mut t = seen.lock().unwrap();
                    t.push(Instant::now());
                    t.len() - 1
                };
                match script(n) {
                    Some((status, after)) => (
                        StatusCode::from_u16(status).unwrap(),
                        [(http::header::RETRY_AFTER, after)],
                    )
                        .into_response(),
                    None => "up".into_response(),
                }
            }
        }),
    );
    Instance {
        url: url(serve(app).await),
        times,
    }
}

fn healthy(_: usize) -> Option<(u16, &'static str)> {
    None
}

/// 503 with `Retry-After: 5` to the first request, then 200.
fn busy_for_5s(n: usize) -> Option<(u16, &'static str)> {
    (n == 0).then_some((503, "5"))
}

/// One attempt a call, no service breaker: what each instance answers is
/// what the caller sees.
fn client(instances: &[&Instance], balance: BalanceConfig) -> ServiceClient {
    ServiceClient::builder("flow")
        .urls(instances.iter().map(|i| i.url.clone()))
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .circuit_breaker(None)
        .balance(balance)
        .build()
        .unwrap()
}

async fn call(svc: &ServiceClient) -> u16 {
    svc.get("/").send_raw().await.unwrap().status().as_u16()
}

/// Calls until `instance` has seen `hits` requests (at most 100 calls).
async fn until_hit(svc: &ServiceClient, instance: &Instance, hits: usize) {
    for _ in 0..100 {
        if instance.hits() >= hits {
            return;
        }
        call(svc).await;
    }
    panic!(
        "{} requests of {hits} reached the instance",
        instance.hits()
    );
}

/// The state of the breaker of the instance at `url`.
fn state(svc: &ServiceClient, url: &str) -> State {
    let endpoints = svc.endpoints();
    let e = endpoints.iter().find(|e| e.endpoint.base_url() == url);
    e.expect("the instance is in the balancer").breaker.state()
}

#[tokio::test(start_paused = true)]
async fn an_instance_answering_503_with_retry_after_is_out_of_rotation_for_exactly_that_long() {
    let (a, b) = (instance(healthy).await, instance(healthy).await);
    let busy = instance(busy_for_5s).await;
    let svc = client(&[&a, &b, &busy], BalanceConfig::default());
    until_hit(&svc, &busy, 1).await;
    let asked = busy.times()[0];
    assert_eq!(state(&svc, &busy.url), State::Open);

    // Up to 5 s after its answer every call goes to the other two.
    for _ in 0..30 {
        assert_eq!(call(&svc).await, 200);
    }
    tokio::time::sleep_until(asked + Duration::from_millis(4_999)).await;
    for _ in 0..30 {
        assert_eq!(call(&svc).await, 200);
    }
    assert_eq!(busy.hits(), 1);

    // At 5 s it takes traffic again, nobody having woken it.
    tokio::time::sleep_until(asked + Duration::from_secs(5)).await;
    until_hit(&svc, &busy, 2).await;
    assert_eq!(busy.times()[1], asked + Duration::from_secs(5));
    assert_eq!(state(&svc, &busy.url), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_the_cap_ejects_the_instance_for_the_cap() {
    let (a, b) = (instance(healthy).await, instance(healthy).await);
    let busy = instance(|n| (n == 0).then_some((429, "30"))).await;
    let config = BalanceConfig::builder()
        .max_retry_after_ejection(Duration::from_secs(2))
        .build()
        .unwrap();
    let svc = client(&[&a, &b, &busy], config);
    until_hit(&svc, &busy, 1).await;
    let asked = busy.times()[0];
    tokio::time::sleep_until(asked + Duration::from_millis(1_999)).await;
    for _ in 0..30 {
        assert_eq!(call(&svc).await, 200);
    }
    assert_eq!(busy.hits(), 1);
    tokio::time::sleep_until(asked + Duration::from_secs(2)).await;
    until_hit(&svc, &busy, 2).await;
    assert_eq!(busy.times()[1], asked + Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn an_instance_asking_for_time_keeps_its_traffic_once_the_ejection_limit_is_reached() {
    let a = instance(healthy).await;
    let (b, c) = (instance(busy_for_5s).await, instance(busy_for_5s).await);
    // 10% of three: one ejection at a time. No failure ranking, so the
    // one left in rotation competes as any other.
    let config = BalanceConfig::builder()
        .failure_penalty(Duration::ZERO)
        .build()
        .unwrap();
    let svc = client(&[&a, &b, &c], config);
    until_hit(&svc, &b, 1).await;
    until_hit(&svc, &c, 1).await;
    let states = [state(&svc, &b.url), state(&svc, &c.url)];
    assert_eq!(
        states.iter().filter(|s| **s == State::Open).count(),
        1,
        "{states:?}"
    );
    let kept = if states[0] == State::Open { &c } else { &b };
    let asked = kept.times()[0];
    until_hit(&svc, kept, 2).await;
    assert!(kept.times()[1] < asked + Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_lone_instance_asking_for_time_is_not_ejected() {
    let busy = instance(busy_for_5s).await;
    let svc = client(&[&busy], BalanceConfig::default());
    assert_eq!(call(&svc).await, 503);
    let start = Instant::now();
    assert_eq!(call(&svc).await, 200);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(state(&svc, &busy.url), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_zero_cap_leaves_an_instance_asking_for_time_in_rotation() {
    let (a, b) = (instance(healthy).await, instance(healthy).await);
    let busy = instance(busy_for_5s).await;
    let config = BalanceConfig::builder()
        .max_retry_after_ejection(Duration::ZERO)
        .failure_penalty(Duration::ZERO)
        .build()
        .unwrap();
    let svc = client(&[&a, &b, &busy], config);
    until_hit(&svc, &busy, 1).await;
    let asked = busy.times()[0];
    assert_eq!(state(&svc, &busy.url), State::Closed);
    until_hit(&svc, &busy, 2).await;
    assert!(busy.times()[1] < asked + Duration::from_secs(5));
}
