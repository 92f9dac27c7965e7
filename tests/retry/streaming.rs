//! Requests with streaming bodies through the retry and hedge layers: sent
//! once and never replayed, where a buffered body is retried and hedged.
//! Real axum and hyper servers on 127.0.0.1:0 forward the requests they
//! receive.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use meshguard::retry::{ReplayBody, RetryLayer, RetryPolicy};
use tower::{Layer, Service, ServiceExt};

/// An upstream that always answers 503, counting its calls.
#[derive(Clone, Default)]
struct Unavailable(Arc<AtomicUsize>);

impl Unavailable {
    fn calls(&self) -> usize {
        self.0.load(SeqCst)
    }

    /// Sends `req` to this upstream through a retry layer allowing 3
    /// attempts (the default budget has room for them).
    async fn through_retry<B: ReplayBody + Send + 'static>(&self, req: Request<B>) -> StatusCode {
        let calls = self.0.clone();
        let upstream = tower::service_fn(move |_: Request<B>| {
            calls.fetch_add(1, SeqCst);
            std::future::ready(Ok::<_, Infallible>(
                Response::builder().status(503).body(()).unwrap(),
            ))
        });
        RetryLayer::new(RetryPolicy::builder().max_attempts(3).build().unwrap())
            .layer(upstream)
            .oneshot(req)
            .await
            .unwrap()
            .status()
    }
}

fn get<B>(body: B) -> Request<B> {
    Request::get("http://upstream/").body(body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_request_with_an_axum_body_goes_out_once() {
    let upstream = Unavailable::default();
    let status = upstream
        .through_retry(get(axum::body::Body::from("order 7")))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn requests_with_http_body_util_streaming_bodies_go_out_once() {
    let boxed = Unavailable::default();
    boxed
        .through_retry(get(Full::new(Bytes::new()).boxed()))
        .await;
    assert_eq!(boxed.calls(), 1);
    let unsync = Unavailable::default();
    unsync
        .through_retry(get(Empty::<Bytes>::new().boxed_unsync()))
        .await;
    assert_eq!(unsync.calls(), 1);
    let stream = Unavailable::default();
    let frames = no_frames();
    stream.through_retry(get(StreamBody::new(frames))).await;
    assert_eq!(stream.calls(), 1);
}

/// A stream that ends at once.
fn no_frames()
-> impl futures_core::Stream<Item = Result<hyper::body::Frame<Bytes>, Infallible>> + Send {
    struct Done;
    impl futures_core::Stream for Done {
        type Item = Result<hyper::body::Frame<Bytes>, Infallible>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(None)
        }
    }
    Done
}

#[tokio::test(start_paused = true)]
async fn a_request_with_a_buffered_body_is_retried() {
    let upstream = Unavailable::default();
    let status = upstream
        .through_retry(get(Full::new(Bytes::from_static(b"order 7"))))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test]
async fn an_axum_handler_forwards_the_request_it_received_through_the_retry_layer_once() {
    async fn proxy(
        axum::extract::State(upstream): axum::extract::State<Unavailable>,
        req: axum::extract::Request,
    ) -> StatusCode {
        upstream.through_retry(req).await
    }
    let upstream = Unavailable::default();
    let app = axum::Router::new()
        .route("/orders", axum::routing::put(proxy))
        .with_state(upstream.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let response = reqwest::Client::new()
        .put(format!("http://{addr}/orders"))
        .body("order 7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test]
async fn a_hyper_server_forwards_the_request_it_received_through_the_retry_layer_once() {
    use hyper::body::Incoming;
    let upstream = Unavailable::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = upstream.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let upstream = served.clone();
            async move {
                let status = upstream.through_retry(req).await;
                Response::builder()
                    .status(status)
                    .body(Empty::<Bytes>::new())
            }
        });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await
            .unwrap();
    });

    let response = reqwest::Client::new()
        .put(format!("http://{addr}/orders"))
        .body("order 7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.calls(), 1);
}

/// Teaches a hedge layer (p90, 20 latencies, 1 s periods) that 10 ms is
/// normal, then sends one request that takes 100 ms; returns the calls the
/// upstream saw, and how long that request took.
async fn calls_when_hedging<B: ReplayBody + Send + 'static>(
    body: impl Fn() -> B,
) -> (usize, std::time::Duration) {
    use meshguard::retry::{HedgeConfig, HedgeLayer, RetryBudget, RetryBudgetConfig};
    use std::time::Duration;
    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = {
        let calls = calls.clone();
        tower::service_fn(move |_: Request<B>| {
            let n = calls.fetch_add(1, SeqCst);
            async move {
                let ms = if n < 20 { 10 } else { 100 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, Infallible>(Response::new(()))
            }
        })
    };
    let budget = RetryBudget::new(RetryBudgetConfig::default());
    let config = HedgeConfig::builder()
        .min_data_points(20)
        .period(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut svc = HedgeLayer::new(config, budget).layer(upstream);
    for _ in 0..20 {
        svc.ready().await.unwrap().call(get(body())).await.unwrap();
    }
    // tower's hedge reads the latencies of the previous period.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = tokio::time::Instant::now();
    svc.ready().await.unwrap().call(get(body())).await.unwrap();
    (calls.load(SeqCst), start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_slow_request_with_an_axum_body_is_not_hedged() {
    let (calls, took) = calls_when_hedging(|| axum::body::Body::from("order 7")).await;
    assert_eq!(calls, 21);
    assert_eq!(took, std::time::Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_slow_request_with_a_buffered_body_is_hedged() {
    let (calls, took) = calls_when_hedging(|| Full::new(Bytes::from_static(b"order 7"))).await;
    // The hedge left at the p90 (10 ms); the 22nd call also takes 100 ms,
    // so the original answers first.
    assert_eq!(calls, 22);
    assert_eq!(took, std::time::Duration::from_millis(100));
}
