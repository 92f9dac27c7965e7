//! [`ServiceClientBuilder`] and its file form, [`ServiceClientConfig`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::source::{Source, SourceKind};
use super::stack::{self, Connect};
use super::transport::{self, EndpointTransport};
use super::{ServiceClient, Shared};
use crate::ConfigError;
use crate::balance::{BalanceConfig, SharedBalancer, balance_with_view};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig};
use crate::classify::HttpClassifier;
use crate::deadline::DeadlineLayer;
use crate::discovery::{Change, Endpoint, StaticDiscovery};
use crate::retry::{RetryLayer, RetryPolicy};

/// Where the client finds the service's instances.
enum Discovery {
    Urls(Vec<String>),
    Endpoints(Vec<Endpoint>),
    #[cfg(feature = "consul")]
    Consul(crate::discovery::consul::ConsulDiscoveryBuilder),
    Stream(SourceKind),
}

/// Builds a [`ServiceClient`]: discovery, timeouts, retries, the
/// service-level breaker, outlier ejection, default headers and limits.
/// Every setting has a default but discovery; [`build`](Self::build) checks
/// them all and names the field it rejects.
///
/// Defaults: attempts time out after 3 s and the whole call (retries and
/// backoff included) after 10 s; [`RetryPolicy::default`] (3 attempts,
/// idempotent requests only, a 20% budget); [`CircuitBreakerConfig::default`]
/// for the service; [`BalanceConfig::default`] for the endpoints; response
/// bodies up to 4 MiB.
pub struct ServiceClientBuilder {
    name: String,
    discovery: Option<Discovery>,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    retry: RetryPolicy,
    breaker: Option<CircuitBreakerConfig>,
    balance: BalanceConfig,
    headers: Vec<(String, String)>,
    max_body_size: usize,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    retry_on: crate::retry::HttpRetryOn,
}

impl fmt::Debug for ServiceClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClientBuilder")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("balance", &self.balance)
            .field("max_body_size", &self.max_body_size)
            .finish_non_exhaustive()
    }
}

impl ServiceClientBuilder {
    pub(crate) fn new(name: String) -> Self {
        ServiceClientBuilder {
            name,
            discovery: None,
            timeout: Some(Duration::from_secs(3)),
            deadline: Some(Duration::from_secs(10)),
            retry: RetryPolicy::default(),
            breaker: Some(CircuitBreakerConfig::default()),
            balance: BalanceConfig::default(),
            headers: Vec::new(),
            max_body_size: 4 << 20,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            retry_on: crate::retry::HttpRetryOn::default(),
        }
    }

