//! [`AdaptiveFuture`]: a call through an [`AdaptiveLimit`](super::AdaptiveLimit).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::controller::{Controller, Sample};
use crate::BoxError;
use crate::classify::Classify;
use crate::clock;
use crate::limit::LimitExceeded;
use crate::limit::permits::Permit;

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
            start: u64,
            controller: Arc<Controller>,
            classify: C,
        },
        Refused {
            refused: Option<LimitExceeded>,
        },
    }
}

impl<F, C> AdaptiveFuture<F, C> {
    pub(super) fn admitted(
        future: F,
        permit: Permit,
        controller: Arc<Controller>,
        classify: C,
    ) -> Self {
        AdaptiveFuture {
            kind: Kind::Called {
                future,
                permit: Some(permit),
                start: clock::now(),
                controller,
                classify,
            },
        }
    }

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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                permit,
                start,
                controller,
                classify,
            } => {
                let result = ready!(future.poll(cx));
                if let Some(permit) = permit.take() {
                    let sample = Sample::of(&classify.classify(&result));
                    controller.record(*start, permit.in_flight(), sample);
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Refused { refused } => {
                // Completes without awaiting anything: spends the task's
                // budget, so a caller looping on refusals yields.
                ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                let refused = refused.take().expect("polled after completion");
                Poll::Ready(Err(refused.into()))
            }
        }
    }
}
