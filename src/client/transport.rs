//! The bottom of the client stack: hyper-util's pooled client speaking to
//! one endpoint, the discovery source, and the balancer shared by a
//! client's clones (which also turns "no endpoint at all" into an error
//! instead of an endless wait).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::error::{InvalidUri, NoEndpoints};
use super::propagation::DEADLINE;
use crate::BoxError;
use crate::discovery::{Change, Endpoint, StaticDiscovery};
use crate::retry::Deadline;

/// The request body every client call sends: buffered, so it can be sent
/// again by a retry.
pub(crate) type Body = Full<Bytes>;

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

/// Sends requests whose URI is a path to one endpoint, over the shared pool,
/// with the remaining deadline in the [`DEADLINE`] header, and reads the
/// response body (up to the client's limit) before it answers.
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
    attempts: crate::telemetry::AttemptMetrics,
}

/// What bounds one exchange with an endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The attempt timeout: headers and body, from the call.
    pub(crate) timeout: Option<Duration>,
    /// The largest response body read.
    pub(crate) max_body_size: usize,
}

/// When an attempt that waited for an endpoint must end: the transport's
/// timer then counts from the attempt's start, not from the send. Put in
/// the request only by a call that had to wait (see [`SharedFuture`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptEnd(pub(crate) Instant);

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
        attempts: crate::telemetry::AttemptMetrics,
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
            attempts,
        }
    }
}

impl Service<Request<Body>> for EndpointTransport {
    type Response = Response<Bytes>;
    type Error = BoxError;
    type Future = TransportFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // hyper-util's client queues for a pooled connection inside `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> TransportFuture {
        let authority = match &self.authority {
            Ok(a) => a.clone(),
            Err(e) => return TransportFuture::failed(InvalidUri(e.to_string()).into()),
        };
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(authority);
        parts.path_and_query = Some(path);
        match Uri::from_parts(parts) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(e) => return TransportFuture::failed(InvalidUri(e.to_string()).into()),
        }
        let deadline = req.extensions().get::<Deadline>().copied();
        // One clock read for the header and the timer (about 30 ns each here).
        let now = Instant::now();
        if let Some(deadline) = deadline {
            let ms = deadline
                .instant()
                .saturating_duration_since(now)
                .as_millis() as u64;
            req.headers_mut().insert(DEADLINE, HeaderValue::from(ms));
        }
        // The attempt's end, if it comes before the deadline: past the
        // deadline the layer above cancels the attempt (the caller's budget
        // ran out, which says nothing about this instance), before it the
        // attempt fails here with a timeout that this instance's breaker
        // records.
        let timer = self.limits.timeout.and_then(|timeout| {
            let mut end = now + timeout;
            if let Some(AttemptEnd(at)) = req.extensions().get::<AttemptEnd>() {
                end = end.min(*at);
            }
            match deadline {
                Some(d) if d.instant() <= end => None,
                _ => Some(Box::pin(tokio::time::sleep_until(end))),
            }
        });
        self.attempts.sent();
        TransportFuture {
            state: TransportState::Sent {
                inner: self.client.request(req),
            },
            timer,
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
        timer: Option<Pin<Box<Sleep>>>,
        limit: usize,
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
            timer: None,
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
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
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
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
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
        if let Some(timer) = this.timer {
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(tower::timeout::error::Elapsed::new().into()));
            }
        }
        Poll::Pending
    }
}

/// Where a client's endpoints come from.
pub(crate) enum SourceKind {
    Static(StaticDiscovery),
    #[cfg(feature = "consul")]
    Consul(crate::discovery::consul::ConsulDiscovery),
    Custom(Pin<Box<dyn futures_core::Stream<Item = Result<Change, Infallible>> + Send>>),
}

