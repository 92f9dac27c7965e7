//! [`Balancer`]: tower's p2c balancer over the endpoints, as one service.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::TryStream;
use futures_util::future::MapErr;
use pin_project_lite::pin_project;
use tower::Service;
use tower::balance::p2c::Balance;
use tower::load::CompleteOnResponse;
use tower::load::completion::TrackCompletionFuture;
use tower::load::peak_ewma::Handle;

use super::endpoints::{ConnectEndpoint, Endpoints};
use crate::BoxError;
use crate::circuit_breaker::BreakerError;
use crate::circuit_breaker::future::ResponseFuture as BreakerFuture;
use crate::classify::Classify;
use crate::discovery::{Change, Endpoint};

/// The balancer [`balance`](super::balance) builds: a `tower::Service`
/// that sends each request to one of the endpoints discovery yields,
/// picked by power of two choices (`tower::balance::p2c`) over their
/// ranked load.
///
/// It is not `Clone`: share it behind `tower::buffer::Buffer` (or a lock).
/// `poll_ready` is `Pending` while no endpoint is ready.
pub struct Balancer<D, F, C, Req>
where
    D: TryStream<Ok = Change>,
    F: ConnectEndpoint,
    C: Clone,
{
    inner: Balance<Endpoints<D, F, C>, Req>,
}

impl<D, F, C, Req> fmt::Debug for Balancer<D, F, C, Req>
where
    D: TryStream<Ok = Change>,
    F: ConnectEndpoint,
    C: Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer").finish_non_exhaustive()
    }
}

impl<D, F, C, S, Req> Balancer<D, F, C, Req>
where
    D: futures_core::Stream<Item = Result<Change, Infallible>>,
    F: FnMut(&Endpoint) -> S,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    pub(super) fn new(endpoints: Endpoints<D, F, C>) -> Self {
        Balancer {
            inner: Balance::new(endpoints),
        }
    }

    /// How many endpoints the balancer holds, ready or not (ejected ones
    /// included). Discovery changes are taken in by `poll_ready`.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the balancer holds no endpoint.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl<D, F, C, S, Req> Service<Req> for Balancer<D, F, C, Req>
where
    D: futures_core::Stream<Item = Result<Change, Infallible>> + Unpin,
    F: FnMut(&Endpoint) -> S,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, S::Error>;

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

/// What p2c's future is made of: the endpoint's breaker future, timed by
/// PeakEwma, its error boxed.
type Inner<F, C, E> = MapErr<
    TrackCompletionFuture<BreakerFuture<F, C>, CompleteOnResponse, Handle>,
    fn(BreakerError<E>) -> BoxError,
>;

pin_project! {
    /// The response future of a [`Balancer`]: the endpoint's answer, or
    /// its error (the endpoint service's, or the endpoint breaker's
    /// [`CircuitOpen`](crate::circuit_breaker::CircuitOpen)) as a
    /// [`BoxError`].
    pub struct ResponseFuture<F, C, E> {
        #[pin]
        inner: Inner<F, C, E>,
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
        self.project().inner.poll(cx)
    }
}
