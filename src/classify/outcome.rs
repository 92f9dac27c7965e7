//! [`Outcome`]: what one attempt came to, in the one vocabulary every layer
//! reads.

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, SystemTime};

use super::{Classified, parse_retry_after};

use http::StatusCode;

use crate::circuit_breaker::{CircuitOpen, Rejection};
use crate::deadline::DeadlineExceeded;

/// What one attempt came to.
///
/// Computed once per attempt, where its result is known, by a
/// [`Classify`](super::Classify), and read by every layer that decides
/// something from it: the circuit breakers ([`counts`](Self::counts)),
/// outlier ejection (the same, per endpoint), the retry layer (its
/// [`RetryOn`](crate::retry::RetryOn) policy), the client's metrics and
/// `ClientError`. Errors are interpreted once, in [`Outcome::of_error`]; a
/// transport that knows more than a boxed error says (a connection refused
/// before anything was sent, say) wraps its errors in [`Classified`].
///
/// ```
/// use meshguard::classify::{Classify, HttpClassifier, Outcome};
///
/// let c = HttpClassifier::default();
/// let busy: Result<http::Response<()>, std::io::Error> = Ok(http::Response::builder()
///     .status(503)
///     .header("retry-after", "2")
///     .body(())
///     .unwrap());
/// let outcome = c.classify(&busy);
/// assert_eq!(outcome.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
/// assert_eq!(outcome.retry_after(), Some(std::time::Duration::from_secs(2)));
/// assert_eq!(outcome.counts(), Some(false));
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert_eq!(Outcome::of_error(&refused), Outcome::Connect);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The call worked (for HTTP: a status the classifier counts as a
    /// success).
    Success,
    /// An HTTP response whose status the classifier counts as a failure
    /// (by default 5xx and 429), with the delay its `Retry-After` asked for
    /// (read on 429 and 503 only).
    Status {
        /// The response's status.
        status: StatusCode,
        /// Its `Retry-After`, if it is a 429 or 503 that sent a valid one.
        retry_after: Option<Duration>,
    },
    /// A gRPC response whose status the classifier counts as a failure
    /// (read from the headers of a trailers-only response: the call was
    /// answered with a status and no message), with its
    /// `grpc-retry-pushback-ms`.
    GrpcStatus {
        /// The gRPC status code (14 is UNAVAILABLE).
        code: i32,
        /// The server's pushback in milliseconds, if it sent one: wait that
        /// long before retrying; a negative value asks for no retry.
        pushback_ms: Option<i64>,
    },
    /// Neither success nor failure: the classifier says the result tells
    /// nothing about the callee's health (a 404, for some services).
    Ignored,
    /// The service-level (fail-fast) breaker rejected the call: it was not
    /// sent. Retrying would only add load to a service that is down.
    RejectedByService {
        /// How long until the breaker lets a probe through, when known.
        retry_after: Option<Duration>,
    },
    /// An endpoint's breaker rejected the call (the endpoint is ejected):
    /// another endpoint may take it.
    RejectedByEndpoint,
    /// The client's own flow control refused the call (a full bulkhead,
    /// the adaptive concurrency limit, client-side throttling; see
    /// [`LimitExceeded`](crate::limit::LimitExceeded)): it was not sent.
    /// Not retried: another attempt would add load to a service already
    /// at its limit.
    RejectedByLimit,
    /// The attempt took longer than its timeout.
    Timeout,
    /// The call's deadline passed: nothing more is tried.
    DeadlineExceeded,
    /// Discovery knows no endpoint of the service.
    NoEndpoints,
    /// No connection could be made (refused, unreachable): the request was
    /// not sent.
    Connect,
    /// The connection failed once the request was on its way (reset,
    /// closed before the response, a body cut off): the request may or may
    /// not have been processed.
    Transport,
    /// Any other error (an invalid request, a body over the limit, an
    /// error of the service's own): trying again would fail the same way.
    Failure,
}

