//! Hedged requests on top of `tower::hedge`, drawing on a retry budget.

use std::marker::PhantomData;
use std::time::Duration;

use tower::Layer;

use super::budget::{Handle, RetryBudget};
use super::replay::Replay;

/// Sends a second copy of a slow request, on `tower::hedge`: when a request
/// has taken longer than the given percentile of recent latencies, a hedge
/// goes out and the first response wins. Only replayable (by default,
/// idempotent) requests are hedged, and every hedge withdraws a token from
/// the same [`RetryBudget`] retries use, so hedging cannot double the load
/// on a struggling upstream.
///
/// ```
/// use std::time::Duration;
/// use meshguard::retry::{HedgeLayer, RetryLayer, RetryPolicy};
///
/// let retry = RetryLayer::new(RetryPolicy::default());
/// // Hedge at the p95 once 100 latencies are known, over 30 s windows;
/// // the retry layer above already deposits each request.
/// let hedge = HedgeLayer::<http::Request<String>>::new(retry.budget().clone())
///     .percentile(95.0)
///     .min_data_points(100)
///     .period(Duration::from_secs(30))
///     .deposit(false);
/// # let _ = (retry, hedge);
/// ```
#[derive(Debug)]
pub struct HedgeLayer<Req> {
    budget: RetryBudget,
    percentile: f32,
    min_data_points: u64,
    period: Duration,
    allow_non_idempotent: bool,
    deposit: bool,
    _req: PhantomData<fn(Req)>,
}

impl<Req> Clone for HedgeLayer<Req> {
    fn clone(&self) -> Self {
        HedgeLayer {
            budget: self.budget.clone(),
            _req: PhantomData,
            ..*self
        }
    }
}

impl<Req> HedgeLayer<Req> {
    /// Hedges at the 90th percentile once 20 latencies are known, over 10 s
    /// windows; requests deposit into `budget`.
    pub fn new(budget: RetryBudget) -> Self {
        HedgeLayer {
            budget,
            percentile: 90.0,
            min_data_points: 20,
            period: Duration::from_secs(10),
            allow_non_idempotent: false,
            deposit: true,
            _req: PhantomData,
        }
    }

    /// The latency percentile (0 to 100) after which a hedge is sent.
    pub fn percentile(mut self, p: f32) -> Self {
        self.percentile = p.clamp(0.0, 100.0);
        self
    }

    /// Latencies needed before any hedge is sent.
    pub fn min_data_points(mut self, n: u64) -> Self {
        self.min_data_points = n;
        self
    }

    /// How long latencies are kept (`tower::hedge` keeps two such windows).
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Hedges non-idempotent requests too.
    pub fn allow_non_idempotent(mut self, allow: bool) -> Self {
        self.allow_non_idempotent = allow;
        self
    }

    /// Whether requests passing through deposit into the budget: `true`
    /// alone, `false` below a [`RetryLayer`](super::RetryLayer) sharing the
    /// budget (which deposits already).
    pub fn deposit(mut self, deposit: bool) -> Self {
        self.deposit = deposit;
        self
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
        let policy = HedgePolicy {
            budget: self.budget.handle(),
            allow_non_idempotent: self.allow_non_idempotent,
            deposit: self.deposit,
        };
        tower::hedge::Hedge::new::<Req>(
            inner,
            policy,
            self.min_data_points,
            // tower takes a quantile, 0 to 1.
            self.percentile / 100.0,
            self.period,
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
        req.replay(self.allow_non_idempotent).ok()
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
