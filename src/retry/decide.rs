//! Which outcomes are worth another attempt.

use std::time::Duration;

use http::StatusCode;

use crate::BoxError;
use crate::classify::Outcome;

/// What to do with an attempt's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Return it: a success, or a failure another attempt would not fix.
    Done,
    /// Retry after the policy's backoff.
    Retry {
        /// Why, for the retry's `tracing` event.
        reason: &'static str,
    },
    /// Retry after the delay the server asked for (`Retry-After`), if the
    /// policy allows waiting that long; otherwise return it.
    RetryAfter {
        /// Why, for the retry's `tracing` event.
        reason: &'static str,
        /// The delay the server asked for.
        after: Duration,
    },
}

impl Verdict {
    /// The verdict on an attempt that failed with `outcome` (see
    /// [`Outcome`]), status aside: another attempt can help after a
    /// connection that could not be made or failed, a timeout, or an
    /// endpoint's breaker rejecting the call (another endpoint may take
    /// it). Not after a rejection by the service's breaker (the whole
    /// service is down; retrying would only add load), the deadline, no
    /// endpoints, or any other failure.
    #[inline]
    pub fn of_failure(outcome: &Outcome) -> Verdict {
        let reason = match outcome {
            Outcome::Connect => "connection refused",
            Outcome::Transport => "connection closed before the response",
            Outcome::Timeout => "attempt timed out",
            Outcome::RejectedByEndpoint => "endpoint rejected by its breaker",
            _ => return Verdict::Done,
        };
        Verdict::Retry { reason }
    }
}

/// Decides whether a result is retried. Errors arrive boxed, as tower
/// middleware passes them; they are read through [`Outcome::of_error`].
///
/// Implemented by [`HttpRetryOn`] (the default), [`ErrorsOnly`], and by
/// closures `Fn(&Result<Res, BoxError>) -> Verdict`.
pub trait RetryOn<Res> {
    /// The verdict on one attempt's result.
    fn verdict(&self, result: &Result<Res, BoxError>) -> Verdict;
}

impl<Res, F> RetryOn<Res> for F
where
    F: Fn(&Result<Res, BoxError>) -> Verdict,
{
    fn verdict(&self, result: &Result<Res, BoxError>) -> Verdict {
        self(result)
    }
}

/// Retries errors that [`Verdict::of_failure`] accepts, whatever the
/// response type; every response is returned as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsOnly;

impl<Res> RetryOn<Res> for ErrorsOnly {
    #[inline]
    fn verdict(&self, result: &Result<Res, BoxError>) -> Verdict {
        match result {
            Ok(_) => Verdict::Done,
            Err(e) => Verdict::of_failure(&Outcome::of_error(&**e)),
        }
    }
}

/// The default for HTTP: retries 429, 502, 503 and 504 responses and the
/// failures [`Verdict::of_failure`] accepts; honours `Retry-After`
/// (seconds or an HTTP date) on 429 and 503. The statuses are
/// configurable.
///
/// ```
/// use http::StatusCode;
/// use meshguard::retry::HttpRetryOn;
///
/// // Also retry 500s (only if the upstream's handlers are idempotent!).
/// let retry_on = HttpRetryOn::default().status(StatusCode::INTERNAL_SERVER_ERROR, true);
/// assert!(retry_on.retries(StatusCode::INTERNAL_SERVER_ERROR));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRetryOn {
    /// Bit `code - 400` for codes 400..=655.
    statuses: [u64; 4],
}

impl Default for HttpRetryOn {
    /// 429, 502, 503, 504: overload and gateway errors, which Envoy's
    /// `retriable-status-codes` practice and gRPC's UNAVAILABLE mapping
    /// treat as safe to retry. 500 is not: it usually means a bug that a
    /// retry would repeat.
    fn default() -> Self {
        let mut r = HttpRetryOn { statuses: [0; 4] };
        for s in [429, 502, 503, 504] {
            r.set(s, true);
        }
        r
    }
}

