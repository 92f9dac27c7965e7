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

use super::p2c::{Drained, Pick};
use crate::BoxError;
use crate::deadline::DeadlineExceeded;

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

/// A request as [`SharedBalancer`] sends it: one attempt of a client's
/// call.
pub(crate) trait BalancedRequest {
    /// The attempt waited for an endpoint and must end at `at`. Set only
    /// by a call that had to wait: the endpoint's transport then times the
    /// attempt from its start, not from the send.
    fn set_attempt_end(&mut self, at: Instant);

    /// The call's deadline: the pick sends the attempt only to an endpoint
    /// whose latency estimate fits in the time left.
    fn deadline(&self) -> Option<Instant>;

    /// Whether this is a hedge's copy: when no endpoint can answer in time
    /// it is not sent and waits for the deadline, rather than fail the call
    /// its original is still serving.
    fn is_hedge(&self) -> bool;
}

/// The balancer as [`SharedBalancer`] drives it.
pub(crate) trait PickEndpoint {
    /// Endpoints held, ready or not.
    fn len(&self) -> usize;

    /// Readiness for a call that must be answered by `deadline`, without
    /// polling discovery ([`drain`](Self::drain) does).
    fn poll_pick(&mut self, cx: &mut Context<'_>, deadline: Option<Instant>) -> Poll<Pick>;

    /// Takes in every change discovery has ready, `cx` woken on the next.
    fn drain(&mut self, cx: &mut Context<'_>) -> Drained;
}

impl<D, F, C, S, Req> PickEndpoint for super::Balancer<D, F, C, Req>
where
    D: futures_core::Stream<Item = Result<crate::discovery::Change, std::convert::Infallible>>
        + Unpin,
    F: FnMut(&crate::discovery::Endpoint) -> S,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: crate::classify::Classify<S::Response, S::Error> + Clone,
{
    fn len(&self) -> usize {
        super::Balancer::len(self)
    }

    #[inline]
    fn poll_pick(&mut self, cx: &mut Context<'_>, deadline: Option<Instant>) -> Poll<Pick> {
        super::Balancer::poll_pick(self, cx, deadline)
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Drained {
        super::Balancer::drain(self, cx)
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
/// but none is ready (all ejected and probing). An attempt that no ready
/// endpoint can answer before its deadline (by their latency estimates)
/// fails at once with [`DeadlineExceeded`], unsent; a hedge's copy is not
/// sent either, and leaves the call to its original.
pub(crate) struct SharedBalancer<S> {
    shared: Arc<Locked<S>>,
    /// The attempt timeout, which also bounds the wait for an endpoint.
    timeout: Option<Duration>,
}

pub(super) struct Locked<S> {
    pub(super) inner: std::sync::Mutex<Inner<S>>,
    settled: Arc<AtomicBool>,
    /// Callers waiting for an endpoint to be ready. p2c remembers only the
    /// last caller's waker, so whoever it wakes passes the wake on to these
    /// once it has taken the readiness (or gives up).
    waiters: std::sync::Mutex<Vec<std::task::Waker>>,
    waiting: std::sync::atomic::AtomicUsize,
}

/// What the lock guards: the balancer, and the waker discovery is polled
/// with.
pub(super) struct Inner<S> {
    pub(super) lb: S,
    /// The discovery watcher's (`watcher.rs`): discovery is always polled
    /// with it, so that a change wakes the watcher, never a call that may
    /// have ended. `None` until the watcher first runs (calls then lend
    /// theirs).
    pub(super) watcher: Option<std::task::Waker>,
}

impl<S: PickEndpoint> Inner<S> {
    /// Takes in every change discovery has ready, whatever is left of the
    /// task's coop budget: a call sees every instance discovery has
    /// announced (5,000 at a cold start), not a budget's worth of them.
    pub(super) fn drain_all(&mut self, cx: &Context<'_>) -> Drained {
        let waker = self.watcher.as_ref().unwrap_or(cx.waker());
        let mut dcx = Context::from_waker(waker);
        let lb = &mut self.lb;
        let mut drain = std::pin::pin!(tokio::task::coop::unconstrained(std::future::poll_fn(
            |cx| Poll::Ready(lb.drain(cx))
        )));
        match drain.as_mut().poll(&mut dcx) {
            Poll::Ready(drained) => drained,
            Poll::Pending => Drained::default(),
        }
    }
}

impl<S> Drop for Locked<S> {
    fn drop(&mut self) {
        // The watcher waits on discovery, which goes with the balancer:
        // woken, it finds the balancer gone and ends.
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = inner.watcher.take() {
            w.wake();
        }
    }
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
                inner: std::sync::Mutex::new(Inner {
                    lb: inner,
                    watcher: None,
                }),
                settled,
                waiters: std::sync::Mutex::new(Vec::new()),
                waiting: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }
}

impl<S: PickEndpoint + Send + 'static> SharedBalancer<S> {
    /// Starts the discovery watcher on the current runtime (none outside
    /// one): changes are taken in as they come, calls or not. It ends when
    /// the last clone of this balancer is dropped.
    pub(crate) fn watch_discovery(&self) {
        super::watcher::spawn(&self.shared);
    }
}

impl<S> Locked<S> {
    pub(super) fn wait(&self, waker: &std::task::Waker) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
            self.waiting.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Wakes every waiting caller; the common path is one atomic load.
    #[inline]
    pub(super) fn wake_waiters(&self) {
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
    S: Service<Req, Error = BoxError> + PickEndpoint,
    Req: BalancedRequest,
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
        // A hedge no endpoint could answer in time: not sent, it waits for
        // the call's deadline (its original may still answer before).
        Unsent { timer: Pin<Box<Sleep>> },
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
    S: Service<Req, Error = BoxError> + PickEndpoint,
    Req: BalancedRequest,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                SharedProj::Called { inner } => return inner.poll(cx),
                SharedProj::Unsent { timer } => {
                    ready!(timer.as_mut().poll(cx));
                    return Poll::Ready(Err(DeadlineExceeded.into()));
                }
                SharedProj::Picking {
                    shared,
                    req,
                    waited,
                    timeout,
                    timer,
                } => {
                    let deadline = req.as_ref().and_then(BalancedRequest::deadline);
                    let mut guard = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
                    let drained = guard.drain_all(cx);
                    if drained.applied > 0 {
                        // Whoever waits for an endpoint looks again.
                        shared.wake_waiters();
                    }
                    let lb = &mut guard.lb;
                    match lb.poll_pick(cx, deadline) {
                        Poll::Ready(Pick::Ready) => {
                            let inner = lb.call(req.take().expect("polled after completion"));
                            drop(guard);
                            if std::mem::take(waited) {
                                shared.wake_waiters();
                            }
                            SharedState::Called { inner }
                        }
                        Poll::Ready(Pick::TooSlow) => {
                            drop(guard);
                            // Another waiter may use the readiness we left.
                            if std::mem::take(waited) {
                                shared.wake_waiters();
                            }
                            let hedge = req.as_ref().is_some_and(BalancedRequest::is_hedge);
                            tracing::debug!(
                                hedge,
                                "no endpoint can answer before the deadline: not sent"
                            );
                            match deadline {
                                Some(at) if hedge => SharedState::Unsent {
                                    timer: Box::pin(tokio::time::sleep_until(at)),
                                },
                                _ => {
                                    // Fails without touching a tokio resource.
                                    ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                                    return Poll::Ready(Err(DeadlineExceeded.into()));
                                }
                            }
                        }
                        Poll::Pending
                            if lb.len() == 0 && shared.settled.load(Ordering::Acquire) =>
                        {
                            drop(guard);
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
                            drop(guard);
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
            this.state.set(next);
        }
    }
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
