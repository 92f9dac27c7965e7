//! The layers one call passes through, outermost first: one `ServiceBuilder`
//! chain.
//!
//! ```text
//! deadline    crate::deadline    merges the call's, the caller's and the client's deadlines; ends the call by them
//! retry       crate::retry       budget, backoff, Retry-After; reads each attempt's Outcome
//! breaker     crate::circuit_breaker  the service's, fail fast (absent when configured off)
//! balance     crate::balance     shared p2c over PeakEwma: readiness, "no endpoints", waiters, the wait's timeout
//! endpoint    crate::balance     each endpoint behind its ejecting breaker
//! transport   client/transport   hyper-util or a reqwest::Client; the attempt's timer; the body read; errors classified
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::util::Either;
use tower::{Service, ServiceBuilder};

use super::call::Call;
use super::source::Source;
use super::transport::EndpointTransport;
use crate::BoxError;
use crate::balance::{Balancer, SharedBalancer};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerService};
use crate::classify::HttpClassifier;
use crate::deadline::{DeadlineLayer, DeadlineService};
use crate::discovery::Endpoint;
use crate::retry::{HttpRetryOn, Retry, RetryLayer};

/// How the balancer connects to a new endpoint.
pub(crate) type Connect = Box<dyn FnMut(&Endpoint) -> EndpointTransport + Send>;

/// The balancer every clone of a client shares.
pub(crate) type Balanced = SharedBalancer<Balancer<Source, Connect, HttpClassifier, Call>>;

/// The service breaker over the balancer, its error boxed (tower's
/// `Either` needs both sides to fail alike).
type Broken = BoxErrors<CircuitBreakerService<Balanced, HttpClassifier>>;

/// The whole stack.
pub(crate) type Stack = DeadlineService<Retry<Either<Broken, Balanced>, HttpRetryOn>>;

/// Stacks the layers over the shared balancer.
pub(crate) fn stack(
    balanced: Balanced,
    deadline: DeadlineLayer,
    retry: RetryLayer<HttpRetryOn>,
    breaker: Option<CircuitBreaker>,
    classify: HttpClassifier,
) -> Stack {
    ServiceBuilder::new()
        .layer(deadline)
        .layer(retry)
        .option_layer(breaker.map(|b| {
            ServiceBuilder::new()
                .layer_fn(BoxErrors)
                .layer(b.layer().classify(classify))
        }))
        .service(balanced)
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
