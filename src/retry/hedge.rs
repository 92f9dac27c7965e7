//! Hedged requests on top of `tower::hedge`, drawing on a retry budget.

use std::marker::PhantomData;

use tower::Layer;

use super::budget::{Handle, RetryBudget};
use super::hedge_config::HedgeConfig;
use super::replay::Replay;

/// Sends a second copy of a slow request, on `tower::hedge`: when a request
/// has taken longer than the given percentile of recent latencies, a hedge
/// goes out and the first response wins. Only replayable (by default,
/// idempotent) requests are hedged, and every hedge withdraws a token from
/// the same [`RetryBudget`] retries use, so hedging cannot double the load
/// on a struggling upstream. The settings are a [`HedgeConfig`].
///
/// ```
/// use std::time::Duration;
/// use meshguard::retry::{HedgeConfig, HedgeLayer, RetryLayer, RetryPolicy};
///
/// # fn main() -> Result<(), meshguard::ConfigError> {
/// let retry = RetryLayer::new(RetryPolicy::default());
/// // Hedge at the p95 once 100 latencies are known, over 30 s windows;
/// // the retry layer above already deposits each request.
/// let config = HedgeConfig::builder()
///     .percentile(95.0)
///     .min_data_points(100)
///     .period(Duration::from_secs(30))
///     .deposit(false)
///     .build()?;
/// let hedge = HedgeLayer::<http::Request<String>>::new(config, retry.budget().clone());
/// # let _ = (retry, hedge);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HedgeLayer<Req> {
    config: HedgeConfig,
    budget: RetryBudget,
    _req: PhantomData<fn(Req)>,
}

impl<Req> Clone for HedgeLayer<Req> {
    fn clone(&self) -> Self {
        HedgeLayer {
            config: self.config,
            budget: self.budget.clone(),
            _req: PhantomData,
        }
    }
}

impl<Req> HedgeLayer<Req> {
    /// Hedges by `config`, withdrawing each hedge from `budget` (and, if
    /// [`HedgeConfig::deposits`], depositing each request into it).
    pub fn new(config: HedgeConfig, budget: RetryBudget) -> Self {
        HedgeLayer {
            config,
            budget,
            _req: PhantomData,
        }
    }

    /// The settings.
    pub fn config(&self) -> &HedgeConfig {
        &self.config
    }

    /// The budget hedges draw on.
    pub fn budget(&self) -> &RetryBudget {
        &self.budget
    }
}

impl<S, Req> Layer<S> for HedgeLayer<Req>
where
    S: tower::Service<Req> + Clone,
    S::Error: Into<crate::BoxError>,
    Req: Replay,
{
    type Service = tower::hedge::Hedge<S, HedgePolicy>;

    fn layer(&self, inner: S) -> Self::Service {
        let c = &self.config;
        let policy = HedgePolicy {
            budget: self.budget.handle(),
            allow_non_idempotent: c.allows_non_idempotent(),
            deposit: c.deposits(),
        };
        tower::hedge::Hedge::new::<Req>(
            inner,
            policy,
            c.min_data_points(),
            // tower takes a quantile, 0 to 1.
            (c.percentile() / 100.0) as f32,
            c.period(),
        )
    }
}

/// The `tower::hedge::Policy` of a [`HedgeLayer`].
#[derive(Debug, Clone)]
pub struct HedgePolicy {
    budget: Handle,
    allow_non_idempotent: bool,
    deposit: bool,
}

impl<Req: Replay> tower::hedge::Policy<Req> for HedgePolicy {
    fn clone_request(&self, req: &Req) -> Option<Req> {
        if self.deposit {
            self.budget.deposit();
        }
        req.replay_as_hedge(self.allow_non_idempotent).ok()
    }

    fn can_retry(&self, _req: &Req) -> bool {
        let ok = self.budget.withdraw();
        if ok {
            tracing::info!(reason = "slower than the latency percentile", "hedging");
        } else {
            tracing::debug!("not hedging: retry budget exhausted");
        }
        ok
    }
}
