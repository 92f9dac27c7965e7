//! gRPC's outcomes: [`GrpcClassifier`] (what a breaker counts) and
//! [`GrpcRetryOn`] (what is retried), both reading `grpc-status` where a
//! trailers-only response carries it, in the headers.

use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode};
use tonic::Code;

use crate::BoxError;
use crate::classify::{Classify, Outcome, error_outcome};
use crate::retry::{RetryOn, Verdict};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The server's pushback: milliseconds to wait before a retry; negative
/// means do not retry.
pub const GRPC_RETRY_PUSHBACK: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// The status of a trailers-only response (`grpc-status` in the headers),
/// or `None` for a response that started with a message (its status comes
/// with the trailers: the call is committed) or a malformed one.
fn status(headers: &HeaderMap) -> Option<i32> {
    headers.get(GRPC_STATUS)?.to_str().ok()?.parse().ok()
}

fn pushback(headers: &HeaderMap) -> Option<i64> {
    headers
        .get(GRPC_RETRY_PUSHBACK)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn bit(code: Code) -> u32 {
    1 << (code as i32 as u32)
}

/// What a breaker counts from a gRPC response: a trailers-only response
/// whose code is one of the failures (by default UNKNOWN,
/// RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE and DATA_LOSS: the server's
/// trouble, not the request's; not DEADLINE_EXCEEDED, which a server
/// answers when the caller's propagated deadline was too short) is
/// [`Outcome::GrpcStatus`]; other codes (NOT_FOUND, INVALID_ARGUMENT, ...)
/// and responses that started with a message are successes; a non-200
/// HTTP status without a `grpc-status` (a proxy's 503) is
/// [`Outcome::Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcClassifier {
    failures: u32,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        GrpcClassifier {
            failures: bit(Code::Unknown)
                | bit(Code::ResourceExhausted)
                | bit(Code::Internal)
                | bit(Code::Unavailable)
                | bit(Code::DataLoss),
        }
    }
}

impl GrpcClassifier {
    /// Counts `code` as a failure, or not.
    pub fn failure(mut self, code: Code, failure: bool) -> Self {
        if failure {
            self.failures |= bit(code);
        } else {
            self.failures &= !bit(code);
        }
        self
    }

    /// Whether `code` counts as a failure.
    pub fn is_failure(&self, code: Code) -> bool {
        self.failures & bit(code) != 0
    }

    /// The outcome of a response, from its head.
    pub fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        match self::status(headers) {
            Some(0) => Outcome::Success,
            Some(code) if (0..32).contains(&code) && self.failures & (1 << code) != 0 => {
                Outcome::GrpcStatus {
                    code,
                    pushback_ms: pushback(headers),
                }
            }
            Some(_) => Outcome::Success,
            None if status == StatusCode::OK => Outcome::Success,
            None => Outcome::Status {
                status,
                retry_after: None,
            },
        }
    }
}

impl<B, E: 'static> Classify<http::Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(response) => self.classify_head(response.status(), response.headers()),
            Err(e) => error_outcome(e),
        }
    }
}

/// Which gRPC calls are retried, as gRPC's own retry policy decides: only
/// a call answered with a status and no message (a trailers-only response:
/// nothing reached the caller) whose code is retryable (by default
/// UNAVAILABLE), RESOURCE_EXHAUSTED only when the server sent a pushback,
/// after the pushback when there is one; never when the pushback is
/// negative or not a number. A proxy's 502, 503, 504 or 429 (no
/// `grpc-status`) reads as UNAVAILABLE, as gRPC maps it. Of errors, a call
/// never sent (a connection refused, a stream the server refused or cut
/// with its GOAWAY, an ejected endpoint) is always retried; a connection
/// lost with the call on it counts as UNAVAILABLE and an attempt's timeout
/// as DEADLINE_EXCEEDED (not retried by default: the first attempt may
/// still be running on the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcRetryOn {
    codes: u32,
}

impl Default for GrpcRetryOn {
    fn default() -> Self {
        GrpcRetryOn {
            codes: bit(Code::Unavailable),
        }
    }
}

impl GrpcRetryOn {
    /// Retries `code`, or not.
    pub fn code(mut self, code: Code, retry: bool) -> Self {
        if retry {
            self.codes |= bit(code);
        } else {
            self.codes &= !bit(code);
        }
        self
    }

    /// Whether `code` is retried (RESOURCE_EXHAUSTED also with a pushback).
    pub fn retries(&self, code: Code) -> bool {
        self.codes & bit(code) != 0
    }

    fn verdict_of_head(&self, status: StatusCode, headers: &HeaderMap) -> Verdict {
        let pushback = pushback(headers);
        let code = match self::status(headers) {
            Some(code) => code,
            None if matches!(status.as_u16(), 429 | 502 | 503 | 504) => Code::Unavailable as i32,
            None => return Verdict::Done,
        };
        let retried = (0..32).contains(&code)
            && (self.codes & (1 << code) != 0
                || (code == Code::ResourceExhausted as i32 && pushback.is_some()));
        match pushback {
            _ if !retried => Verdict::Done,
            Some(ms) if ms < 0 => Verdict::Done,
            Some(ms) => Verdict::RetryAfter {
                reason: reason(code),
                after: Duration::from_millis(ms as u64),
            },
            None => Verdict::Retry {
                reason: reason(code),
            },
        }
    }
}

