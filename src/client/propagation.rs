//! What a call carries from one service to the next: the correlation ID
//! (`x-request-id`), the W3C trace context (`traceparent`) and the time
//! left before the caller's deadline (`x-deadline-ms`).
//!
//! On the server, [`PropagationLayer`] reads them from each incoming
//! request (tower-http's request-id layers make or keep the ID; its trace
//! layer opens a span carrying the IDs) into a [`CallContext`] that is
//! current for the handler's task. A `ServiceClient` called from that task
//! sends them on: the same request ID and trace, and the remaining deadline,
//! so deadlines shrink across hops as Finagle's do.

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use tokio::time::Instant;
use tower::{Layer, Service};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestId, PropagateRequestIdLayer, RequestId, SetRequestId,
    SetRequestIdLayer,
};
use tower_http::trace::{MakeSpan, Trace, TraceLayer};

use crate::deadline::{DEADLINE, Deadline};

/// The correlation ID header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C trace context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A W3C trace context (`traceparent`, version 00): the trace a call
/// belongs to and the span that made it.
///
/// ```
/// use meshguard::client::TraceParent;
///
/// let tp = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(tp.trace_id(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
/// assert_eq!(tp.span_id(), 0x00f067aa0ba902b7);
/// assert!(tp.sampled());
/// let child = tp.child();
/// assert_eq!(child.trace_id(), tp.trace_id());
/// assert_ne!(child.span_id(), tp.span_id());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceParent {
    /// The start of a new trace, sampled.
    pub fn new_root() -> Self {
        TraceParent {
            trace_id: nonzero_u128(),
            span_id: nonzero_u64(),
            flags: 0x01,
        }
    }

    /// A new span in the same trace, with the same flags.
    pub fn child(&self) -> Self {
        TraceParent {
            span_id: nonzero_u64(),
            ..*self
        }
    }

    /// Parses a `traceparent` value. Rejects (with `None`) what the W3C
    /// spec says to ignore: a wrong length or separator, non-lowercase-hex
    /// digits, an all-zero ID, version `ff`; later versions are read as 00.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < 55 || (value.len() > 55 && value[55] != b'-') {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let version = hex(&value[0..2])? as u8;
        if version == 0xff || (version == 0 && value.len() != 55) {
            return None;
        }
        let trace_id = hex(&value[3..35])?;
        let span_id = hex(&value[36..52])? as u64;
        let flags = hex(&value[53..55])? as u8;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The trace's ID.
    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// The span's ID (the `parent-id` field of the header it is sent in).
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// Whether the caller records this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 != 0
    }

    /// The header value.
    pub fn to_header_value(&self) -> HeaderValue {
        // By hand: `format!` with widths cost about 2,000 instructions a
        // call here (callgrind), this about 150.
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        hex_into(&mut out[3..35], self.trace_id);
        out[35] = b'-';
        hex_into(&mut out[36..52], self.span_id as u128);
        out[52] = b'-';
        hex_into(&mut out[53..55], self.flags as u128);
        HeaderValue::from_bytes(&out).expect("hex digits and dashes")
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn hex(digits: &[u8]) -> Option<u128> {
    let mut v = 0u128;
    for &d in digits {
        let n = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | n as u128;
    }
    Some(v)
}

/// Writes the low `out.len()` hex digits of `v` into `out`, lowercase.
fn hex_into(out: &mut [u8], mut v: u128) {
    for b in out.iter_mut().rev() {
        *b = b"0123456789abcdef"[(v & 0xf) as usize];
        v >>= 4;
    }
}

fn nonzero_u64() -> u64 {
    fastrand::u64(1..)
}

fn nonzero_u128() -> u128 {
    fastrand::u128(1..)
}

/// A fresh request ID in the UUID v4 text form (random; made with a fast
/// non-cryptographic generator: request IDs correlate, they do not
/// authenticate).
pub(crate) fn new_request_id() -> HeaderValue {
    let v = (fastrand::u128(..) & !(0xfu128 << 76) & !(0x3u128 << 62))
        | (0x4u128 << 76)
        | (0x2u128 << 62);
    // By hand, as `TraceParent::to_header_value`: `format!` with widths
    // cost about 2,800 instructions a call (callgrind), this about 150.
    let mut hex = [0u8; 32];
    hex_into(&mut hex, v);
    let mut out = [b'-'; 36];
    out[..8].copy_from_slice(&hex[..8]);
    out[9..13].copy_from_slice(&hex[8..12]);
    out[14..18].copy_from_slice(&hex[12..16]);
    out[19..23].copy_from_slice(&hex[16..20]);
    out[24..].copy_from_slice(&hex[20..]);
    HeaderValue::from_bytes(&out).expect("hex digits and dashes")
}

/// What a request carries on to the calls made while serving it.
///
/// [`PropagationLayer`] makes one per incoming request; it is then current
/// ([`CallContext::current`]) for the task serving the request and is in
/// the request's extensions. A `ServiceClient` call uses the current one,
/// or the one given with `.context(..)` (needed in a spawned task, which
/// does not inherit it).
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    request_id: Option<HeaderValue>,
    trace: Option<TraceParent>,
    parent_span: Option<u64>,
    deadline: Option<Deadline>,
}

