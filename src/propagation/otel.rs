//! The `opentelemetry` feature: the trace context read from and written to
//! the `tracing` spans' OpenTelemetry contexts (tracing-opentelemetry), so
//! the spans a tracing-opentelemetry layer exports carry the ids that go
//! over the wire.
//!
//! - a call's `traceparent` and `tracestate` are the current span's, when
//!   it has a valid OpenTelemetry span ([`current_trace`]);
//! - a `ServiceClient` call runs in a `call` span of kind client
//!   ([`call_span`]), so the next hop's parent is that call;
//! - the server's `request` span (kind server) has the incoming context as
//!   its parent and carries its own OpenTelemetry ids in `trace_id` and
//!   `span_id` ([`request_span`]).

use http::{Method, Request};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{CallContext, TraceParent, TraceState};

/// The trace context of `span`'s OpenTelemetry context, when it has a valid
/// span (a tracing-opentelemetry layer is installed and `span` is enabled).
fn trace_of(span: &Span) -> Option<(TraceParent, Option<TraceState>)> {
    if span.is_none() {
        return None;
    }
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    if !sc.is_valid() {
        return None;
    }
    let trace = TraceParent::from_ids(
        u128::from_be_bytes(sc.trace_id().to_bytes()),
        u64::from_be_bytes(sc.span_id().to_bytes()),
        sc.trace_flags().to_u8(),
    )?;
    let state = sc.trace_state().header();
    let state = if state.is_empty() {
        None
    } else {
        TraceState::parse(state.as_bytes())
    };
    Some((trace, state))
}

/// What a call sends when the current span has an OpenTelemetry context:
/// its trace and span ids and flags, and its `tracestate` if it has one.
#[inline]
pub(crate) fn current_trace() -> Option<(TraceParent, Option<TraceState>)> {
    trace_of(&Span::current())
}

/// The span a `ServiceClient` call runs in: `call`, of kind client, with
/// `service`, `method` and `path`. Its attempts send its context.
pub(crate) fn call_span(service: &str, method: &Method, path: &str) -> Span {
    tracing::info_span!(
        "call",
        otel.kind = "client",
        service,
        method = %method,
        path,
    )
}

/// Makes the incoming trace context (the caller's span, with its
/// `tracestate`) the OpenTelemetry parent of `span`; nothing when the
/// request came without a valid `traceparent` (the span starts a trace).
fn set_parent(span: &Span, ctx: &CallContext) {
    let (Some(trace), Some(parent)) = (ctx.trace(), ctx.parent_span()) else {
        return;
    };
    let state = ctx
        .trace_state()
        .and_then(|s| s.as_str().parse().ok())
        .unwrap_or_default();
    let remote = SpanContext::new(
        TraceId::from_bytes(trace.trace_id().to_be_bytes()),
        SpanId::from_bytes(parent.to_be_bytes()),
        TraceFlags::new(trace.flags()),
        true,
        state,
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The `request` span (kind server) of an incoming request: its parent is
/// the incoming context, and `trace_id` and `span_id` are the ids it is
/// exported with (the [`CallContext`]'s when no OpenTelemetry layer made
/// it).
pub(crate) fn request_span<B>(
    req: &Request<B>,
    ctx: Option<&CallContext>,
    request_id: &str,
) -> Span {
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        method = %req.method(),
        uri = %req.uri(),
        request_id,
        trace_id = Empty,
        span_id = Empty,
        parent_id = %ctx.and_then(|c| c.parent_span()).map(|p| format!("{p:016x}")).unwrap_or_default(),
    );
    if let Some(ctx) = ctx {
        set_parent(&span, ctx);
    }
    let ids = trace_of(&span)
        .map(|(trace, _)| trace)
        .or_else(|| ctx.and_then(|c| c.trace()));
    if let Some(trace) = ids {
        span.record("trace_id", format_args!("{:032x}", trace.trace_id()));
        span.record("span_id", format_args!("{:016x}", trace.span_id()));
    }
    span
}
