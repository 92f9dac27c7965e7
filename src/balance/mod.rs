//! Load balancing over discovered endpoints, with outlier ejection.
//!
//! [`balance`] builds `tower::balance::p2c::Balance` (power of two choices)
//! over `tower::load::PeakEwma` (Finagle's and linkerd's choice), fed by a
//! discovery stream of [`Endpoint`]s. Each endpoint is wrapped in its own
//! [`CircuitBreaker`] in *gate* mode: an endpoint whose breaker opens is
//! not ready, so p2c stops picking it, until the open period ends and a
//! probe gets through (Envoy's outlier ejection, with the open period
//! growing on repeated ejections). Openings are limited by an ejection
//! pool shared by the endpoints: at most `max_ejection_percent` of them
//! (at least one, as Envoy) may be ejected at once, and never so many that
//! fewer than `panic_threshold` percent remain; beyond that a failing
//! endpoint keeps receiving traffic rather than overloading the rest.
//!
//! Why the breakers: `PeakEwma` times failed calls like good ones, so an
//! endpoint answering 500 or refusing connections at once looks *cheap* and
//! attracts traffic. So besides ejecting, the balancer ranks endpoints by
//! their consecutive failures first and their PeakEwma cost second
//! ([`EndpointLoad`]): from its first failure an endpoint loses every
//! choice against one that failed less (linkerd penalises failures in its
//! load estimate for the same reason), and a retry goes elsewhere.
//!
//! Removing an endpoint drops the balancer's handle on its service; calls
//! already in flight on it keep their own future and complete.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::Service;
use tower::balance::p2c::Balance;
use tower::load::peak_ewma::Cost;
use tower::load::{CompleteOnResponse, Load, PeakEwma};

use crate::ConfigError;
use crate::circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerService, EjectionGuard, Rejection, Slot,
};
use crate::classify::Classify;
use crate::discovery::{Change, Endpoint};

mod shared;

pub use shared::NoEndpoints;
#[cfg(feature = "client")]
pub(crate) use shared::{AttemptEnds, SharedBalancer};

/// How the balancer weighs endpoints and ejects failing ones.
///
/// Deserializable, every field optional, durations as text; invalid values
/// name their field:
///
/// ```
/// use meshguard::balance::BalanceConfig;
///
/// let config: BalanceConfig = toml::from_str(r#"
///     default_rtt = "10ms"
///     max_ejection_percent = 30
///     ejection = { consecutive_failures = 3, open_duration = { kind = "constant", base = "5s" } }
/// "#).unwrap();
/// assert_eq!(config.max_ejection_percent(), 30.0);
///
/// let off: BalanceConfig = toml::from_str("ejection_enabled = false").unwrap();
/// assert!(off.ejection().is_none());
///
/// let err = toml::from_str::<BalanceConfig>("panic_threshold = 120").unwrap_err();
/// assert!(err.to_string().contains("`panic_threshold`"));
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(try_from = "RawBalance")]
pub struct BalanceConfig {
    default_rtt: Duration,
    decay: Duration,
    ejection: Option<CircuitBreakerConfig>,
    max_ejection_percent: f64,
    panic_threshold: f64,
    failure_penalty: Duration,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl BalanceConfig {
    /// Defaults: PeakEwma with a 30 ms first estimate decaying over 10 s
    /// (linkerd's), ejection after 5 consecutive failures (Envoy's
    /// `consecutive_5xx`) for 1 s, doubling per repeated ejection up to
    /// 1 min, each period up to half again as long (Linkerd's failure
    /// accrual: 1 s to 1 min, jitter 0.5; a recovered instance is back
    /// within about a second, a dead one costs a probe a minute), one probe
    /// to come back, at most 10% ejected (at least one endpoint), panic
    /// below 50% (Envoy's defaults).
    pub fn builder() -> BalanceConfigBuilder {
        BalanceConfigBuilder {
            config: BalanceConfig {
                default_rtt: Duration::from_millis(30),
                decay: Duration::from_secs(10),
                ejection: Some(default_ejection()),
                max_ejection_percent: 10.0,
                panic_threshold: 50.0,
                failure_penalty: Duration::from_secs(1),
            },
        }
    }

    /// The per-endpoint breaker's configuration, if ejection is on.
    pub fn ejection(&self) -> Option<&CircuitBreakerConfig> {
        self.ejection.as_ref()
    }

    /// The largest share of endpoints ejected at once, in percent.
    pub fn max_ejection_percent(&self) -> f64 {
        self.max_ejection_percent
    }

    /// The share of endpoints, in percent, below which none is ejected.
    pub fn panic_threshold(&self) -> f64 {
        self.panic_threshold
    }

    /// How long after its last failure an endpoint ranks behind those
    /// with fewer consecutive failures.
    pub fn failure_penalty(&self) -> Duration {
        self.failure_penalty
    }
}

fn default_ejection() -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .consecutive_failures(5)
        // The breaker's default: ejected for 1 s, then 2, 4, ... up to 1 min
        // while probes keep failing, each up to half again as long.
        .open_duration(crate::circuit_breaker::default_open_duration())
        .half_open_calls(1)
        .rejection(Rejection::Gate)
        .build()
        .expect("valid")
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBalance {
    #[serde(default, with = "humantime_serde")]
    default_rtt: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    decay: Option<Duration>,
    #[serde(default)]
    ejection: Option<CircuitBreakerConfig>,
    #[serde(default = "yes")]
    ejection_enabled: bool,
    #[serde(default)]
    max_ejection_percent: Option<f64>,
    #[serde(default)]
    panic_threshold: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    failure_penalty: Option<Duration>,
}

fn yes() -> bool {
    true
}

impl TryFrom<RawBalance> for BalanceConfig {
    type Error = ConfigError;

