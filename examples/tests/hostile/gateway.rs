//! The gateway passes an upstream's `Retry-After` through on 429 and 503,
//! as its README says: a client told to come back later by the service is
//! told so by the gateway.

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use meshguard_examples::clients::service_client;
use meshguard_examples::config::Upstream;
use meshguard_examples::gateway::{ADMIN, GatewayState, JwtConfig};
use meshguard_examples::server::Instance;

/// A gateway whose user service answers every `GET /users/{id}` with
/// `status` and `Retry-After: {secs}`; the answer to
/// `GET /api/users/1` through it.
async fn through_the_gateway(status: StatusCode, secs: u64) -> reqwest::Response {
    let users = Instance::start(Router::new().route(
        "/users/{id}",
        get(move || async move {
            (status, [("retry-after", secs.to_string())], "later").into_response()
        }),
    ))
    .await;
    let jwt = JwtConfig::random();
    let nowhere = Upstream::Urls(vec!["http://127.0.0.1:9".into()]);
    let gateway = Instance::start(meshguard_examples::gateway::app(GatewayState::new(
        service_client("user-service", &Upstream::Urls(vec![users.url()])),
        service_client("order-service", &nowhere),
        jwt.clone(),
        100,
    )))
    .await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/users/1", gateway.url()))
        .bearer_auth(jwt.token("admin", &[ADMIN]))
        .send()
        .await
        .unwrap();
    drop((users, gateway));
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_passes_through_the_gateway_on_429() {
    let r = through_the_gateway(StatusCode::TOO_MANY_REQUESTS, 120).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "120");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_passes_through_the_gateway_on_503() {
    let r = through_the_gateway(StatusCode::SERVICE_UNAVAILABLE, 120).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "120");
}
