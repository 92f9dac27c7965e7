//! [`AdaptiveLimit`]: a concurrency limit that follows the measured
//! latency and drops.

mod config;
mod controller;
mod future;
mod window;

pub use config::{AdaptiveLimitConfig, AdaptiveLimitConfigBuilder, LimitAlgorithm};
pub use future::AdaptiveFuture;

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::permits::Permit;
use super::{LimitExceeded, LimitReason};
use crate::BoxError;
use crate::classify::{Classify, ErrorsAreFailures};
use controller::Controller;

/// Applies an [`AdaptiveLimit`]: one limit shared by every service the
/// layer wraps (and their clones).
///
/// ```
/// use meshguard::classify::HttpClassifier;
/// use meshguard::limit::{AdaptiveLimitConfig, AdaptiveLimitLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), meshguard::BoxError> {
/// let limit = AdaptiveLimitLayer::new("users", AdaptiveLimitConfig::default())
///     .classify(HttpClassifier::default());
/// let svc = ServiceBuilder::new()
///     .layer(limit.clone())
///     .service_fn(|_: ()| async { Ok::<_, std::io::Error>(http::Response::new(())) });
/// let response = svc.oneshot(()).await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(limit.limit(), 3); // measuring the minimum latency first
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveLimitLayer<C = ErrorsAreFailures> {
    controller: Arc<Controller>,
    classify: C,
}

impl AdaptiveLimitLayer {
    /// An adaptive limit named `name` (the `service` label of its metrics
    /// and events), judging results with [`ErrorsAreFailures`].
    pub fn new(name: &str, config: AdaptiveLimitConfig) -> Self {
        AdaptiveLimitLayer {
            controller: Arc::new(Controller::new(name, config)),
            classify: ErrorsAreFailures,
        }
    }
}

impl<C> AdaptiveLimitLayer<C> {
    /// Judges results with `classify` (for HTTP,
    /// [`HttpClassifier`](crate::classify::HttpClassifier), so a 429 or a
    /// 503 is a drop).
    pub fn classify<C2>(self, classify: C2) -> AdaptiveLimitLayer<C2> {
        AdaptiveLimitLayer {
            controller: self.controller,
            classify,
        }
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.controller.limit()
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.controller.core().permits.in_flight()
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveLimitLayer<C> {
    type Service = AdaptiveLimit<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimit {
            inner,
            controller: self.controller.clone(),
            classify: self.classify.clone(),
            state: State::default(),
        }
    }
}

/// A concurrency limit that moves with the service's latency and its
/// overload signals ([`LimitAlgorithm`]): a call beyond it fails at once
/// with [`LimitExceeded`] (reason
/// [`ConcurrencyLimit`](LimitReason::ConcurrencyLimit)); nothing queues,
/// so a refused caller learns it in well under a millisecond.
///
/// Each call's latency (from `call` to its response) and outcome, judged
/// by the classifier, feed the limit: successes are latency samples,
/// [overload outcomes](crate::classify::Outcome::is_overload) are drops,
/// other failures are ignored (a refused connection's speed says nothing
/// about capacity). The limit is recomputed once per window.
#[derive(Debug)]
pub struct AdaptiveLimit<S, C = ErrorsAreFailures> {
    inner: S,
    controller: Arc<Controller>,
    classify: C,
    state: State,
}

/// Between `poll_ready` and `call`: the slot and the calls in flight with
/// it, or a refusal. Separate words, not one enum, so that `call` reads
/// each as `poll_ready` wrote it (see `permits::Admission` for the stall
/// that avoids).
#[derive(Debug, Default)]
struct State {
    permit: Option<Permit>,
    in_flight: usize,
    refused: bool,
}

impl<S: Clone, C: Clone> Clone for AdaptiveLimit<S, C> {
    /// A clone shares the limit, not this handle's slot.
    fn clone(&self) -> Self {
        AdaptiveLimit {
            inner: self.inner.clone(),
            controller: self.controller.clone(),
            classify: self.classify.clone(),
            state: State::default(),
        }
    }
}

impl<S, C, Req> Service<Req> for AdaptiveLimit<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AdaptiveFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let state = &mut self.state;
        if state.permit.is_none() && !state.refused {
            match self.controller.core().permits.try_acquire_counted() {
                Some((permit, in_flight)) => {
                    state.permit = Some(permit);
                    state.in_flight = in_flight;
                }
                None => state.refused = true,
            }
        }
        if state.permit.is_some() {
            self.inner.poll_ready(cx).map_err(Into::into)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        if let Some(permit) = self.state.permit.take() {
            return AdaptiveFuture::admitted(
                self.inner.call(request),
                permit,
                self.state.in_flight,
                self.controller.handle(),
                self.classify.clone(),
            );
        }
        if !std::mem::take(&mut self.state.refused) {
            panic!("AdaptiveLimit::call without poll_ready returning Ready");
        }
        self.controller
            .metrics()
            .refused(LimitReason::ConcurrencyLimit);
        AdaptiveFuture::refused(LimitExceeded::new(LimitReason::ConcurrencyLimit))
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_adaptive_limit_made_after_one_is_dropped_starts_afresh() {
        let aimd = AdaptiveLimitConfig::builder()
            .algorithm(LimitAlgorithm::Aimd)
            .initial_limit(10)
            .build()
            .unwrap();
        let old = AdaptiveLimitLayer::new("old", aimd);
        let svc = old.layer(tower::service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
        svc.clone().oneshot(()).await.unwrap();
        assert_eq!(old.limit(), 10);
        drop((old, svc));
        // Possibly the dropped one's core, reused: the gradient's limit
        // starts at the probe limit.
        let new = AdaptiveLimitLayer::new("new", AdaptiveLimitConfig::default());
        assert_eq!((new.limit(), new.in_flight()), (3, 0));
    }
}