    fn try_from(raw: RawBalance) -> Result<Self, ConfigError> {
        let mut b = BalanceConfig::builder();
        if let Some(d) = raw.default_rtt {
            b = b.default_rtt(d);
        }
        if let Some(d) = raw.decay {
            b = b.decay(d);
        }
        if let Some(e) = raw.ejection {
            b = b.ejection(Some(e));
        }
        if !raw.ejection_enabled {
            b = b.ejection(None);
        }
        if let Some(p) = raw.max_ejection_percent {
            b = b.max_ejection_percent(p);
        }
        if let Some(p) = raw.panic_threshold {
            b = b.panic_threshold(p);
        }
        if let Some(d) = raw.failure_penalty {
            b = b.failure_penalty(d);
        }
        b.build()
    }
}

/// Builds a [`BalanceConfig`].
#[derive(Debug, Clone)]
pub struct BalanceConfigBuilder {
    config: BalanceConfig,
}

impl BalanceConfigBuilder {
    /// PeakEwma's estimate for an endpoint with no measurements yet.
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.config.default_rtt = rtt;
        self
    }

    /// Over how long PeakEwma's estimate decays.
    pub fn decay(mut self, decay: Duration) -> Self {
        self.config.decay = decay;
        self
    }

    /// The per-endpoint breaker (its rejection mode is always gate), or
    /// `None` to turn ejection off (endpoints are still ranked by their
    /// consecutive failures).
    pub fn ejection(mut self, breaker: Option<CircuitBreakerConfig>) -> Self {
        self.config.ejection = breaker;
        self
    }

    /// The largest share of endpoints ejected at once (0 to 100); at least
    /// one endpoint may always be ejected, panic threshold permitting.
    pub fn max_ejection_percent(mut self, percent: f64) -> Self {
        self.config.max_ejection_percent = percent;
        self
    }

