//! [`Permits`]: the count of calls in flight against a limit that may
//! change, with a bounded queue of callers waiting for a slot.
//!
//! Written here rather than over `tokio::sync::Semaphore` (which tower's
//! `ConcurrencyLimit` uses): a semaphore's release takes its waiter lock on
//! every call, and its permits cannot be taken back when an adaptive limit
//! falls. Here taking a slot is one compare-and-swap, giving it back one
//! subtraction and one load, and waiters are woken through a
//! `tokio::sync::Notify` only when there are any.
//!
//! A permit reaches the counts through a handle of the crate's recycler
//! (`crate::recycle`), not an `Arc`: an `Arc`'s clone and drop are two
//! more read-modify-writes a call (16 ns of a bulkhead's 31 ns on the
//! development machine, `benches/limit.rs`), on the line every caller
//! shares; a handle is a load and a store on the calling thread's own.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;

use super::{LimitExceeded, LimitReason};
use crate::recycle::{Handle, Lease, Pool};

/// Calls in flight, their limit and the callers queued for a slot.
#[derive(Debug)]
pub(crate) struct Slots {
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    queued: AtomicUsize,
    notify: Notify,
}

/// Counts of dropped limits, reused by new ones.
static SLOTS: Pool<Slots> = Pool::new();

/// A limit's slots, owned: what its layer holds. Permits and waiters hold
/// handles to the same counts, which stay theirs until the last is gone.
#[derive(Debug)]
pub(crate) struct Permits {
    slots: Lease<Slots>,
}

impl Slots {
    /// Takes a slot if one is free: the calls in flight with it.
    #[inline]
    fn try_take(&self) -> Option<usize> {
        let mut n = self.in_flight.load(Ordering::Relaxed);
        loop {
            if n >= self.limit.load(Ordering::Relaxed) {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                n,
                n + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(n + 1),
                Err(now) => n = now,
            }
        }
    }

    /// Gives a slot back and wakes one waiter, if any waits.
    #[inline]
    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.notify.notify_one();
        }
    }

    /// A slot, reached through `handle` (of these slots) if one is free,
    /// and the calls in flight with it.
    #[inline]
    fn try_acquire(&self, handle: impl FnOnce() -> Handle<Slots>) -> Option<(Permit, usize)> {
        let in_flight = self.try_take()?;
        Some((Permit { slots: handle() }, in_flight))
    }
}

impl Permits {
    pub(crate) fn new(limit: usize) -> Self {
        let slots = SLOTS.take(|| Slots {
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            notify: Notify::new(),
        });
        // Reused counts are as their last owner's permits and waiters left
        // them, all gone: nothing in flight, nobody queued. (A wake-up the
        // `Notify` may have stored is harmless: a waiter woken for nothing
        // looks for a slot and waits again.)
        slots.get().limit.store(limit, Ordering::SeqCst);
        Permits { slots }
    }

    fn slots(&self) -> &Slots {
        self.slots.get()
    }

    /// Takes a slot if one is free.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Option<Permit> {
        self.try_acquire_counted().map(|(permit, _)| permit)
    }

    /// Takes a slot if one is free: the slot and the calls in flight with
    /// it, itself included.
    #[inline]
    pub(crate) fn try_acquire_counted(&self) -> Option<(Permit, usize)> {
        self.slots().try_acquire(|| self.slots.handle())
    }

    /// Calls in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.slots().in_flight.load(Ordering::Relaxed)
    }

    /// The limit now.
    pub(crate) fn limit(&self) -> usize {
        self.slots().limit.load(Ordering::Relaxed)
    }

    /// Sets the limit; waiters get the slots a higher limit opens.
    pub(crate) fn set_limit(&self, limit: usize) {
        let slots = self.slots();
        let old = slots.limit.swap(limit, Ordering::SeqCst);
        if limit > old && slots.queued.load(Ordering::SeqCst) > 0 {
            for _ in old..limit {
                slots.notify.notify_one();
            }
        }
    }

    /// Callers waiting for a slot now.
    pub(crate) fn queued(&self) -> usize {
        self.slots().queued.load(Ordering::Relaxed)
    }

    /// Waits for a slot for at most `max_wait`, if fewer than `max_queue`
    /// callers wait already. The wait is a boxed future: the one allocation
    /// of a call that has to queue, none on the path that finds a slot.
    pub(crate) fn queue(
        &self,
        max_queue: usize,
        max_wait: Duration,
    ) -> Result<Waiting, LimitExceeded> {
        // Counted before the last try, so a release between the two sees a
        // waiter and notifies.
        let slots = self.slots();
        let mut q = slots.queued.load(Ordering::Relaxed);
        loop {
            if q >= max_queue {
                return Err(LimitExceeded::new(LimitReason::QueueFull));
            }
            match slots
                .queued
                .compare_exchange_weak(q, q + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => q = now,
            }
        }
        let queued = Queued(self.slots.handle());
        let wait = async move {
            let handle = &queued.0;
            let slots = handle.get();
            let slot = async {
                loop {
                    let notified = slots.notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if let Some((permit, _)) = slots.try_acquire(|| handle.clone()) {
                        return permit;
                    }
                    notified.await;
                }
            };
            tokio::time::timeout(max_wait, slot)
                .await
                .map_err(|_| LimitExceeded::new(LimitReason::QueueTimeout))
        };
        Ok(Waiting(Box::pin(wait)))
    }
}

