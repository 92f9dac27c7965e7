//! [`ResilienceBuilder`]: the settings of a [`Resilience`].

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::StatusCode;

use super::middleware::{Inner, Resilience};
use crate::ConfigError;
use crate::circuit_breaker::CircuitBreakerConfig;
use crate::classify::HttpClassifier;
use crate::client::{
    AttemptMetrics, ClientMetrics, check_fail_fast, check_limits, check_no_attempt_timeout,
};
use crate::deadline::DeadlineLayer;
use crate::retry::{HttpRetryOn, RetryLayer, RetryPolicy};

/// Builds a [`Resilience`]; from [`Resilience::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ResilienceBuilder {
    name: String,
    retry: RetryPolicy,
    classify: Option<HttpClassifier>,
    propagate: bool,
    retry_on: HttpRetryOn,
    breaker: Option<CircuitBreakerConfig>,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    max_hosts: usize,
}

impl Default for ResilienceBuilder {
    fn default() -> Self {
        ResilienceBuilder {
            name: "reqwest".to_string(),
            retry: RetryPolicy::default(),
            classify: None,
            propagate: true,
            retry_on: HttpRetryOn::default(),
            breaker: Some(CircuitBreakerConfig::default()),
            timeout: Some(Duration::from_secs(3)),
            deadline: Some(Duration::from_secs(10)),
            max_hosts: 1024,
        }
    }
}

impl ResilienceBuilder {
    /// The name in the middleware's metrics and events (label and field
    /// `service`; default `"reqwest"`). The host breakers are named by
    /// their host.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// What a host's breaker counts as a failure (default: 5xx, 429, and
    /// every status [`retry_on`](Self::retry_on) retries). A public API
    /// that answers 429 as a matter of course may leave 429 out, so its
    /// rate limiting does not open the breaker:
    /// `HttpClassifier::default().success(StatusCode::TOO_MANY_REQUESTS)`.
    pub fn classify(mut self, classify: HttpClassifier) -> Self {
        self.classify = Some(classify);
        self
    }

    /// Whether each attempt carries `x-request-id`, `traceparent` and
    /// `x-deadline-ms` (default true). Off for a client whose calls leave
    /// your network, where those ids and deadlines mean nothing.
    pub fn propagate(mut self, on: bool) -> Self {
        self.propagate = on;
        self
    }

    /// How calls are retried (attempts, backoff, budget per host, whether
    /// POST and PATCH may be). Its `attempt_timeout` must be unset: use
    /// [`timeout`](Self::timeout).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Which statuses are retried (default 429, 502, 503, 504); they also
    /// count as failures for the host's breaker.
    pub fn retry_on(mut self, retry_on: HttpRetryOn) -> Self {
        self.retry_on = retry_on;
        self
    }

    /// Each host's breaker (fail-fast), or `None` for none.
    pub fn circuit_breaker(mut self, config: Option<CircuitBreakerConfig>) -> Self {
        self.breaker = config;
        self
    }

    /// Each attempt's timeout, headers and body (default 3 s); a timed-out
    /// attempt counts against its host and is retried. It is set as the
    /// request's reqwest timeout (with the time left before the deadline,
    /// whichever is shorter), so it also bounds the body the caller reads
    /// after the middleware returns, and it replaces a client-wide
    /// `reqwest::ClientBuilder::timeout` (a shorter per-request
    /// `RequestBuilder::timeout` still wins). `None` for none.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The whole call's deadline, retries, backoff and the response body
    /// included (default 10 s). An earlier deadline of the request being
    /// served, or a per-call [`Timeout`](crate::deadline::Timeout) in the
    /// request's extensions (`with_extension`), wins. `None` for none.
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// How many hosts keep a breaker and a retry budget (default 1,024);
    /// past it, a new host's state replaces an old one's.
    pub fn max_hosts(mut self, max_hosts: usize) -> Self {
        self.max_hosts = max_hosts;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<Resilience, ConfigError> {
        check_limits(self.timeout, self.deadline)?;
        if self.max_hosts == 0 {
            return Err(ConfigError::new("max_hosts", "must be greater than zero"));
        }
        check_no_attempt_timeout(&self.retry, "middleware")?;
        check_fail_fast(
            self.breaker.as_ref(),
            "a host's breaker fails fast (`fail_fast`): waiting would hold calls while the \
             host is down",
        )?;
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        // One status policy for every layer: what is retried is a failure.
        let classify = self.classify.unwrap_or_else(|| {
            let mut classify = HttpClassifier::default();
            for code in 400..=599u16 {
                let status = StatusCode::from_u16(code).expect("a valid status");
                if self.retry_on.retries(status) {
                    classify = classify.failure(status);
                }
            }
            classify
        });
        Ok(Resilience::new(Inner {
            retry: RetryLayer::new(self.retry)
                .retry_on(self.retry_on)
                .name(self.name.as_str()),
            metrics: ClientMetrics::new(&self.name),
            attempts: AttemptMetrics::new(&self.name),
            name: self.name.into(),
            classify,
            breaker: self.breaker,
            timeout: self.timeout,
            deadline: DeadlineLayer::optional(self.deadline),
            propagate: self.propagate,
            max_hosts: self.max_hosts,
            hosts: RwLock::new(HashMap::new()),
            tick: AtomicU64::new(0),
        }))
    }
}
