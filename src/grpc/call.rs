//! [`GrpcCall`]: one gRPC call as the channel's layers carry it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::uri::PathAndQuery;
use tokio::time::Instant;

use super::body::RequestBody;
use crate::balance::BalancedRequest;
use crate::deadline::{Deadline, HasDeadline};
use crate::propagation::{TraceParent, TraceState};
use crate::retry::{NoReplay, Replay};

/// One call: what every attempt sends, and the body.
pub(crate) struct GrpcCall {
    pub(crate) head: Arc<Head>,
    pub(crate) body: CallBody,
    /// The merged deadline (set by the deadline layer), or a caller's.
    pub(crate) deadline: Option<Deadline>,
    /// The call's own time limit (its `grpc-timeout`).
    pub(crate) timeout: Option<Duration>,
    /// When the attempt must end, if it waited for an endpoint.
    pub(crate) attempt_end: Option<Instant>,
}

/// What every attempt of a call sends besides its body.
pub(crate) struct Head {
    pub(crate) path: PathAndQuery,
    /// tonic's headers (content type, `te`, metadata).
    pub(crate) headers: HeaderMap,
    /// The served request's `x-request-id`, if it had one (a gRPC call
    /// mints none: gRPC traces by `traceparent`).
    pub(crate) request_id: Option<http::HeaderValue>,
    /// The caller's trace, if it has one.
    pub(crate) trace: Option<TraceParent>,
    pub(crate) trace_state: Option<TraceState>,
}

/// A call's body: a message that can be sent again, or a stream sent once
/// (moved into the one attempt that sends it: a stream's call is never
/// copied).
pub(crate) enum CallBody {
    Message(Bytes),
    Stream(Option<RequestBody>),
}

impl CallBody {
    /// The body an attempt sends.
    pub(crate) fn take(&mut self) -> Option<RequestBody> {
        match self {
            CallBody::Message(bytes) => Some(RequestBody::Full(Some(bytes.clone()))),
            CallBody::Stream(stream) => stream.take(),
        }
    }
}

impl HasDeadline for GrpcCall {
    #[inline]
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    #[inline]
    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }

    #[inline]
    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// A gRPC call is replayed whatever its HTTP method (always POST): gRPC
/// retries by status (a trailers-only UNAVAILABLE was not processed), not by
/// method. Only a buffered message can be sent again; a stream cannot.
impl Replay for GrpcCall {
    fn replay(&self, _allow_non_idempotent: bool) -> Result<Self, NoReplay> {
        match &self.body {
            CallBody::Message(bytes) => Ok(GrpcCall {
                head: self.head.clone(),
                body: CallBody::Message(bytes.clone()),
                deadline: self.deadline,
                timeout: self.timeout,
                attempt_end: None,
            }),
            CallBody::Stream(_) => Err(NoReplay::BodyNotReplayable),
        }
    }
}

impl BalancedRequest for GrpcCall {
    #[inline]
    fn set_attempt_end(&mut self, at: Instant) {
        self.attempt_end = Some(at);
    }

    #[inline]
    fn deadline(&self) -> Option<Instant> {
        self.deadline.map(|d| d.instant())
    }

    /// A channel does not hedge.
    #[inline]
    fn is_hedge(&self) -> bool {
        false
    }
}
