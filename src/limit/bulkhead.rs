//! [`Bulkhead`]: a fixed concurrency limit with a bounded, timed queue.

use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tower::{Layer, Service};

use super::BulkheadConfig;
use super::admission::Admission;
use super::future::ResponseFuture;
use super::metrics::LimitMetrics;
use super::permits::Permits;
use crate::BoxError;

/// Applies a [`Bulkhead`]: one limit shared by every service the layer
/// wraps (and by their clones).
///
/// ```
/// use meshguard::limit::{BulkheadConfig, BulkheadLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), meshguard::BoxError> {
/// let config = BulkheadConfig::builder().max_concurrent(2).build()?;
/// let svc = ServiceBuilder::new()
///     .layer(BulkheadLayer::new("users", config))
///     .service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x + 1) });
/// assert_eq!(svc.oneshot(1).await?, 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    permits: Permits,
    config: BulkheadConfig,
    metrics: LimitMetrics,
}

impl BulkheadLayer {
    /// A bulkhead named `name` (the `service` label of its metrics).
    pub fn new(name: &str, config: BulkheadConfig) -> Self {
        BulkheadLayer {
            shared: Arc::new(Shared {
                permits: Permits::new(config.max_concurrent()),
                config,
                metrics: LimitMetrics::new(name, "bulkhead"),
            }),
        }
    }

    /// Calls in flight now, through every service of this layer.
    pub fn in_flight(&self) -> usize {
        self.shared.permits.in_flight()
    }

    /// Calls waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.shared.permits.queued()
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Bulkhead<S> {
        Bulkhead {
            inner,
            shared: self.shared.clone(),
            state: Admission::default(),
        }
    }
}

/// At most `max_concurrent` calls in flight to the wrapped service, up to
/// `max_queue` more waiting (in `poll_ready`) at most `max_wait` for a
/// slot; any other call fails at once with
/// [`LimitExceeded`](super::LimitExceeded) (reason
/// [`QueueFull`](super::LimitReason::QueueFull) or
/// [`QueueTimeout`](super::LimitReason::QueueTimeout)). A slot is held from
/// `poll_ready` until the response future completes or is dropped, and
/// given straight to a waiter.
///
/// A refusal is a ready service whose `call` returns the error, as tower's
/// `LoadShed` does, so callers above see it as one failed call rather than
/// a broken service.
#[derive(Debug)]
pub struct Bulkhead<S> {
    inner: S,
    shared: Arc<Shared>,
    state: Admission,
}

impl<S: Clone> Clone for Bulkhead<S> {
    /// A clone shares the limit, not this handle's slot.
    fn clone(&self) -> Self {
        Bulkhead {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            state: Admission::default(),
        }
    }
}

impl<S, Req> Service<Req> for Bulkhead<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let shared = &self.shared;
        ready!(self.state.poll(
            &shared.permits,
            shared.config.max_queue(),
            shared.config.max_wait(),
            cx
        ));
        if self.state.is_admitted() {
            self.inner.poll_ready(cx).map_err(Into::into)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self.state.take() {
            Ok(permit) => ResponseFuture::admitted(self.inner.call(request), permit),
            Err(refused) => {
                self.shared.metrics.refused(refused.reason());
                ResponseFuture::refused(refused)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;
    use tower::ServiceExt;

    use super::*;
    use crate::limit::{LimitExceeded, LimitReason};

    fn gated() -> (
        impl Service<oneshot::Receiver<()>, Response = (), Error = BoxError, Future: Send> + Clone,
        BulkheadLayer,
    ) {
        let config = BulkheadConfig::builder()
            .max_concurrent(1)
            .max_queue(1)
            .max_wait(Duration::from_millis(100))
            .build()
            .unwrap();
        let layer = BulkheadLayer::new("test", config);
        let svc = layer.layer(tower::service_fn(|rx: oneshot::Receiver<()>| async move {
            let _ = rx.await;
            Ok::<_, BoxError>(())
        }));
        (svc, layer)
    }

    fn reason(e: BoxError) -> LimitReason {
        e.downcast_ref::<LimitExceeded>()
            .expect("a LimitExceeded")
            .reason()
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_beyond_the_slots_and_the_queue_is_refused_at_once() {
        let (svc, layer) = gated();
        let (_tx1, rx1) = oneshot::channel();
        let (_tx2, rx2) = oneshot::channel();
        let first = tokio::spawn(svc.clone().oneshot(rx1));
        let second = tokio::spawn(svc.clone().oneshot(rx2));
        tokio::task::yield_now().await;
        assert_eq!((layer.in_flight(), layer.queued()), (1, 1));
        let start = tokio::time::Instant::now();
        let third = svc.clone().oneshot(oneshot::channel().1).await.unwrap_err();
        assert_eq!(reason(third), LimitReason::QueueFull);
        assert_eq!(start.elapsed(), Duration::ZERO);
        first.abort();
        second.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_call_runs_when_a_slot_is_freed() {
        let (svc, layer) = gated();
        let (tx1, rx1) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        let first = tokio::spawn(svc.clone().oneshot(rx1));
        let second = tokio::spawn(svc.clone().oneshot(rx2));
        tokio::task::yield_now().await;
        tx1.send(()).unwrap();
        first.await.unwrap().unwrap();
        tokio::task::yield_now().await;
        assert_eq!((layer.in_flight(), layer.queued()), (1, 0));
        tx2.send(()).unwrap();
        second.await.unwrap().unwrap();
        assert_eq!(layer.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_call_is_refused_after_the_maximum_wait() {
        let (svc, _layer) = gated();
        let (_tx1, rx1) = oneshot::channel();
        let first = tokio::spawn(svc.clone().oneshot(rx1));
        tokio::task::yield_now().await;
        let start = tokio::time::Instant::now();
        let e = svc.clone().oneshot(oneshot::channel().1).await.unwrap_err();
        assert_eq!(reason(e), LimitReason::QueueTimeout);
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        first.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_response_future_gives_its_slot_back() {
        let (svc, layer) = gated();
        let (_tx, rx) = oneshot::channel();
        let mut one = svc.clone();
        let fut = one.ready().await.unwrap().call(rx);
        assert_eq!(layer.in_flight(), 1);
        drop(fut);
        assert_eq!(layer.in_flight(), 0);
    }
}
