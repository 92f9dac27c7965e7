#![doc = include_str!("../../docs/retry.md")]

mod budget;
mod budget_config;
mod decide;
mod hedge;
mod hedge_config;
mod metrics;
mod policy;
mod replay;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

pub use budget::RetryBudget;
pub use budget_config::{RetryBudgetConfig, RetryBudgetConfigBuilder};
pub use decide::{ErrorsOnly, HttpRetryOn, RetryOn, Verdict};
pub use hedge::{HedgeLayer, HedgePolicy};
pub use hedge_config::{HedgeConfig, HedgeConfigBuilder};
pub use policy::{RetryPolicy, RetryPolicyBuilder};
pub use replay::{NoReplay, Replay, ReplayBody};

use crate::BoxError;
use crate::deadline::{Bounded, Cut, HasDeadline};
use policy::{Attempts, Settings};

/// Retries calls by a [`RetryPolicy`], within a [`RetryBudget`]; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct RetryLayer<R = HttpRetryOn> {
    policy: RetryPolicy,
    budget: RetryBudget,
    retry_on: R,
    /// What each wrapped service's policy reads (the policy and the
    /// service's name), made once here.
    settings: &'static Settings,
}

impl RetryLayer {
    /// Retries by `policy`, with a budget of its own made from
    /// `policy.budget()`, deciding with [`HttpRetryOn`].
    pub fn new(policy: RetryPolicy) -> Self {
        let budget = RetryBudget::new(*policy.budget());
        RetryLayer {
            settings: Settings::of(&policy, ""),
            policy,
            budget,
            retry_on: HttpRetryOn::default(),
        }
    }
}

impl<R> RetryLayer<R> {
    /// Shares `budget` (with other layers, or a [`HedgeLayer`]) instead.
    pub fn with_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Decides what to retry with `retry_on` instead.
    pub fn retry_on<R2>(self, retry_on: R2) -> RetryLayer<R2> {
        RetryLayer {
            policy: self.policy,
            budget: self.budget,
            retry_on,
            settings: self.settings,
        }
    }

    /// Names the service retried, in the `retrying` event (field `service`)
    /// and the retry metrics (label `service`).
    pub fn name(mut self, name: impl Into<std::sync::Arc<str>>) -> Self {
        self.settings = Settings::of(&self.policy, &name.into());
        self
    }

    /// The budget every service of this layer draws on.
    pub fn budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl<S, R: Clone> Layer<S> for RetryLayer<R> {
    type Service = Retry<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        let attempt = Attempt {
            inner,
            timeout: self
                .policy
                .attempt_timeout
                .map_or(0, |d| (d.as_nanos() as u64).max(1)),
        };
        let policy = Attempts::new(self.settings, self.budget.handle(), self.retry_on.clone());
        Retry {
            inner: tower::retry::Retry::new(policy, attempt),
            budget: self.budget.clone(),
        }
    }
}

/// A service wrapped by a [`RetryLayer`]. Its error is a [`BoxError`]: the
/// last attempt's error, or a timeout of the last attempt
/// (`tower::timeout::error::Elapsed`).
///
/// No retry starts that the request's deadline
/// ([`HasDeadline`], set by a
/// [`DeadlineLayer`](crate::deadline::DeadlineLayer) above) would cut off.
pub struct Retry<S, R = HttpRetryOn> {
    inner: tower::retry::Retry<Attempts<R>, Attempt<S>>,
    budget: RetryBudget,
}

impl<S: Clone, R: Clone> Clone for Retry<S, R> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            budget: self.budget.clone(),
        }
    }
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for Retry<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner.get_ref().inner)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<S, R> Retry<S, R> {
    /// The budget this service draws on.
    pub fn budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner.get_ref().inner
    }
}

impl<S, R, Req> Service<Req> for Retry<S, R>
where
    Req: Replay,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    R: RetryOn<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, R, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`Retry`]: tower's, over the layer's policy.
    pub struct ResponseFuture<S, R, Req>
    where
        Req: Replay,
        S: Service<Req>,
        S::Error: Into<BoxError>,
        R: RetryOn<S::Response>,
    {
        #[pin]
        inner: tower::retry::future::ResponseFuture<Attempts<R>, Attempt<S>, Req>,
    }
}

impl<S, R, Req> fmt::Debug for ResponseFuture<S, R, Req>
where
    Req: Replay,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    R: RetryOn<S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, R, Req> Future for ResponseFuture<S, R, Req>
where
    Req: Replay,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    R: RetryOn<S::Response> + Clone,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

/// One attempt: the inner service with its error boxed, bounded by the
/// attempt timeout (the attempt fails with
/// `tower::timeout::error::Elapsed`, which is retried). Written by hand
/// rather than stacking `tower::timeout::Timeout`: tower's arms a timer
/// inline in every call's future, timeout or not, and its `Either` needs
/// both sides to have an error type a `Layer` cannot name without the
/// request type.
#[derive(Debug, Clone)]
pub(crate) struct Attempt<S> {
    inner: S,
    /// The attempt timeout in nanoseconds, 0 for none: 8 bytes instead of
    /// 16 in every response future.
    timeout: u64,
}

impl<S, Req> Service<Req> for Attempt<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: HasDeadline,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Bounded<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if req
            .deadline()
            .is_some_and(|d| d.instant() <= Instant::now())
        {
            // The deadline passed during the backoff (or both timers fired
            // in one tick): sending it could only load the upstream with
            // work nobody waits for.
            return Bounded::expired(Cut::Deadline);
        }
        let call = self.inner.call(req);
        if self.timeout == 0 {
            return Bounded::open(call);
        }
        bounded(call, self.timeout)
    }
}

/// An attempt with a timer.
#[cold]
fn bounded<F>(call: F, timeout: u64) -> Bounded<F> {
    let at = Instant::now() + Duration::from_nanos(timeout);
    Bounded::until(call, at, Cut::Timeout)
}
