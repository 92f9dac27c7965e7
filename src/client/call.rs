//! [`Call`]: one request as the client's layers carry it, from the request
//! builder down to the endpoint's transport.
//!
//! Not an `http::Request`: every attempt is a copy (tower's retry keeps one
//! for the next attempt), and an `http::Request` copies its header map and
//! its extensions map (where a deadline would live), several allocations a
//! call. A `Call` shares what it sends between its copies, carries the
//! deadline and the propagated context as plain fields and only the
//! caller's own headers as a map; the transport writes the full header set
//! once, into the request it sends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method};
use tokio::time::Instant;

use crate::balance::BalancedRequest;
use crate::deadline::{Deadline, HasDeadline};
use crate::propagation::{TraceParent, TraceState};
use crate::retry::{NoReplay, Replay};

/// One call: what to send, shared by its attempts, and what each attempt
/// carries (the deadline, set by the deadline layer; when the attempt must
/// end).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// What to send: one allocation a call, shared (not copied) by the copy
    /// the retry layer keeps for the next attempt.
    pub(crate) parts: Arc<CallParts>,
    /// The merged deadline (set by the deadline layer), or a caller's.
    pub(crate) deadline: Option<Deadline>,
    /// This call's own time limit, merged by the deadline layer.
    pub(crate) timeout: Option<Duration>,
    /// When the attempt must end, if it waited for an endpoint.
    pub(crate) attempt_end: Option<Instant>,
    /// A hedge's copy: not sent when no endpoint can answer in time, rather
    /// than failing the call its original still serves.
    pub(crate) hedge: bool,
}

/// What a call sends.
#[derive(Debug, Clone)]
pub(crate) struct CallParts {
    pub(crate) method: Method,
    pub(crate) path: PathAndQuery,
    /// The caller's own headers (empty, unallocated, for most calls).
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// `accept: application/json`, unless the caller set its own.
    pub(crate) accept_json: bool,
    /// `content-type: application/json`, unless the caller set its own.
    pub(crate) json_body: bool,
    /// `x-request-id`: the caller's, propagated; none without a context
    /// (the next hop makes one).
    pub(crate) request_id: Option<HeaderValue>,
    /// `traceparent`: the caller's trace; none without a context.
    pub(crate) trace: Option<TraceParent>,
    /// `tracestate`, passed on unchanged beside the trace.
    pub(crate) trace_state: Option<TraceState>,
}

impl HasDeadline for Call {
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

impl Replay for Call {
    #[inline]
    fn replay(&self, allow_non_idempotent: bool) -> Result<Self, NoReplay> {
        if !allow_non_idempotent && !self.parts.method.is_idempotent() {
            return Err(NoReplay::NotIdempotent);
        }
        Ok(self.clone())
    }

    #[inline]
    fn replay_as_hedge(&self, allow_non_idempotent: bool) -> Result<Self, NoReplay> {
        let mut copy = self.replay(allow_non_idempotent)?;
        copy.hedge = true;
        Ok(copy)
    }
}

impl BalancedRequest for Call {
    #[inline]
    fn set_attempt_end(&mut self, at: Instant) {
        self.attempt_end = Some(at);
    }

    #[inline]
    fn deadline(&self) -> Option<Instant> {
        self.deadline.map(|d| d.instant())
    }

    #[inline]
    fn is_hedge(&self) -> bool {
        self.hedge
    }
}
