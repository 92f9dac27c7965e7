//! The balancer over real HTTP servers on 127.0.0.1:0: ejection of a failing
//! endpoint and its return, the ejection limit, removal while requests are
//! in flight, and an endpoint killed mid-traffic under the retry layer; and
//! the endpoints the balancer holds.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use http::Request;
use meshguard::backoff::Backoff;
use meshguard::balance::{BalanceConfig, balance};
use meshguard::circuit_breaker::CircuitBreakerConfig;
use meshguard::classify::HttpClassifier;
use meshguard::discovery::{Change, Endpoint, StaticDiscovery};
use meshguard::retry::{RetryLayer, RetryPolicy};
use tower::{Layer, Service, ServiceExt};

#[path = "../support/mod.rs"]
mod support;
use support::transport::connect;

mod view;

#[derive(Default)]
struct Upstream {
    hits: AtomicUsize,
    failing: AtomicBool,
    slow: AtomicBool,
    /// When each request arrived (tokio's clock).
    times: std::sync::Mutex<Vec<tokio::time::Instant>>,
}

struct Server {
    url: String,
    state: Arc<Upstream>,
    task: tokio::task::JoinHandle<()>,
}

async fn server() -> Server {
    async fn handler(State(u): State<Arc<Upstream>>) -> (StatusCode, &'static str) {
        u.hits.fetch_add(1, Ordering::SeqCst);
        u.times.lock().unwrap().push(tokio::time::Instant::now());
        if u.slow.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if u.failing.load(Ordering::SeqCst) {
            (StatusCode::INTERNAL_SERVER_ERROR, "down")
        } else {
            (StatusCode::OK, "up")
        }
    }
    let state = Arc::new(Upstream::default());
    let app = axum::Router::new()
        .route("/", axum::routing::get(handler))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { url, state, task }
}

/// No idle connections are kept, so a killed server refuses the next
/// request (a reused pooled connection would fail differently, with
/// hyper's "incomplete message").
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn get() -> Request<String> {
    Request::get("/").body(String::new()).unwrap()
}

fn ejection_after(failures: u32, open_for: Duration) -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .consecutive_failures(failures)
        .open_duration(Backoff::constant(open_for))
        .half_open_calls(1)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_avoided_ejected_and_readmitted_when_it_recovers() {
    let servers = [server().await, server().await, server().await];
    // The failing endpoint answers at once; the others take 200 ms, so by
    // latency alone it would win every choice (the PeakEwma trap).
    servers[1].state.failing.store(true, Ordering::SeqCst);
    servers[0].state.slow.store(true, Ordering::SeqCst);
    servers[2].state.slow.store(true, Ordering::SeqCst);
    let urls: Vec<&str> = servers.iter().map(|s| s.url.as_str()).collect();
    let config = BalanceConfig::builder()
        .ejection(Some(ejection_after(3, Duration::from_secs(60))))
        .build()
        .unwrap();
    let mut lb = balance::<_, _, _, _, Request<String>>(
        "upstream",
        StaticDiscovery::from_urls(urls).unwrap(),
        connect(client()),
        HttpClassifier::default(),
        config,
    );
    let hits = |i: usize| servers[i].state.hits.load(Ordering::SeqCst);
    let start = tokio::time::Instant::now();
    for _ in 0..60 {
        let _ = lb.ready().await.unwrap().call(get()).await;
    }
    // 12 s of traffic: three 500s, each at least the failure penalty (1 s)
    // after the one before, then ejected (for 60 s) and left alone.
    assert_eq!(hits(1), 3);
    assert_eq!(hits(0) + hits(2), 57);
    let times = servers[1].state.times.lock().unwrap().clone();
    assert!(times[2] - start < Duration::from_secs(12));
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_secs(1), "{times:?}");
    }

    // Healthy again: after the ejection a probe succeeds and it is back.
    // (How much it then takes depends on PeakEwma's view of latencies,
    // which paused time with real sockets does not make exact: a CI run
    // saw 16 of 30; only "it serves again" is certain.)
    servers[1].state.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    for _ in 0..30 {
        let r = lb.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // The probe and at least one request after it.
    assert!(hits(1) >= 3 + 2, "{} {} {}", hits(0), hits(1), hits(2));
}