impl Outcome {
    /// Whether a circuit breaker counts it, and how: `Some(true)` a
    /// success, `Some(false)` a failure, `None` not at all.
    ///
    /// Not counted: [`Ignored`](Self::Ignored), rejections by a breaker
    /// (the call never reached the callee) and
    /// [`DeadlineExceeded`](Self::DeadlineExceeded) (the caller's time ran
    /// out, which says nothing about the callee). Every other failure
    /// counts against it.
    #[inline]
    pub fn counts(&self) -> Option<bool> {
        match self {
            Outcome::Success => Some(true),
            Outcome::Ignored
            | Outcome::RejectedByService { .. }
            | Outcome::RejectedByEndpoint
            | Outcome::RejectedByLimit
            | Outcome::DeadlineExceeded => None,
            _ => Some(false),
        }
    }

    /// Whether the call worked.
    #[inline]
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// Whether it is a sign that the callee is overloaded, read by flow
    /// control (a drop for the adaptive limit, a rejection for client-side
    /// throttling): a 429 or 503, gRPC's `RESOURCE_EXHAUSTED`, or an
    /// attempt that timed out.
    #[inline]
    pub fn is_overload(&self) -> bool {
        match self {
            Outcome::Status { status, .. } => matches!(
                *status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ),
            Outcome::GrpcStatus { code, .. } => *code == 8,
            Outcome::Timeout => true,
            _ => false,
        }
    }

    /// The response's status, for [`Status`](Self::Status).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Outcome::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the callee asked to wait before trying again: a response's
    /// `Retry-After`, or an open breaker's remaining open period.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Outcome::Status { retry_after, .. } | Outcome::RejectedByService { retry_after } => {
                *retry_after
            }
            Outcome::GrpcStatus {
                pushback_ms: Some(ms),
                ..
            } if *ms >= 0 => Some(Duration::from_millis(*ms as u64)),
            _ => None,
        }
    }

    /// A short, stable name (`"timeout"`, `"connect"`, ...): the label of
    /// metrics and the field of events.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Status { .. } => "status",
            Outcome::GrpcStatus { .. } => "grpc_status",
            Outcome::Ignored => "ignored",
            Outcome::RejectedByService { .. } => "circuit_open",
            Outcome::RejectedByEndpoint => "endpoint_ejected",
            Outcome::RejectedByLimit => "limited",
            Outcome::Timeout => "timeout",
            Outcome::DeadlineExceeded => "deadline_exceeded",
            Outcome::NoEndpoints => "no_endpoints",
            Outcome::Connect => "connect",
            Outcome::Transport => "transport",
            Outcome::Failure => "failure",
        }
    }

    /// The outcome of an HTTP response counted as a failure: its status,
    /// and on a 429 or 503 the `Retry-After` it sent.
    #[cold]
    pub fn of_failed_response<B>(response: &http::Response<B>) -> Outcome {
        Outcome::of_failed_status(response.status(), response.headers())
    }

    /// [`of_failed_response`](Self::of_failed_response) from a response's
    /// status and headers (for response types other than `http`'s).
    #[cold]
    pub(crate) fn of_failed_status(status: StatusCode, headers: &http::HeaderMap) -> Outcome {
        let retry_after = if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| parse_retry_after(v.as_bytes(), SystemTime::now()))
        } else {
            None
        };
        Outcome::Status {
            status,
            retry_after,
        }
    }

    /// The outcome an error stands for: the one place errors are
    /// interpreted.
    ///
    /// Walks the error's `source()` chain and stops at the first error it
    /// knows: a [`Classified`] (whose outcome was decided where it arose),
    /// a breaker's [`CircuitOpen`] (by its [`Rejection`] mode: a fail-fast
    /// breaker guards the service, a waiting one an endpoint),
    /// [`DeadlineExceeded`], a flow-control refusal
    /// ([`LimitExceeded`](crate::limit::LimitExceeded)), a timeout (tower's or tokio's `Elapsed`),
    /// [`NoEndpoints`](crate::balance::NoEndpoints), or a `std::io::Error`
    /// (refused or unreachable: [`Connect`](Self::Connect); reset, aborted,
    /// broken pipe, not connected, an unexpected end of stream:
    /// [`Transport`](Self::Transport); timed out: [`Timeout`](Self::Timeout)).
    /// Anything else is a [`Failure`](Self::Failure).
    #[cold]
    pub fn of_error(error: &(dyn StdError + 'static)) -> Outcome {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(c) = e.downcast_ref::<Classified>() {
                return c.outcome();
            }
            if let Some(open) = e.downcast_ref::<CircuitOpen>() {
                return match open.rejection() {
                    Rejection::FailFast => Outcome::RejectedByService {
                        retry_after: open.retry_after(),
                    },
                    Rejection::Wait => Outcome::RejectedByEndpoint,
                };
            }
            if e.is::<DeadlineExceeded>() {
                return Outcome::DeadlineExceeded;
            }
            if e.is::<crate::limit::LimitExceeded>() {
                return Outcome::RejectedByLimit;
            }
            if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
                return Outcome::Timeout;
            }
            if e.is::<crate::balance::NoEndpoints>() {
                return Outcome::NoEndpoints;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return of_io(io.kind());
            }
            current = e.source();
        }
        Outcome::Failure
    }
}

