//! [`Channel`]: what tonic's generated clients call.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::Body;
use pin_project_lite::pin_project;
use tower::Service;

use super::body::{RequestBody, ResponseBody};
use super::call::{CallBody, GrpcCall, Head};
use super::stack::Stack;
use crate::BoxError;
use crate::circuit_breaker::CircuitBreaker;
use crate::classify::Outcome;
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
/// failed, UNKNOWN otherwise, with meshguard's error as the message.
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
        // The ready stack goes with the call (which sends once its body
        // has been looked at); this channel keeps a fresh clone.
        let clone = self.stack.clone();
        let stack = std::mem::replace(&mut self.stack, clone);
        let (parts, body) = request.into_parts();
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
        ResponseFuture {
            state: State::Reading {
                stack,
                head: Some(head),
                deadline: context.and_then(|c| c.deadline()),
                timeout,
                body: Some(body),
                read: VecDeque::new(),
            },
        }
    }
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
        /// Reading the request's first frames: one message and the end is a
        /// call that can be sent again; anything else is a stream.
        Reading {
            stack: Stack,
            head: Option<Head>,
            deadline: Option<crate::deadline::Deadline>,
            timeout: Option<std::time::Duration>,
            body: Option<tonic::body::Body>,
            read: VecDeque<Bytes>,
        },
        Calling {
            #[pin]
            call: <Stack as Service<GrpcCall>>::Future,
        },
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<ResponseBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let call = match this.state.as_mut().project() {
                StateProj::Calling { call } => {
                    return Poll::Ready(ready!(call.poll(cx)).map_err(status));
                }
                StateProj::Reading {
                    stack,
                    head,
                    deadline,
                    timeout,
                    body,
                    read,
                } => {
                    let stream = body.as_mut().expect("polled after completion");
                    // Never waits: a body that is not ready is a stream
                    // (the caller may send its first message after the
                    // server's), sent as it comes.
                    let message = loop {
                        match Pin::new(&mut *stream).poll_frame(cx) {
                            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                                Ok(data) if read.is_empty() => read.push_back(data),
                                Ok(data) => {
                                    read.push_back(data);
                                    break false;
                                }
                                // Trailers from a request: a stream.
                                Err(_) => break false,
                            },
                            Poll::Ready(Some(Err(e))) => {
                                return Poll::Ready(Err(status(e.into())));
                            }
                            // The whole body at once: one message (tonic
                            // may put several in one frame) can be sent
                            // again.
                            Poll::Ready(None) => {
                                break read.len() <= 1
                                    && read.front().is_none_or(|b| one_message(b));
                            }
                            Poll::Pending => break false,
                        }
                    };
                    let body = if message {
                        CallBody::Message(read.pop_front().unwrap_or_default())
                    } else {
                        CallBody::Stream(Some(RequestBody::Streaming {
                            read: std::mem::take(read),
                            rest: body.take().expect("read once"),
                        }))
                    };
                    let call = GrpcCall {
                        head: Arc::new(head.take().expect("read once")),
                        body,
                        deadline: *deadline,
                        timeout: *timeout,
                        attempt_end: None,
                    };
                    stack.call(call)
                }
            };
            this.state.set(State::Calling { call });
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