#[tokio::test(start_paused = true)]
async fn no_more_endpoints_are_ejected_than_the_limit_allows() {
    let mut servers = Vec::new();
    for _ in 0..4 {
        let s = server().await;
        s.state.failing.store(true, Ordering::SeqCst);
        servers.push(s);
    }
    let config = BalanceConfig::builder()
        .ejection(Some(ejection_after(2, Duration::from_secs(60))))
        .max_ejection_percent(25.0)
        .build()
        .unwrap();
    let mut lb = balance::<_, _, _, _, Request<String>>(
        "upstream",
        StaticDiscovery::from_urls(servers.iter().map(|s| s.url.clone())).unwrap(),
        connect(client()),
        HttpClassifier::default(),
        config,
    );
    for _ in 0..100 {
        let _ = lb.ready().await.unwrap().call(get()).await;
    }
    // One of four (25%) is ejected after its 2 failures; the rest keep
    // receiving traffic although they fail too.
    let mut hits: Vec<usize> = servers
        .iter()
        .map(|s| s.state.hits.load(Ordering::SeqCst))
        .collect();
    hits.sort();
    assert_eq!(hits[0], 2, "{hits:?}");
    assert_eq!(hits.iter().sum::<usize>(), 100);
    assert!(hits[1] > 2, "{hits:?}");
}

/// A discovery stream the test feeds by hand.
pub(crate) struct Feed(tokio::sync::mpsc::UnboundedReceiver<Change>);

impl futures_core::Stream for Feed {
    type Item = Result<Change, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|c| c.map(Ok))
    }
}

#[tokio::test(start_paused = true)]
async fn a_removed_endpoint_finishes_its_in_flight_requests() {
    let (a, b) = (server().await, server().await);
    a.state.slow.store(true, Ordering::SeqCst);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ea = Endpoint::from_url(&a.url).unwrap();
    tx.send(Change::Insert(ea.id().to_string(), ea.clone()))
        .unwrap();
    let mut lb = balance::<_, _, _, _, Request<String>>(
        "upstream",
        Feed(rx),
        connect(client()),
        HttpClassifier::default(),
        BalanceConfig::default(),
    );
    let in_flight = lb.ready().await.unwrap().call(get());
    let eb = Endpoint::from_url(&b.url).unwrap();
    tx.send(Change::Remove(ea.id().to_string())).unwrap();
    tx.send(Change::Insert(eb.id().to_string(), eb)).unwrap();
    // The balancer sees the removal on its next readiness check.
    let after = lb.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(b.state.hits.load(Ordering::SeqCst), 1);
    let response = in_flight.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(a.state.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn killing_one_of_three_mid_traffic_fails_no_idempotent_request_under_retry() {
    let servers = [server().await, server().await, server().await];
    let lb = balance::<_, _, _, _, Request<String>>(
        "upstream",
        StaticDiscovery::from_urls(servers.iter().map(|s| s.url.clone())).unwrap(),
        connect(client()),
        HttpClassifier::default(),
        BalanceConfig::default(),
    );
    let lb = tower::buffer::Buffer::new(lb, 64);
    let svc = RetryLayer::new(RetryPolicy::default()).layer(lb);
    let mut failures = 0;
    for i in 0..300 {
        if i == 100 {
            servers[2].task.abort();
        }
        match svc.clone().oneshot(get()).await {
            Ok(r) if r.status() == 200 => {}
            other => {
                eprintln!("request {i}: {other:?}");
                failures += 1
            }
        }
    }
    assert_eq!(failures, 0);
    let after: usize = servers[..2]
        .iter()
        .map(|s| s.state.hits.load(Ordering::SeqCst))
        .sum();
    assert!(after >= 200, "{after}");
}

#[tokio::test(start_paused = true)]
async fn the_balancer_counts_the_endpoints_discovery_gave_it_once_polled() {
    let endpoints =
        StaticDiscovery::from_urls(["http://10.0.0.1:80", "http://10.0.0.2:80"]).unwrap();
    let mut lb = balance::<_, _, _, _, ()>(
        "count",
        endpoints,
        |_| tower::service_fn(|_: ()| async { Ok::<_, Infallible>(()) }),
        meshguard::classify::ErrorsAreFailures,
        BalanceConfig::default(),
    );
    assert_eq!((lb.len(), lb.is_empty()), (0, true));
    lb.ready().await.unwrap();
    assert_eq!((lb.len(), lb.is_empty()), (2, false));
}
