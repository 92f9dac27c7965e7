//! [`Bounded`]: a call with or without a timer, or one not made because its
//! time was already up. The one piece the deadline layer and the retry
//! layer's attempt timeout share.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::DeadlineExceeded;
use crate::BoxError;

/// What ended a call when its timer fired (or had fired before it began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The call's deadline: [`DeadlineExceeded`], never retried.
    Deadline,
    /// One attempt's timeout: tower's `Elapsed`, which is retried.
    Timeout,
}

impl Cut {
    fn error(self) -> BoxError {
        match self {
            Cut::Deadline => DeadlineExceeded.into(),
            Cut::Timeout => tower::timeout::error::Elapsed::new().into(),
        }
    }
}

pin_project! {
    /// A call, with or without a timer. The timer is boxed: inline, a
    /// `Sleep` (about 100 bytes) made every call's future big enough that
    /// moving it cost more than the rest of the call, with or without a
    /// timer armed.
    #[project = BoundedProj]
    #[derive(Debug)]
    pub(crate) enum Bounded<F> {
        Open { #[pin] call: F },
        Timed { #[pin] call: F, timer: Pin<Box<Sleep>>, cut: Cut },
        // The time was up before the call began: not made.
        Expired { cut: Cut },
    }
}

impl<F> Bounded<F> {
    /// `call`, unbounded.
    #[inline]
    pub(crate) fn open(call: F) -> Self {
        Bounded::Open { call }
    }

    /// `call`, cut at `at`.
    #[inline]
    pub(crate) fn until(call: F, at: Instant, cut: Cut) -> Self {
        Bounded::Timed {
            call,
            timer: Box::pin(tokio::time::sleep_until(at)),
            cut,
        }
    }

    /// No call: the time was up.
    #[inline]
    pub(crate) fn expired(cut: Cut) -> Self {
        Bounded::Expired { cut }
    }
}

impl<F, T, E> Future for Bounded<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            BoundedProj::Open { call } => call.poll(cx).map_err(Into::into),
            BoundedProj::Timed { call, timer, cut } => {
                if let Poll::Ready(result) = call.poll(cx) {
                    return Poll::Ready(result.map_err(Into::into));
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Err(cut.error()))
            }
            BoundedProj::Expired { cut } => {
                // Fails without touching a tokio resource: spend the task's
                // budget, or a caller looping on expired calls would starve
                // its worker.
                ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                Poll::Ready(Err(cut.error()))
            }
        }
    }
}