/// A discovery stream that also says when its first answer is in.
pub(crate) struct Source {
    kind: SourceKind,
    settled: Arc<AtomicBool>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

impl Source {
    pub(crate) fn new(kind: SourceKind) -> Self {
        let settled = match &kind {
            // Its endpoints are all known (and yielded at the first poll).
            SourceKind::Static(_) => Arc::new(AtomicBool::new(true)),
            #[cfg(feature = "consul")]
            SourceKind::Consul(c) => c.settled(),
            SourceKind::Custom(_) => Arc::new(AtomicBool::new(false)),
        };
        Source { kind, settled }
    }

    pub(crate) fn settled(&self) -> Arc<AtomicBool> {
        self.settled.clone()
    }
}

impl futures_core::Stream for Source {
    type Item = Result<Change, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match &mut this.kind {
            SourceKind::Static(s) => Pin::new(s).poll_next(cx),
            #[cfg(feature = "consul")]
            SourceKind::Consul(c) => Pin::new(c).poll_next(cx),
            SourceKind::Custom(s) => {
                let next = s.as_mut().poll_next(cx);
                if next.is_ready() {
                    // A custom stream's first change (or end) settles it.
                    this.settled.store(true, Ordering::Release);
                }
                next
            }
        }
    }
}

/// The balancer's length, for [`SharedBalancer`].
pub(crate) trait Len {
    fn len(&self) -> usize;
}

impl<D, F, C, S, Req> Len for crate::balance::Balancer<D, F, C, Req>
where
    D: futures_core::Stream<Item = Result<crate::discovery::Change, std::convert::Infallible>>,
    F: FnMut(&crate::discovery::Endpoint) -> S,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: crate::classify::Classify<S::Response, S::Error> + Clone,
{
    fn len(&self) -> usize {
        crate::balance::Balancer::len(self)
    }
}

/// The balancer, shared by every clone of a client: a call takes the lock
/// only to pick an endpoint and start the request on it (`poll_ready` and
/// `call` together, so no other caller can take the readiness in
/// between), then runs unlocked.
///
/// Why not tower's `Buffer`, the usual way to share a service that is not
/// `Clone`: it hands every request to a worker task and the response
/// future back through a channel, a task switch and several allocations
/// per call; measured in `benches/client.rs`, the lock costs less (the
/// critical section is the p2c pick, well under a microsecond).
///
/// Fails calls at once with [`NoEndpoints`] when discovery has answered and
/// the balancer holds no endpoint (tower's balancer would wait for one
/// forever). Not ready is not failed: a call waits while endpoints exist
/// but none is ready (all ejected and probing).
pub(crate) struct SharedBalancer<S> {
    shared: Arc<Locked<S>>,
    /// The attempt timeout, which also bounds the wait for an endpoint.
    timeout: Option<Duration>,
}

struct Locked<S> {
    inner: std::sync::Mutex<S>,
    settled: Arc<AtomicBool>,
    /// Callers waiting for an endpoint to be ready. p2c remembers only the
    /// last caller's waker, so whoever it wakes passes the wake on to these
    /// once it has taken the readiness (or gives up).
    waiters: std::sync::Mutex<Vec<std::task::Waker>>,
    waiting: std::sync::atomic::AtomicUsize,
}

impl<S> Clone for SharedBalancer<S> {
    fn clone(&self) -> Self {
        SharedBalancer {
            shared: self.shared.clone(),
            timeout: self.timeout,
        }
    }
}

impl<S> fmt::Debug for SharedBalancer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBalancer").finish_non_exhaustive()
    }
}

