//! [`ClientError`]: every way a call through a `ServiceClient` can fail.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::StatusCode;

use super::transport::transport_outcome;
use crate::BoxError;
use crate::classify::{Classified, Outcome};

/// How many bytes of an error response's body a [`ClientError::Status`]
/// keeps: enough for a JSON error message, not a whole page.
pub const STATUS_BODY_LIMIT: usize = 512;

/// Why a call failed: the [`Outcome`] of its last attempt, as the layers
/// decided it, plus what only the client knows (a body it cannot decode, a
/// request it cannot build). [`is_retryable`] says whether trying again
/// (later, or on another instance) could help, by the client's own retry
/// policy.
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
    /// The client's own flow control refused the call (a full bulkhead,
    /// the adaptive concurrency limit, client-side throttling): it was not
    /// sent. Not retried by the client (another attempt would add load to
    /// a service at its limit); [`is_retryable`](Self::is_retryable) says
    /// a later call may pass.
    #[error("{}", crate::limit::LimitExceeded::new(*.0))]
    LimitExceeded(crate::limit::LimitReason),
    /// Connecting, sending or receiving failed.
    #[error("transport error: {0}")]
    Transport(#[source] BoxError),
    /// The service answered with a status that is not a success. The
    /// message names the status only: the body, an upstream's own text
    /// (which may carry its internals), is data in `body`, never in what
    /// `{e}` prints.
    #[error("HTTP {status}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the response body (at most [`STATUS_BODY_LIMIT`]
        /// bytes, cut at a character boundary), for logs.
        body: String,
        /// The response's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// Whether the client's retry policy retries this status (by
        /// default 429, 502, 503 and 504; see
        /// [`retry_on_status`](super::ServiceClientBuilder::retry_on_status)).
        retryable: bool,
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
    /// open circuit, no endpoints yet, a status the client's retry policy
    /// retries) or on another instance (a connection failure, a timeout).
    /// A passed deadline, another status, an undecodable or oversized body,
    /// or an invalid request will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::CircuitOpen { .. }
            | ClientError::Timeout
            | ClientError::NoEndpoints
            | ClientError::LimitExceeded(_) => true,
            ClientError::Transport(e) => matches!(
                transport_outcome(e.as_ref()),
                Outcome::Connect | Outcome::Transport | Outcome::Timeout
            ),
            ClientError::Status { retryable, .. } => *retryable,
            ClientError::DeadlineExceeded
            | ClientError::Decode(_)
            | ClientError::BodyTooLarge { .. }
            | ClientError::InvalidRequest(_) => false,
        }
    }

    /// The outcome this error stands for, in the vocabulary every layer
    /// uses ([`Outcome`]); [`Outcome::Failure`] for what only the client
    /// knows (decoding, an invalid request, a body over the limit). A
    /// [`Status`](ClientError::Status) is [`Outcome::Status`] whatever the
    /// status (a 404 from `send` included, which the breakers count as a
    /// success), with the `Retry-After` of a 429 or 503 only.
    pub fn outcome(&self) -> Outcome {
        match self {
            ClientError::CircuitOpen { retry_after } => Outcome::RejectedByService {
                retry_after: *retry_after,
            },
            ClientError::Timeout => Outcome::Timeout,
            ClientError::DeadlineExceeded => Outcome::DeadlineExceeded,
            ClientError::NoEndpoints => Outcome::NoEndpoints,
            ClientError::LimitExceeded(_) => Outcome::RejectedByLimit,
            ClientError::Transport(e) => transport_outcome(e.as_ref()),
            ClientError::Status {
                status,
                retry_after,
                ..
            } => Outcome::Status {
                status: *status,
                // As the layers read it: only a 429's or a 503's.
                retry_after: retry_after.filter(|_| {
                    matches!(
                        *status,
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                    )
                }),
            },
            ClientError::Decode(_)
            | ClientError::BodyTooLarge { .. }
            | ClientError::InvalidRequest(_) => Outcome::Failure,
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
            ClientError::LimitExceeded(_) => "limit_exceeded",
            ClientError::Transport(_) => "transport",
            ClientError::Status { .. } => "status",
            ClientError::Decode(_) => "decode",
            ClientError::BodyTooLarge { .. } => "body_too_large",
            ClientError::InvalidRequest(_) => "invalid_request",
        }
    }

    /// The stack's error as a variant: by its [`Outcome`], read once.
    pub(crate) fn from_stack(error: BoxError) -> ClientError {
        match Outcome::of_error(error.as_ref()) {
            Outcome::RejectedByService { retry_after } => ClientError::CircuitOpen { retry_after },
            // Every attempt found its endpoint ejected.
            Outcome::RejectedByEndpoint => ClientError::CircuitOpen { retry_after: None },
            Outcome::DeadlineExceeded => ClientError::DeadlineExceeded,
            Outcome::Timeout => ClientError::Timeout,
            Outcome::NoEndpoints => ClientError::NoEndpoints,
            Outcome::RejectedByLimit => ClientError::LimitExceeded(limit_reason(error.as_ref())),
            Outcome::Failure => failure(unwrap(error)),
            _ => ClientError::Transport(unwrap(error)),
        }
    }
}

/// The transport's error itself, out of the [`Classified`] that carried its
/// outcome up the stack: what a caller downcasts (`hyper_util`'s error, an
/// `io::Error`); the outcome is read again from it, by the same function.
fn unwrap(error: BoxError) -> BoxError {
    match error.downcast::<Classified>() {
        Ok(classified) => classified.into_inner(),
        Err(other) => other,
    }
}

/// Why flow control refused the call, from the error chain.
#[cold]
fn limit_reason(error: &(dyn StdError + 'static)) -> crate::limit::LimitReason {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(limit) = e.downcast_ref::<crate::limit::LimitExceeded>() {
            return limit.reason();
        }
        current = e.source();
    }
    crate::limit::LimitReason::ConcurrencyLimit
}

/// The failures only the client names.
#[cold]
fn failure(error: BoxError) -> ClientError {
    if let Some(too_large) = error.downcast_ref::<super::transport::BodyTooLarge>() {
        return ClientError::BodyTooLarge { limit: too_large.0 };
    }
    if let Some(invalid) = error.downcast_ref::<InvalidUri>() {
        return ClientError::InvalidRequest(invalid.to_string());
    }
    ClientError::Transport(error)
}

/// An endpoint and a request path that do not make a URI.
#[derive(Debug)]
pub(crate) struct InvalidUri(pub(crate) String);

impl fmt::Display for InvalidUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid URI: {}", self.0)
    }
}

impl StdError for InvalidUri {}
