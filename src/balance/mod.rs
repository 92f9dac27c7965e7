//! Load balancing over discovered endpoints, with outlier ejection.
//!
//! [`balance`] builds a [`Balancer`]: power of two choices (adapted from
//! tower's p2c, over the endpoints' own ready set) over PeakEwma latency estimates (Finagle's and
//! linkerd's choice), fed by a discovery stream of [`Endpoint`]s. Each
//! endpoint is wrapped in its own
//! [`CircuitBreaker`](crate::circuit_breaker::CircuitBreaker) in wait mode
//! ([`Rejection::Wait`](crate::circuit_breaker::Rejection::Wait)): an
//! endpoint whose breaker opens is not ready, so p2c stops picking it,
//! until the open period ends and a probe gets through (Envoy's outlier
//! ejection, with the open period growing on repeated ejections). An
//! endpoint that answers 429 or 503 with a `Retry-After` is ejected the
//! same way for as long as it asked (capped by
//! [`BalanceConfigBuilder::max_retry_after_ejection`]). Openings
//! are limited by an ejection pool shared by the endpoints: at most
//! `max_ejection_percent` of them (at least one, as Envoy) may be ejected
//! at once, and never so many that fewer than `panic_threshold` percent
//! remain; beyond that a failing endpoint keeps receiving traffic rather
//! than overloading the rest.
//!
//! Why the breakers: `PeakEwma` times failed calls like good ones, so an
//! endpoint answering 500 or refusing connections at once looks *cheap* and
//! attracts traffic. So besides ejecting, the balancer ranks endpoints by
//! their consecutive failures first and their PeakEwma cost second: from
//! its first failure an endpoint loses every choice against one that
//! failed less (linkerd penalises failures in its load estimate for the
//! same reason), and a retry goes elsewhere.
//!
//! A client's call that carries a deadline is never sent to an endpoint
//! whose latency estimate, learnt from its responses, is longer than the
//! time left: the pick takes one that fits, or the attempt fails at once
//! with [`DeadlineExceeded`](crate::deadline::DeadlineExceeded).
//!
//! Removing an endpoint drops the balancer's handle on its service; calls
//! already in flight on it keep their own future and complete.
//!
//! The parts, by file: `config.rs` ([`BalanceConfig`]), `endpoints.rs`
//! (discovery changes into endpoint services, each behind its breaker),
//! `ewma.rs` (an endpoint's latency estimate), `load.rs` (how endpoints are
//! ranked), `p2c.rs` (the pick), `ejection.rs` (the ejection pool, the
//! breakers' open limit), `balancer.rs` ([`Balancer`]), `shared.rs` (the
//! balancer shared by a client's clones), `watcher.rs` (the task that
//! takes discovery's changes in as they come, calls or not), `view.rs` ([`BalanceView`]) and
//! `metrics.rs`.

mod balancer;
mod config;
mod ejection;
mod endpoints;
mod ewma;
mod load;
mod metrics;
mod p2c;
mod ready;
mod shared;
mod view;
mod watcher;

pub use balancer::{Balancer, ResponseFuture};
pub use config::{BalanceConfig, BalanceConfigBuilder};
pub use shared::NoEndpoints;
#[cfg(feature = "client")]
pub(crate) use shared::{BalancedRequest, SharedBalancer};
pub use view::{BalanceView, EndpointStatus};

use tower::Service;

use crate::classify::Classify;
use crate::discovery::{Change, Endpoint};
use endpoints::Endpoints;

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
    let endpoints = Endpoints::new(name, discover, connect, classify, config, view.clone());
    (Balancer::new(endpoints), view)
}
