//! The bottom of the client stack: hyper-util's pooled client speaking to
//! one endpoint, reading the whole response under the attempt's timer, and
//! classifying what goes wrong where it is known.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::call::Call;
use super::error::InvalidUri;
use crate::BoxError;
use crate::classify::{Classified, Outcome};
use crate::deadline::{DEADLINE, DeadlineExceeded};
use crate::discovery::Endpoint;
use crate::propagation::{REQUEST_ID, TRACEPARENT};

/// The request body every client call sends: buffered, so it can be sent
/// again by a retry.
pub(crate) type Body = Full<Bytes>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// One pool of connections for every endpoint of every client that shares
/// it; HTTP/1.1 over TCP, or TLS (rustls) for `https` endpoints.
pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

pub(crate) fn http_client(idle: std::time::Duration, max_idle_per_host: usize) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .expect("ring supports the default protocol versions")
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(max_idle_per_host)
        .build(https)
}

/// Sends [`Call`]s to one endpoint, over the shared pool, with the
/// propagated headers and the remaining deadline in the [`DEADLINE`]
/// header, and reads the response body (up to the client's limit) before
/// it answers.
///
/// The body is read here, under the endpoint's breaker and inside the
/// attempt, because that is where its failures belong: a body that stalls
/// ends with the attempt's timeout and one cut off mid-way is a transport
/// error (retried for idempotent requests), and both count against the
/// instance. Read above the stack, a stalled body hung the call past every
/// timeout while the instance's breaker had already recorded a success.
#[derive(Clone)]
pub(crate) struct EndpointTransport {
    client: HttpClient,
    scheme: Scheme,
    authority: Result<Authority, Arc<str>>,
    limits: Limits,
    /// Headers sent with every call that does not set its own.
    defaults: Arc<HeaderMap>,
    attempts: super::metrics::AttemptMetrics,
}

/// What bounds one exchange with an endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The attempt timeout: headers and body, from the call.
    pub(crate) timeout: Option<Duration>,
    /// The largest response body read.
    pub(crate) max_body_size: usize,
}

impl fmt::Debug for EndpointTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointTransport")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl EndpointTransport {
    pub(crate) fn new(
        client: HttpClient,
        endpoint: &Endpoint,
        limits: Limits,
        defaults: Arc<HeaderMap>,
        attempts: super::metrics::AttemptMetrics,
    ) -> Self {
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
        EndpointTransport {
            client,
            scheme,
            authority,
            limits,
            defaults,
            attempts,
        }
    }
}

