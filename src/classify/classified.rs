//! [`Classified`]: an error that carries its outcome from where it arose.

use std::error::Error as StdError;
use std::fmt;

use super::Outcome;
use crate::BoxError;

/// An error whose [`Outcome`] was decided where it arose, by code that
/// knows more than the boxed error will say: a transport wraps what its
/// HTTP library returns (a connection that could not be made is
/// [`Outcome::Connect`], one closed before the response
/// [`Outcome::Transport`]) so no layer above interprets it again.
///
/// Transparent, as `#[error(transparent)]` is: it displays as the error
/// it wraps and its [`source`](StdError::source) is that error's source, so
/// a chain printed link by link shows each message once. To downcast,
/// take the wrapped error with [`get_ref`](Self::get_ref) or
/// [`into_inner`](Self::into_inner) (`ServiceClient`'s
/// `ClientError::Transport` already holds the unwrapped error).
///
/// ```
/// use meshguard::classify::{Classified, Outcome};
///
/// let e = Classified::new(Outcome::Connect, std::io::Error::other("dns: no such host"));
/// let boxed: meshguard::BoxError = e.into();
/// assert_eq!(Outcome::of_error(&*boxed), Outcome::Connect);
/// assert_eq!(boxed.to_string(), "dns: no such host");
/// ```
#[derive(Debug)]
pub struct Classified {
    outcome: Outcome,
    error: BoxError,
}

impl Classified {
    /// `error`, whose outcome is `outcome`.
    pub fn new(outcome: Outcome, error: impl Into<BoxError>) -> Self {
        Classified {
            outcome,
            error: error.into(),
        }
    }

    /// The outcome.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The error it wraps.
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }

    /// The error it wraps.
    pub fn into_inner(self) -> BoxError {
        self.error
    }
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl StdError for Classified {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_classified_error_keeps_the_outcome_given_at_its_source() {
        let e = Classified::new(Outcome::Connect, std::io::Error::other("no route"));
        assert_eq!(Outcome::of_error(&e), Outcome::Connect);
    }
}
