//! The API gateway: bearer-token (JWT, HS256) authentication, access by
//! role and ownership ([`access`]), a bounded rate limit per client,
//! `/api/users/*` and `/api/orders/*` routed to the services found through
//! discovery, and `GET /api/order-details/{id}`, an order with its user
//! that degrades to the order alone when the user service fails.
//!
//! A refused token is 401 `{"error": "invalid token"}` whatever the
//! reason (the reason goes to the log at debug); the scheme is matched
//! without regard to case (`Bearer`, `bearer`: RFC 7235).

pub mod access;
mod jwt;
mod limiter;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get};
use meshguard::client::ServiceClient;
use meshguard::propagation::PropagationLayer;

pub use jwt::{ADMIN, Claims, JwtConfig, MIN_SECRET, now};
pub use limiter::{DEFAULT_MAX_CLIENTS, KeyedLimiter, Limited};

use super::clients::error_response;
use super::input::{BODY_LIMIT, error};
use super::telemetry;
use access::Caller;

/// The longest bearer token read, in bytes.
const MAX_TOKEN: usize = 4096;

/// The gateway's clients of the services it routes to, its token rules
/// and its rate limiter.
#[derive(Clone)]
pub struct GatewayState {
    /// The user service.
    pub users: ServiceClient,
    /// The order service.
    pub orders: ServiceClient,
    jwt: Arc<JwtConfig>,
    per_second: u32,
    limiter: Arc<KeyedLimiter>,
}

impl GatewayState {
    /// Tokens are checked under `jwt`; each client may make `per_second`
    /// requests a second (at least 1); at most [`DEFAULT_MAX_CLIENTS`]
    /// clients are tracked.
    pub fn new(
        users: ServiceClient,
        orders: ServiceClient,
        jwt: JwtConfig,
        per_second: u32,
    ) -> Self {
        GatewayState {
            users,
            orders,
            jwt: Arc::new(jwt),
            per_second,
            limiter: Arc::new(KeyedLimiter::new(per_second, DEFAULT_MAX_CLIENTS)),
        }
    }

    /// Tracks at most `max` clients in the rate limiter.
    pub fn with_max_clients(mut self, max: usize) -> Self {
        self.limiter = Arc::new(KeyedLimiter::new(self.per_second, max));
        self
    }

    /// The rate limiter (to see how many clients it holds).
    pub fn limiter(&self) -> &KeyedLimiter {
        &self.limiter
    }
}

/// The gateway's public routes: `/api/...` (authenticated, rate limited)
/// and `GET /health`. Metrics are not here: they are on
/// [`admin_app`], on a port of its own that the public load balancer does
/// not expose.
pub fn app(state: GatewayState) -> Router {
    let api = Router::new()
        .route("/api/users", any(access::users))
        .route("/api/users/{*rest}", any(access::users))
        .route("/api/orders", any(access::orders))
        .route("/api/orders/{*rest}", any(access::orders))
        .route("/api/order-details/{id}", get(access::order_with_user))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/health", get(|| async { "ok" }))
        .with_state(state)
        // The edge: an outside caller's request id and deadline are not
        // trusted (a new id is made; `x-deadline-ms: 0` cannot cut every
        // call short).
        .layer(PropagationLayer::untrusted())
}

/// The gateway's operational routes, for its metrics port: `GET /metrics`
/// and `GET /health`.
pub fn admin_app() -> Router {
    Router::new()
        .route("/metrics", get(telemetry::metrics_handler))
        .route("/health", get(|| async { "ok" }))
}

/// The token in an `Authorization: Bearer <token>` header, the scheme in
/// any case.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= MAX_TOKEN)
        .then_some(token)
}

/// Checks the bearer token and the client's rate; the client is the
/// token's `sub`, made the request's [`Caller`].
async fn authenticate(State(state): State<GatewayState>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return error(StatusCode::UNAUTHORIZED, "a bearer token is required");
    };
    let claims = match state.jwt.verify(token) {
        Ok(claims) => claims,
        Err(reason) => {
            tracing::debug!(%reason, "token refused");
            return error(StatusCode::UNAUTHORIZED, "invalid token");
        }
    };
    if let Err(limited) = state.limiter.check(&claims.sub) {
        let message = match limited {
            Limited::Rate { .. } => "rate limit exceeded",
            Limited::Full { .. } => "too many active clients",
        };
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, message);
        let secs = limited.retry_after().as_secs_f64().ceil().max(1.0) as u64;
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
        return r;
    }
    let admin = claims.roles.iter().any(|r| r == ADMIN);
    req.extensions_mut().insert(Caller {
        sub: claims.sub,
        admin,
    });
    next.run(req).await
}

/// A request on its way to a service: what [`forward`] sends.
pub(crate) struct Outgoing {
    pub(crate) method: Method,
    /// The path and query on the service.
    pub(crate) path: String,
    pub(crate) content_type: Option<HeaderValue>,
    pub(crate) body: Bytes,
}

impl Outgoing {
    /// `req` without the `/api` prefix, its body read up to
    /// [`BODY_LIMIT`] (else the 413 to answer).
    pub(crate) async fn from_request(req: Request) -> Result<Outgoing, Response> {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let path = pq.strip_prefix("/api").unwrap_or(pq).to_string();
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {} KiB", BODY_LIMIT / 1024),
            )
        })?;
        Ok(Outgoing {
            method: parts.method,
            path,
            content_type: parts.headers.get("content-type").cloned(),
            body,
        })
    }
}

/// Sends `out` to `service`; the answer comes back as it is: status, body,
/// content type and `Retry-After` (a 429 or 503 tells the client when to
/// come back).
pub(crate) async fn forward(client: &ServiceClient, service: &str, out: Outgoing) -> Response {
    let mut call = client.request(out.method, out.path).body(out.body);
    if let Some(ct) = out.content_type {
        call = call.header("content-type", ct);
    }
    match call.send_raw().await {
        Ok(r) => {
            let (parts, body) = r.into_parts();
            let mut response = Response::new(axum::body::Body::from(body));
            *response.status_mut() = parts.status;
            for name in ["content-type", "retry-after"] {
                if let Some(v) = parts.headers.get(name) {
                    response.headers_mut().insert(name, v.clone());
                }
            }
            response
        }
        Err(e) => error_response(service, &e),
    }
}
