//! [`AdaptiveFuture`]: a call through an [`AdaptiveLimit`](super::AdaptiveLimit).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::controller::Core;
use super::window::Sample;
use crate::BoxError;
use crate::classify::Classify;
use crate::limit::LimitExceeded;
use crate::limit::permits::Permit;
use crate::recycle::Handle;

pin_project! {
    /// The future of a call through an [`AdaptiveLimit`](super::AdaptiveLimit):
    /// the inner call, timed and judged when it ends, or the refusal.
    #[derive(Debug)]
    pub struct AdaptiveFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
            // Calls in flight when this one started, itself included.
            in_flight: usize,
            start: u64,
            // The limit's counters, through the crate's recycler (see
            // `Core`): no `Arc` to clone and drop on every call.
            core: Handle<Core>,
            classify: C,
        },
        Refused {
            refused: Option<LimitExceeded>,
        },
    }
}

impl<F, C> AdaptiveFuture<F, C> {
    #[inline]
    pub(super) fn admitted(
        future: F,
        permit: Permit,
        in_flight: usize,
        core: Handle<Core>,
        classify: C,
    ) -> Self {
        AdaptiveFuture {
            kind: Kind::Called {
                future,
                permit: Some(permit),
                in_flight,
                start: core.get().now(),
                core,
                classify,
            },
        }
    }

    #[inline]
    pub(super) fn refused(refused: LimitExceeded) -> Self {
        AdaptiveFuture {
            kind: Kind::Refused {
                refused: Some(refused),
            },
        }
    }
}

impl<F, C, T, E> Future for AdaptiveFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                permit,
                in_flight,
                start,
                core,
                classify,
            } => {
                let result = ready!(future.poll(cx));
                if let Some(permit) = permit.take() {
                    let sample = Sample::of(&classify.classify(&result));
                    core.get().record(*start, *in_flight, sample);
                    drop(permit);
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Refused { refused } => crate::limit::future::poll_refused(cx, refused),
        }
    }
}
