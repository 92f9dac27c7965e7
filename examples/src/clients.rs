//! Typed clients of the user and order services, on `ServiceClient`, the
//! order service's client of the user service by either protocol
//! ([`Users`]: gRPC by default, HTTP on request), and the mapping of a
//! failed call to an HTTP answer.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use meshguard::balance::BalanceConfig;
use meshguard::circuit_breaker::CircuitBreaker;
use meshguard::client::{ClientError, ServiceClient, ServiceClientBuilder};
use meshguard::discovery::consul::ConsulDiscovery;
use meshguard::limit::ThrottleConfig;

use super::config::{Protocol, Upstream};
use super::grpc::{GrpcError, UsersClient};
use super::order::{NewOrder, Order};
use super::user::{NewUser, User, error};

/// A client of `upstream` with the settings the examples share: retries
/// also on 500 (the example handlers are idempotent), client-side
/// throttling, up to two of three instances ejectable, and idle
/// connections dropped before the servers close them.
pub fn service_client(name: &str, upstream: &Upstream) -> ServiceClient {
    let b = ServiceClient::builder(name)
        .timeout(Some(Duration::from_millis(500)))
        .deadline(Some(Duration::from_secs(3)))
        .retry_on_status(StatusCode::INTERNAL_SERVER_ERROR, true)
        // Below the servers' header-read timeout (5 s), which also closes
        // idle keep-alive connections: the client lets a connection go
        // before the server does, so a request never races the server's
        // close on a connection it just picked.
        .pool_idle_timeout(Duration::from_secs(4))
        // While an upstream sheds load (503), refuse a share of the calls
        // here rather than send them all.
        .throttle(Some(ThrottleConfig::default()))
        .balance(
            BalanceConfig::builder()
                .max_ejection_percent(67.0)
                .panic_threshold(30.0)
                .build()
                .expect("valid"),
        );
    with_upstream(b, upstream)
        .build()
        .unwrap_or_else(|e| panic!("{name} client: {e}"))
}

fn with_upstream(b: ServiceClientBuilder, upstream: &Upstream) -> ServiceClientBuilder {
    match upstream {
        Upstream::Urls(urls) => b.urls(urls.clone()),
        Upstream::Consul { address, service } => b.consul(super::config::discovery(
            ConsulDiscovery::builder(address.clone(), service.clone())
                .wait(Duration::from_secs(10))
                .min_interval(Duration::from_millis(50)),
        )),
    }
}

/// The user service, as its callers see it.
#[derive(Clone)]
pub struct UserClient(pub ServiceClient);

impl UserClient {
    /// `GET /users/{id}`: the user, or `None` on 404.
    pub async fn get(&self, id: u64) -> Result<Option<User>, ClientError> {
        self.0.get(format!("/users/{id}")).send_opt().await
    }

    /// `POST /users`: the user as created.
    pub async fn create(&self, user: &NewUser) -> Result<User, ClientError> {
        self.0.post("/users").json(user).send().await
    }
}

/// The user service as the order service calls it: `users.Users/Get` over
/// gRPC (the default), or `GET /users/{id}` over HTTP.
#[derive(Clone)]
pub enum Users {
    /// Through a `meshguard::grpc::Channel`.
    Grpc(UsersClient),
    /// Through a `ServiceClient`.
    Http(UserClient),
}

impl Users {
    /// A client of `user-service` at `upstream`, speaking `protocol`.
    pub fn new(protocol: Protocol, upstream: &Upstream) -> Users {
        match protocol {
            Protocol::Grpc => Users::Grpc(UsersClient::new(upstream)),
            Protocol::Http => Users::Http(UserClient(service_client("user-service", upstream))),
        }
    }

    /// The user, or `None` if the user service has no such user (gRPC's
    /// NOT_FOUND, HTTP's 404).
    pub async fn get(&self, id: u64) -> Result<Option<User>, UsersError> {
        match self {
            Users::Grpc(c) => c.get(id).await.map_err(UsersError::Grpc),
            Users::Http(c) => c.get(id).await.map_err(UsersError::Http),
        }
    }

    /// The service breaker of the channel or client, unless configured off.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        match self {
            Users::Grpc(c) => c.0.breaker(),
            Users::Http(c) => c.0.breaker(),
        }
    }
}

/// A failed call to the user service, by either protocol.
#[derive(Debug)]
pub enum UsersError {
    /// Over gRPC.
    Grpc(GrpcError),
    /// Over HTTP.
    Http(ClientError),
}

impl std::fmt::Display for UsersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsersError::Grpc(e) => e.fmt(f),
            UsersError::Http(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UsersError {}

impl UsersError {
    /// The answer for it: [`GrpcError::response`] or [`error_response`].
    pub fn response(&self, service: &str) -> Response {
        match self {
            UsersError::Grpc(e) => e.response(service),
            UsersError::Http(e) => error_response(service, e),
        }
    }
}

/// The order service, as the gateway sees it.
#[derive(Clone)]
pub struct OrderClient(pub ServiceClient);

impl OrderClient {
    /// `GET /orders/{id}`: the order, or `None` on 404.
    pub async fn get(&self, id: u64) -> Result<Option<Order>, ClientError> {
        self.0.get(format!("/orders/{id}")).send_opt().await
    }

    /// `POST /orders`: the order as created.
    pub async fn create(&self, order: &NewOrder) -> Result<Order, ClientError> {
        self.0.post("/orders").json(order).send().await
    }
}

/// The answer for a failed upstream call: the upstream's own 4xx passes
/// through; an open circuit or a call refused by flow control is 503 with
/// `Retry-After`; a timeout or spent
/// deadline 504; no instance or a broken connection 503; an upstream 5xx
/// or a garbled answer 502.
pub fn error_response(service: &str, e: &ClientError) -> Response {
    let (status, message) = match e {
        ClientError::Status { status, body, .. } if status.is_client_error() => {
            return (*status, body.clone()).into_response();
        }
        ClientError::CircuitOpen { retry_after } => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{service} is unavailable"),
            );
            let secs = retry_after.map_or(1, |d| d.as_secs().max(1));
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
            return r;
        }
        ClientError::LimitExceeded(_) => {
            // Our own flow control refused the call: the upstream is at
            // its limit. Tell the caller to come back, as a shedding
            // server does.
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{service} is overloaded"),
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(1u64));
            return r;
        }
        ClientError::Timeout | ClientError::DeadlineExceeded => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("{service} did not answer in time"),
        ),
        ClientError::NoEndpoints | ClientError::Transport(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{service} is unreachable"),
        ),
        _ => (StatusCode::BAD_GATEWAY, format!("{service} failed: {e}")),
    };
    error(status, message)
}