fn reason(code: i32) -> &'static str {
    match Code::from_i32(code) {
        Code::Unavailable => "grpc UNAVAILABLE",
        Code::ResourceExhausted => "grpc RESOURCE_EXHAUSTED",
        Code::Aborted => "grpc ABORTED",
        Code::Internal => "grpc INTERNAL",
        Code::DeadlineExceeded => "grpc DEADLINE_EXCEEDED",
        _ => "grpc status",
    }
}

impl<B> RetryOn<http::Response<B>> for GrpcRetryOn {
    fn verdict(&self, result: &Result<http::Response<B>, BoxError>) -> Verdict {
        match result {
            Ok(response) => self.verdict_of_head(response.status(), response.headers()),
            Err(e) => match Outcome::of_error(&**e) {
                Outcome::Connect => Verdict::Retry {
                    reason: "not sent (refused)",
                },
                Outcome::RejectedByEndpoint => Verdict::Retry {
                    reason: "endpoint rejected by its breaker",
                },
                Outcome::Transport if self.retries(Code::Unavailable) => Verdict::Retry {
                    reason: "connection lost (UNAVAILABLE)",
                },
                Outcome::Timeout if self.retries(Code::DeadlineExceeded) => Verdict::Retry {
                    reason: "attempt timed out (DEADLINE_EXCEEDED)",
                },
                _ => Verdict::Done,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn unavailable_is_retried_and_a_committed_call_never_is() {
        let r = GrpcRetryOn::default();
        let ok = StatusCode::OK;
        assert_eq!(
            r.verdict_of_head(ok, &head(&[("grpc-status", "14")])),
            Verdict::Retry {
                reason: "grpc UNAVAILABLE"
            }
        );
        assert_eq!(r.verdict_of_head(ok, &head(&[])), Verdict::Done);
        assert_eq!(
            r.verdict_of_head(ok, &head(&[("grpc-status", "13")])),
            Verdict::Done
        );
        assert_eq!(
            r.verdict_of_head(ok, &head(&[("grpc-status", "0")])),
            Verdict::Done
        );
    }

    #[test]
    fn a_pushback_sets_the_wait_and_a_negative_one_forbids_the_retry() {
        let r = GrpcRetryOn::default();
        let ok = StatusCode::OK;
        assert_eq!(
            r.verdict_of_head(
                ok,
                &head(&[("grpc-status", "14"), ("grpc-retry-pushback-ms", "250")])
            ),
            Verdict::RetryAfter {
                reason: "grpc UNAVAILABLE",
                after: Duration::from_millis(250)
            }
        );
        assert_eq!(
            r.verdict_of_head(
                ok,
                &head(&[("grpc-status", "14"), ("grpc-retry-pushback-ms", "-1")])
            ),
            Verdict::Done
        );
    }

    #[test]
    fn resource_exhausted_is_retried_only_with_a_pushback() {
        let r = GrpcRetryOn::default();
        let ok = StatusCode::OK;
        assert_eq!(
            r.verdict_of_head(ok, &head(&[("grpc-status", "8")])),
            Verdict::Done
        );
        assert_eq!(
            r.verdict_of_head(
                ok,
                &head(&[("grpc-status", "8"), ("grpc-retry-pushback-ms", "100")])
            ),
            Verdict::RetryAfter {
                reason: "grpc RESOURCE_EXHAUSTED",
                after: Duration::from_millis(100)
            }
        );
    }

    #[test]
    fn a_proxys_503_reads_as_unavailable() {
        let r = GrpcRetryOn::default();
        assert_eq!(
            r.verdict_of_head(StatusCode::SERVICE_UNAVAILABLE, &head(&[])),
            Verdict::Retry {
                reason: "grpc UNAVAILABLE"
            }
        );
    }

    #[test]
    fn server_trouble_counts_and_the_callers_mistakes_do_not() {
        let c = GrpcClassifier::default();
        let ok = StatusCode::OK;
        assert_eq!(
            c.classify_head(ok, &head(&[("grpc-status", "14")])),
            Outcome::GrpcStatus {
                code: 14,
                pushback_ms: None
            }
        );
        for code in ["0", "3", "4", "5", "7", "16"] {
            let h = head(&[("grpc-status", code)]);
            assert_eq!(c.classify_head(ok, &h), Outcome::Success, "{code}");
        }
        assert_eq!(c.classify_head(ok, &head(&[])), Outcome::Success);
        assert_eq!(
            c.classify_head(StatusCode::BAD_GATEWAY, &head(&[])),
            Outcome::Status {
                status: StatusCode::BAD_GATEWAY,
                retry_after: None
            }
        );
    }
}
