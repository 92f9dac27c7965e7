//! The retry layer around real HTTP calls: axum servers on 127.0.0.1:0,
//! called with reqwest through the layer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use http::{Request, Response};
use meshguard::BoxError;
use meshguard::retry::{RetryLayer, RetryPolicy};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// When each attempt of each request (by `x-request-id`) arrived.
type Attempts = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

async fn serve(attempts: Attempts) -> String {
    fn record(attempts: &Attempts, headers: &HeaderMap) -> usize {
        let id = headers["x-request-id"].to_str().unwrap().to_string();
        let mut all = attempts.lock().unwrap();
        let seen = all.entry(id).or_default();
        seen.push(Instant::now());
        seen.len()
    }
    // Fails the first two attempts of every request.
    async fn flaky(State(a): State<Attempts>, headers: HeaderMap) -> impl IntoResponse {
        match record(&a, &headers) {
            1 | 2 => (StatusCode::SERVICE_UNAVAILABLE, "not yet"),
            _ => (StatusCode::OK, "done"),
        }
    }
    // Asks the first attempt to come back in a second.
    async fn busy(State(a): State<Attempts>, headers: HeaderMap) -> axum::response::Response {
        match record(&a, &headers) {
            1 => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(http::header::RETRY_AFTER, "1")],
                "busy",
            )
                .into_response(),
            _ => (StatusCode::OK, "done").into_response(),
        }
    }
    let app = Router::new()
        .route("/flaky", get(flaky))
        .route("/busy", get(busy))
        .with_state(attempts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// reqwest as a tower service of `http` types.
fn transport()
-> impl Service<Request<String>, Response = Response<String>, Error = BoxError> + Clone {
    let client = reqwest::Client::builder()
        .pool_idle_timeout(None)
        .build()
        .unwrap();
    tower::service_fn(move |req: Request<String>| {
        let client = client.clone();
        async move {
            let (parts, body) = req.into_parts();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut out = Response::builder().status(response.status());
            for (name, value) in response.headers() {
                out = out.header(name, value);
            }
            Ok::<_, BoxError>(out.body(response.text().await?)?)
        }
    })
}

fn request(url: String, id: usize) -> Request<String> {
    Request::get(url)
        .header("x-request-id", id.to_string())
        .body(String::new())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn requests_failing_their_first_two_attempts_succeed_through_the_layer() {
    let attempts = Attempts::default();
    let base = serve(attempts.clone()).await;
    let svc = RetryLayer::new(RetryPolicy::default()).layer(transport());
    for id in 0..10 {
        let response = svc
            .clone()
            .oneshot(request(format!("{base}/flaky"), id))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "done");
    }
    let all = attempts.lock().unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.values().all(|a| a.len() == 3));
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_1_is_retried_one_second_later() {
    let attempts = Attempts::default();
    let base = serve(attempts.clone()).await;
    let svc = RetryLayer::new(RetryPolicy::default()).layer(transport());
    let response = svc
        .oneshot(request(format!("{base}/busy"), 7))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = attempts.lock().unwrap()["7"].clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1] - seen[0], std::time::Duration::from_secs(1));
}
