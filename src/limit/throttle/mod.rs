//! [`Throttle`]: client-side adaptive throttling (Google's SRE book).

mod config;
mod counts;

pub use config::{ThrottleConfig, ThrottleConfigBuilder};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use arc_swap::ArcSwap;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::metrics::LimitMetrics;
use super::{LimitExceeded, LimitReason};
use crate::BoxError;
use crate::classify::{Classify, ErrorsAreFailures, Outcome};
use crate::recycle::{Handle, Lease, Pool};
use counts::Counts;

/// Applies a [`Throttle`]: one window of counts shared by every service
/// the layer wraps (and their clones).
///
/// ```
/// use meshguard::classify::HttpClassifier;
/// use meshguard::limit::{ThrottleConfig, ThrottleLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), meshguard::BoxError> {
/// let throttle = ThrottleLayer::new("users", ThrottleConfig::default())
///     .classify(HttpClassifier::default());
/// let svc = ServiceBuilder::new()
///     .layer(throttle.clone())
///     .service_fn(|_: ()| async {
///         Ok::<_, std::io::Error>(http::Response::builder().status(503).body(()).unwrap())
///     });
/// for _ in 0..10 {
///     let _ = svc.clone().oneshot(()).await;
/// }
/// assert!(throttle.probability() > 0.5);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ThrottleLayer<C = ErrorsAreFailures> {
    shared: Arc<Lease<Shared>>,
    classify: C,
}

/// What a throttle's calls reach. A call holds a handle of the crate's
/// recycler (`crate::recycle`) to it, not an `Arc`, whose clone and drop
/// were 16 ns of a call (`benches/limit.rs`); a new throttle may reuse a
/// dropped one's once no call can reach it, and sets it anew.
#[derive(Debug)]
struct Shared {
    counts: Counts,
    /// Read when the probability changes and when a call is refused.
    metrics: ArcSwap<LimitMetrics>,
}

/// Throttles' counts of dropped layers, reused by new ones.
static SHARED: Pool<Shared> = Pool::new();

impl ThrottleLayer {
    /// A throttle named `name` (the `service` label of its metrics).
    pub fn new(name: &str, config: ThrottleConfig) -> Self {
        let metrics = Arc::new(LimitMetrics::new(name, "throttle"));
        let shared = SHARED.take(|| Shared {
            counts: Counts::new(&config),
            metrics: ArcSwap::new(metrics.clone()),
        });
        // A reused one holds its last owner's window and metrics.
        shared.get().counts.reset(&config);
        shared.get().metrics.store(metrics);
        ThrottleLayer {
            shared: Arc::new(shared),
            classify: ErrorsAreFailures,
        }
    }
}

impl<C> ThrottleLayer<C> {
    /// Judges results with `classify` (for HTTP,
    /// [`HttpClassifier`](crate::classify::HttpClassifier), so a 429 or a
    /// 503 is a rejection by the service).
    pub fn classify<C2>(self, classify: C2) -> ThrottleLayer<C2> {
        ThrottleLayer {
            shared: self.shared,
            classify,
        }
    }

    /// The probability a call is refused now.
    pub fn probability(&self) -> f64 {
        self.shared.get().counts.current()
    }
}

impl<S, C: Clone> Layer<S> for ThrottleLayer<C> {
    type Service = Throttle<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle {
            inner,
            shared: self.shared.clone(),
            classify: self.classify.clone(),
            state: State::Idle,
        }
    }
}

/// Refuses calls locally while the service keeps rejecting them, so a
/// struggling service is not hit by its clients' full rate: with
/// probability `max(0, (requests - k × accepts) / (requests + 1))` over
/// the window, a call fails at once with [`LimitExceeded`] (reason
/// [`Throttled`](LimitReason::Throttled)).
///
/// Requests are the calls made, those refused here included; accepts are
/// those the service answered, except with an
/// [overload outcome](crate::classify::Outcome::is_overload) (429, 503,
/// `RESOURCE_EXHAUSTED`, a timeout). Calls refused by a layer below (a
/// breaker, a limit) or ended by their deadline are not counted. While
/// the service accepts everything, a call costs one atomic load on the way
/// in and one clock read and one atomic add on the way out.
#[derive(Debug)]
pub struct Throttle<S, C = ErrorsAreFailures> {
    inner: S,
    shared: Arc<Lease<Shared>>,
    classify: C,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Admitted,
    Refused,
}

impl<S: Clone, C: Clone> Clone for Throttle<S, C> {
    fn clone(&self) -> Self {
        Throttle {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            classify: self.classify.clone(),
            state: State::Idle,
        }
    }
}

impl<S, C, Req> Service<Req> for Throttle<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ThrottleFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.state == State::Idle {
            let counts = &self.shared.get().counts;
            self.state = if counts.cached() > 0.0 && fastrand::f64() < counts.current() {
                counts.refused();
                State::Refused
            } else {
                State::Admitted
            };
        }
        match self.state {
            State::Admitted => self.inner.poll_ready(cx).map_err(Into::into),
            _ => Poll::Ready(Ok(())),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Admitted => ThrottleFuture {
                kind: Kind::Called {
                    future: self.inner.call(request),
                    shared: Some(self.shared.handle()),
                    classify: self.classify.clone(),
                },
            },
            State::Refused => {
                let shared = self.shared.get();
                let metrics = shared.metrics.load();
                metrics.refused(LimitReason::Throttled);
                metrics.throttle(shared.counts.cached());
                ThrottleFuture {
                    kind: Kind::Refused {
                        refused: Some(LimitExceeded::new(LimitReason::Throttled)),
                    },
                }
            }
            State::Idle => panic!("Throttle::call without poll_ready returning Ready"),
        }
    }
}

pin_project! {
    /// The future of a call through a [`Throttle`]: the inner call, counted
    /// when it ends, or the refusal.
    #[derive(Debug)]
    pub struct ThrottleFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            shared: Option<Handle<Shared>>,
            classify: C,
        },
        Refused {
            refused: Option<LimitExceeded>,
        },
    }
}

impl<F, C, T, E> Future for ThrottleFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                shared,
                classify,
            } => {
                let result = ready!(future.poll(cx));
                if let Some(handle) = shared.take() {
                    let shared = handle.get();
                    match classify.classify(&result) {
                        Outcome::RejectedByService { .. }
                        | Outcome::RejectedByEndpoint
                        | Outcome::RejectedByLimit
                        | Outcome::DeadlineExceeded
                        | Outcome::NoEndpoints => {}
                        o => {
                            let before = shared.counts.cached();
                            shared.counts.record(!o.is_overload());
                            let after = shared.counts.cached();
                            if before != after {
                                shared.metrics.load().throttle(after);
                            }
                        }
                    }
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Refused { refused } => crate::limit::future::poll_refused(cx, refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_throttle_made_after_one_is_dropped_starts_from_nothing() {
        let old = ThrottleLayer::new("old", ThrottleConfig::default())
            .classify(crate::classify::HttpClassifier::default());
        let failing = old.layer(tower::service_fn(|_: ()| async {
            Ok::<_, BoxError>(http::Response::builder().status(503).body(()).unwrap())
        }));
        for _ in 0..10 {
            let _ = failing.clone().oneshot(()).await;
        }
        assert!(old.probability() > 0.5);
        drop((old, failing));
        // Possibly the dropped one's counts, reused.
        let new = ThrottleLayer::new("new", ThrottleConfig::default());
        assert_eq!(new.probability(), 0.0);
    }
}
