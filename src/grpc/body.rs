//! The bodies a gRPC channel sends and receives.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::BoxError;
use crate::deadline::DeadlineExceeded;

/// A request's body: one message, buffered (a unary or server-streaming
/// call: it can be sent again), or a stream (client or bidirectional
/// streaming: sent once), its first frames already read.
pub(crate) enum RequestBody {
    /// The whole body.
    Full(Option<Bytes>),
    /// The frames read before the stream showed it was one, then the rest
    /// (boxed: a unary call's body, moved on every call, stays small).
    Streaming(Box<Streaming>),
}

pub(crate) struct Streaming {
    read: VecDeque<Bytes>,
    rest: tonic::body::Body,
}

impl RequestBody {
    /// A stream: the frames already read, then the rest.
    pub(crate) fn streaming(read: VecDeque<Bytes>, rest: tonic::body::Body) -> Self {
        RequestBody::Streaming(Box::new(Streaming { read, rest }))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Streaming(stream) => {
                let Streaming { read, rest } = &mut **stream;
                if let Some(bytes) = read.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Pin::new(rest)
                    .poll_frame(cx)
                    .map(|frame| frame.map(|f| f.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Full(bytes) => bytes.is_none(),
            RequestBody::Streaming(stream) => stream.read.is_empty() && stream.rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            RequestBody::Full(None) => SizeHint::with_exact(0),
            RequestBody::Streaming(_) => SizeHint::default(),
        }
    }
}

/// A response's body as tonic reads it, ended by the call's deadline if
/// it has one: a stream still running then fails with DEADLINE_EXCEEDED,
/// so the whole call, its messages included, ends by its deadline.
pub struct ResponseBody {
    inner: Incoming,
    deadline: Option<tokio::time::Instant>,
    /// The deadline's timer, armed the first time the body is not ready:
    /// a unary answer, usually in by the time it is read, never needs one.
    timer: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    pub(crate) fn new(inner: Incoming, deadline: Option<tokio::time::Instant>) -> Self {
        ResponseBody {
            inner,
            deadline,
            timer: None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            // A stream whose frames are always ready still ends by the
            // deadline.
            if frame.is_some()
                && self
                    .deadline
                    .is_some_and(|at| at <= tokio::time::Instant::now())
            {
                return Poll::Ready(Some(Err(deadline_passed())));
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if let Some(at) = self.deadline {
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            ready!(timer.as_mut().poll(cx));
            return Poll::Ready(Some(Err(deadline_passed())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The deadline's error, as a `Status` tonic reports as the call's.
fn deadline_passed() -> BoxError {
    Box::new(tonic::Status::deadline_exceeded(
        DeadlineExceeded.to_string(),
    ))
}
