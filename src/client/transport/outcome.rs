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
    if let Some(outcome) = http2_outcome(error) {
        return outcome;
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
pub(crate) fn tls_refused(error: &(dyn std::error::Error + 'static)) -> bool {
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

/// What an HTTP/2 error in the chain says: a stream the server refused
/// (`REFUSED_STREAM`) or cut by its GOAWAY was never processed
/// ([`Outcome::Connect`]: safe to send elsewhere, whatever the method); any
/// other reset or connection error is [`Outcome::Transport`]. `None` when
/// no HTTP/2 error is in the chain.
fn http2_outcome(error: &(dyn std::error::Error + 'static)) -> Option<Outcome> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            let refused = h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.is_remote());
            return Some(if refused {
                Outcome::Connect
            } else {
                Outcome::Transport
            });
        }
        current = e.source();
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_stream_was_never_sent_and_another_reset_was() {
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert_eq!(transport_outcome(&refused), Outcome::Connect);
        let reset = h2::Error::from(h2::Reason::INTERNAL_ERROR);
        assert_eq!(transport_outcome(&reset), Outcome::Transport);
    }
}