    /// A fixed list of instances, as URLs (`http://10.0.0.7:8080`).
    pub fn urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.discovery = Some(Discovery::Urls(urls.into_iter().map(Into::into).collect()));
        self
    }

    /// A fixed list of instances.
    pub fn endpoints(mut self, endpoints: Vec<Endpoint>) -> Self {
        self.discovery = Some(Discovery::Endpoints(endpoints));
        self
    }

    /// Instances from a Consul health watch; the watch starts at
    /// [`build`](Self::build).
    #[cfg(feature = "consul")]
    #[cfg_attr(docsrs, doc(cfg(feature = "consul")))]
    pub fn consul(mut self, watch: crate::discovery::consul::ConsulDiscoveryBuilder) -> Self {
        self.discovery = Some(Discovery::Consul(watch));
        self
    }

    /// Instances from any stream of changes. Until its first item, calls
    /// wait for an endpoint (up to their deadline); after it, a call finding
    /// no endpoint fails with [`ClientError::NoEndpoints`](super::ClientError::NoEndpoints).
    pub fn discovery<D>(mut self, stream: D) -> Self
    where
        D: futures_core::Stream<Item = Result<Change, Infallible>> + Send + 'static,
    {
        self.discovery = Some(Discovery::Stream(SourceKind::Custom(Box::pin(stream))));
        self
    }

    /// Each attempt's timeout (default 3 s), from the wait for an endpoint
    /// to the last byte of the body; `None` for none. A timed-out attempt
    /// counts against its instance and is retried. (The retry policy given
    /// to [`retry`](Self::retry) must not set its own `attempt_timeout`.)
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The whole call's deadline, retries and backoff included (default
    /// 10 s); `None` for none. An earlier deadline propagated from the
    /// caller, or set on the call, still wins.
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// How calls are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Whether responses with `status` are retried (default: 429, 502,
    /// 503 and 504 are). Retrying a 500 is only right if the service's
    /// handlers are idempotent and its 500s transient. A status retried is
    /// also counted as a failure by the breakers (a 4xx otherwise counts as
    /// a success), and [`ClientError::is_retryable`](super::ClientError::is_retryable)
    /// answers by the same set.
    pub fn retry_on_status(mut self, status: http::StatusCode, retry: bool) -> Self {
        self.retry_on = self.retry_on.status(status, retry);
        self
    }

    /// The service-level breaker (fail fast when the whole service fails),
    /// or `None` for none.
    pub fn circuit_breaker(mut self, config: Option<CircuitBreakerConfig>) -> Self {
        self.breaker = config;
        self
    }

    /// Balancing and per-endpoint outlier ejection.
    pub fn balance(mut self, config: BalanceConfig) -> Self {
        self.balance = config;
        self
    }

    /// A header sent with every call (unless the call sets its own).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The largest response body read, in bytes (default 4 MiB); larger
    /// ones fail with [`ClientError::BodyTooLarge`](super::ClientError::BodyTooLarge).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, idle: Duration) -> Self {
        self.pool_idle_timeout = idle;
        self
    }

    /// How many idle connections are kept per endpoint (default 32).
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = n;
        self
    }

    /// Checks every setting and starts the client (its discovery watch and
    /// the connection pool's timer) on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn build(self) -> Result<ServiceClient, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("service", "must not be empty"));
        }
        if self.max_body_size == 0 {
            return Err(ConfigError::new(
                "max_body_size",
                "must be greater than zero",
            ));
        }
        for (field, value) in [("timeout", self.timeout), ("deadline", self.deadline)] {
            if value == Some(Duration::ZERO) {
                return Err(ConfigError::new(field, "must be greater than zero"));
            }
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let header = HeaderName::try_from(name.as_str()).map_err(|e| {
                ConfigError::new(
                    format!("headers.{name}"),
                    format!("invalid header name: {e}"),
                )
            })?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|e| {
                ConfigError::new(
                    format!("headers.{name}"),
                    format!("invalid header value: {e}"),
                )
            })?;
            headers.append(header, value);
        }
        let kind = match self.discovery {
            None => {
                return Err(ConfigError::new(
                    "discovery",
                    "set `urls` (static instances) or `consul`",
                ));
            }
            Some(Discovery::Urls(urls)) => {
                if urls.is_empty() {
                    return Err(ConfigError::new("urls", "must list at least one URL"));
                }
                let mut endpoints = Vec::with_capacity(urls.len());
                for (i, url) in urls.iter().enumerate() {
                    let e = Endpoint::from_url(url).map_err(|e| {
                        ConfigError::new(format!("urls[{i}]"), e.message().to_string())
                    })?;
                    endpoints.push(e);
                }
                SourceKind::Static(StaticDiscovery::new(endpoints))
            }
            Some(Discovery::Endpoints(endpoints)) => {
                SourceKind::Static(StaticDiscovery::new(endpoints))
            }
            #[cfg(feature = "consul")]
            Some(Discovery::Consul(watch)) => {
                SourceKind::Consul(watch.build().map_err(|e| e.within("consul"))?)
            }
            Some(Discovery::Stream(kind)) => kind,
        };
        if self.retry.attempt_timeout().is_some() {
            return Err(ConfigError::new(
                "retry.attempt_timeout",
                "set the client's `timeout` instead: it bounds each attempt at the transport, \
                 where a timed-out attempt counts against its instance",
            ));
        }
        let limits = transport::Limits {
            timeout: self.timeout,
            max_body_size: self.max_body_size,
        };
        // One status policy for every layer: what is retried is a failure.
        let mut classify = HttpClassifier::default();
        for code in 400..=599u16 {
            let status = http::StatusCode::from_u16(code).expect("a valid status");
            if self.retry_on.retries(status) {
                classify = classify.failure(status);
            }
        }

        let source = Source::new(kind);
        let settled = source.settled();
        let http = transport::http_client(self.pool_idle_timeout, self.pool_max_idle_per_host);
        let attempts = super::metrics::AttemptMetrics::new(&self.name);
        let defaults = Arc::new(headers);
        let connect: Connect = Box::new(move |e: &Endpoint| {
            EndpointTransport::new(http.clone(), e, limits, defaults.clone(), attempts.clone())
        });
        let (lb, view) =
            balance_with_view(&self.name, source, connect, classify.clone(), self.balance);
        // The attempt timeout also bounds the wait for an endpoint.
        let balanced = SharedBalancer::new(lb, settled, self.timeout);
        let breaker =
            CircuitBreaker::new(self.name.clone(), self.breaker.clone().unwrap_or_default());
        if self.breaker.is_none() {
            // Not in the stack; disabled so that reading it says so.
            breaker.disable();
        }
        let stack = stack::stack(
            balanced,
            DeadlineLayer::optional(self.deadline),
            RetryLayer::new(self.retry)
                .name(self.name.as_str())
                .retry_on(self.retry_on),
            self.breaker.is_some().then(|| breaker.clone()),
            classify,
        );
        Ok(ServiceClient {
            shared: Arc::new(Shared {
                metrics: super::metrics::ClientMetrics::new(&self.name),
                name: self.name.into(),
                breaker,
                retry_on: self.retry_on,
                view,
            }),
            stack,
        })
    }
}

