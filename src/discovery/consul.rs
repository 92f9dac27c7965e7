//! A watch of Consul's health API as a stream of endpoint changes.
//!
//! [`ConsulDiscovery`] runs a blocking-query loop on
//! `GET /v1/health/service/:name` through `rs-consul` and yields
//! [`Change`]s (inserts and removals, diffed by instance id), usable
//! directly by `tower::balance`. The loop follows Consul's documented client
//! obligations (`shared/consul/API-FACTS.md` §2):
//!
//! - the index is reset to 0 when it goes backwards (a snapshot restore);
//! - an index below 1 is treated as 1, never 0, which would busy-loop;
//! - the loop is rate limited by a token bucket with a burst of 2, so the
//!   happy path runs at once and a churning result is polled slowly;
//! - errors (Consul down, 5xx, a body that is not the expected JSON) are
//!   retried with jittered exponential backoff, and the last good endpoint
//!   set is kept meanwhile: nothing is removed because Consul is unwell.
//!
//! The address is `Service.Address`, falling back to `Node.Address` when
//! empty (§6). The ACL token goes in the `X-Consul-Token` header and is
//! redacted in `Debug` and never logged.
//!
//! Two gaps in `rs-consul` 0.15 are worked around here: it has no `stale`
//! option (we append `&stale` to the query it builds), and it concatenates
//! `filter` into the URL unescaped (we percent-encode it first). Agent
//! registration, which `rs-consul` lacks, is our own small typed requests
//! ([`registration`](super::registration)).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rs_consul::{Config, Consul, ConsulError, GetServiceNodesRequest, QueryOptions};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Change, Endpoint, Scheme};
use crate::ConfigError;
use crate::backoff::{Backoff, Jitter};

/// An ACL token: sent as `X-Consul-Token`, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsulToken(String);

impl ConsulToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        ConsulToken(token.into())
    }

    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConsulToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConsulToken(<redacted>)")
    }
}

/// What to watch and how; see [`ConsulDiscovery::builder`].
#[derive(Debug, Clone)]
pub struct ConsulDiscoveryBuilder {
    address: String,
    service: String,
    passing: bool,
    tags: Vec<String>,
    filter: Option<String>,
    datacenter: Option<String>,
    stale: bool,
    token: Option<ConsulToken>,
    wait: Duration,
    scheme: Scheme,
    min_interval: Duration,
    backoff: Backoff,
}

/// The watch's health, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStatus {
    /// The index of the last good answer (0 before the first).
    pub index: u64,
    /// Instances in the last good answer.
    pub endpoints: usize,
    /// Successive failed queries since the last good answer.
    pub failures: u32,
    /// The last error, if the last query failed.
    pub last_error: Option<String>,
}

/// A stream of endpoint changes from Consul; see the [module docs](self).
///
/// ```no_run
/// use meshguard::discovery::consul::{ConsulDiscovery, ConsulToken};
///
/// # async fn f() -> Result<(), meshguard::ConfigError> {
/// let users = ConsulDiscovery::builder("http://127.0.0.1:8500", "users")
///     .tag("v2")
///     .token(ConsulToken::new(std::env::var("CONSUL_HTTP_TOKEN").unwrap_or_default()))
///     .build()?;
/// // `users` is a `tower::discover::Discover` of endpoints: map it to
/// // services with `meshguard::discovery::services` and balance over them.
/// # let _ = users; Ok(()) }
/// ```
pub struct ConsulDiscovery {
    // `None` marks the end of the first answer (or the first failure):
    // from then on an empty endpoint set means "none", not "not yet".
    changes: mpsc::Receiver<Option<Change>>,
    status: watch::Receiver<WatchStatus>,
    settled: Arc<AtomicBool>,
}

impl fmt::Debug for ConsulDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulDiscovery")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
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

    /// The watch's state now.
    pub fn status(&self) -> WatchStatus {
        self.status.borrow().clone()
    }

    /// A receiver of the watch's state, to wait for changes.
    pub fn status_watch(&self) -> watch::Receiver<WatchStatus> {
        self.status.clone()
    }

    /// Set once the stream has yielded the changes of the first answer (or
    /// Consul failed once): a balancer that is still empty then has no
    /// endpoints, rather than none yet.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn settled(&self) -> Arc<AtomicBool> {
        self.settled.clone()
    }
}

