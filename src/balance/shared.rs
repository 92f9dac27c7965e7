//! The balancer shared by every clone of a client: a short lock around the
//! p2c pick, waiters woken in turn, a bounded wait, and "no endpoints" as
//! an error rather than an endless wait.
#![cfg_attr(not(feature = "client"), allow(dead_code))]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::BoxError;

/// Discovery knows no endpoint of the service: a call to a
/// [`Balancer`](super::Balancer) shared by a client found none once
/// discovery had answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoEndpoints;

impl fmt::Display for NoEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no endpoints available")
    }
}

impl std::error::Error for NoEndpoints {}

/// A request that can carry when its attempt must end. Set only by a call
/// that had to wait for an endpoint: the endpoint's transport then times
/// the attempt from its start, not from the send.
pub(crate) trait AttemptEnds {
    /// The attempt waited for an endpoint and must end at `at`.
    fn set_attempt_end(&mut self, at: Instant);
}

/// The balancer's length, for [`SharedBalancer`].
pub(crate) trait Len {
    fn len(&self) -> usize;
}

impl<D, F, C, S, Req> Len for super::Balancer<D, F, C, Req>
where
    D: futures_core::Stream<Item = Result<crate::discovery::Change, std::convert::Infallible>>,
    F: FnMut(&crate::discovery::Endpoint) -> S,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: crate::classify::Classify<S::Response, S::Error> + Clone,
{
    fn len(&self) -> usize {
        super::Balancer::len(self)
    }
}

/// The balancer, shared by every clone of a client: a call takes the lock
/// only to pick an endpoint and start the request on it (`poll_ready` and
/// `call` together, so no other caller can take the readiness in
/// between), then runs unlocked.
///
/// Why not tower's `Buffer`, the usual way to share a service that is not
/// `Clone`: it hands every request to a worker task and the response
/// future back through a channel, a task switch and several allocations
/// per call; measured in `benches/client.rs`, the lock costs less (the
/// critical section is the p2c pick, well under a microsecond).
///
/// Fails calls at once with [`NoEndpoints`] when discovery has answered and
/// the balancer holds no endpoint (tower's balancer would wait for one
/// forever). Not ready is not failed: a call waits while endpoints exist
/// but none is ready (all ejected and probing).
pub(crate) struct SharedBalancer<S> {
    shared: Arc<Locked<S>>,
    /// The attempt timeout, which also bounds the wait for an endpoint.
    timeout: Option<Duration>,
}

struct Locked<S> {
    inner: std::sync::Mutex<S>,
    settled: Arc<AtomicBool>,
    /// Callers waiting for an endpoint to be ready. p2c remembers only the
    /// last caller's waker, so whoever it wakes passes the wake on to these
    /// once it has taken the readiness (or gives up).
    waiters: std::sync::Mutex<Vec<std::task::Waker>>,
    waiting: std::sync::atomic::AtomicUsize,
}

impl<S> Clone for SharedBalancer<S> {
    fn clone(&self) -> Self {
        SharedBalancer {
            shared: self.shared.clone(),
            timeout: self.timeout,
        }
    }
}

impl<S> fmt::Debug for SharedBalancer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBalancer").finish_non_exhaustive()
    }
}

impl<S> SharedBalancer<S> {
    pub(crate) fn new(inner: S, settled: Arc<AtomicBool>, timeout: Option<Duration>) -> Self {
        SharedBalancer {
            timeout,
            shared: Arc::new(Locked {
                inner: std::sync::Mutex::new(inner),
                settled,
                waiters: std::sync::Mutex::new(Vec::new()),
                waiting: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }
}

impl<S> Locked<S> {
    fn wait(&self, waker: &std::task::Waker) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
            self.waiting.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Wakes every waiting caller; the common path is one atomic load.
    #[inline]
    fn wake_waiters(&self) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let waiters = {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            self.waiting.store(0, Ordering::Release);
            std::mem::take(&mut *w)
        };
        waiters.into_iter().for_each(std::task::Waker::wake);
    }
}

impl<S, Req> Service<Req> for SharedBalancer<S>
where
    S: Service<Req, Error = BoxError> + Len,
    Req: AttemptEnds,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SharedFuture<S, Req>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is taken with the lock, when the call's future first runs.
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        SharedFuture {
            state: SharedState::Picking {
                shared: self.shared.clone(),
                req: Some(req),
                waited: false,
                timeout: self.timeout,
                timer: None,
            },
        }
    }
}

