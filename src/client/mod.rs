#![doc = include_str!("../../docs/client.md")]

mod builder;
mod call;
mod config;
mod error;
mod hedge;
mod metrics;
mod request;
mod source;
mod stack;
mod tls;
mod transport;

use std::fmt;
use std::sync::Arc;

use http::Method;

pub use builder::ServiceClientBuilder;
#[cfg(feature = "grpc")]
pub(crate) use builder::{Discovery, source_of};
#[cfg(any(feature = "reqwest", feature = "grpc"))]
pub(crate) use builder::{check_fail_fast, check_limits, check_no_attempt_timeout};
pub use config::{ConsulConfig, ServiceClientConfig};
pub use error::{ClientError, STATUS_BODY_LIMIT};
#[cfg(feature = "reqwest")]
pub(crate) use metrics::{AttemptMetrics, CallTimer, ClientMetrics, status_outcome};
pub use request::RequestBuilder;
#[cfg(feature = "grpc")]
pub(crate) use source::Source;
#[cfg(any(feature = "reqwest", feature = "grpc"))]
pub(crate) use stack::BoxErrors;
pub use tls::{HttpProtocol, TlsConfig, TlsConfigBuilder};
#[cfg(any(feature = "reqwest", feature = "grpc"))]
pub(crate) use transport::transport_outcome;
#[cfg(feature = "grpc")]
pub(crate) use transport::{
    CONNECT_TIMEOUT, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT, connector, tls_refused,
};

use crate::ConfigError;
use crate::circuit_breaker::CircuitBreaker;
use crate::retry::HttpRetryOn;
use stack::Stack;

/// A client for one service: every call goes through a deadline, retries
/// within a budget, the service's circuit breaker, hedging if configured,
/// and p2c balancing over the instances discovery finds, each behind its
/// own ejecting breaker, on one shared connection pool. Cheap to clone (the clones share all of it)
/// and safe to use from many tasks.
///
/// ```no_run
/// use meshguard::client::{ClientError, ServiceClient};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct User { id: u64, name: String }
///
/// #[derive(Serialize)]
/// struct NewUser<'a> { name: &'a str }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let users = ServiceClient::builder("user-service")
///     .urls(["http://10.0.0.7:8080", "http://10.0.0.8:8080"])
///     .build()?;
/// let ada: User = users.post("/users").json(&NewUser { name: "Ada" }).send().await?;
/// let again: Option<User> = users.get(format!("/users/{}", ada.id)).send_opt().await?;
/// assert_eq!(again.map(|u| u.name), Some("Ada".to_string()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServiceClient {
    shared: Arc<Shared>,
    stack: Stack,
}

struct Shared {
    name: Arc<str>,
    /// The service breaker, to read or force; `None` when configured off
    /// (it is then not in the stack).
    breaker: Option<CircuitBreaker>,
    /// What is retried: also what `ClientError::is_retryable` says.
    retry_on: HttpRetryOn,
    view: crate::balance::BalanceView,
    metrics: metrics::ClientMetrics,
}

impl fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClient")
            .field("name", &self.shared.name)
            .field("breaker", &self.shared.breaker)
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    /// A builder for a client of the service `name`.
    pub fn builder(name: impl Into<String>) -> ServiceClientBuilder {
        ServiceClientBuilder::new(name.into())
    }

    /// The client a configuration describes (see [`ServiceClientConfig`]).
    pub fn from_config(config: ServiceClientConfig) -> Result<ServiceClient, ConfigError> {
        config.into_builder()?.build()
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The service-level circuit breaker, to read or force its state;
    /// `None` for a client built without one
    /// ([`circuit_breaker(None)`](ServiceClientBuilder::circuit_breaker)).
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.shared.breaker.as_ref()
    }

    /// The instances the client balances over now, each with its ejecting
    /// breaker (`State::Open` while ejected), in the order discovery
    /// inserted them: the snapshot its balancer published once it had taken
    /// in every discovery change that was ready.
    ///
    /// O(1), whatever the number of instances: an `Arc` clone of the
    /// snapshot ([`BalanceView::endpoints`](crate::balance::BalanceView::endpoints)).
    pub fn endpoints(&self) -> Arc<Vec<crate::balance::EndpointStatus>> {
        self.shared.view.endpoints()
    }

    /// A `GET` of `path` (with its query, if any), relative to the instance.
    pub fn get(&self, path: impl Into<String>) -> RequestBuilder<'_> {
        self.request(Method::GET, path)
    }

    /// A `POST`.
    pub fn post(&self, path: impl Into<String>) -> RequestBuilder<'_> {
        self.request(Method::POST, path)
    }

    /// A `PUT`.
    pub fn put(&self, path: impl Into<String>) -> RequestBuilder<'_> {
        self.request(Method::PUT, path)
    }

    /// A `DELETE`.
    pub fn delete(&self, path: impl Into<String>) -> RequestBuilder<'_> {
        self.request(Method::DELETE, path)
    }

    /// A request with any method.
    pub fn request(&self, method: Method, path: impl Into<String>) -> RequestBuilder<'_> {
        RequestBuilder::new(self, method, path.into())
    }
}
