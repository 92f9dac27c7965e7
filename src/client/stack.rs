//! The layers one call passes through, outermost first: one `ServiceBuilder`
//! chain.
//!
//! ```text
//! deadline    crate::deadline    merges the call's, the caller's and the client's deadlines; ends the call by them
//! retry       crate::retry       budget, backoff, Retry-After; reads each attempt's Outcome
//! throttle    crate::limit       client-side throttling while the service rejects (absent unless configured)
//! bulkhead    crate::limit       a fixed limit on attempts in flight, a bounded queue (absent unless configured)
//! adaptive    crate::limit       a limit that follows latency and drops (absent unless configured)
//! breaker     crate::circuit_breaker  the service's, fail fast (absent when configured off)
//! hedge       crate::retry       a second copy of a slow idempotent attempt, from the retry budget (absent unless configured)
//! balance     crate::balance     shared p2c over PeakEwma: readiness, "no endpoints", waiters, the wait's timeout
//! endpoint    crate::balance     each endpoint behind its ejecting breaker
//! transport   client/transport   hyper-util or a reqwest::Client; the attempt's timer; the body read; errors classified
//! ```
//!
//! The hedge sits right above the balancer, so its copy is an attempt like
//! any other: the balancer sends it to the less loaded of two instances
//! (the original counts in the load of the one serving it, so usually
//! another), that instance's breaker records it, and the transport times
//! it. Below the retry layer: the
//! latencies it learns are single attempts' (not retried calls' with their
//! backoff), a failed attempt is still retried above it, and both share the
//! retry layer's budget (which counts each call once). Below the service
//! breaker: a hedged attempt is one call to the service, so a hedge never
//! takes one of a half-open breaker's trial calls, never fails a call with
//! the breaker's rejection after its original was let through, and is
//! never sent while the breaker is open. Below the deadline layer, like
//! everything: the deadline ends the original and the hedge together.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::util::Either;
use tower::{Service, ServiceBuilder};

use super::call::Call;
use super::hedge::SharedHedge;
use super::source::Source;
use super::transport::EndpointTransport;
use crate::BoxError;
use crate::balance::{Balancer, SharedBalancer};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerService};
use crate::classify::HttpClassifier;
use crate::deadline::{DeadlineLayer, DeadlineService};
use crate::discovery::Endpoint;
use crate::limit::{FlowControl, Limited};
use crate::retry::{HedgeLayer, HedgePolicy, HttpRetryOn, Retry, RetryLayer};

/// How the balancer connects to a new endpoint.
pub(crate) type Connect = Box<dyn FnMut(&Endpoint) -> EndpointTransport + Send>;

/// The balancer every clone of a client shares.
pub(crate) type Balanced = SharedBalancer<Balancer<Source, Connect, HttpClassifier, Call>>;

/// The hedge over the balancer, one for every clone of the client.
type Hedged = SharedHedge<tower::hedge::Hedge<Balanced, HedgePolicy>>;

/// The balancer, hedged or not.
type Routed = Either<Hedged, Balanced>;

/// The service breaker over it, its error boxed (tower's `Either` needs
/// both sides to fail alike).
type Broken = BoxErrors<CircuitBreakerService<Routed, HttpClassifier>>;

/// Below flow control: the breaker, if any, over the balancer.
type Guarded = Either<Broken, Routed>;

/// The whole stack.
pub(crate) type Stack = DeadlineService<Retry<Limited<Guarded, HttpClassifier>, HttpRetryOn>>;

/// Stacks the layers over the shared balancer; a breaker or a hedge that is
/// `None` adds no layer.
pub(crate) fn stack(
    balanced: Balanced,
    deadline: DeadlineLayer,
    retry: RetryLayer<HttpRetryOn>,
    limits: FlowControl<HttpClassifier>,
    breaker: Option<CircuitBreaker>,
    hedge: Option<HedgeLayer<Call>>,
    classify: HttpClassifier,
) -> Stack {
    let guarded = ServiceBuilder::new()
        .option_layer(breaker.map(|b| {
            ServiceBuilder::new()
                .layer_fn(BoxErrors)
                .layer(b.layer().classify(classify))
        }))
        .option_layer(hedge.map(|h| ServiceBuilder::new().layer_fn(SharedHedge::new).layer(h)))
        .service(balanced);
    ServiceBuilder::new()
        .layer(deadline)
        .layer(retry)
        .service(limits.wrap(guarded))
}

/// A service with its error boxed. Not tower's `MapErr` with a function
/// pointer: a `fn(BreakerError<BoxError>) -> BoxError` in the call's future
/// type makes rustc fail to prove an axum handler awaiting the call `Send`
/// ("implementation of `FnOnce` is not general enough",
/// rust-lang/rust#64552), and a boxed future to hide it cost an allocation
/// and a copy of the whole stack's future on every call.
#[derive(Clone, Debug)]
pub(crate) struct BoxErrors<S>(pub(crate) S);

impl<S, R> Service<R> for BoxErrors<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxErrorsFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        BoxErrorsFuture {
            inner: self.0.call(request),
        }
    }
}

pin_project! {
    /// The future of [`BoxErrors`].
    #[derive(Debug)]
    pub(crate) struct BoxErrorsFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for BoxErrorsFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}