pin_project! {
    /// The future of [`SharedBalancer`].
    pub(crate) struct SharedFuture<S: Service<Req>, Req> {
        #[pin]
        state: SharedState<S, Req>,
    }

    impl<S: Service<Req>, Req> PinnedDrop for SharedFuture<S, Req> {
        fn drop(this: Pin<&mut Self>) {
            // Cancelled while waiting: the wake p2c meant for us may have
            // been ours to pass on.
            if let SharedProj::Picking { shared, waited: true, .. } = this.project().state.project() {
                shared.wake_waiters();
            }
        }
    }
}

pin_project! {
    #[project = SharedProj]
    enum SharedState<S: Service<Req>, Req> {
        Picking {
            shared: Arc<Locked<S>>,
            req: Option<Req>,
            waited: bool,
            timeout: Option<Duration>,
            // Armed only when the call has to wait: the attempt timeout.
            timer: Option<Pin<Box<Sleep>>>,
        },
        Called { #[pin] inner: S::Future },
    }
}

impl<S, Req> fmt::Debug for SharedFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedFuture").finish_non_exhaustive()
    }
}

impl<S, Req> Future for SharedFuture<S, Req>
where
    S: Service<Req, Error = BoxError> + Len,
    Req: AttemptEnds,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let inner = match this.state.as_mut().project() {
                SharedProj::Called { inner } => return inner.poll(cx),
                SharedProj::Picking {
                    shared,
                    req,
                    waited,
                    timeout,
                    timer,
                } => {
                    let mut lb = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
                    match lb.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            let fut = lb.call(req.take().expect("polled after completion"));
                            drop(lb);
                            if std::mem::take(waited) {
                                shared.wake_waiters();
                            }
                            fut
                        }
                        Poll::Ready(Err(e)) => {
                            drop(lb);
                            shared.wake_waiters();
                            *waited = false;
                            return Poll::Ready(Err(e));
                        }
                        Poll::Pending
                            if lb.len() == 0 && shared.settled.load(Ordering::Acquire) =>
                        {
                            drop(lb);
                            *waited = false;
                            // Every other waiter learns it too: the balancer
                            // woke only the last of them.
                            shared.wake_waiters();
                            // Fails without touching a tokio resource.
                            ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                            return Poll::Ready(Err(NoEndpoints.into()));
                        }
                        Poll::Pending => {
                            // Listed before the lock is released: a caller
                            // that takes the readiness after us will see us.
                            shared.wait(cx.waker());
                            drop(lb);
                            *waited = true;
                            if timer.is_none() {
                                if let Some(end) =
                                    timeout.and_then(|t| Instant::now().checked_add(t))
                                {
                                    if let Some(req) = req.as_mut() {
                                        req.set_attempt_end(end);
                                    }
                                    *timer = Some(Box::pin(tokio::time::sleep_until(end)));
                                }
                            }
                            if let Some(t) = timer {
                                if t.as_mut().poll(cx).is_ready() {
                                    *waited = false;
                                    shared.wake_waiters();
                                    return Poll::Ready(Err(
                                        tower::timeout::error::Elapsed::new().into()
                                    ));
                                }
                            }
                            return Poll::Pending;
                        }
                    }
                }
            };
            this.state.set(SharedState::Called { inner });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::task::Waker;

    use super::*;

    /// A request that records when its attempt must end.
    #[derive(Default)]
    struct Req(Option<Instant>);

    impl AttemptEnds for Req {
        fn set_attempt_end(&mut self, at: Instant) {
            self.0 = Some(at);
        }
    }

    /// A balancer stand-in that, like p2c, remembers only the last waker.
    #[derive(Clone, Default)]
    struct Mock {
        state: Arc<Mutex<MockState>>,
    }

    #[derive(Default)]
    struct MockState {
        ready: bool,
        len: usize,
        waker: Option<Waker>,
        seen: Vec<Option<Instant>>,
    }

    impl Mock {
        fn set(&self, ready: bool, len: usize) {
            let mut s = self.state.lock().unwrap();
            (s.ready, s.len) = (ready, len);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }

    impl Len for Mock {
        fn len(&self) -> usize {
            self.state.lock().unwrap().len
        }
    }

    impl Service<Req> for Mock {
        type Response = &'static str;
        type Error = BoxError;
        type Future = std::future::Ready<Result<&'static str, BoxError>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            let mut s = self.state.lock().unwrap();
            if s.ready {
                Poll::Ready(Ok(()))
            } else {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }

        fn call(&mut self, req: Req) -> Self::Future {
            self.state.lock().unwrap().seen.push(req.0);
            std::future::ready(Ok("served"))
        }
    }

    fn shared(mock: &Mock, settled: bool, timeout: Option<Duration>) -> SharedBalancer<Mock> {
        SharedBalancer::new(mock.clone(), Arc::new(AtomicBool::new(settled)), timeout)
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_fails_with_no_endpoints_once_discovery_has_answered_empty() {
        let mock = Mock::default();
        let mut lb = shared(&mock, true, None);
        let err = lb.call(Req::default()).await.unwrap_err();
        assert!(err.is::<NoEndpoints>(), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_for_discovery_and_is_served_when_an_endpoint_is_ready() {
        let mock = Mock::default();
        let mut lb = shared(&mock, false, None);
        let call = tokio::spawn(lb.call(Req::default()));
        tokio::task::yield_now().await;
        assert!(!call.is_finished());
        mock.set(true, 1);
        assert_eq!(call.await.unwrap().unwrap(), "served");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waiting_for_a_ready_endpoint_ends_at_its_timeout() {
        let mock = Mock::default();
        mock.set(false, 2);
        let mut lb = shared(&mock, true, Some(Duration::from_millis(300)));
        let start = Instant::now();
        let err = lb.call(Req::default()).await.unwrap_err();
        assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_waited_tells_the_transport_when_its_attempt_ends() {
        let mock = Mock::default();
        mock.set(false, 1);
        let mut lb = shared(&mock, true, Some(Duration::from_millis(300)));
        let start = Instant::now();
        let call = tokio::spawn(lb.call(Req::default()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        mock.set(true, 1);
        assert_eq!(call.await.unwrap().unwrap(), "served");
        let seen = mock.state.lock().unwrap().seen.clone();
        assert_eq!(seen, [Some(start + Duration::from_millis(300))]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_served_at_once_carries_no_attempt_end() {
        let mock = Mock::default();
        mock.set(true, 1);
        let mut lb = shared(&mock, true, Some(Duration::from_millis(300)));
        lb.call(Req::default()).await.unwrap();
        assert_eq!(mock.state.lock().unwrap().seen, [None]);
    }

    #[tokio::test(start_paused = true)]
    async fn every_waiting_caller_is_served_though_the_balancer_wakes_only_the_last() {
        let mock = Mock::default();
        mock.set(false, 1);
        let lb = shared(&mock, true, None);
        let calls: Vec<_> = (0..3)
            .map(|_| tokio::spawn(lb.clone().call(Req::default())))
            .collect();
        tokio::task::yield_now().await;
        mock.set(true, 1);
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), "served");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_waiter_learns_at_once_that_discovery_answered_empty() {
        let mock = Mock::default();
        let settled = Arc::new(AtomicBool::new(false));
        let lb = SharedBalancer::new(mock.clone(), settled.clone(), Some(Duration::from_secs(3)));
        let calls: Vec<_> = (0..3)
            .map(|_| tokio::spawn(lb.clone().call(Req::default())))
            .collect();
        tokio::task::yield_now().await;
        let start = Instant::now();
        settled.store(true, Ordering::Release);
        // The balancer wakes only the last caller it saw.
        let waker = mock.state.lock().unwrap().waker.take();
        waker.expect("a caller registered").wake();
        for call in calls {
            let err = call.await.unwrap().unwrap_err();
            assert!(err.is::<NoEndpoints>(), "{err}");
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_passes_the_wake_on() {
        let mock = Mock::default();
        mock.set(false, 1);
        let lb = shared(&mock, true, None);
        let first = tokio::spawn(lb.clone().call(Req::default()));
        tokio::task::yield_now().await;
        let second = tokio::spawn(lb.clone().call(Req::default()));
        tokio::task::yield_now().await;
        // The mock holds only the second caller's waker; cancel it.
        second.abort();
        let _ = second.await;
        mock.state.lock().unwrap().ready = true;
        let waker = mock.state.lock().unwrap().waker.take();
        waker.expect("a caller registered").wake();
        let served = tokio::time::timeout(Duration::from_secs(1), first).await;
        assert_eq!(
            served
                .expect("the first caller was woken")
                .unwrap()
                .unwrap(),
            "served"
        );
    }
}