impl<S> SharedBalancer<S> {
    pub(crate) fn new(inner: S, settled: Arc<AtomicBool>, timeout: Option<Duration>) -> Self {
        SharedBalancer {
            timeout,
            shared: Arc::new(Locked {
                inner: std::sync::Mutex::new(inner),
                settled,
                waiters: std::sync::Mutex::new(Vec::new()),
                waiting: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }
}

impl<S> Locked<S> {
    fn wait(&self, waker: &std::task::Waker) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
            self.waiting.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Wakes every waiting caller; the common path is one atomic load.
    #[inline]
    fn wake_waiters(&self) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let waiters = {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            self.waiting.store(0, Ordering::Release);
            std::mem::take(&mut *w)
        };
        waiters.into_iter().for_each(std::task::Waker::wake);
    }
}

impl<S, B> Service<Request<B>> for SharedBalancer<S>
where
    S: Service<Request<B>, Error = BoxError> + Len,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SharedFuture<S, Request<B>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is taken with the lock, when the call's future first runs.
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        SharedFuture {
            state: SharedState::Picking {
                shared: self.shared.clone(),
                req: Some(req),
                waited: false,
                timeout: self.timeout,
                timer: None,
            },
        }
    }
}

pin_project! {
    /// The future of [`SharedBalancer`].
    pub(crate) struct SharedFuture<S: Service<Req>, Req> {
        #[pin]
        state: SharedState<S, Req>,
    }

    impl<S: Service<Req>, Req> PinnedDrop for SharedFuture<S, Req> {
        fn drop(this: Pin<&mut Self>) {
            // Cancelled while waiting: the wake p2c meant for us may have
            // been ours to pass on.
            if let SharedProj::Picking { shared, waited: true, .. } = this.project().state.project() {
                shared.wake_waiters();
            }
        }
    }
}

pin_project! {
    #[project = SharedProj]
    enum SharedState<S: Service<Req>, Req> {
        Picking {
            shared: Arc<Locked<S>>,
            req: Option<Req>,
            waited: bool,
            timeout: Option<Duration>,
            // Armed only when the call has to wait: the attempt timeout.
            timer: Option<Pin<Box<Sleep>>>,
        },
        Called { #[pin] inner: S::Future },
    }
}

impl<S, Req> fmt::Debug for SharedFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedFuture").finish_non_exhaustive()
    }
}

impl<S, B> Future for SharedFuture<S, Request<B>>
where
    S: Service<Request<B>, Error = BoxError> + Len,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let inner = match this.state.as_mut().project() {
                SharedProj::Called { inner } => return inner.poll(cx),
                SharedProj::Picking {
                    shared,
                    req,
                    waited,
                    timeout,
                    timer,
                } => {
                    let mut lb = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
                    match lb.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            let fut = lb.call(req.take().expect("polled after completion"));
                            drop(lb);
                            if std::mem::take(waited) {
                                shared.wake_waiters();
                            }
                            fut
                        }
                        Poll::Ready(Err(e)) => {
                            drop(lb);
                            shared.wake_waiters();
                            *waited = false;
                            return Poll::Ready(Err(e));
                        }
                        Poll::Pending
                            if lb.len() == 0 && shared.settled.load(Ordering::Acquire) =>
                        {
                            drop(lb);
                            *waited = false;
                            // Fails without touching a tokio resource.
                            ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                            return Poll::Ready(Err(NoEndpoints.into()));
                        }
                        Poll::Pending => {
                            // Listed before the lock is released: a caller
                            // that takes the readiness after us will see us.
                            shared.wait(cx.waker());
                            drop(lb);
                            *waited = true;
                            if timer.is_none() {
                                if let Some(timeout) = *timeout {
                                    let end = Instant::now() + timeout;
                                    if let Some(req) = req.as_mut() {
                                        req.extensions_mut().insert(AttemptEnd(end));
                                    }
                                    *timer = Some(Box::pin(tokio::time::sleep_until(end)));
                                }
                            }
                            if let Some(t) = timer {
                                if t.as_mut().poll(cx).is_ready() {
                                    *waited = false;
                                    shared.wake_waiters();
                                    return Poll::Ready(Err(
                                        tower::timeout::error::Elapsed::new().into()
                                    ));
                                }
                            }
                            return Poll::Pending;
                        }
                    }
                }
            };
            this.state.set(SharedState::Called { inner });
        }
    }
}
