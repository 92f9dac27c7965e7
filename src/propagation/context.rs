//! [`CallContext`]: what a request carries on to the calls made while
//! serving it.

use std::future::Future;

use http::{HeaderMap, HeaderValue, Request};
use tokio::time::Instant;
use tower_http::request_id::RequestId;

use super::{REQUEST_ID, TRACEPARENT, TraceParent, TraceState};
use crate::deadline::{DEADLINE, Deadline, GRPC_TIMEOUT};

/// What a request carries on to the calls made while serving it.
///
/// [`PropagationLayer`](super::PropagationLayer) makes one per incoming request; it is then current
/// ([`CallContext::current`]) for the task serving the request and is in
/// the request's extensions. A `ServiceClient` call uses the current one,
/// or the one given with `.context(..)` (needed in a spawned task, which
/// does not inherit it).
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    request_id: Option<HeaderValue>,
    trace: Option<TraceParent>,
    trace_state: Option<TraceState>,
    parent_span: Option<u64>,
    deadline: Option<Deadline>,
}

tokio::task_local! {
    static CURRENT: CallContext;
}

impl CallContext {
    /// An empty context: calls made with it send no request ID and no
    /// trace (the next hop makes its own) and no deadline beyond their own.
    pub fn new() -> Self {
        CallContext::default()
    }

    /// The context of the request this task is serving, if any.
    pub fn current() -> Option<CallContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with this context current.
    pub fn scope<F: Future>(self, fut: F) -> tokio::task::futures::TaskLocalFuture<CallContext, F> {
        CURRENT.scope(self, fut)
    }

    /// Reads the context an incoming request carries: its request ID
    /// (tower-http's [`RequestId`] extension first, then the header), its
    /// `traceparent` (a new span of that trace, or a new trace when absent
    /// or malformed), its `tracestate` (kept only beside a valid
    /// `traceparent`, and only when valid itself: see [`TraceState`]) and
    /// its deadline header (from now).
    pub fn from_request<B>(req: &Request<B>) -> CallContext {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|id| id.header_value().clone())
            .or_else(|| req.headers().get(REQUEST_ID).cloned());
        CallContext::from_headers(req.headers()).with_optional_request_id(request_id)
    }

    fn from_headers(headers: &HeaderMap) -> CallContext {
        let incoming = headers
            .get(TRACEPARENT)
            .and_then(|v| TraceParent::parse(v.as_bytes()));
        // `x-deadline-ms`, or gRPC's `grpc-timeout`; the earlier if both.
        let now = Instant::now();
        let http = headers
            .get(DEADLINE)
            .and_then(|v| Deadline::from_header_value(v, now));
        let grpc = headers
            .get(GRPC_TIMEOUT)
            .and_then(|v| Deadline::from_grpc_timeout(v, now));
        let deadline = match (http, grpc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        CallContext {
            request_id: None,
            trace: Some(incoming.map_or_else(TraceParent::new_root, |t| t.child())),
            // The spec: no `tracestate` without a valid `traceparent`.
            trace_state: incoming.and_then(|_| TraceState::from_headers(headers)),
            parent_span: incoming.map(|t| t.span_id()),
            deadline,
        }
    }

    fn with_optional_request_id(mut self, id: Option<HeaderValue>) -> Self {
        self.request_id = id;
        self
    }

    /// Sets the request ID.
    pub fn with_request_id(mut self, id: HeaderValue) -> Self {
        self.request_id = Some(id);
        self
    }

    /// Sets the trace context: calls made in this context send it as their
    /// `traceparent`.
    pub fn with_trace(mut self, trace: TraceParent) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Sets the `tracestate` sent beside the trace (with a trace of this
    /// context's own only: a call with no trace sends none).
    pub fn with_trace_state(mut self, state: TraceState) -> Self {
        self.trace_state = Some(state);
        self
    }

    /// Sets the deadline.
    pub fn with_deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The correlation ID.
    pub fn request_id(&self) -> Option<&HeaderValue> {
        self.request_id.as_ref()
    }

    /// This service's span in the caller's trace.
    pub fn trace(&self) -> Option<TraceParent> {
        self.trace
    }

    /// The caller's `tracestate`, passed on unchanged.
    pub fn trace_state(&self) -> Option<&TraceState> {
        self.trace_state.as_ref()
    }

    /// The caller's span ID, when the request came with a valid
    /// `traceparent`.
    pub fn parent_span(&self) -> Option<u64> {
        self.parent_span
    }

    /// When the caller stops waiting.
    pub fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
}

/// The trace context a call sends: with the `opentelemetry` feature, the
/// current span's OpenTelemetry context when it has a valid span; else the
/// context's trace and `tracestate`; else none.
///
/// None rather than a new trace: a `traceparent` names the caller's span as
/// the parent of the next hop's, and a call with no context has no span
/// that anything records. A trace begun here would give an OpenTelemetry
/// backend a parent it never receives (a trace with a missing root); with
/// none, the next hop starts the trace itself (`PropagationLayer` does).
#[inline]
pub(crate) fn outgoing_trace(
    context: Option<&CallContext>,
) -> Option<(TraceParent, Option<TraceState>)> {
    #[cfg(feature = "opentelemetry")]
    if let Some(current) = super::otel::current_trace() {
        return Some(current);
    }
    context.and_then(|c| c.trace.map(|t| (t, c.trace_state.clone())))
}
