//! The API gateway: bearer-token (JWT, HS256) authentication, a rate limit
//! per client, `/api/users/*` and `/api/orders/*` routed to the services
//! found through discovery, and `GET /api/order-details/{id}`, an order with
//! its user that degrades to the order alone when the user service fails.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use meshguard::client::ServiceClient;
use meshguard::propagation::PropagationLayer;
use serde::{Deserialize, Serialize};

use super::clients::{OrderClient, UserClient, error_response};
use super::telemetry;
use super::user::error;

/// A token's claims: who the client is and until when.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The client.
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
}

/// Makes a token for `client`, valid for an hour (demos and tests; real
/// tokens come from an identity provider sharing the key).
pub fn token(secret: &[u8], client: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Claims {
            sub: client.into(),
            exp,
        },
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signs any claims")
}

/// The gateway's clients of the services it routes to, its token key and
/// its rate limiter.
#[derive(Clone)]
pub struct GatewayState {
    /// The user service.
    pub users: ServiceClient,
    /// The order service.
    pub orders: ServiceClient,
    key: Arc<DecodingKey>,
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
}

impl GatewayState {
    /// Tokens are checked with `secret` (HS256); each client may make
    /// `per_second` requests a second (at least 1).
    pub fn new(
        users: ServiceClient,
        orders: ServiceClient,
        secret: &[u8],
        per_second: u32,
    ) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(per_second.max(1)).expect("at least 1"));
        GatewayState {
            users,
            orders,
            key: Arc::new(DecodingKey::from_secret(secret)),
            limiter: Arc::new(RateLimiter::keyed(quota)),
        }
    }
}

/// The gateway's routes: `/api/...` (authenticated, rate limited) and
/// `/health`, `/metrics`.
pub fn app(state: GatewayState) -> Router {
    let api = Router::new()
        .route("/api/users", any(forward_users))
        .route("/api/users/{*rest}", any(forward_users))
        .route("/api/orders", any(forward_orders))
        .route("/api/order-details/{id}", get(order_with_user))
        .route("/api/orders/{*rest}", any(forward_orders))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(telemetry::metrics_handler))
        .with_state(state)
        // The edge: an outside caller's request id and deadline are not
        // trusted (a new id is made; `x-deadline-ms: 0` cannot cut every
        // call short).
        .layer(PropagationLayer::untrusted())
}

/// Checks the bearer token and the client's rate; the client is the
/// token's `sub`.
async fn authenticate(State(state): State<GatewayState>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return error(StatusCode::UNAUTHORIZED, "a bearer token is required");
    };
    let claims =
        match jsonwebtoken::decode::<Claims>(token, &state.key, &Validation::new(Algorithm::HS256))
        {
            Ok(data) => data.claims,
            Err(e) => return error(StatusCode::UNAUTHORIZED, format!("invalid token: {e}")),
        };
    if let Err(not_until) = state.limiter.check_key(&claims.sub) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit for {}", claims.sub),
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(wait.as_secs().max(1)));
        return r;
    }
    next.run(req).await
}

async fn forward_users(State(state): State<GatewayState>, req: Request) -> Response {
    forward(&state.users, "user-service", req).await
}

async fn forward_orders(State(state): State<GatewayState>, req: Request) -> Response {
    forward(&state.orders, "order-service", req).await
}

/// The request's path and query without `prefix`.
fn rest_of(req: &Request, prefix: &str) -> String {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    pq.strip_prefix(prefix).unwrap_or(pq).to_string()
}

/// Sends the request on to `service` without the `/api` prefix: method,
/// path, query, body and content type; the answer comes back as it is.
async fn forward(client: &ServiceClient, service: &str, req: Request) -> Response {
    let path = rest_of(&req, "/api");
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body over 1 MiB"),
    };
    let mut call = client.request(parts.method, path).body(body);
    if let Some(ct) = parts.headers.get("content-type") {
        call = call.header("content-type", ct.clone());
    }
    match call.send_raw().await {
        Ok(r) => {
            let (parts, body) = r.into_parts();
            let mut out = Response::new(axum::body::Body::from(body));
            *out.status_mut() = parts.status;
            if let Some(ct) = parts.headers.get("content-type") {
                out.headers_mut().insert("content-type", ct.clone());
            }
            out
        }
        Err(e) => error_response(service, &e),
    }
}

/// An order with its user. If the user service fails, the order comes
/// alone with `"degraded": true`: the page can still show it.
async fn order_with_user(State(state): State<GatewayState>, Path(id): Path<u64>) -> Response {
    let orders = OrderClient(state.orders.clone());
    let order = match orders.get(id).await {
        Ok(Some(order)) => order,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("order {id} not found")),
        Err(e) => return error_response("order-service", &e),
    };
    let users = UserClient(state.users.clone());
    match users.get(order.user_id).await {
        Ok(user) => Json(serde_json::json!({ "order": order, "user": user, "degraded": false }))
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "user service failed; answering without the user");
            Json(serde_json::json!({ "order": order, "user": null, "degraded": true }))
                .into_response()
        }
    }
}
