//! Consul discovery feeding the balancer, end to end: axum instances on
//! 127.0.0.1:0 registered in the in-process registry. Real time: the
//! propagation from registration to traffic is measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use http::Request;
use meshguard::backoff::Backoff;
use meshguard::balance::{BalanceConfig, balance};
use meshguard::classify::HttpClassifier;
use meshguard::discovery::consul::ConsulDiscovery;
use meshguard::testing::ConsulRegistry;
use tower::{Service, ServiceExt};

use crate::support::transport::connect;

struct Instance {
    port: u16,
    hits: Arc<AtomicUsize>,
}

async fn instance() -> Instance {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Instance { port, hits }
}

fn get() -> Request<String> {
    Request::get("/").body(String::new()).unwrap()
}

#[tokio::test]
async fn registrations_reach_the_balancer_and_traffic_survives_a_consul_outage() {
    let consul = ConsulRegistry::start().await;
    let (a, b, c) = (instance().await, instance().await, instance().await);
    consul.register_passing("users", "a", "127.0.0.1", a.port);
    consul.register_passing("users", "b", "127.0.0.1", b.port);
    let discovery = ConsulDiscovery::builder(consul.url(), "users")
        .wait(Duration::from_secs(5))
        .min_interval(Duration::from_millis(10))
        .error_backoff(Backoff::constant(Duration::from_millis(50)))
        .build()
        .unwrap();
    let mut lb = balance::<_, _, _, _, Request<String>>(
        "users",
        discovery,
        connect(reqwest::Client::new()),
        HttpClassifier::default(),
        BalanceConfig::default(),
    );
    for _ in 0..20 {
        let r = lb.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        a.hits.load(Ordering::SeqCst) + b.hits.load(Ordering::SeqCst),
        20
    );

    // A new instance: how long until the balancer holds it?
    assert_eq!(lb.len(), 2);
    let start = Instant::now();
    consul.register_passing("users", "c", "127.0.0.1", c.port);
    while lb.len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(1), "not within 1 s");
        lb.ready().await.unwrap().call(get()).await.unwrap();
    }
    eprintln!("registration reached the balancer in {:?}", start.elapsed());

    // A deregistered instance: how long until it is gone, and it gets no
    // request after that.
    let start = Instant::now();
    consul.deregister("a");
    while lb.len() > 2 {
        assert!(start.elapsed() < Duration::from_secs(1), "not within 1 s");
        lb.ready().await.unwrap().call(get()).await.unwrap();
    }
    eprintln!(
        "deregistration reached the balancer in {:?}",
        start.elapsed()
    );
    let a_hits = a.hits.load(Ordering::SeqCst);
    for _ in 0..30 {
        lb.ready().await.unwrap().call(get()).await.unwrap();
    }
    assert_eq!(a.hits.load(Ordering::SeqCst), a_hits);

    // Consul goes down: the last good set keeps serving.
    consul.go_down().await;
    let before = b.hits.load(Ordering::SeqCst) + c.hits.load(Ordering::SeqCst);
    for _ in 0..50 {
        let r = lb.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        b.hits.load(Ordering::SeqCst) + c.hits.load(Ordering::SeqCst),
        before + 50
    );

    // It returns; a change made meanwhile arrives.
    consul.come_back().await;
    consul.deregister("b");
    let start = Instant::now();
    while lb.len() > 1 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "watch did not resume"
        );
        lb.ready().await.unwrap().call(get()).await.unwrap();
    }
    let c_hits = c.hits.load(Ordering::SeqCst);
    for _ in 0..10 {
        let r = lb.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(c.hits.load(Ordering::SeqCst), c_hits + 10);
}
