//! [`Channel`]: what tonic's generated clients call.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http_body::Body;
use pin_project_lite::pin_project;
use tower::Service;

use super::body::{RequestBody, ResponseBody};
use super::call::{CallBody, GrpcCall, Head};
use super::stack::Stack;
use crate::BoxError;
use crate::circuit_breaker::CircuitBreaker;
use crate::classify::Outcome;
use crate::client::tls_refused;
use crate::deadline::{GRPC_TIMEOUT, grpc_timeout};
use crate::propagation::{CallContext, outgoing_trace};

/// A gRPC channel over meshguard: give it to a tonic-generated client
/// (`UsersClient::new(channel)`) and every call goes through the deadline,
/// retries with their budget, the service breaker, p2c balancing over the
/// discovered instances with outlier ejection, and HTTP/2 (h2c or TLS).
/// Built with [`Channel::builder`]; cheap to clone (clones share
/// everything).
///
/// Errors reach tonic as a [`tonic::Status`]: DEADLINE_EXCEEDED when the
/// call's deadline or an attempt's timeout passed, UNAVAILABLE when the
/// service breaker is open, no instance is known, or the connection
/// failed (TLS refused included, though not retried), UNKNOWN otherwise,
/// with meshguard's error as the message.
#[derive(Clone)]
pub struct Channel {
    pub(super) stack: Stack,
    pub(super) name: Arc<str>,
    pub(super) breaker: Option<CircuitBreaker>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("service", &self.name)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// A channel to `service`'s instances; see [`ChannelBuilder`](super::ChannelBuilder).
    pub fn builder(service: impl Into<String>) -> super::ChannelBuilder {
        super::ChannelBuilder::new(service.into())
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service-level breaker, unless configured off.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_ref()
    }
}

impl Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.stack.poll_ready(cx).map_err(status)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> ResponseFuture {
        let (parts, body) = request.into_parts();
        let body = match first_frames(body) {
            Ok(body) => body,
            Err(e) => {
                // No call: what the ready stack holds for one (a
                // half-open breaker's probe, a bulkhead's permit) goes
                // back now.
                let fresh = self.stack.clone();
                drop(std::mem::replace(&mut self.stack, fresh));
                return ResponseFuture {
                    state: State::Failed {
                        error: Some(status(e)),
                    },
                };
            }
        };
        let context = CallContext::current();
        let context = context.as_ref();
        let (trace, trace_state) = outgoing_trace(context).unzip();
        let timeout = parts.headers.get(GRPC_TIMEOUT).and_then(grpc_timeout);
        let head = Head {
            path: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            headers: parts.headers,
            request_id: context.and_then(|c| c.request_id().cloned()),
            trace,
            trace_state: trace_state.flatten(),
        };
        let call = GrpcCall {
            head: Arc::new(head),
            body,
            deadline: context.and_then(|c| c.deadline()),
            timeout,
            attempt_end: None,
        };
        ResponseFuture {
            state: State::Calling {
                call: self.stack.call(call),
            },
        }
    }
}

/// The request's body as a call carries it: one message and the end is a
/// call that can be sent again; anything else is a stream, sent as it
/// comes. Reads only what is ready now, without waiting (with a waker
/// that does nothing: a stream not ready is polled again, with the
/// connection's waker, when it is sent), so the call is made here, on the
/// ready stack, and its future is the stack's own.
fn first_frames(mut body: tonic::body::Body) -> Result<CallBody, BoxError> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut read = VecDeque::new();
    let message = loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if read.is_empty() => read.push_back(data),
                Ok(data) => {
                    read.push_back(data);
                    break false;
                }
                // Trailers from a request: a stream.
                Err(_) => break false,
            },
            Poll::Ready(Some(Err(e))) => return Err(e.into()),
            // The whole body at once: one message (tonic may put several
            // in one frame) can be sent again.
            Poll::Ready(None) => {
                break read.len() <= 1 && read.front().is_none_or(|b| one_message(b));
            }
            // Not ready: a stream (the caller may send its first message
            // after the server's).
            Poll::Pending => break false,
        }
    };
    Ok(if message {
        CallBody::Message(read.pop_front().unwrap_or_default())
    } else {
        CallBody::Stream(Some(RequestBody::streaming(read, body)))
    })
}

pin_project! {
    /// The future of [`Channel`]'s calls.
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Calling {
            #[pin]
            call: <Stack as Service<GrpcCall>>::Future,
        },
        // The request's body failed before the call was made.
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<ResponseBody>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Calling { call } => call.poll(cx).map_err(status),
            StateProj::Failed { error } => {
                // Fails without touching a tokio resource: spend the task's
                // budget, or a caller looping on such calls would starve
                // its worker.
                ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
        }
    }
}

/// Whether `body` is exactly one gRPC length-prefixed message (a flag
/// byte, a 4-byte big-endian length, the message).
fn one_message(body: &[u8]) -> bool {
    match body.get(1..5) {
        Some(len) => {
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            body.len().checked_sub(5) == Some(len)
        }
        None => false,
    }
}

/// meshguard's error as the [`tonic::Status`] it means (tonic finds a
/// `Status` in a channel's error and reports it as the call's).
fn status(error: BoxError) -> BoxError {
    if error.is::<tonic::Status>() {
        return error;
    }
    let code = match Outcome::of_error(&*error) {
        Outcome::DeadlineExceeded | Outcome::Timeout => tonic::Code::DeadlineExceeded,
        // TLS refused (an untrusted certificate, another name): the
        // connection failed, as gRPC reports it, though not retried here
        // (every instance would refuse it alike).
        Outcome::Failure if tls_refused(&*error) => tonic::Code::Unavailable,
        // Refused by the channel's own flow control: what a server
        // shedding load answers.
        Outcome::RejectedByLimit => tonic::Code::ResourceExhausted,
        Outcome::RejectedByService { .. }
        | Outcome::RejectedByEndpoint
        | Outcome::NoEndpoints
        | Outcome::Connect
        | Outcome::Transport => tonic::Code::Unavailable,
        // What tonic would make of it (an HTTP/2 or connection error is
        // UNAVAILABLE there too).
        _ => return Box::new(tonic::Status::from_error(error)),
    };
    Box::new(tonic::Status::new(code, error.to_string()))
}
