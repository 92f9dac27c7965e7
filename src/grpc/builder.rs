//! [`ChannelBuilder`]: discovery, timeouts, retries, breakers and TLS for a
//! [`Channel`].

use std::sync::Arc;
use std::time::Duration;

use super::channel::Channel;
use super::classify::{GrpcClassifier, GrpcRetryOn};
use super::link::KeepAlive;
use super::stack::{self, Connect};
use super::transport::GrpcTransport;
use crate::ConfigError;
use crate::balance::{BalanceConfig, SharedBalancer, balance_with_view};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig};
use crate::client::{
    Discovery, HttpProtocol, Source, TlsConfig, check_fail_fast, check_limits,
    check_no_attempt_timeout, connector, source_of,
};
use crate::deadline::DeadlineLayer;
use crate::discovery::Endpoint;
use crate::limit::{AdaptiveLimitConfig, BulkheadConfig, FlowControl, ThrottleConfig};
use crate::retry::{RetryLayer, RetryPolicy};

/// Builds a [`Channel`]. Every setting has a default but discovery:
/// attempts time out after 3 s (to the response's head), every call ends
/// within 10 s, its messages included (a call's `grpc-timeout`, set with
/// tonic's `Request::set_timeout`, or the caller's deadline, when earlier),
/// [`RetryPolicy::default`] with [`GrpcRetryOn::default`] (UNAVAILABLE),
/// [`CircuitBreakerConfig::default`] for the service,
/// [`BalanceConfig::default`] for the endpoints, the public web roots for
/// `https` endpoints.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ChannelBuilder {
    name: String,
    discovery: Option<Discovery>,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    retry: RetryPolicy,
    retry_on: GrpcRetryOn,
    classify: GrpcClassifier,
    breaker: Option<CircuitBreakerConfig>,
    balance: BalanceConfig,
    bulkhead: Option<BulkheadConfig>,
    adaptive_limit: Option<AdaptiveLimitConfig>,
    throttle: Option<ThrottleConfig>,
    tls: Option<TlsConfig>,
    keep_alive: KeepAlive,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Discovery")
    }
}

impl ChannelBuilder {
    pub(crate) fn new(name: String) -> Self {
        ChannelBuilder {
            name,
            discovery: None,
            timeout: Some(Duration::from_secs(3)),
            deadline: Some(Duration::from_secs(10)),
            retry: RetryPolicy::default(),
            retry_on: GrpcRetryOn::default(),
            classify: GrpcClassifier::default(),
            breaker: Some(CircuitBreakerConfig::default()),
            balance: BalanceConfig::default(),
            bulkhead: None,
            adaptive_limit: None,
            throttle: None,
            tls: None,
            keep_alive: KeepAlive::default(),
        }
    }

    /// A fixed list of instances, as URLs (`http://10.0.0.7:50051` for
    /// h2c, `https://..` for TLS).
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

    /// Instances from a Consul health watch.
    #[cfg(feature = "consul")]
    #[cfg_attr(docsrs, doc(cfg(feature = "consul")))]
    pub fn consul(mut self, watch: crate::discovery::consul::ConsulDiscoveryBuilder) -> Self {
        self.discovery = Some(Discovery::Consul(watch));
        self
    }

    /// Each attempt's timeout, up to the response's head (default 3 s;
    /// `None` for none). A timed-out attempt counts against its instance
    /// and is retried.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The channel's deadline for every call, retries and the response's
    /// messages included (default 10 s: nothing waits on the network
    /// unbounded); a call's `grpc-timeout` or the caller's deadline wins
    /// when earlier. `None` for long-lived streams, whose calls then set
    /// their own (`Request::set_timeout`) or none.
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Attempts, backoff and budget. Its `attempt_timeout` must be unset
    /// (use [`timeout`](Self::timeout)); its `retry_non_idempotent` does
    /// not apply (gRPC retries by status, whatever the method).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Which codes are retried (default UNAVAILABLE).
    pub fn retry_on(mut self, retry_on: GrpcRetryOn) -> Self {
        self.retry_on = retry_on;
        self
    }

    /// Which codes count as failures for the breakers.
    pub fn classify(mut self, classify: GrpcClassifier) -> Self {
        self.classify = classify;
        self
    }

