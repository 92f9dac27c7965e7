//! The server side: [`PropagationLayer`].

use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestId, PropagateRequestIdLayer, SetRequestId, SetRequestIdLayer,
};
use tower_http::trace::{MakeSpan, Trace, TraceLayer};

use super::{CallContext, REQUEST_ID};

/// The server side of propagation, for axum or any tower HTTP service:
/// tower-http's `SetRequestId` (keeps an incoming `x-request-id`, else makes
/// a UUID) and `PropagateRequestId` (echoes it on the response), then
/// [`ContextService`] (the [`CallContext`], current for the rest of the
/// request), then tower-http's `Trace` with a span carrying the request
/// and trace IDs ([`ContextSpan`]; with the `opentelemetry` feature, the
/// incoming trace context is that span's OpenTelemetry parent).
///
/// ```
/// use axum::{Router, routing::get};
/// use meshguard::propagation::{CallContext, PropagationLayer};
///
/// async fn hello() -> String {
///     let ctx = CallContext::current().expect("set by the layer");
///     format!("{:?}", ctx.request_id())
/// }
///
/// let app: Router = Router::new()
///     .route("/hello", get(hello))
///     .layer(PropagationLayer::new());
/// ```
///
/// What comes in is checked first ([`Inbound`]): an `x-request-id` longer
/// than [`MAX_REQUEST_ID`] bytes or with a character outside visible ASCII
/// is replaced by a new one (it would otherwise be echoed, forwarded and
/// written into every log line); at the edge of your network,
/// [`untrusted`](Self::untrusted) ignores the caller's request id and
/// deadline altogether.
#[derive(Debug, Clone, Copy)]
pub struct PropagationLayer {
    trusted: bool,
}

impl Default for PropagationLayer {
    /// [`PropagationLayer::new`]: trusting.
    fn default() -> Self {
        PropagationLayer::new()
    }
}

impl PropagationLayer {
    /// The layer, trusting a caller's (valid) request id and deadline: for
    /// services called by your own.
    pub fn new() -> Self {
        PropagationLayer { trusted: true }
    }

    /// The layer for a service called from outside (a gateway, a public
    /// API): the caller's `x-request-id`, `x-deadline-ms` and
    /// `grpc-timeout` are ignored (a new id is made; the deadline is the
    /// service's own), so an outside caller can neither plant ids in your
    /// logs nor cut every call short with `x-deadline-ms: 0`. A
    /// `traceparent` is still continued (it is checked, and a trace id
    /// carries no authority).
    pub fn untrusted() -> Self {
        PropagationLayer { trusted: false }
    }
}

/// The longest `x-request-id` a [`PropagationLayer`] keeps, in bytes.
pub const MAX_REQUEST_ID: usize = 128;

/// The service [`PropagationLayer`] makes.
pub type PropagationService<S> = Inbound<
    SetRequestId<
        PropagateRequestId<ContextService<Trace<S, HttpFailures, ContextSpan>>>,
        MakeRequestUuid,
    >,
>;

type HttpFailures =
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>;

impl<S> Layer<S> for PropagationLayer {
    type Service = PropagationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let traced = TraceLayer::new_for_http()
            .make_span_with(ContextSpan { _priv: () })
            .layer(inner);
        let with_context = ContextService { inner: traced };
        let echoed = PropagateRequestIdLayer::new(REQUEST_ID).layer(with_context);
        Inbound {
            inner: SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid).layer(echoed),
            trusted: self.trusted,
        }
    }
}

/// The first step of [`PropagationLayer`]: removes what a caller must not
/// set (an invalid `x-request-id`; from an untrusted caller, its id and
/// deadline) before the rest reads the request.
#[derive(Debug, Clone)]
pub struct Inbound<S> {
    inner: S,
    trusted: bool,
}

impl<S, B> Service<Request<B>> for Inbound<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let headers = req.headers_mut();
        if !self.trusted {
            headers.remove(REQUEST_ID);
            headers.remove(crate::deadline::DEADLINE);
            headers.remove(crate::deadline::GRPC_TIMEOUT);
        } else if headers
            .get(REQUEST_ID)
            .is_some_and(|id| !valid_request_id(id.as_bytes()))
        {
            headers.remove(REQUEST_ID);
        }
        self.inner.call(req)
    }
}

/// 1 to [`MAX_REQUEST_ID`] bytes of visible ASCII (no space, no control
/// character), and only one such header.
fn valid_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Reads a request's [`CallContext`] into its extensions and makes it
/// current while the inner service handles it; part of [`PropagationLayer`].
#[derive(Debug, Clone)]
pub struct ContextService<S> {
    inner: S,
}

impl<S> ContextService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        ContextService { inner }
    }
}

impl<S, B> Service<Request<B>> for ContextService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    // tokio's task-local scope is the whole future: nothing to add to it.
    type Future = tokio::task::futures::TaskLocalFuture<CallContext, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ctx = CallContext::from_request(&req);
        if let Some(deadline) = ctx.deadline() {
            req.extensions_mut().insert(deadline);
        }
        req.extensions_mut().insert(ctx.clone());
        ctx.scope(self.inner.call(req))
    }
}

/// Makes the span of an incoming request: `request` with `method`, `uri`,
/// `request_id`, `trace_id`, `span_id` and `parent_id` (the caller's span).
///
/// With the `opentelemetry` feature the span is of kind server
/// (`otel.kind`), the incoming `traceparent` and `tracestate` are its
/// OpenTelemetry parent, and `trace_id` and `span_id` are the ids it is
/// exported with.
#[derive(Debug, Clone, Copy)]
pub struct ContextSpan {
    _priv: (),
}

impl<B> MakeSpan<B> for ContextSpan {
    fn make_span(&mut self, req: &Request<B>) -> tracing::Span {
        let ctx = req.extensions().get::<CallContext>();
        let request_id = ctx
            .and_then(|c| c.request_id())
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        #[cfg(feature = "opentelemetry")]
        return super::otel::request_span(req, ctx, request_id);
        #[cfg(not(feature = "opentelemetry"))]
        {
            let trace = ctx.and_then(|c| c.trace());
            tracing::info_span!(
                "request",
                method = %req.method(),
                uri = %req.uri(),
                request_id,
                trace_id = %trace.map(|t| format!("{:032x}", t.trace_id())).unwrap_or_default(),
                span_id = %trace.map(|t| format!("{:016x}", t.span_id())).unwrap_or_default(),
                parent_id = %ctx.and_then(|c| c.parent_span()).map(|p| format!("{p:016x}")).unwrap_or_default(),
            )
        }
    }
}
