//! What goes wrong in the transport, and the [`Outcome`] it stands for:
//! the one place the errors of hyper-util and reqwest are read.

use std::fmt;

use http_body_util::LengthLimitError;

use crate::BoxError;
use crate::classify::{Classified, Outcome};

/// A response body over the client's limit; becomes
/// [`ClientError::BodyTooLarge`](crate::client::ClientError::BodyTooLarge).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTooLarge(pub(crate) usize);

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response body larger than {} bytes", self.0)
    }
}

impl std::error::Error for BodyTooLarge {}

/// Wraps a failed exchange's error with its outcome, decided here, where
/// the connection's error says it (see [`transport_outcome`]).
#[cold]
pub(super) fn classified<E>(e: E) -> BoxError
where
    E: std::error::Error + Send + Sync + 'static,
{
    Classified::new(transport_outcome(&e), e).into()
}

/// A failed body read (the error of `Limited<_>`'s collect): over the
/// `limit`, or cut off (hyper's "incomplete message") or reset.
#[cold]
pub(super) fn body_error(e: BoxError, limit: usize) -> BoxError {
    if e.is::<LengthLimitError>() {
        return BodyTooLarge(limit).into();
    }
    let outcome = transport_outcome(&*e);
    Classified::new(outcome, e).into()
}

/// What a transport error means. TLS refused (an untrusted certificate,
/// one for another name, a server refusing the client's certificate) is a
/// plain [`Outcome::Failure`]: not retried, as every instance would refuse
/// it alike. A connection that could not be made was never sent
/// ([`Outcome::Connect`]); one the server closed before
/// answering (hyper's "incomplete message", a pooled connection that went
/// away) or that failed mid-way is [`Outcome::Transport`]; a reqwest
/// client's own timeout (`reqwest::Error::is_timeout`) is
/// [`Outcome::Timeout`]; anything else as [`Outcome::of_error`] reads it
/// (an io error by its kind; a malformed response is a plain failure).
pub(crate) fn transport_outcome(error: &(dyn std::error::Error + 'static)) -> Outcome {
    if tls_refused(error) {
        return Outcome::Failure;
    }
    if error
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(|e| e.is_connect())
    {
        return Outcome::Connect;
    }
    #[cfg(feature = "reqwest")]
    if let Some(e) = error.downcast_ref::<::reqwest::Error>() {
        // Connect first: a connect timeout was never sent either.
        if e.is_connect() {
            return Outcome::Connect;
        }
        if e.is_timeout() {
            return Outcome::Timeout;
        }
    }
    match Outcome::of_error(error) {
        Outcome::Failure if closed_early(error) => Outcome::Transport,
        other => other,
    }
}

/// Whether rustls, anywhere in the chain, refused the connection. (An
/// `io::Error`'s `source()` skips the error it wraps, so each one is
/// opened by hand: tokio-rustls wraps rustls's error in one.)
fn tls_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<rustls::Error>() {
            return true;
        }
        current = match e.downcast_ref::<std::io::Error>() {
            // Into the wrapped error itself (hyper-util wraps tokio-rustls's
            // `io::Error` in another).
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// Whether hyper, anywhere in the chain (reqwest's errors hold hyper's),
/// says the connection ended before the whole response came.
fn closed_early(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() {
                return true;
            }
        }
        current = e.source();
    }
    false
}
