//! `FaultLayer`: faults switched at run time on an axum service.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use meshguard::testing::{Fault, FaultHandle};
use tokio::time::Instant;
use tower::ServiceExt;

fn app(faults: &FaultHandle, hits: Arc<AtomicUsize>) -> axum::Router {
    axum::Router::new()
        .route(
            "/",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        )
        .layer(faults.layer())
}

async fn status(app: &axum::Router) -> StatusCode {
    app.clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_status_fault_answers_without_reaching_the_handler() {
    let (faults, hits) = (FaultHandle::new(), Arc::new(AtomicUsize::new(0)));
    let app = app(&faults, hits.clone());
    faults.set(Fault::Status(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(status(&app).await, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_delay_fault_delays_each_request_by_exactly_its_duration() {
    let (faults, hits) = (FaultHandle::new(), Arc::new(AtomicUsize::new(0)));
    let app = app(&faults, hits.clone());
    faults.set(Fault::Delay(Duration::from_millis(300)));
    let start = Instant::now();
    assert_eq!(status(&app).await, StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn clearing_the_fault_restores_normal_service() {
    let (faults, hits) = (FaultHandle::new(), Arc::new(AtomicUsize::new(0)));
    let app = app(&faults, hits.clone());
    faults.set(Fault::Status(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(status(&app).await, StatusCode::SERVICE_UNAVAILABLE);
    faults.clear();
    let start = Instant::now();
    assert_eq!(status(&app).await, StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