    /// How long after its last failure an endpoint ranks behind endpoints
    /// with fewer consecutive failures (default 1 s; zero turns the
    /// ranking off). Long enough that a retry goes elsewhere, short enough
    /// that an endpoint with one transient error is soon picked again.
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.config.failure_penalty = penalty;
        self
    }

    /// No ejection may leave fewer than this share of endpoints (0 to 100).
    pub fn panic_threshold(mut self, percent: f64) -> Self {
        self.config.panic_threshold = percent;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<BalanceConfig, ConfigError> {
        let c = self.config;
        if c.default_rtt.is_zero() {
            return Err(ConfigError::new("default_rtt", "must be greater than zero"));
        }
        if c.decay.is_zero() {
            return Err(ConfigError::new("decay", "must be greater than zero"));
        }
        for (field, v) in [
            ("max_ejection_percent", c.max_ejection_percent),
            ("panic_threshold", c.panic_threshold),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err(ConfigError::new(
                    field,
                    format!("must be in [0, 100], got {v}"),
                ));
            }
        }
        Ok(c)
    }
}

/// Counts the endpoints of one balancer and how many are ejected.
#[derive(Debug)]
pub(crate) struct EjectionPool {
    endpoints: AtomicUsize,
    ejected: AtomicUsize,
    max_percent: f64,
    panic_threshold: f64,
    metrics: crate::telemetry::EndpointMetrics,
}

impl EjectionPool {
    fn new(name: &str, config: &BalanceConfig) -> Self {
        EjectionPool {
            endpoints: AtomicUsize::new(0),
            ejected: AtomicUsize::new(0),
            max_percent: config.max_ejection_percent,
            panic_threshold: config.panic_threshold,
            metrics: crate::telemetry::EndpointMetrics::new(name),
        }
    }

    /// Publishes the counts (on changes only: insertions, removals,
    /// ejections and readmissions).
    fn publish(&self) {
        self.metrics.set(
            self.endpoints.load(Ordering::Acquire),
            self.ejected.load(Ordering::Acquire),
        );
    }

    fn add_endpoint(&self) {
        self.endpoints.fetch_add(1, Ordering::AcqRel);
        self.publish();
    }

    fn remove_endpoint(&self) {
        self.endpoints.fetch_sub(1, Ordering::AcqRel);
        self.publish();
    }

    /// Endpoints ejected now.
    #[cfg(test)]
    fn ejected(&self) -> usize {
        self.ejected.load(Ordering::Acquire)
    }
}

impl EjectionGuard for EjectionPool {
    fn try_eject(&self) -> bool {
        let total = self.endpoints.load(Ordering::Acquire);
        let max = ((total as f64 * self.max_percent / 100.0).floor() as usize).max(1);
        let mut ejected = self.ejected.load(Ordering::Acquire);
        loop {
            let remaining = total.saturating_sub(ejected + 1);
            let panic =
                total == 0 || (remaining as f64) * 100.0 < self.panic_threshold * total as f64;
            if ejected >= max || panic {
                return false;
            }
            match self.ejected.compare_exchange(
                ejected,
                ejected + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.publish();
                    return true;
                }
                Err(actual) => ejected = actual,
            }
        }
    }

    fn force_eject(&self) {
        self.ejected.fetch_add(1, Ordering::AcqRel);
        self.publish();
    }

    fn release(&self) {
        let _ = self
            .ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| e.checked_sub(1));
        self.publish();
    }
}

/// One endpoint as the balancer holds it: the connected service behind its
/// gate breaker. Counted in the ejection pool while it lives.
pub struct EndpointService<S, C> {
    inner: CircuitBreakerService<S, C>,
    pool: Arc<EjectionPool>,
}

impl<S, C> fmt::Debug for EndpointService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointService")
            .field("breaker", self.inner.breaker())
            .finish_non_exhaustive()
    }
}

impl<S, C> EndpointService<S, C> {
    /// The endpoint's breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        self.inner.breaker()
    }
}

impl<S, C> Drop for EndpointService<S, C> {
    fn drop(&mut self) {
        self.pool.remove_endpoint();
    }
}

impl<S, C, Req> Service<Req> for EndpointService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = <CircuitBreakerService<S, C> as Service<Req>>::Error;
    type Future = <CircuitBreakerService<S, C> as Service<Req>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}

