//! The bottom of a gRPC channel: one endpoint's HTTP/2 connection (a
//! [`Link`]), the attempt's timer up to the response's head, the call's
//! deadline on the response's body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use tokio::time::Instant;
use tower::Service;

use super::body::{RequestBody, ResponseBody};
use super::call::GrpcCall;
use super::link::{Connector, Link, Ready};
use crate::BoxError;
use crate::classify::{Classified, Outcome};
use crate::client::transport_outcome;
use crate::deadline::{Bounded, Cut, GRPC_TIMEOUT};
use crate::discovery::Endpoint;
use crate::propagation::{REQUEST_ID, TRACEPARENT, TRACESTATE};

/// Sends [`GrpcCall`]s to one endpoint.
pub(crate) struct GrpcTransport {
    /// The connection and the authority calls name, or why the endpoint's
    /// address is not one.
    target: Result<(Link, Authority), Arc<str>>,
    scheme: Scheme,
    /// The attempt's timeout, up to the response's head.
    timeout: Option<Duration>,
}

impl GrpcTransport {
    pub(crate) fn new(
        connector: Connector,
        endpoint: &Endpoint,
        timeout: Option<Duration>,
    ) -> Self {
        let base = endpoint.base_url();
        let scheme = match endpoint.scheme() {
            crate::discovery::Scheme::Http => Scheme::HTTP,
            crate::discovery::Scheme::Https => Scheme::HTTPS,
        };
        let target = base
            .split_once("://")
            .map_or(base.as_str(), |(_, rest)| rest)
            .parse::<Authority>()
            .map_err(http::Error::from)
            .and_then(|authority| {
                let uri = Uri::builder()
                    .scheme(scheme.clone())
                    .authority(authority.clone())
                    .path_and_query("/")
                    .build()?;
                Ok((Link::new(uri, connector), authority))
            })
            .map_err(|e| Arc::from(format!("{base}: {e}")));
        GrpcTransport {
            target,
            scheme,
            timeout,
        }
    }
}

/// What the transport answers: hyper's response future (after the
/// connection's, when it is being made), under the attempt's timer.
type Sent = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, BoxError>> + Send>>;

impl Service<GrpcCall> for GrpcTransport {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Bounded<Sent>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut call: GrpcCall) -> Self::Future {
        let (link, authority) = match &mut self.target {
            Ok((link, authority)) => (link, authority.clone()),
            Err(e) => return failed(Outcome::Failure, std::io::Error::other(e.to_string())),
        };
        let Some(body) = call.body.take() else {
            // A stream's only attempt already took it (never: streams are
            // not replayed).
            return failed(
                Outcome::Failure,
                std::io::Error::other("the stream was sent"),
            );
        };
        let now = Instant::now();
        if call.deadline.is_some_and(|d| d.instant() <= now) {
            return Bounded::expired(Cut::Deadline);
        }
        let head = &*call.head;
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(authority);
        uri.path_and_query = Some(head.path.clone());
        let uri = match Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(e) => return failed(Outcome::Failure, std::io::Error::other(e.to_string())),
        };
        let mut headers = head.headers.clone();
        if let Some(id) = &head.request_id {
            headers.entry(REQUEST_ID).or_insert(id.clone());
        }
        if let Some(trace) = &head.trace {
            if let http::header::Entry::Vacant(entry) = headers.entry(TRACEPARENT) {
                entry.insert(trace.to_header_value());
                if let Some(state) = &head.trace_state {
                    headers.insert(TRACESTATE, state.to_header_value());
                }
            }
        }
        // The attempt's end, if it comes before the deadline (past it, the
        // deadline layer above ends the call).
        let deadline = call.deadline.map(|d| d.instant());
        let end = self
            .timeout
            .and_then(|t| now.checked_add(t))
            .map(|end| call.attempt_end.map_or(end, |at| end.min(at)))
            .filter(|end| deadline.is_none_or(|d| *end < d));
        // The server stops when this attempt does: at its end, or the
        // deadline.
        if let Some(stop) = end.or(deadline) {
            let left = crate::deadline::Deadline::at(stop).to_grpc_timeout(now);
            headers.insert(GRPC_TIMEOUT, left);
        }
        let mut req = Request::new(body);
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_2;
        *req.headers_mut() = headers;
        let sent: Sent = match link.ready() {
            Ready::Open(sender) => {
                let sent = sender.try_send_request(req);
                Box::pin(async move { answered(sent.await, deadline) })
            }
            Ready::Connecting(connecting) => Box::pin(async move {
                let mut sender = connecting.await.map_err(|e| e.into_error())?;
                answered(sender.try_send_request(req).await, deadline)
            }),
        };
        match end {
            Some(end) => Bounded::until(sent, end, Cut::Timeout),
            None => Bounded::open(sent),
        }
    }
}

/// The response, its body under the call's deadline, or the error as the
/// outcome it stands for.
fn answered(
    sent: Result<
        Response<hyper::body::Incoming>,
        hyper::client::conn::TrySendError<Request<RequestBody>>,
    >,
    deadline: Option<Instant>,
) -> Result<Response<ResponseBody>, BoxError> {
    match sent {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            Ok(Response::from_parts(
                parts,
                ResponseBody::new(body, deadline),
            ))
        }
        Err(mut e) => {
            // The connection closed before the request went out on it:
            // never sent, safe to send elsewhere whatever the call.
            let outcome = if e.take_message().is_some() {
                Outcome::Connect
            } else {
                transport_outcome(e.error())
            };
            Err(Classified::new(outcome, e.into_error()).into())
        }
    }
}

/// A call refused before anything was sent. It completes without awaiting
/// any tokio resource, so it spends the task's cooperative budget.
#[cold]
fn failed(outcome: Outcome, error: std::io::Error) -> Bounded<Sent> {
    let error: BoxError = Classified::new(outcome, error).into();
    Bounded::open(Box::pin(async move {
        tokio::task::coop::consume_budget().await;
        Err(error)
    }))
}
