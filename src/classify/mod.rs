#![doc = include_str!("../../docs/classify.md")]

mod classified;
mod http;
mod outcome;
mod retry_after;

pub use self::http::HttpClassifier;
pub use classified::Classified;
pub use outcome::Outcome;
pub use retry_after::parse_retry_after;

/// Decides the [`Outcome`] of a call from its result.
///
/// Implemented by [`ErrorsAreFailures`], [`HttpClassifier`] and closures
/// `Fn(&Result<Res, E>) -> Outcome`, so a one-off rule needs no type of its
/// own.
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

/// The default classifier: every `Ok` is a success and every `Err` is what
/// [`Outcome::of_error`] makes of it, when the error is one it can read (a
/// [`BoxError`](crate::BoxError), as tower layers pass errors, a breaker's
/// `BreakerError<BoxError>`, or a `std::io::Error`); any other error is a
/// [`Outcome::Failure`]. So every error counts as a failure except the two
/// that say nothing about the callee (see [`Outcome::counts`]): a breaker's
/// rejection and a passed deadline. Below a breaker, bound calls with a
/// timeout (`tower::timeout`, read as [`Outcome::Timeout`]), not a
/// deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsAreFailures;

impl<Res, E: 'static> Classify<Res, E> for ErrorsAreFailures {
    #[inline]
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => error_outcome(e),
        }
    }
}

/// The outcome of an error of any type: read by [`Outcome::of_error`] when
/// it is a boxed error or an `std::io::Error`, else a plain failure. (A
/// type check, not a trait bound: a classifier must accept every error
/// type, `&str` and `()` included.)
#[cold]
pub(crate) fn error_outcome<E: 'static>(error: &E) -> Outcome {
    let any = error as &dyn std::any::Any;
    if let Some(e) = any.downcast_ref::<crate::BoxError>() {
        Outcome::of_error(&**e)
    } else if let Some(e) = any.downcast_ref::<Box<dyn std::error::Error + Send>>() {
        Outcome::of_error(&**e)
    } else if let Some(e) = any.downcast_ref::<Box<dyn std::error::Error>>() {
        Outcome::of_error(&**e)
    } else if let Some(e) = any.downcast_ref::<std::io::Error>() {
        Outcome::of_error(e)
    } else if let Some(e) =
        any.downcast_ref::<crate::circuit_breaker::BreakerError<crate::BoxError>>()
    {
        match e {
            crate::circuit_breaker::BreakerError::Open(open) => Outcome::of_error(open),
            crate::circuit_breaker::BreakerError::Inner(inner) => Outcome::of_error(&**inner),
        }
    } else {
        Outcome::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_failures_by_default() {
        let ok: Result<u8, std::io::Error> = Ok(1);
        let err: Result<u8, std::io::Error> = Err(std::io::Error::other("bad"));
        assert_eq!(ErrorsAreFailures.classify(&ok), Outcome::Success);
        assert_eq!(ErrorsAreFailures.classify(&err), Outcome::Failure);
        let other: Result<u8, &str> = Err("boom");
        assert_eq!(ErrorsAreFailures.classify(&other), Outcome::Failure);
    }

    #[test]
    fn an_inner_breakers_rejection_is_read_through_its_breaker_error() {
        use crate::circuit_breaker::{BreakerError, CircuitOpen, State};
        let rejected: Result<u8, BreakerError<crate::BoxError>> =
            Err(BreakerError::Open(CircuitOpen::new(State::Open, None)));
        assert_eq!(
            ErrorsAreFailures.classify(&rejected),
            Outcome::RejectedByService { retry_after: None }
        );
    }

    #[test]
    fn boxed_errors_are_read_through() {
        let refused: Result<u8, crate::BoxError> =
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
        assert_eq!(ErrorsAreFailures.classify(&refused), Outcome::Connect);
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