tokio::task_local! {
    static CURRENT: CallContext;
}

impl CallContext {
    /// An empty context: calls made with it get a new request ID and trace
    /// and no deadline beyond their own.
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
    /// or malformed) and its deadline header (from now).
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
        let deadline = headers
            .get(DEADLINE)
            .and_then(|v| Deadline::from_header_value(v, Instant::now()));
        CallContext {
            request_id: None,
            trace: Some(incoming.map_or_else(TraceParent::new_root, |t| t.child())),
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

/// The server side of propagation, for axum or any tower HTTP service:
/// tower-http's `SetRequestId` (keeps an incoming `x-request-id`, else makes
/// a UUID) and `PropagateRequestId` (echoes it on the response), then
/// [`ContextService`] (the [`CallContext`], current for the rest of the
/// request), then tower-http's `Trace` with a span carrying the request
/// and trace IDs.
///
/// ```
/// use axum::{Router, routing::get};
/// use meshguard::client::{CallContext, PropagationLayer};
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
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagationLayer {
    _priv: (),
}

impl PropagationLayer {
    /// The layer.
    pub fn new() -> Self {
        PropagationLayer { _priv: () }
    }
}

/// The service [`PropagationLayer`] makes.
pub type PropagationService<S> = SetRequestId<
    PropagateRequestId<ContextService<Trace<S, HttpFailures, ContextSpan>>>,
    MakeRequestUuid,
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
        SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid).layer(echoed)
    }
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
        if let Some(deadline) = ctx.deadline {
            req.extensions_mut().insert(deadline);
        }
        req.extensions_mut().insert(ctx.clone());
        ctx.scope(self.inner.call(req))
    }
}

/// Makes the span of an incoming request: `request` with `method`, `uri`,
/// `request_id`, `trace_id`, `span_id` and `parent_id` (the caller's span).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(text.as_bytes()).unwrap();
        assert_eq!(tp.to_string(), text);
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let tp = TraceParent::parse(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more-fields",
        )
        .unwrap();
        assert!(!tp.sampled());
        assert_eq!(tp.span_id(), 0x00f067aa0ba902b7);
    }

    #[test]
    fn the_header_value_is_the_display_form() {
        let tp = TraceParent {
            trace_id: 0x0af7651916cd43dd8448eb211c80319c,
            span_id: 0xb7ad6b7169203331,
            flags: 0x01,
        };
        assert_eq!(
            tp.to_header_value(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert_eq!(tp.to_string(), tp.to_header_value().to_str().unwrap());
    }

    #[test]
    fn request_ids_are_uuid_v4_text() {
        let id = new_request_id();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(
            s.char_indices()
                .filter(|(_, c)| *c == '-')
                .map(|(i, _)| i)
                .collect::<Vec<_>>(),
            [8, 13, 18, 23]
        );
        assert!(s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
    }
}
