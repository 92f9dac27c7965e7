//! What to watch and how: the builder and its checks.

use std::time::Duration;

use super::ConsulDiscovery;
use super::token::ConsulToken;
use super::watch::Watch;
use crate::ConfigError;
use crate::backoff::{Backoff, Jitter};
use crate::discovery::Scheme;

/// What to watch and how; see [`ConsulDiscovery::builder`].
#[derive(Debug, Clone)]
pub struct ConsulDiscoveryBuilder {
    pub(super) address: String,
    pub(super) service: String,
    pub(super) passing: bool,
    pub(super) tags: Vec<String>,
    pub(super) filter: Option<String>,
    pub(super) datacenter: Option<String>,
    pub(super) stale: bool,
    pub(super) token: Option<ConsulToken>,
    pub(super) wait: Duration,
    pub(super) scheme: Scheme,
    pub(super) min_interval: Duration,
    pub(super) backoff: Backoff,
    pub(super) max_body_size: usize,
}

/// The blocking wait unless [`ConsulDiscoveryBuilder::wait`] sets one:
/// Consul's own default (`defaultQueryTime`, 5 min). A change answers at
/// once whatever the wait; the wait is how often an idle watch downloads
/// the whole list again.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// The largest answer read unless
/// [`ConsulDiscoveryBuilder::max_body_size`] sets one: 64 MiB, as received
/// and decompressed, about 48,000 instances of Consul's usual ~1.4 KB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 64 * 1024 * 1024;

impl ConsulDiscovery {
    /// Watches `service` through the agent at `address` (e.g.
    /// `http://127.0.0.1:8500`, as `CONSUL_HTTP_ADDR`). Defaults: passing
    /// instances only, Consul's 5 min blocking wait ([`DEFAULT_WAIT`]), at
    /// most one query a second after a burst of two, errors retried from
    /// 100 ms to 30 s with full jitter, answers up to 64 MiB
    /// ([`DEFAULT_MAX_BODY_SIZE`]).
    pub fn builder(
        address: impl Into<String>,
        service: impl Into<String>,
    ) -> ConsulDiscoveryBuilder {
        ConsulDiscoveryBuilder {
            address: address.into(),
            service: service.into(),
            passing: true,
            tags: Vec::new(),
            filter: None,
            datacenter: None,
            stale: false,
            token: None,
            wait: DEFAULT_WAIT,
            scheme: Scheme::Http,
            min_interval: Duration::from_secs(1),
            backoff: Backoff::exponential(Duration::from_millis(100), Duration::from_secs(30))
                .expect("valid")
                .with_jitter(Jitter::Full),
            max_body_size: DEFAULT_MAX_BODY_SIZE,
        }
    }
}

impl ConsulDiscoveryBuilder {
    /// Whether only instances whose checks all pass are returned (default
    /// true). Off, warning and critical instances are balanced over too.
    pub fn passing(mut self, only: bool) -> Self {
        self.passing = only;
        self
    }

    /// Only instances with this tag (repeatable: all of them).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// A bexpr filter evaluated by Consul, e.g. `Service.Meta.zone == "a"`.
    pub fn filter(mut self, expr: impl Into<String>) -> Self {
        self.filter = Some(expr.into());
        self
    }

    /// The datacenter (default: the agent's).
    pub fn datacenter(mut self, dc: impl Into<String>) -> Self {
        self.datacenter = Some(dc.into());
        self
    }

    /// Stale reads: any server answers, which keeps discovery working
    /// without a leader.
    pub fn stale(mut self, stale: bool) -> Self {
        self.stale = stale;
        self
    }

    /// The ACL token.
    pub fn token(mut self, token: ConsulToken) -> Self {
        self.token = Some(token);
        self
    }

    /// How long a blocking query waits for a change (1 s to 10 min;
    /// default 5 min, Consul's own). A change answers at once whatever the
    /// wait; each wait that ends without one downloads the whole list
    /// again, so a shorter wait costs idle traffic. Set it below the idle
    /// timeout of any proxy between the watch and the agent.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The scheme of the discovered endpoints (default http).
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// The token bucket's refill interval: after a burst of two queries,
    /// at most one per `interval` (default 1 s). Consul's docs advise this
    /// rate limit: the happy path goes at once, a churning service is
    /// polled slowly, and each query of a large service costs its whole
    /// answer.
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// The largest answer read, in bytes, as received and decompressed
    /// (default 64 MiB). A larger answer fails the query with an error
    /// naming `max_body_size`; the last good endpoints are kept.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// The backoff between failed queries.
    pub fn error_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Checks the settings and starts the watch on the current tokio
    /// runtime. The watch stops when the [`ConsulDiscovery`] is dropped.
    pub fn build(self) -> Result<ConsulDiscovery, ConfigError> {
        if self.service.is_empty() {
            return Err(ConfigError::new("service", "must not be empty"));
        }
        let uri: http::Uri = self.address.parse().map_err(|e| {
            ConfigError::new("address", format!("{:?} is not a URL: {e}", self.address))
        })?;
        if !matches!(uri.scheme_str(), Some("http") | Some("https")) {
            return Err(ConfigError::new(
                "address",
                format!("{:?}: the scheme must be http or https", self.address),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.wait) {
            return Err(ConfigError::new(
                "wait",
                format!("must be in [1s, 10m], got {:?}", self.wait),
            ));
        }
        if self.max_body_size == 0 {
            return Err(ConfigError::new("max_body_size", "must be at least 1 byte"));
        }
        Ok(ConsulDiscovery::spawn(Watch::new(self)?))
    }
}
