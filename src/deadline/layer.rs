//! [`DeadlineLayer`]: merges a call's deadlines once and ends the call by
//! the earliest.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::bounded::{Bounded, Cut};
use super::{Deadline, HasDeadline};
use crate::BoxError;

/// Ends every call by its deadline: the earliest of the layer's own (from
/// when the call enters), the request's per-call
/// [`Timeout`](super::Timeout) and a [`Deadline`] the request already
/// carries (a caller's, propagated). The merged deadline is written into
/// the request for the layers below, and the call fails with
/// [`DeadlineExceeded`](super::DeadlineExceeded) when it passes (at once, unsent, if it has already
/// passed). Put it outermost: above retries, so the deadline bounds them
/// all. A call with no deadline at all costs one branch.
///
/// `poll_ready` is the inner service's: a deadline is known only once a
/// request is in hand, as with tower's `Timeout`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer {
    after: Option<Duration>,
}

impl DeadlineLayer {
    /// Every call ends within `after` of entering the layer, or by the
    /// request's own deadline if that is earlier.
    pub fn new(after: Duration) -> Self {
        DeadlineLayer { after: Some(after) }
    }

    /// Only the request's own deadlines apply (a per-call
    /// [`Timeout`](super::Timeout), a caller's [`Deadline`]).
    pub fn from_request() -> Self {
        DeadlineLayer { after: None }
    }

    /// [`new`](Self::new) with `Some`, [`from_request`](Self::from_request)
    /// with `None`.
    pub fn optional(after: Option<Duration>) -> Self {
        DeadlineLayer { after }
    }

    /// The layer's own deadline, counted from when a call enters.
    pub fn after(&self) -> Option<Duration> {
        self.after
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> DeadlineService<S> {
        DeadlineService {
            inner,
            after: self.after,
        }
    }
}

/// A service wrapped by a [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    after: Option<Duration>,
}

impl<S> DeadlineService<S> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, Req> Service<Req> for DeadlineService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: HasDeadline,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, mut req: Req) -> Self::Future {
        let theirs = req.deadline();
        let own = req.timeout();
        if self.after.is_none() && own.is_none() && theirs.is_none() {
            return ResponseFuture {
                kind: Bounded::open(self.inner.call(req)),
            };
        }
        let now = Instant::now();
        // A deadline too far away for the clock is no deadline.
        let Some(at) = [self.after, own]
            .into_iter()
            .flatten()
            .filter_map(|d| now.checked_add(d))
            .chain(theirs.map(|d| d.instant()))
            .min()
        else {
            return ResponseFuture {
                kind: Bounded::open(self.inner.call(req)),
            };
        };
        if at <= now {
            // Sending it could only load the upstream with work nobody
            // waits for.
            return ResponseFuture {
                kind: Bounded::expired(Cut::Deadline),
            };
        }
        if theirs.is_none_or(|d| d.instant() != at) {
            req.set_deadline(Deadline::at(at));
        }
        ResponseFuture {
            kind: Bounded::until(self.inner.call(req), at, Cut::Deadline),
        }
    }
}

pin_project! {
    /// The response future of [`DeadlineService`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Bounded<F>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().kind.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tower::ServiceExt;

    use super::*;
    use crate::deadline::{DeadlineExceeded, Timeout};

    type Seen = Arc<Mutex<Vec<Option<Deadline>>>>;

    /// A service that records the deadline each request carries.
    fn recording() -> (
        impl Service<http::Request<()>, Response = (), Error = BoxError> + Clone,
        Seen,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let svc = tower::service_fn(move |req: http::Request<()>| {
            log.lock().unwrap().push(req.deadline());
            std::future::ready(Ok::<_, BoxError>(()))
        });
        (svc, seen)
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[tokio::test(start_paused = true)]
    async fn the_layers_deadline_is_written_into_the_request() {
        let (svc, seen) = recording();
        let start = Instant::now();
        DeadlineLayer::new(MS(800))
            .layer(svc)
            .oneshot(http::Request::new(()))
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), [Some(Deadline::at(start + MS(800)))]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_calls_own_earlier_timeout_wins() {
        let (svc, seen) = recording();
        let start = Instant::now();
        let mut req = http::Request::new(());
        req.extensions_mut().insert(Timeout(MS(300)));
        DeadlineLayer::new(MS(800))
            .layer(svc)
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), [Some(Deadline::at(start + MS(300)))]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_callers_earlier_deadline_wins() {
        let (svc, seen) = recording();
        let theirs = Deadline::at(Instant::now() + MS(100));
        let mut req = http::Request::new(());
        req.set_deadline(theirs);
        req.extensions_mut().insert(Timeout(MS(300)));
        DeadlineLayer::new(MS(800))
            .layer(svc)
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), [Some(theirs)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_callers_deadline_gives_way_to_the_layers() {
        let (svc, seen) = recording();
        let start = Instant::now();
        let mut req = http::Request::new(());
        req.set_deadline(Deadline::at(start + MS(5_000)));
        DeadlineLayer::new(MS(800))
            .layer(svc)
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), [Some(Deadline::at(start + MS(800)))]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_with_no_deadline_anywhere_carries_none() {
        let (svc, seen) = recording();
        DeadlineLayer::from_request()
            .layer(svc)
            .oneshot(http::Request::new(()))
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), [None]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_whose_deadline_has_passed_fails_unsent() {
        let (svc, seen) = recording();
        let mut req = http::Request::new(());
        req.set_deadline(Deadline::at(Instant::now()));
        let err = DeadlineLayer::from_request()
            .layer(svc)
            .oneshot(req)
            .await
            .unwrap_err();
        assert!(err.is::<DeadlineExceeded>(), "{err}");
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_still_running_at_its_deadline_fails_then() {
        let slow = tower::service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, BoxError>(())
        });
        let start = Instant::now();
        let err = DeadlineLayer::new(MS(250))
            .layer(slow)
            .oneshot(http::Request::new(()))
            .await
            .unwrap_err();
        assert!(err.is::<DeadlineExceeded>(), "{err}");
        assert_eq!(start.elapsed(), MS(250));
    }
}