/// A [`ServiceClient`] as a configuration file describes it: every field
/// but `service` and the discovery source optional, durations as text
/// (`"250ms"`), nested sections for the retry policy, the breaker and the
/// balancer (the same forms as [`RetryPolicy`], [`CircuitBreakerConfig`] and
/// [`BalanceConfig`]). Unknown fields are rejected.
///
/// ```
/// use meshguard::client::{ServiceClient, ServiceClientConfig};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config: ServiceClientConfig = toml::from_str(r#"
///     service = "user-service"
///     urls = ["http://127.0.0.1:8081", "http://127.0.0.1:8082"]
///     timeout = "500ms"
///     deadline = "2s"
///     max_body_size = 65536
///     headers = { "user-agent" = "order-service/1.0" }
///
///     [retry]
///     max_attempts = 4
///
///     [circuit_breaker]
///     failure_rate_threshold = 25
///
///     [balance]
///     max_ejection_percent = 50
/// "#).unwrap();
/// let users = ServiceClient::from_config(config).unwrap();
/// assert_eq!(users.name(), "user-service");
/// # }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceClientConfig {
    /// The service's name (in events, metrics, and the Consul service
    /// watched unless `consul.service` says otherwise).
    pub service: String,
    /// Static instances.
    #[serde(default)]
    pub urls: Vec<String>,
    /// A Consul watch (feature `consul`).
    #[serde(default)]
    pub consul: Option<ConsulConfig>,
    /// Each attempt's timeout.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// The whole call's deadline.
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// The retry policy.
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// Statuses retried besides 429, 502, 503 and 504 (e.g. `[500]`).
    #[serde(default)]
    pub retry_statuses: Vec<u16>,
    /// The service-level breaker.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// No service-level breaker at all.
    #[serde(default)]
    pub circuit_breaker_disabled: bool,
    /// Balancing and outlier ejection.
    #[serde(default)]
    pub balance: Option<BalanceConfig>,
    /// Headers sent with every call.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The largest response body, in bytes.
    #[serde(default)]
    pub max_body_size: Option<usize>,
}

