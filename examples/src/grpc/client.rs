//! The client side: [`UsersClient`], `users.Users` through a
//! `meshguard::grpc::Channel`, and the HTTP answer for a failed call.

use std::fmt;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use http::uri::PathAndQuery;
use meshguard::balance::BalanceConfig;
use meshguard::circuit_breaker::State;
use meshguard::discovery::consul::ConsulDiscovery;
use meshguard::grpc::{Channel, GrpcRetryOn};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use super::proto::{GET, GetUser, User};
use crate::config::Upstream;
use crate::user::{self, error};

/// A channel to `upstream` with the settings of the examples' HTTP clients
/// (`clients::service_client`): 500 ms per attempt, a 3 s deadline,
/// retries also on INTERNAL (as the HTTP clients retry 500: the example's
/// methods are idempotent; UNAVAILABLE and refused or cut connections are
/// retried anyway), and up to two of three instances ejectable.
pub fn channel(name: &str, upstream: &Upstream) -> Channel {
    let b = Channel::builder(name)
        .timeout(Some(Duration::from_millis(500)))
        .deadline(Some(Duration::from_secs(3)))
        .retry_on(GrpcRetryOn::default().code(Code::Internal, true))
        .balance(
            BalanceConfig::builder()
                .max_ejection_percent(67.0)
                .panic_threshold(30.0)
                .build()
                .expect("valid"),
        );
    let b = match upstream {
        Upstream::Urls(urls) => b.urls(urls.clone()),
        Upstream::Consul { address, service } => b.consul(crate::config::discovery(
            ConsulDiscovery::builder(address.clone(), service.clone())
                .wait(Duration::from_secs(10))
                .min_interval(Duration::from_millis(50)),
        )),
    };
    b.build().unwrap_or_else(|e| panic!("{name} channel: {e}"))
}

/// The user service over gRPC, as its callers see it (what tonic would
/// generate as `UsersClient`, written by hand).
#[derive(Clone, Debug)]
pub struct UsersClient(pub Channel);

impl UsersClient {
    /// A client of `user-service` at `upstream`, through [`channel`].
    pub fn new(upstream: &Upstream) -> Self {
        UsersClient(channel("user-service", upstream))
    }

    /// `users.Users/Get`: the user, or `None` on NOT_FOUND.
    pub async fn get(&self, id: u64) -> Result<Option<user::User>, GrpcError> {
        let mut grpc = tonic::client::Grpc::new(self.0.clone());
        grpc.ready()
            .await
            .map_err(|e| self.error(Status::from_error(e)))?;
        let request = tonic::Request::new(GetUser { id });
        let path = PathAndQuery::from_static(GET);
        match grpc
            .unary(request, path, ProstCodec::<GetUser, User>::default())
            .await
        {
            Ok(response) => Ok(Some(response.into_inner().into())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.error(status)),
        }
    }

    /// A status has no room for meshguard's error: an UNAVAILABLE while
    /// the channel's service breaker is not letting calls through is that
    /// breaker's refusal.
    fn error(&self, status: Status) -> GrpcError {
        let refusing = self.0.breaker().is_some_and(|b| {
            matches!(b.state(), State::Open | State::ForcedOpen | State::HalfOpen)
        });
        GrpcError {
            circuit_open: status.code() == Code::Unavailable && refusing,
            status,
        }
    }
}

/// A failed `users.Users` call: its status, and whether the channel's
/// service breaker refused it.
#[derive(Debug)]
pub struct GrpcError {
    /// The call's status.
    pub status: Status,
    /// The service breaker refused the call (fail fast).
    pub circuit_open: bool,
}

impl fmt::Display for GrpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.status.code(), self.status.message())
    }
}

impl std::error::Error for GrpcError {}

impl GrpcError {
    /// The answer for it, as `clients::error_response` answers a failed
    /// HTTP call: the caller's mistake (INVALID_ARGUMENT) 400; an open
    /// circuit 503 with `Retry-After` (1 s: the status does not say when
    /// the breaker probes again); DEADLINE_EXCEEDED 504; UNAVAILABLE (no
    /// instance, connections refused or cut) 503; anything else 502.
    pub fn response(&self, service: &str) -> Response {
        if self.circuit_open {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{service} is unavailable"),
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return r;
        }
        let (status, message) = match self.status.code() {
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, self.status.message().to_string()),
            Code::DeadlineExceeded => (
                StatusCode::GATEWAY_TIMEOUT,
                format!("{service} did not answer in time"),
            ),
            Code::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{service} is unreachable"),
            ),
            _ => (StatusCode::BAD_GATEWAY, format!("{service} failed: {self}")),
        };
        error(status, message)
    }
}
