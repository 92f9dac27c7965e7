#![doc = include_str!("../../docs/retry.md")]

mod budget;
mod decide;
mod hedge;
mod policy;
mod replay;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

pub use budget::{RetryBudget, RetryBudgetConfig};
pub use decide::{ErrorsOnly, HttpRetryOn, RetryOn, Verdict, parse_retry_after, retryable_error};
pub use hedge::{HedgeLayer, HedgePolicy};
pub use policy::{Attempts, RetryPolicy, RetryPolicyBuilder};
pub use replay::{Deadline, NoReplay, Replay, ReplayBody};

use crate::BoxError;

/// The whole call, backoff included, outlived its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// Retries calls by a [`RetryPolicy`], within a [`RetryBudget`]; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct RetryLayer<R = HttpRetryOn> {
    policy: RetryPolicy,
    budget: RetryBudget,
    retry_on: R,
    name: Option<std::sync::Arc<str>>,
}

impl RetryLayer {
    /// Retries by `policy`, with a budget of its own made from
    /// `policy.budget()`, deciding with [`HttpRetryOn`].
    pub fn new(policy: RetryPolicy) -> Self {
        let budget = RetryBudget::new(*policy.budget());
        RetryLayer {
            policy,
            budget,
            retry_on: HttpRetryOn::default(),
            name: None,
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
            name: self.name,
        }
    }

    /// Names the service retried, in the `retrying` event (field `service`)
    /// and the retry metrics (label `service`).
    pub fn name(mut self, name: impl Into<std::sync::Arc<str>>) -> Self {
        self.name = Some(name.into());
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
        let policy = Attempts::new(
            &self.policy,
            self.name.as_deref().unwrap_or(""),
            self.budget.handle(),
            self.retry_on.clone(),
        );
        Retry {
            inner: tower::retry::Retry::new(policy, attempt),
            deadline: self.policy.deadline,
            budget: self.budget.clone(),
        }
    }
}

/// A service wrapped by a [`RetryLayer`]. Its error is a [`BoxError`]: the
/// last attempt's error, [`DeadlineExceeded`], or a timeout of the last
/// attempt (`tower::timeout::error::Elapsed`).
///
/// The overall deadline travels in the request ([`Replay::set_deadline`]):
/// for request types that cannot carry one, only the attempt timeout
/// bounds a call.
pub struct Retry<S, R = HttpRetryOn> {
    inner: tower::retry::Retry<Attempts<R>, Attempt<S>>,
    deadline: Option<Duration>,
    budget: RetryBudget,
}

impl<S: Clone, R: Clone> Clone for Retry<S, R> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            deadline: self.deadline,
            budget: self.budget.clone(),
        }
    }
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for Retry<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner.get_ref().inner)
            .field("deadline", &self.deadline)
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
    fn call(&mut self, mut req: Req) -> Self::Future {
        if let Some(d) = self.deadline {
            let ours = Deadline::at(Instant::now() + d);
            // An earlier deadline from upstream wins.
            if req.deadline().is_none_or(|theirs| ours < theirs) {
                req.set_deadline(ours);
            }
        }
        self.inner.call(req)
    }
}

/// The response future of [`Retry`]: tower's, over our policy and attempts.
pub type ResponseFuture<S, R, Req> =
    tower::retry::future::ResponseFuture<Attempts<R>, Attempt<S>, Req>;

pin_project! {
    /// A call, with or without a timer. The timer is boxed: inline, a
    /// `Sleep` (about 100 bytes) made every call's future big enough that
    /// moving it cost more than the rest of the call, with or without a
    /// timeout configured.
    #[project = KindProj]
    enum Kind<F> {
        Open { #[pin] call: F },
        Bounded { #[pin] call: F, timer: Pin<Box<tokio::time::Sleep>> },
        // The deadline had passed before the attempt began: not sent.
        Expired,
    }
}

impl<F: Future> Kind<F> {
    /// Polls the call; `Err(())` when the timer fired first.
    #[inline]
    fn poll_call(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<F::Output, ()>> {
        match self.project() {
            KindProj::Open { call } => call.poll(cx).map(Ok),
            KindProj::Bounded { call, timer } => {
                if let Poll::Ready(output) = call.poll(cx) {
                    return Poll::Ready(Ok(output));
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Err(()))
            }
            KindProj::Expired => Poll::Ready(Err(())),
        }
    }
}

/// One attempt: the inner service with its error boxed, bounded by the
/// attempt timeout and by the deadline the request carries, whichever ends
/// first (the attempt fails with `tower::timeout::error::Elapsed`, which is
/// retried, or with [`DeadlineExceeded`], which is not). Written by hand
/// rather than stacking `tower::timeout::Timeout`: it must read the
/// request's deadline, and tower's `Either` needs both sides to have an
/// error type a `Layer` cannot name without the request type.
#[derive(Debug, Clone)]
pub struct Attempt<S> {
    inner: S,
    /// The attempt timeout in nanoseconds, 0 for none: 8 bytes instead of
    /// 16 in every response future.
    timeout: u64,
}

impl<S, Req> Service<Req> for Attempt<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: Replay,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AttemptFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let deadline = req.deadline();
        if self.timeout == 0 && deadline.is_none() {
            return AttemptFuture {
                kind: Kind::Open {
                    call: self.inner.call(req),
                },
                cut_by_deadline: false,
            };
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| d.instant() <= now) {
            // Sending it could only load the upstream with work nobody
            // waits for.
            return AttemptFuture {
                kind: Kind::Expired,
                cut_by_deadline: true,
            };
        }
        bounded(self.inner.call(req), now, self.timeout, deadline)
    }
}

/// An attempt with a timer: the attempt timeout or the deadline, whichever
/// ends first.
#[cold]
fn bounded<F>(call: F, now: Instant, timeout: u64, deadline: Option<Deadline>) -> AttemptFuture<F> {
    let by_timeout = (timeout != 0).then(|| now + Duration::from_nanos(timeout));
    let (at, cut_by_deadline) = match (by_timeout, deadline) {
        (Some(t), Some(d)) if d.instant() < t => (d.instant(), true),
        (Some(t), _) => (t, false),
        (None, Some(d)) => (d.instant(), true),
        (None, None) => unreachable!("bounded without a bound"),
    };
    AttemptFuture {
        kind: Kind::Bounded {
            call,
            timer: Box::pin(tokio::time::sleep_until(at)),
        },
        cut_by_deadline,
    }
}

pin_project! {
    /// The response future of one [`Attempt`].
    pub struct AttemptFuture<F> {
        #[pin]
        kind: Kind<F>,
        cut_by_deadline: bool,
    }
}

impl<F> fmt::Debug for AttemptFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptFuture").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for AttemptFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.kind.poll_call(cx)) {
            Ok(result) => result.map_err(Into::into),
            Err(()) if *this.cut_by_deadline => Err(DeadlineExceeded.into()),
            Err(()) => Err(tower::timeout::error::Elapsed::new().into()),
        })
    }
}
