//! Error types.

use std::fmt;
use std::time::Duration;

use super::{Rejection, State};
use crate::BoxError;

/// A call rejected because the breaker is open, forced open, or half-open
/// with all its probe permits in use.
///
/// ```
/// # use meshguard::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitOpen};
/// # use meshguard::BoxError;
/// fn status_for(err: &BoxError) -> u16 {
///     if err.downcast_ref::<CircuitOpen>().is_some() { 503 } else { 500 }
/// }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    state: State,
    retry_after: Option<Duration>,
    rejection: Rejection,
}

impl CircuitOpen {
    pub(crate) fn new(state: State, retry_after: Option<Duration>) -> Self {
        CircuitOpen {
            state,
            retry_after,
            rejection: Rejection::FailFast,
        }
    }

    /// The same rejection, from a breaker in `rejection` mode.
    pub(crate) fn with_rejection(mut self, rejection: Rejection) -> Self {
        self.rejection = rejection;
        self
    }

    /// The rejection mode of the breaker that rejected the call.
    ///
    /// [`Rejection::Wait`] is a per-endpoint breaker inside a load balancer:
    /// its rejection concerns one endpoint, so the retry layer retries it
    /// (on another endpoint). A [`Rejection::FailFast`] breaker's rejection
    /// concerns the whole service and is not retried.
    pub fn rejection(&self) -> Rejection {
        self.rejection
    }

    /// How long until the breaker lets a probe through, when it is known:
    /// `Some` while open, `None` when forced open or half-open.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The state that rejected the call.
    pub fn state(&self) -> State {
        self.state
    }
}

impl fmt::Debug for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitOpen")
            .field("state", &self.state)
            .field("retry_after", &self.retry_after)
            .field("rejection", &self.rejection)
            .finish()
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.retry_after) {
            (State::HalfOpen, _) => f.write_str("circuit half-open, probes in flight"),
            (State::ForcedOpen, _) => f.write_str("circuit forced open"),
            (_, Some(d)) => write!(f, "circuit open, retry after {d:?}"),
            (_, None) => f.write_str("circuit open"),
        }
    }
}

impl std::error::Error for CircuitOpen {}

/// The error of a [`CircuitBreakerService`](super::CircuitBreakerService):
/// the call was rejected, or the inner service failed.
///
/// It is a plain enum so that a rejection allocates nothing. It converts into
/// a [`BoxError`] (so every tower layer accepts it), which then downcasts
/// straight to [`CircuitOpen`] or to the inner error:
///
/// ```
/// use meshguard::BoxError;
/// use meshguard::circuit_breaker::{BreakerError, CircuitOpen};
///
/// fn describe(err: BoxError) -> String {
///     match err.downcast::<CircuitOpen>() {
///         Ok(open) => format!("rejected: {open}"),
///         Err(other) => format!("failed: {other}"),
///     }
/// }
/// # let _ = describe;
/// ```
///
/// It is not itself a `std::error::Error` (the conversions could not
/// flatten it if it were), so `?` takes it into a [`BoxError`], a
/// `Box<dyn Error>` or, with feature `anyhow` and an inner error that
/// converts into one, an `anyhow::Error`, each downcasting to
/// [`CircuitOpen`] or the inner error. In a `thiserror` enum,
/// hold the [`BoxError`] (`#[error(transparent)] Upstream(#[from] BoxError)`)
/// and convert with `.map_err(BoxError::from)?`.
///
/// ```
/// use std::error::Error;
/// use meshguard::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitOpen};
/// use tower::{Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// async fn fetch(breaker: &CircuitBreaker) -> Result<String, Box<dyn Error>> {
///     let mut svc = breaker.layer().layer(tower::service_fn(|_: ()| async {
///         Ok::<_, std::io::Error>(String::from("ok"))
///     }));
///     Ok(svc.ready().await?.call(()).await?)
/// }
/// let breaker = CircuitBreaker::new("users", CircuitBreakerConfig::default());
/// breaker.force_open();
/// let err = fetch(&breaker).await.unwrap_err();
/// assert!(err.is::<CircuitOpen>());
/// assert_eq!(err.to_string(), "circuit forced open");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerError<E> {
    /// The breaker rejected the call; the inner service was not called.
    Open(CircuitOpen),
    /// The inner service failed.
    Inner(E),
}

impl<E> BreakerError<E> {
    /// The rejection, if this is one.
    pub fn as_open(&self) -> Option<&CircuitOpen> {
        match self {
            BreakerError::Open(o) => Some(o),
            BreakerError::Inner(_) => None,
        }
    }

    /// The inner error, if this is one.
    pub fn into_inner(self) -> Option<E> {
        match self {
            BreakerError::Open(_) => None,
            BreakerError::Inner(e) => Some(e),
        }
    }
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerError::Open(o) => o.fmt(f),
            BreakerError::Inner(e) => e.fmt(f),
        }
    }
}

// Why not `std::error::Error`: std converts every `E: Error + Send + Sync`
// into a `BoxError` by boxing it whole, and that blanket `From` would
// overlap with these conversions (E0119, also for `E = BoxError`, which std
// may one day make an `Error`). They are what lets a boxed error downcast
// straight to `CircuitOpen` or to the inner error, which the retry layer's
// decisions, `ServiceClient` and every `downcast_ref::<CircuitOpen>()` in
// user code rely on; and a breaker over a service whose error is already a
// `BoxError` (a `Buffer`, a `Timeout`) could not convert at all. So `?`
// works through these `From`s instead: into `BoxError`, `Box<dyn Error>`
// and (feature `anyhow`) `anyhow::Error`, each flattened the same way.
impl<E: Into<BoxError>> From<BreakerError<E>> for BoxError {
    fn from(err: BreakerError<E>) -> BoxError {
        match err {
            BreakerError::Open(o) => Box::new(o),
            BreakerError::Inner(e) => e.into(),
        }
    }
}

impl<E: Into<BoxError>> From<BreakerError<E>> for Box<dyn std::error::Error> {
    fn from(err: BreakerError<E>) -> Self {
        BoxError::from(err)
    }
}

impl<E: Into<BoxError>> From<BreakerError<E>> for Box<dyn std::error::Error + Send> {
    fn from(err: BreakerError<E>) -> Self {
        BoxError::from(err)
    }
}

// `E: Into<anyhow::Error>` rather than `Into<BoxError>`: anyhow keeps a
// boxed error as one opaque box (`from_boxed`), so `is::<io::Error>()` would
// quietly answer false. An inner `BoxError` goes through
// `.map_err(BoxError::from)` and `anyhow::Error::from_boxed` instead.
#[cfg(feature = "anyhow")]
#[cfg_attr(docsrs, doc(cfg(feature = "anyhow")))]
impl<E: Into<anyhow::Error>> From<BreakerError<E>> for anyhow::Error {
    fn from(err: BreakerError<E>) -> Self {
        match err {
            BreakerError::Open(o) => anyhow::Error::new(o),
            BreakerError::Inner(e) => e.into(),
        }
    }
}