impl futures_core::Stream for ConsulDiscovery {
    type Item = Result<Change, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // The loop never ends while this stream lives, so `None` cannot
        // come; a balancer would treat it as an error.
        loop {
            match self.changes.poll_recv(cx) {
                Poll::Ready(Some(Some(change))) => return Poll::Ready(Some(Ok(change))),
                Poll::Ready(Some(None)) => self.settled.store(true, Ordering::Release),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
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
        let (tx, rx) = mpsc::channel(256);
        let (status_tx, status_rx) = watch::channel(WatchStatus {
            index: 0,
            endpoints: 0,
            failures: 0,
            last_error: None,
        });
        let watch = Watch::new(self);
        tokio::spawn(watch.run(tx, status_tx));
        Ok(ConsulDiscovery {
            changes: rx,
            status: status_rx,
            settled: Arc::new(AtomicBool::new(false)),
        })
    }
}

struct Watch {
    consul: Consul,
    service: String,
    passing: bool,
    /// The encoded `filter` value, with `&stale` appended when asked.
    filter: Option<String>,
    datacenter: Option<String>,
    wait: Duration,
    scheme: Scheme,
    min_interval: Duration,
    backoff: Backoff,
}

impl Watch {
    fn new(b: ConsulDiscoveryBuilder) -> Self {
        let mut terms: Vec<String> = b
            .tags
            .iter()
            .map(|t| format!("{} in Service.Tags", serde_json::Value::from(t.as_str())))
            .collect();
        if let Some(f) = &b.filter {
            terms.push(format!("({f})"));
        }
        let mut filter = (!terms.is_empty()).then(|| {
            form_urlencoded::byte_serialize(terms.join(" and ").as_bytes()).collect::<String>()
        });
        if b.stale {
            filter = Some(format!("{}&stale", filter.unwrap_or_default()));
        }
        let consul = Consul::new(Config {
            address: b.address.trim_end_matches('/').to_string(),
            token: b.token.map(|t| t.0),
            ..Config::default()
        });
        Watch {
            consul,
            service: b.service,
            passing: b.passing,
            filter,
            datacenter: b.datacenter,
            wait: b.wait,
            scheme: b.scheme,
            min_interval: b.min_interval,
            backoff: b.backoff,
        }
    }

    async fn query(&self, index: u64) -> Result<(Vec<Endpoint>, u64), String> {
        // rs-consul's `timeout` covers the answer's headers only; its body
        // is read after, unbounded in time. This timeout covers the whole
        // query, body included, so an agent that stalls mid-answer cannot
        // hold the watch. A blocking query needs longer than the wait plus
        // Consul's jitter of up to wait/16; both get 5 s for the rest.
        let blocking = if index > 0 {
            self.wait + self.wait / 16
        } else {
            Duration::ZERO
        };
        let timeout = blocking + QUERY_MARGIN;
        match tokio::time::timeout(timeout, self.query_nodes(index, timeout)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no complete answer within {timeout:?}")),
        }
    }

    async fn query_nodes(
        &self,
        index: u64,
        timeout: Duration,
    ) -> Result<(Vec<Endpoint>, u64), ConsulError> {
        let request = GetServiceNodesRequest {
            service: &self.service,
            near: None,
            passing: self.passing,
            filter: self.filter.as_deref(),
        };
        let options = QueryOptions {
            namespace: None,
            datacenter: self.datacenter.clone(),
            timeout: Some(timeout),
            index: (index > 0).then_some(index),
            wait: (index > 0).then_some(self.wait),
        };
        let meta = self
            .consul
            .get_service_nodes(request, Some(options))
            .await?;
        let endpoints = meta
            .response
            .into_iter()
            .map(|n| {
                let host = if n.service.address.is_empty() {
                    n.node.address
                } else {
                    n.service.address
                };
                Endpoint::new(n.service.id, self.scheme, host, n.service.port)
                    .with_tags(n.service.tags)
            })
            .collect();
        Ok((endpoints, meta.index))
    }

