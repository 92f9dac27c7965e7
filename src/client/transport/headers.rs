//! The full header set of one attempt, whichever connection sends it.

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use super::super::call::Call;
use crate::deadline::DEADLINE;
use crate::propagation::{REQUEST_ID, TRACEPARENT, TRACESTATE};

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The headers an attempt of `call` sends, written once, into a map made
/// to its size (the call's own map is shared with the copy a retry keeps):
/// the caller's own, then what the call's flags ask for and the client's
/// `defaults`, each unless the caller set it, then what propagates
/// (`x-request-id`, `traceparent`, `tracestate` when the trace has one, and
/// `x-deadline-ms` as of `now` when a deadline applies).
///
/// A reqwest client adds its own default headers after these, each only
/// where the name is not set here.
#[inline]
pub(super) fn attempt_headers(call: &Call, defaults: &HeaderMap, now: Instant) -> HeaderMap {
    let parts = &*call.parts;
    let own = &parts.headers;
    let mut headers = HeaderMap::with_capacity(own.len() + defaults.len() + 6);
    for (name, value) in own {
        headers.append(name.clone(), value.clone());
    }
    if parts.accept_json && !own.contains_key(ACCEPT) {
        headers.insert(ACCEPT, JSON);
    }
    if parts.json_body && !own.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, JSON);
    }
    for name in defaults.keys() {
        if !headers.contains_key(name) {
            // Every value of a default set more than once.
            for value in defaults.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    if let Some(id) = &parts.request_id {
        headers.insert(REQUEST_ID, id.clone());
    }
    if let Some(trace) = &parts.trace {
        headers.insert(TRACEPARENT, trace.to_header_value());
        if let Some(state) = &parts.trace_state {
            headers.insert(TRACESTATE, state.to_header_value());
        }
    }
    if let Some(deadline) = call.deadline {
        headers.insert(DEADLINE, deadline.to_header_value(now));
    }
    headers
}
