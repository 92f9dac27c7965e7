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
}

impl ConsulDiscovery {
    /// Watches `service` through the agent at `address` (e.g.
    /// `http://127.0.0.1:8500`, as `CONSUL_HTTP_ADDR`). Defaults: passing
    /// instances only, 60 s blocking waits, at most one query a second after
    /// a burst of two, errors retried from 100 ms to 30 s with full jitter.
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
            wait: Duration::from_secs(60),
            scheme: Scheme::Http,
            min_interval: Duration::from_secs(1),
            backoff: Backoff::exponential(Duration::from_millis(100), Duration::from_secs(30))
                .expect("valid")
                .with_jitter(Jitter::Full),
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

    /// How long a blocking query waits for a change (1 s to 10 min).
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
    /// at most one per `interval`.
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
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
        Ok(ConsulDiscovery::spawn(Watch::new(self)))
    }
}
