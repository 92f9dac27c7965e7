//! [`ClientError`]: every way a call through a `ServiceClient` can fail.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::BoxError;
use crate::circuit_breaker::CircuitOpen;
use crate::retry::{DeadlineExceeded, retryable_error};

/// How many bytes of an error response's body a [`ClientError::Status`]
/// keeps: enough for a JSON error message, not a whole page.
pub const STATUS_BODY_LIMIT: usize = 512;

/// Why a call failed. Each variant says, through [`is_retryable`], whether
/// trying again (later, or on another instance) could help.
///
/// [`is_retryable`]: ClientError::is_retryable
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The service-level circuit breaker is open: the call was not sent.
    #[error("circuit open{}", retry_after_text(.retry_after))]
    CircuitOpen {
        /// How long until the breaker lets a probe through, if known.
        retry_after: Option<Duration>,
    },
    /// The last attempt took longer than the per-attempt timeout.
    #[error("request timed out")]
    Timeout,
    /// The call's deadline (its own or the caller's, propagated) passed.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// Discovery knows no instance of the service.
    #[error("no endpoints available")]
    NoEndpoints,
    /// Connecting, sending or receiving failed.
    #[error("transport error: {0}")]
    Transport(#[source] BoxError),
    /// The service answered with a status that is not a success.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the response body (at most [`STATUS_BODY_LIMIT`]
        /// bytes, cut at a character boundary), for logs.
        body: String,
        /// The response's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The response body is not the JSON the caller expects.
    #[error("cannot decode the response body: {0}")]
    Decode(#[source] serde_json::Error),
    /// The response body is larger than the client's limit.
    #[error("response body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request could not be built (an invalid path, header or body).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

fn retry_after_text(after: &Option<Duration>) -> String {
    match after {
        Some(d) => format!(" (retry after {d:?})"),
        None => String::new(),
    }
}

impl ClientError {
    /// Whether the same request could succeed if tried again: later (an
    /// open circuit, no endpoints yet, 429/502/503/504) or on another
    /// instance (a connection failure, a timeout). A passed deadline, a
    /// 4xx, an undecodable or oversized body, or an invalid request will
    /// fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::CircuitOpen { .. } | ClientError::Timeout | ClientError::NoEndpoints => {
                true
            }
            ClientError::Transport(e) => retryable_error(e.as_ref()).is_some(),
            ClientError::Status { status, .. } => matches!(
                *status,
                StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            ClientError::DeadlineExceeded
            | ClientError::Decode(_)
            | ClientError::BodyTooLarge { .. }
            | ClientError::InvalidRequest(_) => false,
        }
    }

    /// How long to wait before trying again, when the failure says so (an
    /// open circuit's remaining open period, a response's `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::CircuitOpen { retry_after } | ClientError::Status { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The response status, for [`ClientError::Status`].
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A short, stable name for the variant (`"circuit_open"`, `"status"`,
    /// ...): the `outcome` label of the client's metrics and a log field.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::CircuitOpen { .. } => "circuit_open",
            ClientError::Timeout => "timeout",
            ClientError::DeadlineExceeded => "deadline_exceeded",
            ClientError::NoEndpoints => "no_endpoints",
            ClientError::Transport(_) => "transport",
            ClientError::Status { .. } => "status",
            ClientError::Decode(_) => "decode",
            ClientError::BodyTooLarge { .. } => "body_too_large",
            ClientError::InvalidRequest(_) => "invalid_request",
        }
    }

    /// Sorts a middleware error (the stack's `BoxError`) into a variant.
    pub(crate) fn from_stack(error: BoxError) -> ClientError {
        if let Some(open) = error.downcast_ref::<CircuitOpen>() {
            return ClientError::CircuitOpen {
                retry_after: open.retry_after(),
            };
        }
        if error.is::<DeadlineExceeded>() {
            return ClientError::DeadlineExceeded;
        }
        if error.is::<tower::timeout::error::Elapsed>() {
            return ClientError::Timeout;
        }
        if let Some(too_large) = error.downcast_ref::<super::transport::BodyTooLarge>() {
            return ClientError::BodyTooLarge { limit: too_large.0 };
        }
        if error.is::<NoEndpoints>() {
            return ClientError::NoEndpoints;
        }
        if let Some(invalid) = error.downcast_ref::<InvalidUri>() {
            return ClientError::InvalidRequest(invalid.to_string());
        }
        ClientError::Transport(error)
    }
}

/// Discovery knows no instance of the service; becomes
/// [`ClientError::NoEndpoints`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEndpoints;

impl fmt::Display for NoEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no endpoints available")
    }
}

impl StdError for NoEndpoints {}

/// An endpoint and a request path that do not make a URI.
#[derive(Debug)]
pub(crate) struct InvalidUri(pub(crate) String);

impl fmt::Display for InvalidUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid URI: {}", self.0)
    }
}

impl StdError for InvalidUri {}
