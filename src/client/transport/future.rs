//! [`TransportFuture`]: one exchange with an endpoint, the response's head
//! then its whole body, before the attempt's timer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::outcome::{body_error, classified};
use crate::BoxError;

/// A whole exchange (head and body) behind a box: what a connection whose
/// future has no name (reqwest's) runs.
pub(super) type BoxExchange =
    Pin<Box<dyn Future<Output = Result<Response<Bytes>, BoxError>> + Send>>;

pin_project! {
    /// The future of [`EndpointTransport`](super::EndpointTransport): the
    /// response's head, then its body, both before the attempt's timer.
    pub(crate) struct TransportFuture {
        #[pin]
        state: TransportState,
        // Inline, not boxed: a `Sleep` is about 100 bytes, which the few
        // moves of this future cost less than an allocation and its free.
        #[pin]
        timer: Timer,
        limit: usize,
    }
}

pin_project! {
    #[project = TimerProj]
    enum Timer {
        None,
        Armed { #[pin] sleep: Sleep },
    }
}

pin_project! {
    #[project = TransportProj]
    pub(super) enum TransportState {
        /// On its way, through hyper-util's pool.
        Sent { #[pin] inner: hyper_util::client::legacy::ResponseFuture },
        /// The head is in; reading the body.
        Reading {
            parts: Option<http::response::Parts>,
            #[pin]
            body: Collect<Limited<Incoming>>,
        },
        /// Through a reqwest client: the head and the body read in one
        /// boxed future (see `super::reqwest`).
        #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
        Exchange { inner: BoxExchange },
        /// Failed before it was sent.
        Failed { error: Option<BoxError> },
    }
}

impl TransportState {
    /// A request on its way through hyper-util's pool.
    #[inline]
    pub(super) fn sent(inner: hyper_util::client::legacy::ResponseFuture) -> Self {
        TransportState::Sent { inner }
    }

    /// An exchange behind a box.
    #[cfg(feature = "reqwest")]
    pub(super) fn exchange(inner: BoxExchange) -> Self {
        TransportState::Exchange { inner }
    }
}

impl TransportFuture {
    /// `state` under the attempt's timer (a sleep until the attempt's end,
    /// if any), reading bodies up to `limit` bytes.
    #[inline]
    pub(super) fn new(state: TransportState, timer: Option<Sleep>, limit: usize) -> Self {
        TransportFuture {
            state,
            timer: match timer {
                Some(sleep) => Timer::Armed { sleep },
                None => Timer::None,
            },
            limit,
        }
    }

    /// An attempt that failed before it was sent.
    pub(super) fn failed(error: BoxError) -> Self {
        TransportFuture {
            state: TransportState::Failed { error: Some(error) },
            timer: Timer::None,
            limit: 0,
        }
    }
}

impl fmt::Debug for TransportFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportFuture").finish_non_exhaustive()
    }
}

impl Future for TransportFuture {
    type Output = Result<Response<Bytes>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let body = match this.state.as_mut().project() {
                TransportProj::Sent { inner } => match inner.poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        let (parts, body) = response.into_parts();
                        (parts, Limited::new(body, *this.limit).collect())
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(classified(e))),
                    Poll::Pending => break,
                },
                TransportProj::Reading { parts, body } => match body.poll(cx) {
                    Poll::Ready(Ok(collected)) => {
                        let parts = parts.take().expect("polled after completion");
                        return Poll::Ready(Ok(Response::from_parts(parts, collected.to_bytes())));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(body_error(e, *this.limit))),
                    Poll::Pending => break,
                },
                TransportProj::Exchange { inner } => match inner.as_mut().poll(cx) {
                    Poll::Ready(result) => return Poll::Ready(result),
                    Poll::Pending => break,
                },
                TransportProj::Failed { error } => {
                    ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            };
            this.state.set(TransportState::Reading {
                parts: Some(body.0),
                body: body.1,
            });
        }
        if let TimerProj::Armed { sleep } = this.timer.project() {
            if sleep.poll(cx).is_ready() {
                return Poll::Ready(Err(tower::timeout::error::Elapsed::new().into()));
            }
        }
        Poll::Pending
    }
}