    /// The service-level breaker (fail fast), or `None` for none.
    pub fn circuit_breaker(mut self, config: Option<CircuitBreakerConfig>) -> Self {
        self.breaker = config;
        self
    }

    /// Balancing and outlier ejection.
    pub fn balance(mut self, config: BalanceConfig) -> Self {
        self.balance = config;
        self
    }

    /// A bulkhead for the service (default `None`); see
    /// [`ServiceClientBuilder::bulkhead`](crate::client::ServiceClientBuilder::bulkhead).
    /// A refused call fails with `RESOURCE_EXHAUSTED`.
    pub fn bulkhead(mut self, config: Option<BulkheadConfig>) -> Self {
        self.bulkhead = config;
        self
    }

    /// An adaptive concurrency limit (default `None`); see
    /// [`ServiceClientBuilder::adaptive_limit`](crate::client::ServiceClientBuilder::adaptive_limit).
    /// `RESOURCE_EXHAUSTED` and timeouts are its drops; a refused call
    /// fails with `RESOURCE_EXHAUSTED`.
    pub fn adaptive_limit(mut self, config: Option<AdaptiveLimitConfig>) -> Self {
        self.adaptive_limit = config;
        self
    }

    /// Client-side adaptive throttling (default `None`) on
    /// `RESOURCE_EXHAUSTED` and timeouts; a refused call fails with
    /// `RESOURCE_EXHAUSTED`.
    pub fn throttle(mut self, config: Option<ThrottleConfig>) -> Self {
        self.throttle = config;
        self
    }

    /// How often each connection is pinged (default every 20 s; `None`
    /// for never). A ping not answered within 10 s closes the connection,
    /// so one to a host that died silently is found dead within 30 s and
    /// the next call connects again (or its endpoint is ejected) instead
    /// of waiting on it.
    pub fn keep_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive.interval = interval;
        self
    }

    /// Whether connections with no call on them are pinged too (default
    /// `true`: a dead idle connection is found before a call needs it).
    /// `false` for servers that refuse pings on idle connections, as
    /// grpc-go's do by default (one every 2 hours without a call; see
    /// docs/grpc.md, "Connections").
    pub fn keep_alive_while_idle(mut self, while_idle: bool) -> Self {
        self.keep_alive.while_idle = while_idle;
        self
    }

    /// TLS for `https` endpoints (ALPN `h2`).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Checks every setting and starts the channel (its discovery) on the
    /// current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn build(self) -> Result<Channel, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("service", "must not be empty"));
        }
        check_limits(self.timeout, self.deadline)?;
        if self.keep_alive.interval == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "keep_alive_interval",
                "must be greater than zero (`None` for no pings)",
            ));
        }
        check_no_attempt_timeout(&self.retry, "channel")?;
        check_fail_fast(
            self.breaker.as_ref(),
            "the service breaker fails fast (`fail_fast`); `wait` is for the endpoints' \
             breakers (`balance.ejection`)",
        )?;
        let source = Source::new(source_of(self.discovery)?);
        let settled = source.settled();
        let tls = self.tls.unwrap_or_default();
        let connector = connector(&tls, HttpProtocol::Http2);
        let (timeout, keep_alive) = (self.timeout, self.keep_alive);
        let connect: Connect = Box::new(move |e: &Endpoint| {
            GrpcTransport::new(connector.clone(), keep_alive, e, timeout)
        });
        let (lb, _view) =
            balance_with_view(&self.name, source, connect, self.classify, self.balance);
        let balanced = SharedBalancer::new(lb, settled, self.timeout);
        // Discovery's changes are taken in as they come, calls or not.
        balanced.watch_discovery();
        let breaker = self
            .breaker
            .map(|config| CircuitBreaker::new(self.name.clone(), config));
        let stack = stack::stack(
            balanced,
            DeadlineLayer::optional(self.deadline),
            RetryLayer::new(self.retry)
                .name(self.name.as_str())
                .retry_on(self.retry_on),
            FlowControl::new(
                &self.name,
                self.bulkhead,
                self.adaptive_limit,
                self.throttle,
                self.classify,
            ),
            breaker.clone(),
            self.classify,
        );
        Ok(Channel {
            stack,
            name: Arc::from(self.name),
            breaker,
        })
    }
}
