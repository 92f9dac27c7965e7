//! How the balancer ranks endpoints: [`EndpointLoad`], the load of a
//! [`Ranked`] endpoint.
//!
//! PeakEwma alone times failed calls like good ones, so an endpoint that
//! fails at once looks cheap. The load therefore puts an endpoint that can
//! answer before the call's deadline first (when the call has one), then
//! an endpoint whose breaker wants a probe, then ranks by recent
//! consecutive failures (from the breaker's [`Health`]), and only then by
//! PeakEwma's cost (`ewma.rs`).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::Service;

use super::endpoints::EndpointService;
use super::ewma::{Handle, Rtt};
use crate::BoxError;
use crate::circuit_breaker::future::ResponseFuture as BreakerFuture;
use crate::circuit_breaker::{CircuitBreaker, Health};
use crate::classify::Classify;

/// An endpoint's load as the balancer ranks it: an endpoint that can answer
/// in time first, then one whose probe is due, then recent consecutive
/// failures, then the PeakEwma cost (latency × requests in flight).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EndpointLoad {
    /// The call has a deadline, and the endpoint's latency estimate, learnt
    /// from its responses, is longer than the time left: it ranks behind
    /// every endpoint that is not, and the pick never sends to it
    /// (`p2c.rs`).
    pub(crate) late: bool,
    /// The endpoint's breaker wants a probe: half-open, or open with its
    /// open period over. It ranks ahead of every other, or its failures
    /// and its latency estimate (raised by the failures that ejected it)
    /// would keep the probe from ever being sent while a healthier
    /// endpoint is ready, and the endpoint would stay out.
    pub(crate) probe_due: bool,
    /// Failures since the endpoint's last success, if the last one is
    /// younger than the failure penalty; else 0 (capped at 2^16).
    pub(crate) failures: u32,
    /// PeakEwma's cost: the latency estimate (nanoseconds) times the
    /// requests in flight plus one.
    pub(crate) cost: f64,
}

impl PartialOrd for EndpointLoad {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        // Late is the greater load, a due probe the lesser.
        match (self.late, other.probe_due).cmp(&(other.late, self.probe_due)) {
            std::cmp::Ordering::Equal => {
                (self.failures, self.cost).partial_cmp(&(other.failures, other.cost))
            }
            order => Some(order),
        }
    }
}

/// An endpoint service with its PeakEwma estimate, ranked by
/// [`EndpointLoad`].
pub(crate) struct Ranked<S, C> {
    // Boxed: the ready set moves a service when it goes pending and back,
    // and the last ready one into an evicted one's place; a pointer, not
    // the whole stack. It also keeps the ready vector's entries small for
    // the pick, which reads two of them at random.
    inner: Box<EndpointService<S, C>>,
    rtt: Arc<Rtt>,
    // The endpoint's breaker health, read without chasing the handle's
    // `Arc` on every ranking; `breaker` keeps it owned while this lives.
    health: Health,
    breaker: CircuitBreaker,
    penalty: u64,
    /// When the next request is sent (biased nanoseconds): the pick's clock
    /// read, set by the balancer right before `call`.
    sent_at: u64,
}

impl<S, C> Ranked<S, C> {
    /// `svc` with a PeakEwma estimate (first `default_rtt`, decaying over
    /// `decay_ns`), ranked by `breaker`'s health; a failure counts against
    /// it for `penalty`.
    pub(super) fn new(
        svc: EndpointService<S, C>,
        breaker: CircuitBreaker,
        default_rtt: Duration,
        decay_ns: f64,
        penalty: Duration,
    ) -> Self {
        Ranked {
            inner: Box::new(svc),
            rtt: Rtt::new(default_rtt, decay_ns),
            health: breaker.health(),
            breaker,
            penalty: penalty.as_nanos().min(u64::MAX as u128) as u64,
            sent_at: 0,
        }
    }

    /// The endpoint's breaker.
    pub(super) fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The load at `now` (biased nanoseconds), for a call with `within`
    /// nanoseconds left before its deadline, if it has one.
    #[inline]
    pub(super) fn load_at(&self, now: u64, within: Option<u64>) -> EndpointLoad {
        let reading = self.rtt.at(now);
        let pending = Arc::strong_count(&self.rtt) - 1;
        EndpointLoad {
            // An estimate that is still the first guess admits: a new
            // endpoint is not kept out by `default_rtt`.
            late: reading.sampled && within.is_some_and(|w| reading.rtt_ns > w as f64),
            probe_due: self.health.probe_due(),
            failures: self.health.recent_failures(self.penalty).min(1 << 16) as u32,
            cost: reading.rtt_ns * (pending + 1) as f64,
        }
    }

    /// Whether the endpoint's breaker turns calls away now (open, its open
    /// period not over).
    #[inline]
    pub(super) fn rejects(&self) -> bool {
        self.health.rejects()
    }

    /// The next request is sent at `now`.
    #[inline]
    pub(super) fn sending_at(&mut self, now: u64) {
        self.sent_at = now;
    }
}

impl<S, C> fmt::Debug for Ranked<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ranked")
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for Ranked<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<super::endpoints::LimitedFuture<S::Future>, C, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(BoxError::from)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            handle: Some(Handle::new(self.rtt.clone(), self.sent_at)),
            _error: PhantomData,
        }
    }
}

pin_project! {
    /// The response future of a [`Balancer`](super::Balancer): the
    /// endpoint's answer, or its error (the endpoint service's, or the
    /// endpoint breaker's [`CircuitOpen`](crate::circuit_breaker::CircuitOpen))
    /// as a [`BoxError`]; its round trip feeds the endpoint's latency
    /// estimate.
    pub struct ResponseFuture<F, C, E> {
        #[pin]
        inner: BreakerFuture<F, C>,
        // Samples the round trip when dropped: at the answer, or when the
        // request is given up.
        handle: Option<Handle>,
        _error: PhantomData<fn() -> E>,
    }
}

impl<F, C, E> fmt::Debug for ResponseFuture<F, C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C, E>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        // The round trip ends here, failed or not (as tower's PeakEwma).
        drop(this.handle.take());
        Poll::Ready(result.map_err(BoxError::from))
    }
}