/// The `consul` section of a [`ServiceClientConfig`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulConfig {
    /// The agent's address (default `http://127.0.0.1:8500`).
    #[serde(default = "default_consul")]
    pub address: String,
    /// The service watched, if not the client's `service`.
    #[serde(default)]
    pub service: Option<String>,
    /// Only instances with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Only passing instances (default true).
    #[serde(default = "yes")]
    pub passing: bool,
    /// The datacenter.
    #[serde(default)]
    pub datacenter: Option<String>,
    /// Stale reads from any server.
    #[serde(default)]
    pub stale: bool,
    /// How long a blocking query waits (default 60 s).
    #[serde(default, with = "humantime_serde")]
    pub wait: Option<Duration>,
    /// The name of the environment variable holding the ACL token (a token
    /// never sits in a config file).
    #[serde(default)]
    pub token_env: Option<String>,
}

fn default_consul() -> String {
    "http://127.0.0.1:8500".to_string()
}

fn yes() -> bool {
    true
}

impl ServiceClientConfig {
    /// The builder this configuration describes, to adjust further in code.
    pub fn into_builder(self) -> Result<ServiceClientBuilder, ConfigError> {
        let mut b = ServiceClientBuilder::new(self.service.clone());
        match (self.urls.is_empty(), self.consul) {
            (false, Some(_)) => {
                return Err(ConfigError::new(
                    "consul",
                    "set either `urls` or `consul`, not both",
                ));
            }
            (false, None) => b = b.urls(self.urls),
            (true, Some(consul)) => b = consul_discovery(b, consul, &self.service)?,
            (true, None) => {}
        }
        if let Some(t) = self.timeout {
            b = b.timeout(Some(t));
        }
        if let Some(d) = self.deadline {
            b = b.deadline(Some(d));
        }
        if let Some(r) = self.retry {
            b = b.retry(r);
        }
        for code in self.retry_statuses {
            let status = http::StatusCode::from_u16(code)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .ok_or_else(|| {
                    ConfigError::new(
                        "retry_statuses",
                        format!("{code} is not a 4xx or 5xx status"),
                    )
                })?;
            b = b.retry_on_status(status, true);
        }
        if let Some(c) = self.circuit_breaker {
            b = b.circuit_breaker(Some(c));
        }
        if self.circuit_breaker_disabled {
            b = b.circuit_breaker(None);
        }
        if let Some(c) = self.balance {
            b = b.balance(c);
        }
        for (name, value) in self.headers {
            b = b.header(name, value);
        }
        if let Some(n) = self.max_body_size {
            b = b.max_body_size(n);
        }
        Ok(b)
    }
}

#[cfg(feature = "consul")]
fn consul_discovery(
    b: ServiceClientBuilder,
    c: ConsulConfig,
    service: &str,
) -> Result<ServiceClientBuilder, ConfigError> {
    use crate::discovery::consul::{ConsulDiscovery, ConsulToken};
    let mut w = ConsulDiscovery::builder(c.address, c.service.as_deref().unwrap_or(service))
        .passing(c.passing)
        .stale(c.stale);
    if let Some(tag) = c.tag {
        w = w.tag(tag);
    }
    if let Some(dc) = c.datacenter {
        w = w.datacenter(dc);
    }
    if let Some(wait) = c.wait {
        w = w.wait(wait);
    }
    if let Some(var) = c.token_env {
        let token = std::env::var(&var).map_err(|_| {
            ConfigError::new(
                "consul.token_env",
                format!("environment variable {var} is not set"),
            )
        })?;
        w = w.token(ConsulToken::new(token));
    }
    Ok(b.consul(w))
}

#[cfg(not(feature = "consul"))]
fn consul_discovery(
    _: ServiceClientBuilder,
    _: ConsulConfig,
    _: &str,
) -> Result<ServiceClientBuilder, ConfigError> {
    Err(ConfigError::new(
        "consul",
        "Consul discovery needs meshguard's `consul` feature",
    ))
}