pin_project! {
    /// Discovery changes turned into endpoint services; see [`balance`].
    pub struct Endpoints<D, F, C> {
        #[pin]
        discover: D,
        connect: F,
        classify: C,
        name: Arc<str>,
        ejection: Option<CircuitBreakerConfig>,
        pool: Arc<EjectionPool>,
        default_rtt: Duration,
        decay_ns: f64,
        failure_penalty: Duration,
        // Instance ids mapped to small keys: tower's ready cache clones and
        // hashes a key on every call, which for a `String` is an allocation.
        keys: std::collections::HashMap<String, u64>,
        next_key: u64,
        // The discovery stream has ended: tower keeps asking, answer at once.
        ended: bool,
        view: BalanceView,
    }
}

impl<D, F, C> fmt::Debug for Endpoints<D, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoints")
            .field("name", &self.name)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// What [`Endpoints`] yields.
type EndpointsItem<S, C, E> = Result<tower::discover::Change<u64, Ranked<S, C>>, E>;

impl<D, F, C, S, E> Endpoints<D, F, C>
where
    D: futures_core::Stream<Item = Result<Change, E>>,
    F: FnMut(&Endpoint) -> S,
    C: Clone,
{
    /// The change path, out of line: tower polls discovery on every
    /// `poll_ready`, so the common "nothing new" answer must stay small.
    #[inline(never)]
    fn poll_change(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<EndpointsItem<S, C, E>>> {
        let this = self.project();
        match this.discover.poll_next(cx) {
            Poll::Ready(Some(Ok(Change::Insert(id, endpoint)))) => {
                let key = match this.keys.get(&id) {
                    Some(k) => *k,
                    None => {
                        *this.next_key += 1;
                        this.keys.insert(id.clone(), *this.next_key);
                        *this.next_key
                    }
                };
                let inner = (this.connect)(&endpoint);
                let name = format!("{}/{}", this.name, id);
                let breaker = match this.ejection {
                    Some(config) => {
                        CircuitBreaker::with_guard(name, config.clone(), this.pool.clone())
                    }
                    None => {
                        // Records (for the failure ranking) and never opens.
                        let b = CircuitBreaker::with_guard(
                            name,
                            CircuitBreakerConfig::default(),
                            this.pool.clone(),
                        );
                        b.metrics_only();
                        b
                    }
                };
                this.pool.add_endpoint();
                let svc = EndpointService {
                    inner: CircuitBreakerService::new(
                        inner,
                        breaker.clone(),
                        this.classify.clone(),
                    ),
                    pool: this.pool.clone(),
                };
                let ranked = Ranked {
                    inner: Box::new(PeakEwma::new(
                        svc,
                        *this.default_rtt,
                        *this.decay_ns,
                        CompleteOnResponse::default(),
                    )),
                    slot: breaker.slot(),
                    breaker,
                    penalty: this.failure_penalty.as_nanos().min(u64::MAX as u128) as u64,
                };
                this.view.insert(id, endpoint, ranked.breaker.clone());
                Poll::Ready(Some(Ok(tower::discover::Change::Insert(key, ranked))))
            }
            Poll::Ready(Some(Ok(Change::Remove(id)))) => match this.keys.remove(&id) {
                Some(key) => {
                    this.view.remove(&id);
                    Poll::Ready(Some(Ok(tower::discover::Change::Remove(key))))
                }
                // Never inserted: nothing to remove; look for the next change.
                None => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                *this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<D, F, C, S, E> futures_core::Stream for Endpoints<D, F, C>
where
    D: futures_core::Stream<Item = Result<Change, E>>,
    F: FnMut(&Endpoint) -> S,
    C: Clone,
{
    type Item = EndpointsItem<S, C, E>;

    #[inline]
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if *self.as_mut().project().ended {
            return Poll::Ready(None);
        }
        self.poll_change(cx)
    }
}

/// The balancer [`balance`] builds.
pub type Balancer<D, F, C, Req> = Balance<Endpoints<D, F, C>, Req>;

/// An endpoint's load as the balancer ranks it: an endpoint whose probe is
/// due first, then recent consecutive failures, then the PeakEwma cost
/// (latency × requests in flight).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointLoad {
    /// The endpoint's breaker wants a probe: half-open, or open with its
    /// open period over. It ranks ahead of every other, or its failures
    /// and its latency estimate (raised by the failures that ejected it)
    /// would keep the probe from ever being sent while a healthier
    /// endpoint is ready, and the endpoint would stay out.
    pub probe_due: bool,
    /// Failures since the endpoint's last success, if the last one is
    /// younger than the failure penalty; else 0 (capped at 2^16).
    pub failures: u32,
    /// tower's PeakEwma cost.
    pub cost: Cost,
}

impl PartialOrd for EndpointLoad {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        // A due probe is the lesser load.
        match other.probe_due.cmp(&self.probe_due) {
            std::cmp::Ordering::Equal => {
                (self.failures, self.cost).partial_cmp(&(other.failures, other.cost))
            }
            order => Some(order),
        }
    }
}

/// An endpoint service with its PeakEwma load, ranked by [`EndpointLoad`].
pub struct Ranked<S, C> {
    // Boxed: tower's ready cache moves each service in and out of its ready
    // set on every request, so the balancer moves 8 bytes, not the whole
    // stack (measured with callgrind: fewer instructions per request).
    inner: Box<PeakEwma<EndpointService<S, C>, CompleteOnResponse>>,
    // The endpoint's breaker state, read without chasing the handle's `Arc`
    // on every ranking; `breaker` keeps it owned while this lives.
    slot: &'static Slot,
    breaker: CircuitBreaker,
    penalty: u64,
}

impl<S, C> fmt::Debug for Ranked<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ranked")
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<S, C> Load for Ranked<S, C> {
    type Metric = EndpointLoad;

    fn load(&self) -> EndpointLoad {
        EndpointLoad {
            probe_due: self.slot.probe_due(),
            failures: self.slot.recent_failures(self.penalty).min(1 << 16) as u32,
            cost: self.inner.load(),
        }
    }
}

impl<S, C, Req> Service<Req> for Ranked<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = <PeakEwma<EndpointService<S, C>, CompleteOnResponse> as Service<Req>>::Error;
    type Future = <PeakEwma<EndpointService<S, C>, CompleteOnResponse> as Service<Req>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}

/// Balances `Req`s over the endpoints `discover` yields, connecting each
/// with `connect` and judging its outcomes with `classify` (for HTTP,
/// [`HttpClassifier`](crate::classify::HttpClassifier): 5xx and 429 count
/// against the endpoint). `name` names the endpoints' breakers
/// (`<name>/<endpoint id>`) in events.
///
/// ```
/// use meshguard::balance::{balance, BalanceConfig};
/// use meshguard::classify::ErrorsAreFailures;
/// use meshguard::discovery::StaticDiscovery;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), meshguard::BoxError> {
/// let endpoints = StaticDiscovery::from_urls(["http://10.0.0.1:80", "http://10.0.0.2:80"])?;
/// let lb = balance::<_, _, _, _, String>(
///     "users",
///     endpoints,
///     |e| {
///         let base = e.base_url();
///         tower::service_fn(move |path: String| {
///             let url = format!("{base}{path}");
///             async move { Ok::<_, std::io::Error>(url) }
///         })
///     },
///     ErrorsAreFailures,
///     BalanceConfig::default(),
/// );
/// let url = lb.oneshot("/v1/users/7".to_string()).await?;
/// assert!(url.ends_with(":80/v1/users/7"));
/// # Ok(()) }
/// ```
pub fn balance<D, F, C, S, Req>(
    name: &str,
    discover: D,
    connect: F,
    classify: C,
    config: BalanceConfig,
) -> Balancer<D, F, C, Req>
where
    D: futures_core::Stream<Item = Result<Change, std::convert::Infallible>>,
    F: FnMut(&Endpoint) -> S,
    S: Service<Req>,
    S::Error: Into<crate::BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    balance_with_view(name, discover, connect, classify, config).0
}

