//! [`ServiceClientBuilder`]: one builder for the whole client stack.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::source::{Source, SourceKind};
use super::stack::{self, Connect};
use super::tls::{HttpProtocol, TlsConfig};
use super::transport::{self, Connection, EndpointTransport};
use super::{ServiceClient, Shared};
use crate::ConfigError;
use crate::balance::{BalanceConfig, SharedBalancer, balance_with_view};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, Rejection};
use crate::classify::HttpClassifier;
use crate::deadline::DeadlineLayer;
use crate::discovery::{Change, Endpoint, StaticDiscovery};
use crate::limit::{AdaptiveLimitConfig, BulkheadConfig, FlowControl, ThrottleConfig};
use crate::retry::{HedgeConfig, HedgeLayer, RetryLayer, RetryPolicy};

/// Where the client finds the service's instances.
pub(crate) enum Discovery {
    Urls(Vec<String>),
    Endpoints(Vec<Endpoint>),
    #[cfg(feature = "consul")]
    Consul(crate::discovery::consul::ConsulDiscoveryBuilder),
    Stream(SourceKind),
}

/// Builds a [`ServiceClient`]: discovery, timeouts, retries, hedging, the
/// service-level breaker, outlier ejection, default headers and limits.
/// Every setting has a default but discovery; [`build`](Self::build) checks
/// them all and names the field it rejects.
///
/// Defaults: attempts time out after 3 s and the whole call (retries and
/// backoff included) after 10 s; [`RetryPolicy::default`] (3 attempts,
/// idempotent requests only, a 20% budget); no hedging;
/// [`CircuitBreakerConfig::default`] for the service;
/// [`BalanceConfig::default`] for the endpoints; no flow control (bulkhead,
/// adaptive limit, throttling); response bodies up to 4 MiB.
pub struct ServiceClientBuilder {
    name: String,
    discovery: Option<Discovery>,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    retry: RetryPolicy,
    hedge: Option<HedgeConfig>,
    breaker: Option<CircuitBreakerConfig>,
    balance: BalanceConfig,
    bulkhead: Option<BulkheadConfig>,
    adaptive_limit: Option<AdaptiveLimitConfig>,
    throttle: Option<ThrottleConfig>,
    headers: Vec<(String, String)>,
    max_body_size: usize,
    /// The built-in pool's settings, when set (they do not apply to a
    /// reqwest client).
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: Option<usize>,
    /// The built-in transport's TLS and HTTP version, when set.
    tls: Option<TlsConfig>,
    protocol: Option<HttpProtocol>,
    retry_on: crate::retry::HttpRetryOn,
    #[cfg(feature = "reqwest")]
    reqwest: Option<::reqwest::Client>,
}