impl Service<Call> for EndpointTransport {
    type Response = Response<Bytes>;
    type Error = BoxError;
    type Future = TransportFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // hyper-util's client queues for a pooled connection inside `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> TransportFuture {
        let authority = match &self.authority {
            Ok(a) => a.clone(),
            Err(e) => return TransportFuture::failed(InvalidUri(e.to_string()).into()),
        };
        let parts = &*call.parts;
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(authority);
        uri.path_and_query = Some(parts.path.clone());
        let uri = match Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(e) => return TransportFuture::failed(InvalidUri(e.to_string()).into()),
        };
        // One clock read for the header and the timer (about 30 ns each here).
        let now = Instant::now();
        if call.deadline.is_some_and(|d| d.instant() <= now) {
            // Passed while the call waited for an endpoint: not sent.
            return TransportFuture::failed(DeadlineExceeded.into());
        }
        // The full header set, written once, into a map made to its size
        // (the call's own map is shared with the copy a retry keeps): the
        // caller's own, then what the call's flags ask for and the client's
        // defaults, each unless the caller set it, then what propagates.
        let own = &parts.headers;
        let mut headers = HeaderMap::with_capacity(own.len() + self.defaults.len() + 6);
        for (name, value) in own {
            headers.append(name.clone(), value.clone());
        }
        if parts.accept_json && !own.contains_key(ACCEPT) {
            headers.insert(ACCEPT, JSON);
        }
        if parts.json_body && !own.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, JSON);
        }
        for name in self.defaults.keys() {
            if !headers.contains_key(name) {
                // Every value of a default set more than once.
                for value in self.defaults.get_all(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        headers.insert(REQUEST_ID, parts.request_id.clone());
        headers.insert(TRACEPARENT, parts.trace.to_header_value());
        if let Some(deadline) = call.deadline {
            headers.insert(DEADLINE, deadline.to_header_value(now));
        }
        let method = parts.method.clone();
        let body = parts.body.clone();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        // The attempt's end, if it comes before the deadline: past the
        // deadline the layer above cancels the attempt (the caller's budget
        // ran out, which says nothing about this instance), before it the
        // attempt fails here with a timeout that this instance's breaker
        // records.
        let timer = self.limits.timeout.and_then(|timeout| {
            let mut end = now.checked_add(timeout)?;
            if let Some(at) = call.attempt_end {
                end = end.min(at);
            }
            match call.deadline {
                Some(d) if d.instant() <= end => None,
                _ => Some(tokio::time::sleep_until(end)),
            }
        });
        self.attempts.sent();
        TransportFuture {
            state: TransportState::Sent {
                inner: self.client.request(req),
            },
            timer: match timer {
                Some(sleep) => Timer::Armed { sleep },
                None => Timer::None,
            },
            limit: self.limits.max_body_size,
        }
    }
}

/// A response body over the client's limit; becomes
/// [`ClientError::BodyTooLarge`](super::ClientError::BodyTooLarge).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTooLarge(pub(crate) usize);

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response body larger than {} bytes", self.0)
    }
}

impl std::error::Error for BodyTooLarge {}

pin_project! {
    /// The future of [`EndpointTransport`]: the response's head, then its
    /// body, both before the attempt's timer.
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
    enum TransportState {
        /// On its way.
        Sent { #[pin] inner: hyper_util::client::legacy::ResponseFuture },
        /// The head is in; reading the body.
        Reading {
            parts: Option<http::response::Parts>,
            #[pin]
            body: Collect<Limited<Incoming>>,
        },
        /// Failed before it was sent.
        Failed { error: Option<BoxError> },
    }
}

impl TransportFuture {
    fn failed(error: BoxError) -> Self {
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
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(send_error(e))),
                    Poll::Pending => break,
                },
                TransportProj::Reading { parts, body } => match body.poll(cx) {
                    Poll::Ready(Ok(collected)) => {
                        let parts = parts.take().expect("polled after completion");
                        return Poll::Ready(Ok(Response::from_parts(parts, collected.to_bytes())));
                    }
                    Poll::Ready(Err(e)) if e.is::<LengthLimitError>() => {
                        return Poll::Ready(Err(BodyTooLarge(*this.limit).into()));
                    }
                    // Cut off (hyper's "incomplete message") or reset.
                    Poll::Ready(Err(e)) => {
                        let outcome = transport_outcome(&*e);
                        return Poll::Ready(Err(Classified::new(outcome, e).into()));
                    }
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

/// Wraps a failed exchange's error with its outcome, decided here, where
/// hyper's error says it (see [`transport_outcome`]).
#[cold]
fn send_error(e: hyper_util::client::legacy::Error) -> BoxError {
    Classified::new(transport_outcome(&e), e).into()
}

/// What a transport error means: the one place hyper's errors are read. A
/// connection that could not be made was never sent ([`Outcome::Connect`]);
/// one the server closed before answering (hyper's "incomplete message", a
/// pooled connection that went away) or that failed mid-way is
/// [`Outcome::Transport`]; anything else as [`Outcome::of_error`] reads it
/// (an io error by its kind; a malformed response is a plain failure).
pub(crate) fn transport_outcome(error: &(dyn std::error::Error + 'static)) -> Outcome {
    if error
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(|e| e.is_connect())
    {
        return Outcome::Connect;
    }
    match Outcome::of_error(error) {
        Outcome::Failure if closed_early(error) => Outcome::Transport,
        other => other,
    }
}

fn closed_early(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() {
                return true;
            }
        }
        current = e.source();
    }
    false
}
