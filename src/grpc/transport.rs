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
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use tokio::time::Instant;
use tower::Service;

use super::body::{RequestBody, ResponseBody};
use super::call::GrpcCall;
use super::link::{ConnectError, Connector, Handle, KeepAlive, Link, Ready};
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
        keep_alive: KeepAlive,
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
                Ok((Link::new(uri, connector, keep_alive), authority))
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
        let times = Times {
            deadline,
            stop: end.or(deadline),
        };
        if let Some(stop) = times.stop {
            let left = crate::deadline::Deadline::at(stop).to_grpc_timeout(now);
            headers.insert(GRPC_TIMEOUT, left);
        }
        let mut req = Request::new(body);
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_2;
        *req.headers_mut() = headers;
        let handle = link.handle();
        let sent: Sent = match link.ready() {
            Ready::Open(sender) => {
                let sent = sender.try_send_request(req);
                Box::pin(async move { again_if_unsent(sent.await, &handle, times).await })
            }
            Ready::Connecting(connecting) => Box::pin(async move {
                let mut sender = connecting.await.map_err(ConnectError::into_error)?;
                times.refresh(&mut req);
                let sent = sender.try_send_request(req).await;
                again_if_unsent(sent, &handle, times).await
            }),
        };
        match end {
            Some(end) => Bounded::until(sent, end, Cut::Timeout),
            None => Bounded::open(sent),
        }
    }
}

/// What the connection answered to a request.
type Answer = Result<Response<Incoming>, TrySendError<Request<RequestBody>>>;

/// The answer; or, when the connection gave the request back unsent (it
/// closed first: a GOAWAY, a restart), the answer to it sent once more on
/// a new connection, as hyper-util's pool did. Not a retry: nothing was
/// sent, so a stream goes too, and neither the retry budget nor the
/// endpoint's breaker sees it.
async fn again_if_unsent(
    sent: Answer,
    link: &Handle,
    times: Times,
) -> Result<Response<ResponseBody>, BoxError> {
    match sent {
        Err(mut e) => match e.take_message() {
            Some(mut request) => {
                let mut sender = link.sender().await.map_err(ConnectError::into_error)?;
                times.refresh(&mut request);
                answered(sender.try_send_request(request).await, times.deadline)
            }
            None => answered(Err(e), times.deadline),
        },
        answer => answered(answer, times.deadline),
    }
}

/// When an attempt must end.
#[derive(Clone, Copy)]
struct Times {
    /// The call's deadline, which also ends the response's body.
    deadline: Option<Instant>,
    /// The attempt's end, or the deadline: what `grpc-timeout` tells the
    /// server.
    stop: Option<Instant>,
}

impl Times {
    /// `grpc-timeout` as of now, on a request that waited for a
    /// connection before it went out.
    fn refresh(self, request: &mut Request<RequestBody>) {
        if let Some(stop) = self.stop {
            let left = crate::deadline::Deadline::at(stop).to_grpc_timeout(Instant::now());
            request.headers_mut().insert(GRPC_TIMEOUT, left);
        }
    }
}

/// The response, its body under the call's deadline, or the error as the
/// outcome it stands for.
fn answered(sent: Answer, deadline: Option<Instant>) -> Result<Response<ResponseBody>, BoxError> {
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use bytes::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    use super::*;
    use crate::client::{HttpProtocol, TlsConfig, connector};
    use crate::grpc::link::Boxing;

    /// An h2c server answering every request 200; the `grpc-timeout` of
    /// each request it served.
    async fn server() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        let seen = served.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                let answer = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let timeout = req
                        .headers()
                        .get(GRPC_TIMEOUT)
                        .map(|v| v.to_str().unwrap().to_string());
                    seen.lock().unwrap().push(timeout.unwrap_or_default());
                    async {
                        Ok::<_, Infallible>(Response::new(http_body_util::Empty::<Bytes>::new()))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), answer),
                );
            }
        });
        (addr, served)
    }

    #[tokio::test]
    async fn a_request_the_connection_gave_back_unsent_is_sent_on_a_new_one_with_the_time_left() {
        let (addr, served) = server().await;
        let target: Uri = format!("http://{addr}/").parse().unwrap();
        let link = Link::new(
            target,
            connector(&TlsConfig::default(), HttpProtocol::Http2),
            KeepAlive::default(),
        );
        // A connection that closed before anything went out on it.
        let (io, _peer) = tokio::io::duplex(4096);
        let (mut closed, connection) = hyper::client::conn::http2::Builder::new(Boxing)
            .handshake::<_, RequestBody>(TokioIo::new(io))
            .await
            .unwrap();
        drop(connection);
        // Its `grpc-timeout` as written before the wait: stale.
        let request = Request::builder()
            .method(http::Method::POST)
            .uri(format!("http://{addr}/users.Users/Get"))
            .header(GRPC_TIMEOUT, "99999m")
            .body(RequestBody::Full(Some(Bytes::from_static(b"\0\0\0\0\0"))))
            .unwrap();
        let given_back = closed.try_send_request(request).await;
        let Err(e) = &given_back else {
            panic!("sent on a closed connection")
        };
        assert!(e.error().is_canceled());
        let times = Times {
            deadline: None,
            stop: Some(Instant::now() + Duration::from_secs(1)),
        };
        let response = again_if_unsent(given_back, &link.handle(), times)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let served = served.lock().unwrap().clone();
        assert_eq!(served.len(), 1);
        // Milliseconds: at most the second left, not the stale 99999.
        let left: u64 = served[0].strip_suffix('m').unwrap().parse().unwrap();
        assert!(left <= 1_000, "{served:?}");
    }
}
