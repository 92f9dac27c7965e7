//! The upstreams and the client of the flow-control tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::http::StatusCode;
use meshguard::balance::BalanceConfig;
use meshguard::client::{ServiceClient, ServiceClientBuilder};
use meshguard::retry::RetryPolicy;
use tokio::sync::{Semaphore, mpsc};

use crate::support::http::{serve, url};

/// An upstream that holds every request until the test releases it:
/// how many arrived, how many were in its handler at most, and a signal on
/// each arrival.
pub struct Gated {
    pub base: String,
    hits: Arc<AtomicUsize>,
    max_in_handler: Arc<AtomicUsize>,
    arrived: mpsc::UnboundedReceiver<()>,
    gate: Arc<Semaphore>,
}

impl Gated {
    /// Serves `GET /` (204 once released) on 127.0.0.1.
    pub async fn start() -> Gated {
        let hits = Arc::new(AtomicUsize::new(0));
        let in_handler = Arc::new(AtomicUsize::new(0));
        let max_in_handler = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (tx, arrived) = mpsc::unbounded_channel();
        let (h, m, g) = (hits.clone(), max_in_handler.clone(), gate.clone());
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let (i, m, g, tx) = (in_handler.clone(), m.clone(), g.clone(), tx.clone());
                h.fetch_add(1, Ordering::SeqCst);
                async move {
                    let now = i.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    let _ = tx.send(());
                    g.acquire().await.unwrap().forget();
                    i.fetch_sub(1, Ordering::SeqCst);
                    StatusCode::NO_CONTENT
                }
            }),
        );
        Gated {
            base: url(serve(app).await),
            hits,
            max_in_handler,
            arrived,
            gate,
        }
    }

    /// Waits until the next request is in the handler.
    pub async fn arrival(&mut self) {
        self.arrived.recv().await.expect("the server runs");
    }

    /// Lets `n` held requests (or the next `n` to arrive) answer.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Requests that reached the handler.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The most requests in the handler at once.
    pub fn max_in_handler(&self) -> usize {
        self.max_in_handler.load(Ordering::SeqCst)
    }
}

/// An upstream answering `GET /` with 503 while `failing` is set, 204
/// otherwise, counting the requests it gets.
pub struct Switch {
    pub base: String,
    hits: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl Switch {
    pub async fn start(failing: bool) -> Switch {
        let hits = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(failing));
        let (h, f) = (hits.clone(), failing.clone());
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                let status = if f.load(Ordering::SeqCst) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                };
                async move { status }
            }),
        );
        Switch {
            base: url(serve(app).await),
            hits,
            failing,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

/// A client of `base` with only what a test adds: one attempt, no
/// timeout, deadline, service breaker or outlier ejection, and no pooled
/// connections (whose idle timer would move paused time while a socket is
/// awaited).
pub fn client(base: &str) -> ServiceClientBuilder {
    ServiceClient::builder("flow")
        .urls([base])
        .timeout(None)
        .deadline(None)
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .circuit_breaker(None)
        .balance(BalanceConfig::builder().ejection(None).build().unwrap())
        .pool_max_idle_per_host(0)
}