impl HttpRetryOn {
    /// Whether `status` is retried (only 4xx and 5xx statuses can be).
    pub fn status(mut self, status: StatusCode, retry: bool) -> Self {
        self.set(status.as_u16(), retry);
        self
    }

    fn set(&mut self, code: u16, on: bool) {
        if let Some(i) = code.checked_sub(400).filter(|i| *i < 256) {
            let (w, b) = ((i / 64) as usize, i % 64);
            if on {
                self.statuses[w] |= 1 << b;
            } else {
                self.statuses[w] &= !(1 << b);
            }
        }
    }

    /// Whether `status` is retried.
    #[inline]
    pub fn retries(&self, status: StatusCode) -> bool {
        match status.as_u16().checked_sub(400) {
            Some(i) if i < 256 => self.statuses[(i / 64) as usize] & (1 << (i % 64)) != 0,
            _ => false,
        }
    }

    /// The verdict on an attempt whose [`Outcome`] is known: a
    /// [`Outcome::Status`] is retried when its status is one of this
    /// policy's (after its `Retry-After`, if it sent one), any other
    /// failure as [`Verdict::of_failure`] says.
    #[inline]
    pub fn verdict_of(&self, outcome: &Outcome) -> Verdict {
        match outcome {
            Outcome::Status {
                status,
                retry_after,
            } if self.retries(*status) => {
                let reason = status_reason(*status);
                match retry_after {
                    Some(after) => Verdict::RetryAfter {
                        reason,
                        after: *after,
                    },
                    None => Verdict::Retry { reason },
                }
            }
            other => Verdict::of_failure(other),
        }
    }
}

fn status_reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::TOO_MANY_REQUESTS => "429 too many requests",
        StatusCode::BAD_GATEWAY => "502 bad gateway",
        StatusCode::SERVICE_UNAVAILABLE => "503 service unavailable",
        StatusCode::GATEWAY_TIMEOUT => "504 gateway timeout",
        _ => "retryable status",
    }
}

impl<B> RetryOn<http::Response<B>> for HttpRetryOn {
    #[inline]
    fn verdict(&self, result: &Result<http::Response<B>, BoxError>) -> Verdict {
        match result {
            Ok(response) if !self.retries(response.status()) => Verdict::Done,
            Ok(response) => self.verdict_of(&Outcome::of_failed_response(response)),
            Err(e) => Verdict::of_failure(&Outcome::of_error(&**e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_http_statuses_are_429_502_503_504() {
        let r = HttpRetryOn::default();
        let retried: Vec<u16> = (100..1000)
            .filter(|c| r.retries(StatusCode::from_u16(*c).unwrap()))
            .collect();
        assert_eq!(retried, [429, 502, 503, 504]);
    }

    #[test]
    fn connection_failures_timeouts_and_endpoint_rejections_are_retried() {
        for outcome in [
            Outcome::Connect,
            Outcome::Transport,
            Outcome::Timeout,
            Outcome::RejectedByEndpoint,
        ] {
            assert!(
                matches!(Verdict::of_failure(&outcome), Verdict::Retry { .. }),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn service_rejections_deadlines_and_other_failures_are_not_retried() {
        for outcome in [
            Outcome::RejectedByService { retry_after: None },
            Outcome::DeadlineExceeded,
            Outcome::NoEndpoints,
            Outcome::Failure,
            Outcome::Success,
        ] {
            assert_eq!(Verdict::of_failure(&outcome), Verdict::Done, "{outcome:?}");
        }
    }

    #[test]
    fn a_retried_status_waits_for_its_retry_after() {
        let outcome = Outcome::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            HttpRetryOn::default().verdict_of(&outcome),
            Verdict::RetryAfter {
                reason: "503 service unavailable",
                after: Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn a_status_outside_the_set_is_returned() {
        let outcome = Outcome::Status {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            retry_after: None,
        };
        assert_eq!(HttpRetryOn::default().verdict_of(&outcome), Verdict::Done);
    }
}