/// As [`balance`], with a [`BalanceView`] of the endpoints it holds.
pub fn balance_with_view<D, F, C, S, Req>(
    name: &str,
    discover: D,
    connect: F,
    classify: C,
    config: BalanceConfig,
) -> (Balancer<D, F, C, Req>, BalanceView)
where
    D: futures_core::Stream<Item = Result<Change, std::convert::Infallible>>,
    F: FnMut(&Endpoint) -> S,
    S: Service<Req>,
    S::Error: Into<crate::BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    let view = BalanceView::default();
    let pool = Arc::new(EjectionPool::new(name, &config));
    let ejection = config.ejection.map(|mut c| {
        c.rejection = Rejection::Gate;
        c
    });
    let endpoints = Endpoints {
        discover,
        connect,
        classify,
        name: name.into(),
        ejection,
        pool,
        default_rtt: config.default_rtt,
        decay_ns: config.decay.as_nanos() as f64,
        failure_penalty: config.failure_penalty,
        keys: std::collections::HashMap::new(),
        next_key: 0,
        ended: false,
        view: view.clone(),
    };
    (Balance::new(endpoints), view)
}

/// The endpoints a balancer holds, with their breakers: for dashboards and
/// tests. Updated when discovery inserts or removes one (a lock taken
/// there and by [`endpoints`](Self::endpoints), never per request).
#[derive(Debug, Clone, Default)]
pub struct BalanceView {
    inner: Arc<std::sync::Mutex<Vec<EndpointStatus>>>,
}