fn of_io(kind: std::io::ErrorKind) -> Outcome {
    use std::io::ErrorKind::*;
    match kind {
        ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable => {
            Outcome::Connect
        }
        ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe | UnexpectedEof => {
            Outcome::Transport
        }
        TimedOut => Outcome::Timeout,
        _ => Outcome::Failure,
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Status { status, .. } => write!(f, "status {}", status.as_u16()),
            other => f.write_str(other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit_breaker::State;

    #[test]
    fn io_errors_are_connect_transport_or_timeout_by_kind() {
        use std::io::{Error, ErrorKind};
        let of = |k: ErrorKind| Outcome::of_error(&Error::from(k));
        assert_eq!(of(ErrorKind::ConnectionRefused), Outcome::Connect);
        assert_eq!(of(ErrorKind::ConnectionReset), Outcome::Transport);
        assert_eq!(of(ErrorKind::UnexpectedEof), Outcome::Transport);
        assert_eq!(of(ErrorKind::TimedOut), Outcome::Timeout);
        assert_eq!(of(ErrorKind::InvalidData), Outcome::Failure);
    }

    #[test]
    fn the_chain_is_walked_to_the_first_known_error() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrapper(std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(Outcome::of_error(&e), Outcome::Transport);
    }

    #[test]
    fn a_fail_fast_rejection_is_the_services_and_a_waiting_one_an_endpoints() {
        let service = CircuitOpen::new(State::Open, Some(Duration::from_secs(3)));
        assert_eq!(
            Outcome::of_error(&service),
            Outcome::RejectedByService {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        let endpoint = CircuitOpen::new(State::Open, None).with_rejection(Rejection::Wait);
        assert_eq!(Outcome::of_error(&endpoint), Outcome::RejectedByEndpoint);
    }

    #[test]
    fn timeouts_deadlines_and_missing_endpoints_are_named() {
        assert_eq!(
            Outcome::of_error(&tower::timeout::error::Elapsed::new()),
            Outcome::Timeout
        );
        assert_eq!(
            Outcome::of_error(&DeadlineExceeded),
            Outcome::DeadlineExceeded
        );
        assert_eq!(
            Outcome::of_error(&crate::balance::NoEndpoints),
            Outcome::NoEndpoints
        );
    }

    #[test]
    fn breakers_count_failures_and_skip_rejections_and_deadlines() {
        assert_eq!(Outcome::Success.counts(), Some(true));
        assert_eq!(Outcome::Timeout.counts(), Some(false));
        assert_eq!(Outcome::Connect.counts(), Some(false));
        assert_eq!(Outcome::NoEndpoints.counts(), Some(false));
        assert_eq!(Outcome::DeadlineExceeded.counts(), None);
        assert_eq!(Outcome::RejectedByEndpoint.counts(), None);
        assert_eq!(Outcome::RejectedByLimit.counts(), None);
        assert_eq!(
            Outcome::RejectedByService { retry_after: None }.counts(),
            None
        );
        assert_eq!(Outcome::Ignored.counts(), None);
    }
}
