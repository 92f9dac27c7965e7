//! The discovery watcher: a task per client that takes discovery's changes
//! in as they come, so that a client with no calls still follows its
//! service (an instance added or removed is in the balancer within
//! moments, not at the next call).
//!
//! It holds only a `Weak` on the balancer: the client's last clone dropped,
//! the balancer goes (and with it discovery), its `Drop` wakes the watcher,
//! which finds nothing to upgrade and ends.
//!
//! It polls discovery within its task's coop budget: a backlog of
//! thousands of changes is taken in a budget at a time, the task yielding
//! between batches. Calls take in whatever is ready at once (`drain_all`),
//! so they never see less than the watcher would.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use super::shared::{Locked, PickEndpoint};

/// Spawns the watcher of `shared`'s discovery on the current runtime; does
/// nothing outside one.
pub(super) fn spawn<S: PickEndpoint + Send + 'static>(shared: &Arc<Locked<S>>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(Watcher {
            shared: Arc::downgrade(shared),
        });
    }
}

/// The watcher's task.
struct Watcher<S> {
    shared: Weak<Locked<S>>,
}

impl<S: PickEndpoint> Future for Watcher<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(shared) = self.shared.upgrade() else {
            // The client is gone.
            return Poll::Ready(());
        };
        let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner
            .watcher
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            inner.watcher = Some(cx.waker().clone());
        }
        // Within the budget: when it runs out, discovery answers `Pending`
        // and tokio wakes this task to go on after others have run.
        let drained = inner.lb.drain(cx);
        drop(inner);
        if drained.applied > 0 {
            // A call waiting for an endpoint may have one now.
            shared.wake_waiters();
        }
        if drained.ended {
            // No change will follow: calls need the watcher no more.
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
