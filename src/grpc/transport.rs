//! The bottom of a gRPC channel: hyper-util's HTTP/2 client speaking to one
//! endpoint, the attempt's timer up to the response's head, the call's
//! deadline on the response's body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::Service;

use super::body::{RequestBody, ResponseBody};
use super::call::GrpcCall;
use crate::BoxError;
use crate::classify::{Classified, Outcome};
use crate::client::transport_outcome;
use crate::deadline::{Bounded, Cut, GRPC_TIMEOUT};
use crate::discovery::Endpoint;
use crate::propagation::{REQUEST_ID, TRACEPARENT, TRACESTATE};

/// The HTTP/2 client every endpoint of a channel shares.
pub(crate) type GrpcClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, RequestBody>;

/// Sends [`GrpcCall`]s to one endpoint.
#[derive(Clone)]
pub(crate) struct GrpcTransport {
    client: GrpcClient,
    scheme: Scheme,
    authority: Result<Authority, Arc<str>>,
    /// The attempt's timeout, up to the response's head.
    timeout: Option<Duration>,
}

impl GrpcTransport {
    pub(crate) fn new(client: GrpcClient, endpoint: &Endpoint, timeout: Option<Duration>) -> Self {
        let base = endpoint.base_url();
        let authority = base
            .split_once("://")
            .map_or(base.as_str(), |(_, rest)| rest)
            .parse::<Authority>()
            .map_err(|e| Arc::from(format!("{base}: {e}")));
        let scheme = match endpoint.scheme() {
            crate::discovery::Scheme::Http => Scheme::HTTP,
            crate::discovery::Scheme::Https => Scheme::HTTPS,
        };
        GrpcTransport {
            client,
            scheme,
            authority,
            timeout,
        }
    }
}

/// What the transport answers: hyper-util's response future, under the
/// attempt's timer.
type Sent = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, BoxError>> + Send>>;

impl Service<GrpcCall> for GrpcTransport {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Bounded<Sent>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut call: GrpcCall) -> Self::Future {
        let authority = match &self.authority {
            Ok(a) => a.clone(),
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
        let sent = self.client.request(req);
        let sent: Sent = Box::pin(async move {
            match sent.await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    Ok(Response::from_parts(
                        parts,
                        ResponseBody::new(body, deadline),
                    ))
                }
                Err(e) => Err(Classified::new(transport_outcome(&e), e).into()),
            }
        });
        // The attempt's end, if it comes before the deadline (past it, the
        // deadline layer above ends the call).
        let end = self
            .timeout
            .and_then(|t| now.checked_add(t))
            .map(|end| call.attempt_end.map_or(end, |at| end.min(at)));
        match end {
            Some(end) if deadline.is_none_or(|d| end < d) => {
                Bounded::until(sent, end, Cut::Timeout)
            }
            _ => Bounded::open(sent),
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
