//! Deciding whether a call succeeded: one classification shared by the
//! circuit breaker, retries and outlier ejection.
//!
//! A [`Classify`] looks at the result of a call and returns an [`Outcome`].
//! The breaker counts failures, retries retry them, ejection ejects on them;
//! keeping the decision in one place means the three always agree on what a
//! failure is.
//!
//! ```
//! use meshguard::classify::{Classify, HttpClassifier, Outcome};
//!
//! let classify = HttpClassifier::default();
//! let not_found: Result<http::Response<()>, std::io::Error> =
//!     Ok(http::Response::builder().status(404).body(()).unwrap());
//! assert_eq!(classify.classify(&not_found), Outcome::Success);
//!
//! let unavailable: Result<http::Response<()>, std::io::Error> =
//!     Ok(http::Response::builder().status(503).body(()).unwrap());
//! assert_eq!(classify.classify(&unavailable), Outcome::Failure);
//! ```

use http::StatusCode;

/// What a finished call means for the resilience machinery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call worked; it counts towards the success rate.
    Success,
    /// The call failed; it counts towards the failure rate.
    Failure,
    /// The call is neither: it is not recorded at all (a client error that
    /// says nothing about the health of the callee, for example).
    Ignored,
}

/// Decides the [`Outcome`] of a call from its result.
///
/// Implemented for closures `Fn(&Result<Res, E>) -> Outcome`, so a one-off
/// rule needs no type of its own.
pub trait Classify<Res, E> {
    /// Classifies one finished call.
    fn classify(&self, result: &Result<Res, E>) -> Outcome;
}

impl<Res, E, F> Classify<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Outcome,
{
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        self(result)
    }
}

/// The default classifier: every `Ok` is a success and every `Err` a failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsAreFailures;

impl<Res, E> Classify<Res, E> for ErrorsAreFailures {
    #[inline]
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// Classifies HTTP responses by status code; every `Err` is a failure.
///
/// By default 5xx and 429 (Too Many Requests) are failures and every other
/// status is a success. Statuses can be moved between the two sets, or
/// ignored altogether, one at a time.
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
/// assert_eq!(classify.classify(&r), Outcome::Failure);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct HttpClassifier {
    // Two bits per status code 100..=999 would be tighter; two bitsets of
    // 1,024 bits keep the lookup to one shift and one mask.
    failures: [u64; 16],
    ignored: [u64; 16],
}

impl Default for HttpClassifier {
    fn default() -> Self {
        let mut c = HttpClassifier {
            failures: [0; 16],
            ignored: [0; 16],
        };
        for code in 500..=599 {
            set(&mut c.failures, code, true);
        }
        set(&mut c.failures, 429, true);
        c
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

    /// Counts `status` as a failure.
    pub fn failure(mut self, status: StatusCode) -> Self {
        set(&mut self.failures, status.as_u16(), true);
        set(&mut self.ignored, status.as_u16(), false);
        self
    }

    /// Counts `status` as a success.
    pub fn success(mut self, status: StatusCode) -> Self {
        set(&mut self.failures, status.as_u16(), false);
        set(&mut self.ignored, status.as_u16(), false);
        self
    }

    /// Records nothing for `status`.
    pub fn ignore(mut self, status: StatusCode) -> Self {
        set(&mut self.failures, status.as_u16(), false);
        set(&mut self.ignored, status.as_u16(), true);
        self
    }

    /// The outcome for one status code.
    #[inline]
    pub fn classify_status(&self, status: StatusCode) -> Outcome {
        let code = status.as_u16();
        if get(&self.failures, code) {
            Outcome::Failure
        } else if get(&self.ignored, code) {
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
            .field("failures", &list(&self.failures))
            .field("ignored", &list(&self.ignored))
            .finish()
    }
}

impl<B, E> Classify<http::Response<B>, E> for HttpClassifier {
    #[inline]
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(response) => self.classify_status(response.status()),
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Result<http::Response<()>, ()> {
        Ok(http::Response::builder().status(code).body(()).unwrap())
    }

    #[test]
    fn http_default_fails_5xx_and_429_only() {
        let c = HttpClassifier::default();
        for code in [500, 502, 503, 504, 599, 429] {
            assert_eq!(c.classify(&status(code)), Outcome::Failure, "{code}");
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
        assert_eq!(c.classify(&status(409)), Outcome::Failure);
        assert_eq!(c.classify(&status(500)), Outcome::Failure);
    }

    #[test]
    fn errors_are_failures_by_default() {
        let ok: Result<u8, u8> = Ok(1);
        let err: Result<u8, u8> = Err(1);
        assert_eq!(ErrorsAreFailures.classify(&ok), Outcome::Success);
        assert_eq!(ErrorsAreFailures.classify(&err), Outcome::Failure);
    }

    #[test]
    fn closures_classify() {
        let c = |r: &Result<u8, ()>| match r {
            Ok(0) => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(()) => Outcome::Failure,
        };
        assert_eq!(c.classify(&Ok(0)), Outcome::Ignored);
    }
}
