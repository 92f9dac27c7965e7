//! What a call carries from one service to the next: the correlation ID
//! (`x-request-id`), the W3C trace context (`traceparent` and
//! `tracestate`) and the time left before the caller's deadline
//! (`x-deadline-ms`).
//!
//! On the server, [`PropagationLayer`] reads them from each incoming
//! request (tower-http's request-id layers make or keep the ID; its trace
//! layer opens a span carrying the IDs) into a [`CallContext`] that is
//! current for the handler's task. A `ServiceClient` called from that task
//! sends them on: the same request ID and trace, and the remaining deadline,
//! so deadlines shrink across hops as Finagle's do.
//!
//! - [`TraceParent`]: the W3C `traceparent` value.
//! - [`TraceState`]: the W3C `tracestate` value, checked and passed on
//!   unchanged.
//! - [`CallContext`]: what a request carries on to the calls made while
//!   serving it.
//! - [`PropagationLayer`]: the server side, for axum or any tower HTTP
//!   service.
//!
//! The deadline's header and format are the [`deadline`](crate::deadline)
//! module's ([`DEADLINE`](crate::deadline::DEADLINE)).
//!
//! With the `opentelemetry` feature, the trace context follows the current
//! `tracing` span's OpenTelemetry context (tracing-opentelemetry): calls
//! send its ids, and the layer makes the incoming context the parent of the
//! request span, so exported spans and propagated ids match (see
//! docs/observability.md, "OpenTelemetry").

mod context;
mod layer;
#[cfg(feature = "opentelemetry")]
mod otel;
mod trace;
mod trace_state;

use http::HeaderName;

pub use context::CallContext;
pub(crate) use context::outgoing_trace;
pub use layer::{
    ContextService, ContextSpan, Inbound, MAX_REQUEST_ID, PropagationLayer, PropagationService,
};
#[cfg(feature = "opentelemetry")]
pub(crate) use otel::call_span;
pub use trace::TraceParent;
pub use trace_state::{TRACESTATE_MAX_LEN, TRACESTATE_MAX_MEMBERS, TraceState};

/// The correlation ID header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C trace context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The W3C trace context's vendor-specific header, sent beside
/// [`TRACEPARENT`].
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