    async fn run(self, tx: mpsc::Sender<Option<Change>>, status: watch::Sender<WatchStatus>) {
        let mut known: HashMap<String, Endpoint> = HashMap::new();
        let mut settled = false;
        let mut index = 0u64;
        let mut failures = 0u32;
        let mut previous_delay = None;
        let mut bucket = TokenBucket::new(2, self.min_interval);
        loop {
            bucket.take().await;
            let result = tokio::select! {
                r = self.query(index) => r,
                _ = tx.closed() => return,
            };
            match result {
                Ok((endpoints, new_index)) => {
                    failures = 0;
                    previous_delay = None;
                    index = if new_index < index {
                        tracing::info!(
                            service = %self.service,
                            from = index,
                            to = new_index,
                            "consul index went backwards; starting over"
                        );
                        0
                    } else {
                        new_index.max(1)
                    };
                    let mut next: HashMap<String, Endpoint> =
                        HashMap::with_capacity(endpoints.len());
                    for e in endpoints {
                        next.insert(e.id().to_string(), e);
                    }
                    let mut changes = Vec::new();
                    for id in known.keys() {
                        if !next.contains_key(id) {
                            changes.push(Change::Remove(id.clone()));
                        }
                    }
                    for (id, e) in &next {
                        if known.get(id) != Some(e) {
                            changes.push(Change::Insert(id.clone(), e.clone()));
                        }
                    }
                    if !changes.is_empty() {
                        tracing::debug!(
                            service = %self.service,
                            endpoints = next.len(),
                            changes = changes.len(),
                            "consul endpoints changed"
                        );
                    }
                    for c in changes {
                        if tx.send(Some(c)).await.is_err() {
                            return;
                        }
                    }
                    if !std::mem::replace(&mut settled, true) && tx.send(None).await.is_err() {
                        return;
                    }
                    known = next;
                    status.send_replace(WatchStatus {
                        index,
                        endpoints: known.len(),
                        failures: 0,
                        last_error: None,
                    });
                }
                Err(e) => {
                    failures += 1;
                    let mut rng = fastrand::Rng::new();
                    let delay = self.backoff.delay(failures - 1, previous_delay, &mut rng);
                    previous_delay = Some(delay);
                    let error = e;
                    tracing::warn!(
                        service = %self.service,
                        failures,
                        retry_in = ?delay,
                        error = %error,
                        kept = known.len(),
                        "consul query failed; keeping the last good endpoints"
                    );
                    status.send_modify(|s| {
                        s.failures = failures;
                        s.last_error = Some(error);
                    });
                    if !std::mem::replace(&mut settled, true) && tx.send(None).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        }
    }
}

/// Time a query gets beyond a blocking query's wait: to connect, and to
/// send and read the answer.
const QUERY_MARGIN: Duration = Duration::from_secs(5);

/// The loop's rate limit: `burst` queries at once, then one per `every`.
struct TokenBucket {
    burst: f64,
    tokens: f64,
    every: Duration,
    at: Instant,
}

impl TokenBucket {
    fn new(burst: u32, every: Duration) -> Self {
        TokenBucket {
            burst: burst as f64,
            tokens: burst as f64,
            every,
            at: Instant::now(),
        }
    }

    async fn take(&mut self) {
        let now = Instant::now();
        let refill = now.saturating_duration_since(self.at).as_secs_f64()
            / self.every.as_secs_f64().max(1e-9);
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens < 1.0 {
            let wait = self.every.mul_f64(1.0 - self.tokens);
            tokio::time::sleep(wait).await;
            self.tokens = 1.0;
            self.at = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

/// One entry of `GET /v1/catalog/service/:name`, the fields that locate an
/// instance (the catalog has no health: prefer [`ConsulDiscovery`], which
/// reads the health API, for traffic).
#[derive(Debug, serde::Deserialize)]
struct CatalogEntry {
    #[serde(rename = "Address")]
    address: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    #[serde(rename = "ServiceAddress", default)]
    service_address: String,
    #[serde(rename = "ServicePort")]
    service_port: u16,
    #[serde(rename = "ServiceTags", default)]
    service_tags: Option<Vec<String>>,
}

/// Endpoints from a `GET /v1/catalog/service/:name` body, for tools and
/// static setups that start from catalog data: `ServiceAddress`, or the
/// node's `Address` when it is empty (API-FACTS §6). A body that is not a
/// catalog answer is an error naming it, never a panic.
///
/// ```
/// use meshguard::discovery::{Scheme, consul::catalog_endpoints};
///
/// let body = r#"[{"Address": "10.0.0.1", "ServiceID": "web-1", "ServiceAddress": "",
///                "ServicePort": 80, "ServiceTags": null}]"#;
/// let endpoints = catalog_endpoints(body, Scheme::Http).unwrap();
/// assert_eq!(endpoints[0].base_url(), "http://10.0.0.1:80");
/// ```
pub fn catalog_endpoints(body: &str, scheme: Scheme) -> Result<Vec<Endpoint>, ConfigError> {
    let entries: Vec<CatalogEntry> = serde_json::from_str(body)
        .map_err(|e| ConfigError::new("catalog", format!("not a catalog answer: {e}")))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let host = if e.service_address.is_empty() {
                e.address
            } else {
                e.service_address
            };
            Endpoint::new(e.service_id, scheme, host, e.service_port)
                .with_tags(e.service_tags.unwrap_or_default())
        })
        .collect())
}
