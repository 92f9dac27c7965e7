//! Which outcomes are worth another attempt.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use http::StatusCode;

use crate::BoxError;
use crate::circuit_breaker::CircuitOpen;

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

/// Decides whether a result is retried. Errors arrive boxed, as tower
/// middleware passes them.
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

/// Why an error is worth another attempt, or `None` when it is not.
///
/// Retried (walking the error's `source()` chain): connection errors
/// (`std::io::Error` of kind refused, reset, aborted, not connected, broken
/// pipe, timed out), an attempt's timeout (`tower::timeout::error::Elapsed`,
/// `tokio::time::error::Elapsed`), and a [`CircuitOpen`] from a gate-mode
/// (per-endpoint) breaker. Not retried: a fail-fast breaker's `CircuitOpen`
/// (the whole service is down; retrying would only add load), the overall
/// [`DeadlineExceeded`](super::DeadlineExceeded), and anything else.
pub fn retryable_error(error: &(dyn StdError + 'static)) -> Option<&'static str> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(open) = e.downcast_ref::<CircuitOpen>() {
            return open
                .is_from_gate()
                .then_some("endpoint rejected by its breaker");
        }
        if e.is::<super::DeadlineExceeded>() {
            return None;
        }
        if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
            return Some("attempt timed out");
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
            )
            .then_some("connection error");
        }
        current = e.source();
    }
    None
}

/// Retries errors that [`retryable_error`] accepts, whatever the response
/// type; every response is returned as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsOnly;

impl<Res> RetryOn<Res> for ErrorsOnly {
    #[inline]
    fn verdict(&self, result: &Result<Res, BoxError>) -> Verdict {
        match result {
            Ok(_) => Verdict::Done,
            Err(e) => error_verdict(e),
        }
    }
}

fn error_verdict(e: &BoxError) -> Verdict {
    match retryable_error(&**e) {
        Some(reason) => Verdict::Retry { reason },
        None => Verdict::Done,
    }
}

/// The default for HTTP: retries 429, 502, 503 and 504 responses and the
/// errors [`retryable_error`] accepts; honours `Retry-After` (seconds or an
/// HTTP date) on 429 and 503. The statuses are configurable.
///
/// ```
/// use http::StatusCode;
/// use meshguard::retry::HttpRetryOn;
///
/// // Also retry 500s (only if the upstream's handlers are idempotent!).
/// let retry_on = HttpRetryOn::default().status(StatusCode::INTERNAL_SERVER_ERROR, true);
/// # let _ = retry_on;
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
}

impl<B> RetryOn<http::Response<B>> for HttpRetryOn {
    #[inline]
    fn verdict(&self, result: &Result<http::Response<B>, BoxError>) -> Verdict {
        match result {
            Ok(response) if !self.retries(response.status()) => Verdict::Done,
            Ok(response) => status_verdict(response),
            Err(e) => error_verdict(e),
        }
    }
}

#[cold]
fn status_verdict<B>(response: &http::Response<B>) -> Verdict {
    let status = response.status();
    let reason = match status {
        StatusCode::TOO_MANY_REQUESTS => "429 too many requests",
        StatusCode::BAD_GATEWAY => "502 bad gateway",
        StatusCode::SERVICE_UNAVAILABLE => "503 service unavailable",
        StatusCode::GATEWAY_TIMEOUT => "504 gateway timeout",
        _ => "retryable status",
    };
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        if let Some(after) = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(v.as_bytes(), SystemTime::now()))
        {
            return Verdict::RetryAfter { reason, after };
        }
    }
    Verdict::Retry { reason }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (RFC 9110
/// section 10.2.3), relative to `now`. A date in the past is a zero delay;
/// anything unparseable is `None` (the policy's backoff applies).
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_delay_seconds() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            parse_retry_after(b"120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(b" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_reads_an_http_date_relative_to_now() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_rejects_garbage() {
        let now = SystemTime::UNIX_EPOCH;
        for bad in [&b""[..], b"-5", b"1.5", b"soon", b"\xff\xfe"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn default_http_statuses_are_429_502_503_504() {
        let r = HttpRetryOn::default();
        let retried: Vec<u16> = (100..1000)
            .filter(|c| r.retries(StatusCode::from_u16(*c).unwrap()))
            .collect();
        assert_eq!(retried, [429, 502, 503, 504]);
    }

    #[test]
    fn connection_refused_and_attempt_timeouts_are_retryable_and_other_errors_are_not() {
        let refused: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        assert_eq!(retryable_error(&*refused), Some("connection error"));
        let timeout: BoxError = tower::timeout::error::Elapsed::new().into();
        assert_eq!(retryable_error(&*timeout), Some("attempt timed out"));
        let other: BoxError = std::io::Error::other("bad request").into();
        assert_eq!(retryable_error(&*other), None);
    }

    #[test]
    fn a_gate_breakers_rejection_is_retryable_and_a_fail_fast_ones_is_not() {
        use crate::circuit_breaker::State;
        let service_wide: BoxError = CircuitOpen::new(State::Open, None).into();
        assert_eq!(retryable_error(&*service_wide), None);
        let endpoint: BoxError = CircuitOpen::new(State::Open, None).in_gate_mode().into();
        assert_eq!(
            retryable_error(&*endpoint),
            Some("endpoint rejected by its breaker")
        );
    }

    #[test]
    fn the_overall_deadline_is_not_retryable() {
        let e: BoxError = super::super::DeadlineExceeded.into();
        assert_eq!(retryable_error(&*e), None);
    }
}