impl fmt::Debug for ServiceClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClientBuilder")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field("retry", &self.retry)
            .field("hedge", &self.hedge)
            .field("breaker", &self.breaker)
            .field("balance", &self.balance)
            .field("bulkhead", &self.bulkhead)
            .field("adaptive_limit", &self.adaptive_limit)
            .field("throttle", &self.throttle)
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
            hedge: None,
            breaker: Some(CircuitBreakerConfig::default()),
            balance: BalanceConfig::default(),
            bulkhead: None,
            adaptive_limit: None,
            throttle: None,
            headers: Vec::new(),
            max_body_size: 4 << 20,
            pool_idle_timeout: None,
            pool_max_idle_per_host: None,
            tls: None,
            protocol: None,
            retry_on: crate::retry::HttpRetryOn::default(),
            #[cfg(feature = "reqwest")]
            reqwest: None,
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

    /// Hedges slow attempts of idempotent calls by `config` (default
    /// `None`: no hedging): an attempt slower than `config`'s percentile of
    /// recent attempts' latencies gets a copy sent through the balancer
    /// (usually to another instance), and the first answer wins. Hedges
    /// draw on the retry policy's budget, into which the retry layer
    /// deposits each call (`config`'s `deposit` does not apply). POST and
    /// PATCH are never hedged unless `config` allows them.
    pub fn hedge(mut self, config: Option<HedgeConfig>) -> Self {
        self.hedge = config;
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

    /// A bulkhead for the service (default `None`): at most
    /// `max_concurrent` attempts in flight, up to `max_queue` more waiting
    /// at most `max_wait`; beyond that a call fails at once with
    /// [`ClientError::LimitExceeded`](super::ClientError::LimitExceeded).
    /// Each attempt takes a slot (retries included, hedges not).
    pub fn bulkhead(mut self, config: Option<BulkheadConfig>) -> Self {
        self.bulkhead = config;
        self
    }

    /// An adaptive concurrency limit for the service (default `None`): the
    /// limit on attempts in flight follows their latency and the service's
    /// overload signals (429, 503, timeouts), and an attempt beyond it
    /// fails at once with
    /// [`ClientError::LimitExceeded`](super::ClientError::LimitExceeded).
    /// See `docs/flow-control.md`.
    pub fn adaptive_limit(mut self, config: Option<AdaptiveLimitConfig>) -> Self {
        self.adaptive_limit = config;
        self
    }

    /// Client-side adaptive throttling (default `None`): while the service
    /// keeps answering 429, 503 or timing out, a share of the calls is
    /// refused locally with
    /// [`ClientError::LimitExceeded`](super::ClientError::LimitExceeded).
    pub fn throttle(mut self, config: Option<ThrottleConfig>) -> Self {
        self.throttle = config;
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

    /// TLS for `https` endpoints: your own certificate authority, a client
    /// certificate (mutual TLS), the server name to verify (default: the
    /// public web roots, no client certificate). A setting of the built-in
    /// transport: with [`reqwest`](Self::reqwest), configure the reqwest
    /// client instead.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The HTTP version spoken to the endpoints (default
    /// [`HttpProtocol::Http1`]). A setting of the built-in transport.
    pub fn protocol(mut self, protocol: HttpProtocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// How long an idle pooled connection is kept (default 90 s). A
    /// setting of the built-in pool: with [`reqwest`](Self::reqwest), set
    /// it on the reqwest client instead.
    pub fn pool_idle_timeout(mut self, idle: Duration) -> Self {
        self.pool_idle_timeout = Some(idle);
        self
    }

    /// How many idle connections are kept per endpoint (default 32). A
    /// setting of the built-in pool: with [`reqwest`](Self::reqwest), set
    /// it on the reqwest client instead.
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = Some(n);
        self
    }

    /// Sends the calls through `client`, a `reqwest::Client` of your own,
    /// instead of the built-in hyper-util pool: for reqwest's proxies,
    /// cookies, TLS options, DNS resolvers or its own timeouts. Everything
    /// else stays the client's: discovery, balancing and outlier ejection,
    /// the breakers, retries, deadlines, the attempt timeout and the body
    /// limit, default headers and propagation (the same headers as with
    /// the built-in pool; the reqwest client adds its own default headers
    /// where none of these is set).
    ///
    /// The connection pool is then reqwest's: [`pool_idle_timeout`] and
    /// [`pool_max_idle_per_host`] do not apply, and [`build`](Self::build)
    /// rejects them (set them on the `reqwest::ClientBuilder`). A timeout
    /// of the reqwest client's own ends an attempt as the attempt timeout
    /// does ([`ClientError::Timeout`](super::ClientError::Timeout));
    /// redirects are followed as the reqwest client's policy says. The
    /// client's errors are [`ClientError::Transport`](super::ClientError::Transport)
    /// holding the `reqwest::Error`.
    ///
    /// [`pool_idle_timeout`]: Self::pool_idle_timeout
    /// [`pool_max_idle_per_host`]: Self::pool_max_idle_per_host
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn reqwest(mut self, client: ::reqwest::Client) -> Self {
        self.reqwest = Some(client);
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
        check_limits(self.timeout, self.deadline)?;
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
        let kind = source_of(self.discovery)?;
        check_fail_fast(
            self.breaker.as_ref(),
            "the service breaker fails fast (`fail_fast`); `wait` is for the endpoints' \
             breakers (`balance.ejection`)",
        )?;
        check_no_attempt_timeout(&self.retry, "client")?;
        let connection = Connection::new(
            #[cfg(feature = "reqwest")]
            self.reqwest,
            self.pool_idle_timeout,
            self.pool_max_idle_per_host,
            self.tls,
            self.protocol,
        )?;
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
        let attempts = super::metrics::AttemptMetrics::new(&self.name);
        let defaults = Arc::new(headers);
        let connect: Connect = Box::new(move |e: &Endpoint| {
            EndpointTransport::new(
                connection.clone(),
                e,
                limits,
                defaults.clone(),
                attempts.clone(),
            )
        });
        let (lb, view) = balance_with_view(&self.name, source, connect, classify, self.balance);
        // The attempt timeout also bounds the wait for an endpoint.
        let balanced = SharedBalancer::new(lb, settled, self.timeout);
        // Discovery's changes are taken in as they come, calls or not.
        balanced.watch_discovery();
        let breaker = self
            .breaker
            .map(|config| CircuitBreaker::new(self.name.clone(), config));
        let retry = RetryLayer::new(self.retry)
            .name(self.name.as_str())
            .retry_on(self.retry_on);
        // One budget for retries and hedges.
        let hedge = self
            .hedge
            .map(|c| HedgeLayer::new(c.without_deposit(), retry.budget().clone()));
        let limits = FlowControl::new(
            &self.name,
            self.bulkhead,
            self.adaptive_limit,
            self.throttle,
            classify,
        );
        let stack = stack::stack(
            balanced,
            DeadlineLayer::optional(self.deadline),
            retry,
            limits,
            breaker.clone(),
            hedge,
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

/// The source of endpoints a builder's discovery setting describes; shared
/// with `grpc::ChannelBuilder`.
pub(crate) fn source_of(discovery: Option<Discovery>) -> Result<SourceKind, ConfigError> {
    let kind = match discovery {
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
                let e = Endpoint::from_url(url)
                    .map_err(|e| ConfigError::new(format!("urls[{i}]"), e.message().to_string()))?;
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
    Ok(kind)
}

/// The timeout and deadline settings of a builder: `None` or more than
/// zero. Shared by every builder of the crate.
pub(crate) fn check_limits(
    timeout: Option<Duration>,
    deadline: Option<Duration>,
) -> Result<(), ConfigError> {
    for (field, value) in [("timeout", timeout), ("deadline", deadline)] {
        if value == Some(Duration::ZERO) {
            return Err(ConfigError::new(field, "must be greater than zero"));
        }
    }
    Ok(())
}

/// A retry policy given to a builder that times its attempts itself (at
/// the transport, where a timed-out attempt counts against its instance)
/// must not time them too.
pub(crate) fn check_no_attempt_timeout(
    retry: &RetryPolicy,
    owner: &str,
) -> Result<(), ConfigError> {
    if retry.attempt_timeout().is_some() {
        return Err(ConfigError::new(
            "retry.attempt_timeout",
            format!(
                "set the {owner}'s `timeout` instead: it bounds each attempt below the \
                 breakers, where a timed-out attempt counts against its instance"
            ),
        ));
    }
    Ok(())
}

/// A breaker in front of a whole service (or host) fails fast: waiting in
/// `poll_ready` would hold calls past their deadline while it is down, and
/// its rejections would read as an endpoint's (retried elsewhere).
pub(crate) fn check_fail_fast(
    breaker: Option<&CircuitBreakerConfig>,
    message: &str,
) -> Result<(), ConfigError> {
    if breaker.is_some_and(|c| c.rejection() == Rejection::Wait) {
        return Err(ConfigError::new("circuit_breaker.rejection", message));
    }
    Ok(())
}