/// A caller counted among the queued until it leaves the queue.
struct Queued(Handle<Slots>);

impl Drop for Queued {
    fn drop(&mut self) {
        // Before the handle (a field) is dropped: its owner's counts are
        // left as they were found.
        self.0.get().queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A queued caller's wait for a slot (see [`Permits::queue`]). `Sync`, so
/// that the services holding one are: axum's `Router::layer` asks it of a
/// layer's service (`ShedLayer`'s example).
pub(crate) struct Waiting(
    Pin<Box<dyn Future<Output = Result<Permit, LimitExceeded>> + Send + Sync>>,
);

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waiting")
    }
}

impl Waiting {
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Permit, LimitExceeded>> {
        self.0.as_mut().poll(cx)
    }
}

/// One call's slot, given back when dropped. One word, so that moving it
/// from `poll_ready` to `call` to the response future is a plain copy
/// (see `Admission`).
#[derive(Debug)]
pub(crate) struct Permit {
    slots: Handle<Slots>,
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        // Before the handle (a field) is dropped, as `Queued` does.
        self.slots.get().release();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_handle_waiting_for_a_slot_is_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::limit::admission::Admission>();
    }

    #[test]
    fn slots_are_taken_up_to_the_limit_and_given_back_on_drop() {
        let p = Arc::new(Permits::new(2));
        let a = p.try_acquire().expect("first slot");
        let _b = p.try_acquire().expect("second slot");
        assert!(p.try_acquire().is_none());
        drop(a);
        assert!(p.try_acquire().is_some());
    }

    #[test]
    fn permits_made_after_others_are_dropped_start_empty_at_their_own_limit() {
        let old = Permits::new(1);
        drop(old.try_acquire().unwrap());
        drop(old);
        // Possibly the dropped one's counts, reused.
        let p = Permits::new(3);
        assert_eq!((p.limit(), p.in_flight(), p.queued()), (3, 0, 0));
        let _held: Vec<_> = (0..3).map(|_| p.try_acquire().unwrap()).collect();
        assert!(p.try_acquire().is_none());
    }

    #[test]
    fn a_lower_limit_refuses_new_calls_until_enough_end() {
        let p = Arc::new(Permits::new(3));
        let a = p.try_acquire().unwrap();
        let b = p.try_acquire().unwrap();
        p.set_limit(1);
        assert!(p.try_acquire().is_none());
        drop(a);
        assert!(p.try_acquire().is_none());
        drop(b);
        assert!(p.try_acquire().is_some());
    }

    #[test]
    fn the_queue_refuses_a_caller_beyond_its_length() {
        let p = Arc::new(Permits::new(1));
        let _held = p.try_acquire().unwrap();
        let _w = p.queue(1, Duration::from_secs(1)).unwrap();
        let e = p.queue(1, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.reason(), LimitReason::QueueFull);
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_slot_goes_to_a_waiter_at_once() {
        let p = Arc::new(Permits::new(1));
        let held = p.try_acquire().unwrap();
        let mut w = p.queue(4, Duration::from_secs(1)).unwrap();
        let start = tokio::time::Instant::now();
        let wait = tokio::spawn(async move { std::future::poll_fn(|cx| w.poll(cx)).await });
        tokio::task::yield_now().await;
        drop(held);
        let permit = wait.await.unwrap().expect("the released slot");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(p.in_flight(), 1);
        drop(permit);
        assert_eq!((p.in_flight(), p.queued()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_after_the_maximum_wait() {
        let p = Arc::new(Permits::new(1));
        let _held = p.try_acquire().unwrap();
        let mut w = p.queue(4, Duration::from_millis(250)).unwrap();
        let start = tokio::time::Instant::now();
        let e = std::future::poll_fn(|cx| w.poll(cx)).await.unwrap_err();
        assert_eq!(e.reason(), LimitReason::QueueTimeout);
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        drop(w);
        assert_eq!(p.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_raised_limit_lets_a_waiter_in() {
        let p = Arc::new(Permits::new(1));
        let _held = p.try_acquire().unwrap();
        let mut w = p.queue(4, Duration::from_secs(1)).unwrap();
        let wait = tokio::spawn(async move { std::future::poll_fn(|cx| w.poll(cx)).await });
        tokio::task::yield_now().await;
        p.set_limit(2);
        assert!(wait.await.unwrap().is_ok());
    }
}
