//! [`HttpClassifier`]: HTTP responses by status code.

use std::sync::OnceLock;

use crate::intern::intern;

use http::StatusCode;

use super::{Classify, Outcome, error_outcome};

/// Classifies HTTP responses by status code, and errors as
/// [`ErrorsAreFailures`](super::ErrorsAreFailures) does.
///
/// By default 5xx and 429 (Too Many Requests) are failures
/// ([`Outcome::Status`], with the `Retry-After` of a 429 or 503) and every
/// other status is a success. Statuses can be moved between the two sets,
/// or ignored altogether, one at a time.
///
/// ```
/// use meshguard::classify::{Classify, HttpClassifier, Outcome};
/// use http::StatusCode;
///
/// // 501 Not Implemented is the caller's problem, not the server's health.
/// let classify = HttpClassifier::default()
///     .ignore(StatusCode::NOT_IMPLEMENTED)
///     .failure(StatusCode::REQUEST_TIMEOUT);
/// let r: Result<http::Response<()>, ()> =
///     Ok(http::Response::builder().status(408).body(()).unwrap());
/// assert_eq!(classify.classify(&r).status(), Some(StatusCode::REQUEST_TIMEOUT));
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HttpClassifier {
    // A pointer to an interned pair of bitsets, not the 256 bytes inline:
    // every breaker's response future holds a classifier, and copying 256
    // bytes into each (twice a call through a client, for the service's and
    // the endpoint's breaker) was a measurable share of a call's cost.
    sets: &'static Sets,
}

/// Two bits per status code 100..=999 would be tighter; two bitsets of
/// 1,024 bits keep the lookup to one shift and one mask.
#[derive(Clone, PartialEq, Eq)]
struct Sets {
    failures: [u64; 16],
    ignored: [u64; 16],
}

impl Default for HttpClassifier {
    fn default() -> Self {
        static DEFAULT: OnceLock<&'static Sets> = OnceLock::new();
        let sets = DEFAULT.get_or_init(|| {
            let mut s = Sets {
                failures: [0; 16],
                ignored: [0; 16],
            };
            for code in 500..=599 {
                set(&mut s.failures, code, true);
            }
            set(&mut s.failures, 429, true);
            intern(s)
        });
        HttpClassifier { sets }
    }
}

fn set(bits: &mut [u64; 16], code: u16, on: bool) {
    let (word, bit) = ((code / 64) as usize, code % 64);
    if on {
        bits[word] |= 1 << bit;
    } else {
        bits[word] &= !(1 << bit);
    }
}

fn get(bits: &[u64; 16], code: u16) -> bool {
    let (word, bit) = ((code / 64) as usize, code % 64);
    bits[word] & (1 << bit) != 0
}

impl HttpClassifier {
    /// The default: 5xx and 429 fail, everything else succeeds.
    pub fn new() -> Self {
        Self::default()
    }

    fn with(self, status: StatusCode, failure: bool, ignored: bool) -> Self {
        let mut sets = self.sets.clone();
        set(&mut sets.failures, status.as_u16(), failure);
        set(&mut sets.ignored, status.as_u16(), ignored);
        HttpClassifier { sets: intern(sets) }
    }

    /// Counts `status` as a failure.
    pub fn failure(self, status: StatusCode) -> Self {
        self.with(status, true, false)
    }

    /// Counts `status` as a success.
    pub fn success(self, status: StatusCode) -> Self {
        self.with(status, false, false)
    }

    /// Records nothing for `status`.
    pub fn ignore(self, status: StatusCode) -> Self {
        self.with(status, false, true)
    }

    /// Whether `status` counts as a failure.
    #[inline]
    pub fn is_failure(&self, status: StatusCode) -> bool {
        get(&self.sets.failures, status.as_u16())
    }

    /// The outcome of one response.
    #[inline]
    pub fn classify_response<B>(&self, response: &http::Response<B>) -> Outcome {
        self.classify_parts(response.status(), response.headers())
    }

    /// [`classify_response`](Self::classify_response) from a response's
    /// status and headers (for response types other than `http`'s).
    #[inline]
    pub(crate) fn classify_parts(&self, status: StatusCode, headers: &http::HeaderMap) -> Outcome {
        let code = status.as_u16();
        if get(&self.sets.failures, code) {
            Outcome::of_failed_status(status, headers)
        } else if get(&self.sets.ignored, code) {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }
}

impl std::fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |bits: &[u64; 16]| (100..1000).filter(|c| get(bits, *c)).collect::<Vec<u16>>();
        f.debug_struct("HttpClassifier")
            .field("failures", &list(&self.sets.failures))
            .field("ignored", &list(&self.sets.ignored))
            .finish()
    }
}

impl<B, E: 'static> Classify<http::Response<B>, E> for HttpClassifier {
    #[inline]
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(response) => self.classify_response(response),
            Err(e) => error_outcome(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Result<http::Response<()>, ()> {
        Ok(http::Response::builder().status(code).body(()).unwrap())
    }

    fn failed(code: u16) -> Outcome {
        Outcome::Status {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after: None,
        }
    }

    #[test]
    fn http_default_fails_5xx_and_429_only() {
        let c = HttpClassifier::default();
        for code in [500, 502, 503, 504, 599, 429] {
            assert_eq!(c.classify(&status(code)), failed(code), "{code}");
        }
        for code in [200, 201, 204, 301, 400, 404, 409, 428, 430, 600] {
            assert_eq!(c.classify(&status(code)), Outcome::Success, "{code}");
        }
        assert_eq!(
            c.classify(&Err::<http::Response<()>, ()>(())),
            Outcome::Failure
        );
    }

    #[test]
    fn http_statuses_move_between_sets() {
        let c = HttpClassifier::default()
            .success(StatusCode::SERVICE_UNAVAILABLE)
            .ignore(StatusCode::NOT_FOUND)
            .failure(StatusCode::CONFLICT);
        assert_eq!(c.classify(&status(503)), Outcome::Success);
        assert_eq!(c.classify(&status(404)), Outcome::Ignored);
        assert_eq!(c.classify(&status(409)), failed(409));
        assert_eq!(c.classify(&status(500)), failed(500));
    }

    #[test]
    fn retry_after_is_read_on_429_and_503_only() {
        let with = |code: u16| -> Result<http::Response<()>, ()> {
            Ok(http::Response::builder()
                .status(code)
                .header("retry-after", "7")
                .body(())
                .unwrap())
        };
        let c = HttpClassifier::default();
        let seven = Some(std::time::Duration::from_secs(7));
        assert_eq!(c.classify(&with(429)).retry_after(), seven);
        assert_eq!(c.classify(&with(503)).retry_after(), seven);
        assert_eq!(c.classify(&with(500)).retry_after(), None);
    }
}
