//! [`Permits`]: the count of calls in flight against a limit that may
//! change, with a bounded queue of callers waiting for a slot.
//!
//! Written here rather than over `tokio::sync::Semaphore` (which tower's
//! `ConcurrencyLimit` uses): a semaphore's release takes its waiter lock on
//! every call, and its permits cannot be taken back when an adaptive limit
//! falls. Here taking a slot is one compare-and-swap, giving it back one
//! subtraction and one load, and waiters are woken through a
//! `tokio::sync::Notify` only when there are any.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;

use super::{LimitExceeded, LimitReason};

/// Calls in flight, their limit and the callers queued for a slot.
#[derive(Debug)]
pub(crate) struct Permits {
    in_flight: AtomicUsize,
    limit: AtomicUsize,
    queued: AtomicUsize,
    notify: Notify,
}

impl Permits {
    pub(crate) fn new(limit: usize) -> Self {
        Permits {
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            queued: AtomicUsize::new(0),
            notify: Notify::new(),
        }
    }

    /// Takes a slot if one is free.
    #[inline]
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
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
                Ok(_) => {
                    return Some(Permit {
                        permits: self.clone(),
                        in_flight: n + 1,
                    });
                }
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

    /// Calls in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The limit now.
    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Sets the limit; waiters get the slots a higher limit opens.
    pub(crate) fn set_limit(&self, limit: usize) {
        let old = self.limit.swap(limit, Ordering::SeqCst);
        if limit > old && self.queued.load(Ordering::SeqCst) > 0 {
            for _ in old..limit {
                self.notify.notify_one();
            }
        }
    }

    /// Callers waiting for a slot now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Waits for a slot for at most `max_wait`, if fewer than `max_queue`
    /// callers wait already. The wait is a boxed future: the one allocation
    /// of a call that has to queue, none on the path that finds a slot.
    pub(crate) fn queue(
        self: &Arc<Self>,
        max_queue: usize,
        max_wait: Duration,
    ) -> Result<Waiting, LimitExceeded> {
        // Counted before the last try, so a release between the two sees a
        // waiter and notifies.
        let mut q = self.queued.load(Ordering::Relaxed);
        loop {
            if q >= max_queue {
                return Err(LimitExceeded::new(LimitReason::QueueFull));
            }
            match self
                .queued
                .compare_exchange_weak(q, q + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => q = now,
            }
        }
        let queued = Queued(self.clone());
        let wait = async move {
            let permits = &queued.0;
            let slot = async {
                loop {
                    let notified = permits.notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if let Some(permit) = permits.try_acquire() {
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

/// Where one handle of a limited service stands between `poll_ready` and
/// `call`: no slot yet, queued, holding a slot, or refused.
#[derive(Debug)]
pub(crate) enum Admission {
    Idle,
    Waiting(Waiting),
    Admitted(Permit),
    Refused(LimitExceeded),
}

impl Admission {
    /// Takes a slot, or queues for one (at most `max_queue` callers, each
    /// for at most `max_wait`): ready when admitted or refused.
    pub(crate) fn poll(
        &mut self,
        permits: &Arc<Permits>,
        max_queue: usize,
        max_wait: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        loop {
            *self = match self {
                Admission::Idle => match permits.try_acquire() {
                    Some(permit) => Admission::Admitted(permit),
                    None => match permits.queue(max_queue, max_wait) {
                        Ok(waiting) => Admission::Waiting(waiting),
                        Err(refused) => Admission::Refused(refused),
                    },
                },
                Admission::Waiting(waiting) => match waiting.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(permit)) => Admission::Admitted(permit),
                    Poll::Ready(Err(refused)) => Admission::Refused(refused),
                },
                Admission::Admitted(_) | Admission::Refused(_) => return Poll::Ready(()),
            };
        }
    }

    /// Whether a slot is held.
    pub(crate) fn is_admitted(&self) -> bool {
        matches!(self, Admission::Admitted(_))
    }

    /// The slot or the refusal, leaving the handle idle.
    ///
    /// # Panics
    ///
    /// If [`poll`](Self::poll) was not ready first: `call` without
    /// `poll_ready`.
    pub(crate) fn take(&mut self) -> Result<Permit, LimitExceeded> {
        match std::mem::replace(self, Admission::Idle) {
            Admission::Admitted(permit) => Ok(permit),
            Admission::Refused(refused) => Err(refused),
            _ => panic!("call without poll_ready returning Ready"),
        }
    }
}

/// A caller counted among the queued until it leaves the queue.
struct Queued(Arc<Permits>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
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

/// One call's slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    permits: Arc<Permits>,
    /// Calls in flight when this one took its slot, itself included.
    in_flight: usize,
}

impl Permit {
    /// Calls in flight when this one started, itself included.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.permits.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
