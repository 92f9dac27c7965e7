//! Copying a request for another attempt.

use std::fmt;

use crate::deadline::HasDeadline;

/// Why a request gets no further attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReplay {
    /// The method is not idempotent (POST, PATCH, CONNECT) and retrying
    /// such requests was not allowed with
    /// [`RetryPolicyBuilder::retry_non_idempotent`](super::RetryPolicyBuilder::retry_non_idempotent).
    NotIdempotent,
    /// The body is a stream that was consumed by the first attempt.
    BodyNotReplayable,
}

impl fmt::Display for NoReplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoReplay::NotIdempotent => "the method is not idempotent",
            NoReplay::BodyNotReplayable => "the body cannot be replayed",
        })
    }
}

/// A request the retry and hedge layers can send more than once.
///
/// Implemented for `http::Request<B>` whose body is a [`ReplayBody`]:
/// idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) are replayed,
/// others only when `allow_non_idempotent` is true. The retry layer reads
/// the request's deadline through [`HasDeadline`] (no retry starts that the
/// deadline would cut off); for your own request types an empty
/// `impl HasDeadline for MyRequest {}` says the request carries none.
pub trait Replay: HasDeadline + Sized {
    /// A copy for another attempt, or why there is none.
    fn replay(&self, allow_non_idempotent: bool) -> Result<Self, NoReplay>;

    /// The copy a hedge sends ([`HedgeLayer`](super::HedgeLayer)): by
    /// default [`replay`](Self::replay)'s. A request type whose balancer
    /// tells a hedge from an original marks it here (meshguard's client
    /// does, so that a hedge no instance can answer in time is not sent,
    /// rather than fail the call its original still serves).
    fn replay_as_hedge(&self, allow_non_idempotent: bool) -> Result<Self, NoReplay> {
        self.replay(allow_non_idempotent)
    }
}

/// A body that can be sent again, or a stream that can be sent only once.
///
/// Buffered bodies (`String`, `Vec<u8>`, `Bytes`, `Full`, `Empty`, `()`)
/// return a copy. Streaming bodies return `None`: a request carrying one
/// goes through the retry and hedge layers once, is neither retried nor
/// hedged, and the retry layer's `debug` event says why ("the body cannot
/// be replayed").
/// Those are http-body-util's `BoxBody`, `UnsyncBoxBody` and `StreamBody`,
/// axum's `Body` (feature `axum`) and hyper's `Incoming` (feature `hyper`,
/// on with `client`). Buffer a streaming body first (for example with
/// `http_body_util::BodyExt::collect`) if the request should be retried.
///
/// ```
/// use http_body_util::{BodyExt, Empty, combinators::UnsyncBoxBody};
/// use meshguard::retry::{RetryLayer, RetryPolicy};
/// use std::convert::Infallible;
/// use tower::{Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), meshguard::BoxError> {
/// type Streaming = UnsyncBoxBody<bytes::Bytes, Infallible>;
/// let mut svc = RetryLayer::new(RetryPolicy::default()).layer(tower::service_fn(
///     |_: http::Request<Streaming>| async {
///         Ok::<_, Infallible>(http::Response::builder().status(503).body(()).unwrap())
///     },
/// ));
/// let request = http::Request::new(Empty::new().boxed_unsync());
/// let response = svc.ready().await?.call(request).await?;
/// assert_eq!(response.status(), 503); // sent once: the body cannot be replayed
/// # Ok(()) }
/// ```
pub trait ReplayBody: Sized {
    /// A copy of the body, or `None` when it cannot be sent again.
    fn replay_body(&self) -> Option<Self>;
}

macro_rules! clone_bodies {
    ($($t:ty),* $(,)?) => {$(
        impl ReplayBody for $t {
            #[inline]
            fn replay_body(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

clone_bodies!(
    (),
    String,
    Vec<u8>,
    &'static str,
    &'static [u8],
    bytes::Bytes
);

impl<D: Clone> ReplayBody for http_body_util::Full<D> {
    fn replay_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> ReplayBody for http_body_util::Empty<D> {
    fn replay_body(&self) -> Option<Self> {
        Some(http_body_util::Empty::new())
    }
}

/// Streaming bodies: consumed by the attempt that sends them.
macro_rules! stream_bodies {
    ($($(#[$attr:meta])* [$($generics:tt)*] $t:ty),* $(,)?) => {$(
        $(#[$attr])*
        impl<$($generics)*> ReplayBody for $t {
            #[inline]
            fn replay_body(&self) -> Option<Self> {
                None
            }
        }
    )*};
}

stream_bodies!(
    [D, E] http_body_util::combinators::BoxBody<D, E>,
    [D, E] http_body_util::combinators::UnsyncBoxBody<D, E>,
    [S] http_body_util::StreamBody<S>,
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    [] axum_core::body::Body,
    #[cfg(feature = "hyper")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
    [] hyper::body::Incoming,
);

impl<B: ReplayBody> Replay for http::Request<B> {
    fn replay(&self, allow_non_idempotent: bool) -> Result<Self, NoReplay> {
        if !allow_non_idempotent && !self.method().is_idempotent() {
            return Err(NoReplay::NotIdempotent);
        }
        let body = self
            .body()
            .replay_body()
            .ok_or(NoReplay::BodyNotReplayable)?;
        let mut copy = http::Request::new(body);
        *copy.method_mut() = self.method().clone();
        *copy.uri_mut() = self.uri().clone();
        *copy.version_mut() = self.version();
        *copy.headers_mut() = self.headers().clone();
        *copy.extensions_mut() = self.extensions().clone();
        Ok(copy)
    }
}
