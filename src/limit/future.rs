//! [`ResponseFuture`]: the future of a call through a
//! [`Bulkhead`](super::Bulkhead): the inner call holding its slot, or the
//! refusal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::LimitExceeded;
use super::permits::Permit;
use crate::BoxError;

pin_project! {
    /// The future of a call through a flow-control layer.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            // Given back when the call ends (or is dropped).
            permit: Option<Permit>,
        },
        Refused {
            refused: Option<LimitExceeded>,
        },
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn admitted(future: F, permit: Permit) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                permit: Some(permit),
            },
        }
    }

    #[inline]
    pub(crate) fn refused(refused: LimitExceeded) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                refused: Some(refused),
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, permit } => {
                let out = ready!(future.poll(cx));
                permit.take();
                Poll::Ready(out.map_err(Into::into))
            }
            KindProj::Refused { refused } => poll_refused(cx, refused),
        }
    }
}

/// The poll of a refused call's future: the refusal, once. It completes
/// without awaiting anything, so it spends the task's cooperative budget:
/// a caller looping on refusals still yields to the runtime.
#[inline]
pub(crate) fn poll_refused<T>(
    cx: &mut Context<'_>,
    refused: &mut Option<LimitExceeded>,
) -> Poll<Result<T, BoxError>> {
    ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
    let refused = refused.take().expect("polled after completion");
    Poll::Ready(Err(refused.into()))
}