/// One endpoint of a [`BalanceView`].
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    /// The instance id.
    pub id: String,
    /// Where it is.
    pub endpoint: Endpoint,
    /// Its breaker (gate mode): `state()` is `Open` while it is ejected.
    pub breaker: CircuitBreaker,
}

impl BalanceView {
    /// The endpoints now, in the order they were inserted.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn insert(&self, id: String, endpoint: Endpoint, breaker: CircuitBreaker) {
        let mut list = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|e| e.id != id);
        list.push(EndpointStatus {
            id,
            endpoint,
            breaker,
        });
    }

    fn remove(&self, id: &str) {
        let mut list = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|e| e.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(endpoints: usize, max_percent: f64, panic: f64) -> EjectionPool {
        let p = EjectionPool::new(
            "test",
            &BalanceConfig::builder()
                .max_ejection_percent(max_percent)
                .panic_threshold(panic)
                .build()
                .unwrap(),
        );
        p.endpoints.store(endpoints, Ordering::Relaxed);
        p
    }

    fn ejections(p: &EjectionPool) -> usize {
        std::iter::from_fn(|| p.try_eject().then_some(()))
            .take(1000)
            .count()
    }

    #[test]
    fn ten_percent_of_three_still_ejects_one() {
        assert_eq!(ejections(&pool(3, 10.0, 50.0)), 1);
    }

    #[test]
    fn ten_percent_of_twenty_ejects_two() {
        assert_eq!(ejections(&pool(20, 10.0, 50.0)), 2);
    }

    #[test]
    fn a_lone_endpoint_is_never_ejected_below_the_panic_threshold() {
        assert_eq!(ejections(&pool(1, 100.0, 50.0)), 0);
    }

    #[test]
    fn the_panic_threshold_caps_a_generous_ejection_limit() {
        // 100% may be ejected, but 60% must remain: 4 of 10.
        assert_eq!(ejections(&pool(10, 100.0, 60.0)), 4);
    }

    #[test]
    fn a_released_ejection_can_be_taken_again() {
        let p = pool(3, 10.0, 50.0);
        assert!(p.try_eject());
        assert!(!p.try_eject());
        p.release();
        assert_eq!(p.ejected(), 0);
        assert!(p.try_eject());
    }

    #[test]
    fn invalid_settings_name_their_field() {
        let err = BalanceConfig::builder()
            .max_ejection_percent(120.0)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "max_ejection_percent");
        let err = BalanceConfig::builder()
            .decay(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "decay");
    }
}
