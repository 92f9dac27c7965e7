//! [`Balancer`]: the p2c pick over the endpoints (`p2c.rs`), as one service.

use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};

use futures_core::TryStream;
use tokio::time::Instant;
use tower::Service;

use super::endpoints::{ConnectEndpoint, Endpoints};
use super::p2c::{Drained, P2c, Pick};
use crate::BoxError;
use crate::classify::Classify;
use crate::discovery::{Change, Endpoint};

pub use super::load::ResponseFuture;

/// The balancer [`balance`](super::balance) builds: a `tower::Service`
/// that sends each request to one of the endpoints discovery yields,
/// picked by power of two choices (adapted from tower's p2c, over the
/// endpoints' own ready set) over their ranked load.
///
/// It is not `Clone`: share it behind `tower::buffer::Buffer` (or a lock).
/// `poll_ready` is `Pending` while no endpoint is ready.
pub struct Balancer<D, F, C, Req>
where
    D: TryStream<Ok = Change>,
    F: ConnectEndpoint,
{
    p2c: P2c<Endpoints<D, F, C>, F::Service, C, Req>,
}

impl<D, F, C, Req> fmt::Debug for Balancer<D, F, C, Req>
where
    D: TryStream<Ok = Change>,
    F: ConnectEndpoint,
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
            p2c: P2c::new(endpoints),
        }
    }

    /// How many endpoints the balancer holds, ready or not (ejected ones
    /// included). Discovery changes are taken in by `poll_ready` (every
    /// change ready, not a batch per call); a client's balancer also takes
    /// them in as they come, calls or not.
    pub fn len(&self) -> usize {
        self.p2c.len()
    }

    /// Whether the balancer holds no endpoint.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<D, F, C, S, Req> Balancer<D, F, C, Req>
where
    D: futures_core::Stream<Item = Result<Change, Infallible>> + Unpin,
    F: FnMut(&Endpoint) -> S,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    /// `poll_ready` for a call that must be answered by `deadline`: only an
    /// endpoint whose latency estimate fits in the time left is chosen;
    /// [`Pick::TooSlow`] when endpoints are ready but none fits. Discovery
    /// is not polled here: [`drain`](Self::drain) takes its changes in.
    pub(crate) fn poll_pick(
        &mut self,
        cx: &mut Context<'_>,
        deadline: Option<Instant>,
    ) -> Poll<Pick> {
        self.p2c.pick(cx, deadline.map(crate::clock::nanos))
    }

    /// Takes in every change discovery has ready, `cx` woken on the next.
    pub(crate) fn drain(&mut self, cx: &mut Context<'_>) -> Drained {
        self.p2c.drain(cx)
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
    type Future = ResponseFuture<super::endpoints::LimitedFuture<S::Future>, C, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Without a deadline every ready endpoint fits.
        self.p2c.poll_pick(cx, None).map(|_| Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.p2c.call(req)
    }
}
