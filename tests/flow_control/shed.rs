//! Load shedding in an axum `Router` (`ShedLayer`: 2 requests served at
//! once, 1 queued for at most 50 ms): called as a tower service on paused
//! time, where every instant is exact, and once over a real socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use meshguard::limit::{ShedConfig, ShedLayer};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::support::http::{serve, url};
use crate::upstream::client;

const QUEUE_TIMEOUT: Duration = Duration::from_millis(50);

/// What the handler does before answering 204.
#[derive(Clone, Copy)]
enum Hold {
    /// Waits until the test releases it.
    Gate,
    /// Sleeps this long.
    Sleep(Duration),
}

/// A router behind the shedder, with what its handler saw.
struct Server {
    router: axum::Router,
    shed: ShedLayer,
    hits: Arc<AtomicUsize>,
    max_in_handler: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Server {
    fn new(hold: Hold) -> Server {
        let shed = ShedLayer::new(
            "flow",
            ShedConfig::builder()
                .max_concurrent(2)
                .max_queue(1)
                .queue_timeout(QUEUE_TIMEOUT)
                .build()
                .unwrap(),
        );
        let hits = Arc::new(AtomicUsize::new(0));
        let in_handler = Arc::new(AtomicUsize::new(0));
        let max_in_handler = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (h, m, g) = (hits.clone(), max_in_handler.clone(), gate.clone());
        let router = axum::Router::new()
            .route(
                "/",
                axum::routing::get(move || {
                    let (h, i, m, g) = (h.clone(), in_handler.clone(), m.clone(), g.clone());
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        m.fetch_max(i.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        match hold {
                            Hold::Gate => g.acquire().await.unwrap().forget(),
                            Hold::Sleep(d) => tokio::time::sleep(d).await,
                        }
                        i.fetch_sub(1, Ordering::SeqCst);
                        StatusCode::NO_CONTENT
                    }
                }),
            )
            .layer(shed.clone());
        Server {
            router,
            shed,
            hits,
            max_in_handler,
            gate,
        }
    }

    /// One request, answered when it is.
    async fn get(&self) -> Response<Body> {
        let request = Request::get("/").body(Body::empty()).unwrap();
        self.router.clone().oneshot(request).await.unwrap()
    }

    /// One request in a task of its own, with the instant it was answered.
    fn spawn_get(&self) -> JoinHandle<(StatusCode, Instant)> {
        let router = self.router.clone();
        tokio::spawn(async move {
            let request = Request::get("/").body(Body::empty()).unwrap();
            let response = router.oneshot(request).await.unwrap();
            (response.status(), Instant::now())
        })
    }

    /// Requests served now, and queued.
    fn load(&self) -> (usize, usize) {
        (self.shed.in_flight(), self.shed.queued())
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn is_shed(response: &Response<Body>) -> bool {
    response.status() == StatusCode::SERVICE_UNAVAILABLE
        && response.headers()[http::header::RETRY_AFTER] == "1"
}

#[tokio::test(start_paused = true)]
async fn a_request_beyond_the_slots_and_the_queue_gets_503_with_retry_after_at_once() {
    let server = Server::new(Hold::Gate);
    let held: Vec<_> = (0..3).map(|_| server.spawn_get()).collect();
    tokio::task::yield_now().await;
    assert_eq!((server.load(), server.hits()), ((2, 1), 2));
    let started = Instant::now();
    let response = server.get().await;
    assert!(is_shed(&response), "{response:?}");
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(server.hits(), 2);
    server.gate.add_permits(3);
    for call in held {
        assert_eq!(call.await.unwrap().0, StatusCode::NO_CONTENT);
    }
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_served_the_moment_a_slot_frees() {
    let server = Server::new(Hold::Gate);
    let started = Instant::now();
    let first = server.spawn_get();
    let second = server.spawn_get();
    let queued = server.spawn_get();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!((server.load(), server.hits()), ((2, 1), 2));
    server.gate.add_permits(1);
    let (status, _) = first.await.unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    tokio::task::yield_now().await;
    assert_eq!((server.load(), server.hits()), ((2, 0), 3));
    server.gate.add_permits(2);
    let (status, answered) = queued.await.unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(answered - started, Duration::from_millis(30));
    assert_eq!(second.await.unwrap().0, StatusCode::NO_CONTENT);
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_past_the_queue_timeout_gets_503_with_retry_after() {
    let server = Server::new(Hold::Gate);
    let held: Vec<_> = (0..2).map(|_| server.spawn_get()).collect();
    tokio::task::yield_now().await;
    let started = Instant::now();
    let response = server.get().await;
    assert!(is_shed(&response), "{response:?}");
    assert_eq!(started.elapsed(), QUEUE_TIMEOUT);
    assert_eq!((server.load(), server.hits()), ((2, 0), 2));
    server.gate.add_permits(2);
    for call in held {
        assert_eq!(call.await.unwrap().0, StatusCode::NO_CONTENT);
    }
}

#[tokio::test(start_paused = true)]
async fn the_handler_never_runs_more_requests_at_once_than_the_limit() {
    // Requests of 20 ms arriving every 3 ms: six times what two slots serve.
    let server = Server::new(Hold::Sleep(Duration::from_millis(20)));
    let mut calls = Vec::new();
    for _ in 0..60 {
        calls.push(server.spawn_get());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut ended = (0, 0);
    for call in calls {
        match call.await.unwrap().0 {
            StatusCode::NO_CONTENT => ended.0 += 1,
            StatusCode::SERVICE_UNAVAILABLE => ended.1 += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!(server.max_in_handler.load(Ordering::SeqCst), 2);
    assert_eq!(ended.0, server.hits());
    assert_eq!(ended.0 + ended.1, 60);
    assert!(ended.1 > 0);
}

// Over a socket, on real time (the held requests' answers travel while a
// queue timer waits); what is asserted does not depend on timing.
#[tokio::test]
async fn a_shed_request_reaches_a_client_over_http_as_503_with_retry_after() {
    let server = Server::new(Hold::Gate);
    let base = url(serve(server.router.clone()).await);
    let svc = client(&base).build().unwrap();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.get("/").send_raw().await.unwrap().status() })
        })
        .collect();
    while server.hits() < 2 {
        tokio::task::yield_now().await;
    }
    // One waits out the queue timeout, the other is shed at once (or after
    // it, if it arrives once the first has timed out).
    let (a, b) = tokio::join!(svc.get("/").send_raw(), svc.get("/").send_raw());
    for response in [a.unwrap(), b.unwrap()] {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
    }
    assert_eq!(server.hits(), 2);
    server.gate.add_permits(2);
    for call in held {
        assert_eq!(call.await.unwrap(), StatusCode::NO_CONTENT);
    }
}
