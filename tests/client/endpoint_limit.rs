//! `BalanceConfig::max_concurrent_per_endpoint`: a bulkhead per instance.
//! An instance at its limit is not picked; with every instance at its
//! limit a call waits for a slot in the balancer, up to its attempt
//! timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshguard::balance::BalanceConfig;
use meshguard::client::{ClientError, ServiceClient};
use meshguard::retry::RetryPolicy;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::support::http::{serve, url};

/// An instance whose handler waits for a permit of `gate`, counting its
/// requests and the most it served at once.
struct Held {
    url: String,
    requests: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
}

async fn held(gate: Arc<Semaphore>) -> Held {
    let requests = Arc::new(AtomicUsize::new(0));
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let now = Arc::new(AtomicUsize::new(0));
    let (r, m) = (requests.clone(), most_at_once.clone());
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let (r, m, now, gate) = (r.clone(), m.clone(), now.clone(), gate.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(at_once, Ordering::SeqCst);
                gate.acquire().await.unwrap().forget();
                now.fetch_sub(1, Ordering::SeqCst);
                "done"
            }
        }),
    );
    Held {
        url: url(serve(app).await),
        requests,
        most_at_once,
    }
}

fn one_per_instance(urls: Vec<String>, timeout: Option<Duration>) -> ServiceClient {
    ServiceClient::builder("held")
        .urls(urls)
        .timeout(timeout)
        .deadline(None)
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .circuit_breaker(None)
        .balance(
            BalanceConfig::builder()
                .max_concurrent_per_endpoint(Some(1))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn with_every_instance_at_its_limit_a_call_waits_unsent_until_its_attempt_timeout() {
    let gate = Arc::new(Semaphore::new(0));
    let (a, b) = (held(gate.clone()).await, held(gate.clone()).await);
    let client = one_per_instance(
        vec![a.url.clone(), b.url.clone()],
        Some(Duration::from_secs(1)),
    );
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/").send_raw().await })
        })
        .collect();
    while a.requests.load(Ordering::SeqCst) + b.requests.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let third = client.get("/").send_raw().await.unwrap_err();
    assert!(matches!(third, ClientError::Timeout), "{third:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(
        (
            a.requests.load(Ordering::SeqCst),
            b.requests.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    for call in busy {
        let _ = call.await;
    }
}

#[tokio::test]
async fn no_instance_ever_serves_more_than_its_limit_and_every_call_is_served() {
    let gate = Arc::new(Semaphore::new(0));
    let (a, b) = (held(gate.clone()).await, held(gate.clone()).await);
    let client = one_per_instance(vec![a.url.clone(), b.url.clone()], None);
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/").send_raw().await })
        })
        .collect();
    // Let one call through at a time until all six are answered.
    for served in 1..=6 {
        while a.requests.load(Ordering::SeqCst) + b.requests.load(Ordering::SeqCst)
            < (served + 1).min(6)
        {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
    }
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(
        a.requests.load(Ordering::SeqCst) + b.requests.load(Ordering::SeqCst),
        6
    );
    assert_eq!(a.most_at_once.load(Ordering::SeqCst), 1);
    assert_eq!(b.most_at_once.load(Ordering::SeqCst), 1);
}
