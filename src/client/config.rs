//! [`ServiceClientConfig`]: a [`ServiceClient`](super::ServiceClient) as a configuration file
//! describes it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::ServiceClientBuilder;
use super::tls::{HttpProtocol, TlsConfig};
use crate::ConfigError;
use crate::balance::BalanceConfig;
use crate::circuit_breaker::CircuitBreakerConfig;
use crate::limit::{AdaptiveLimitConfig, BulkheadConfig, ThrottleConfig};
use crate::retry::{HedgeConfig, RetryPolicy};

/// A [`ServiceClient`](super::ServiceClient) as a configuration file describes it: every field
/// but `service` and the discovery source optional, durations as text
/// (`"250ms"`), nested sections for the retry policy, hedging, the breaker,
/// the balancer and flow control (the same forms as [`RetryPolicy`],
/// [`HedgeConfig`], [`CircuitBreakerConfig`], [`BalanceConfig`],
/// [`BulkheadConfig`], [`AdaptiveLimitConfig`] and [`ThrottleConfig`]). Unknown fields are
/// rejected.
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
///     [hedge]
///     percentile = 95
///
///     [circuit_breaker]
///     failure_rate_threshold = 25
///
///     [balance]
///     max_ejection_percent = 50
///
///     [adaptive_limit]
///     algorithm = "gradient"
///     max_limit = 200
///
///     [throttle]
///     k = 2.0
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
    /// Hedging of slow idempotent attempts (none without this section).
    #[serde(default)]
    pub hedge: Option<HedgeConfig>,
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
    /// A bulkhead for the service (default none).
    #[serde(default)]
    pub bulkhead: Option<BulkheadConfig>,
    /// An adaptive concurrency limit for the service (default none).
    #[serde(default)]
    pub adaptive_limit: Option<AdaptiveLimitConfig>,
    /// Client-side adaptive throttling (default none).
    #[serde(default)]
    pub throttle: Option<ThrottleConfig>,
    /// Headers sent with every call.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The largest response body, in bytes.
    #[serde(default)]
    pub max_body_size: Option<usize>,
    /// TLS for `https` endpoints (the [`TlsConfig`] form: `ca_file`,
    /// `ca_pem`, `public_roots`, `client_cert_file`, `client_key_file`,
    /// `server_name`).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The HTTP version: `"http1"` (default), `"http2"` or `"negotiate"`.
    #[serde(default)]
    pub protocol: Option<HttpProtocol>,
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
    /// A Consul filter expression on the instances (`filter`), e.g.
    /// `Service.Meta.zone == "eu-1"`.
    #[serde(default)]
    pub filter: Option<String>,
    /// At most one query per this interval after a burst of two (default
    /// 1 s).
    #[serde(default, with = "humantime_serde")]
    pub min_interval: Option<Duration>,
    /// The largest answer read, in bytes (default 64 MiB).
    #[serde(default)]
    pub max_body_size: Option<usize>,
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
        b = b.hedge(self.hedge);
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
        b = b
            .bulkhead(self.bulkhead)
            .adaptive_limit(self.adaptive_limit)
            .throttle(self.throttle);
        for (name, value) in self.headers {
            b = b.header(name, value);
        }
        if let Some(n) = self.max_body_size {
            b = b.max_body_size(n);
        }
        if let Some(tls) = self.tls {
            b = b.tls(tls);
        }
        if let Some(protocol) = self.protocol {
            b = b.protocol(protocol);
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
    if let Some(filter) = c.filter {
        w = w.filter(filter);
    }
    if let Some(interval) = c.min_interval {
        w = w.min_interval(interval);
    }
    if let Some(bytes) = c.max_body_size {
        w = w.max_body_size(bytes);
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
