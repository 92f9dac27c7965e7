//! The client's hedge: a [`HedgeLayer`](crate::retry::HedgeLayer)'s
//! service, shared by every clone of the client.
//!
//! tower's `Hedge` is not `Clone` (its latency histogram is made by its
//! constructor, and nothing else can share it), while a client clones its
//! stack for every call. So the client keeps one `Hedge` behind a lock,
//! taken only to start a call (the hedge's `call` starts the original and
//! arms the hedge's timer, it sends nothing), and boxes the hedge's future:
//! it holds two of the balancer's futures and a timer, and a client without
//! hedging should not move a future that large on every call.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tower::Service;

use crate::BoxError;

/// `H`, shared by every clone: the lock is taken by `poll_ready` and by
/// `call`, never while a call runs. `H` must be ready whenever asked (the
/// hedge over the shared balancer is: the balancer takes its readiness in
/// its call's future), since another clone may start a call between one
/// clone's `poll_ready` and its `call`.
pub(crate) struct SharedHedge<H> {
    inner: Arc<Mutex<H>>,
}

impl<H> SharedHedge<H> {
    pub(crate) fn new(hedge: H) -> Self {
        SharedHedge {
            inner: Arc::new(Mutex::new(hedge)),
        }
    }
}

impl<H> Clone for SharedHedge<H> {
    fn clone(&self) -> Self {
        SharedHedge {
            inner: self.inner.clone(),
        }
    }
}

impl<H> fmt::Debug for SharedHedge<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedHedge").finish_non_exhaustive()
    }
}

impl<H, Req> Service<Req> for SharedHedge<H>
where
    H: Service<Req, Error = BoxError>,
{
    type Response = H::Response;
    type Error = BoxError;
    type Future = Pin<Box<H::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let future = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .call(req);
        Box::pin(future)
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    /// A service that is not `Clone`, counting its calls.
    struct Counting(usize);

    impl Service<()> for Counting {
        type Response = usize;
        type Error = BoxError;
        type Future = std::future::Ready<Result<usize, BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, (): ()) -> Self::Future {
            self.0 += 1;
            std::future::ready(Ok(self.0))
        }
    }

    #[tokio::test]
    async fn clones_share_one_service() {
        let a = SharedHedge::new(Counting(0));
        let b = a.clone();
        assert_eq!(a.clone().oneshot(()).await.unwrap(), 1);
        assert_eq!(b.oneshot(()).await.unwrap(), 2);
        assert_eq!(a.oneshot(()).await.unwrap(), 3);
    }
}
