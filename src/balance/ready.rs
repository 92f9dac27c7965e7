//! The balancer's endpoints, ready or waiting to be: what tower's
//! `ReadyCache` does for its p2c, without moving a service on every
//! request.
//!
//! Why not tower's `ReadyCache`: its `call_ready_index` takes the called
//! service out of the ready set and pushes it into a `FuturesUnordered` of
//! pending services, from which the next pick polls it back (an allocation,
//! four hashes of its key, a wake and two moves of the service per
//! request, about 900 instructions a call measured with callgrind in
//! `benches/client.rs`). Here a called service stays where it is, and is
//! asked for readiness right before its next request, which the pick does
//! anyway ([`check_ready_index`](ReadySet::check_ready_index)); only a
//! service that answers `Pending` there, or a new one, goes to the pending
//! set, to come back when it wakes. An endpoint that was called takes its
//! next readiness (a concurrency limit's permit, a breaker's probe) when it
//! is picked again, not right after its call; one that comes back from the
//! pending set holds the readiness it came back with, as in tower's.
//!
//! The contract a service sees is tower's: `poll_ready` until `Ready`, then
//! one `call`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::stream::FuturesUnordered;
use futures_util::task::AtomicWaker;
use tower::Service;
use tower::ready_cache::error::Failed;

use crate::BoxError;

/// Endpoint services keyed by `K`: those that were ready when last asked
/// (or were called since) in one vector the pick draws from by index, and
/// those waiting for readiness.
pub(super) struct ReadySet<K, S, Req> {
    ready: Vec<(K, S)>,
    /// Where each key of `ready` is in it.
    index: HashMap<K, usize>,
    pending: FuturesUnordered<Pending<K, S, Req>>,
    /// The pending service of each key, to cancel when it is evicted or
    /// replaced.
    cancels: HashMap<K, Arc<Cancel>>,
}

/// A pending service's cancellation: the flag, and the waker of the set's
/// task so the canceled service is dropped at the next poll, not when it
/// would have become ready (perhaps never).
#[derive(Default)]
struct Cancel {
    canceled: AtomicBool,
    waker: AtomicWaker,
}

impl Cancel {
    fn cancel(&self) {
        self.canceled.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

impl<K, S, Req> Default for ReadySet<K, S, Req> {
    fn default() -> Self {
        ReadySet {
            ready: Vec::new(),
            index: HashMap::new(),
            pending: FuturesUnordered::new(),
            cancels: HashMap::new(),
        }
    }
}

impl<K, S, Req> fmt::Debug for ReadySet<K, S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadySet")
            .field("ready", &self.ready.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<K, S, Req> ReadySet<K, S, Req> {
    /// Services held, ready or pending (a replacement pending for a ready
    /// key counts twice, as in tower's `ReadyCache`).
    pub(super) fn len(&self) -> usize {
        self.ready.len() + self.pending.len()
    }

    /// Services that may be picked.
    #[inline]
    pub(super) fn ready_len(&self) -> usize {
        self.ready.len()
    }
}

impl<K, S, Req> ReadySet<K, S, Req>
where
    K: Clone + Eq + Hash,
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    /// Adds `svc` under `key`, pending until it is first ready; a service
    /// already held under `key` stays until then, and one still pending
    /// is dropped.
    pub(super) fn push(&mut self, key: K, svc: S) {
        let cancel = Arc::new(Cancel::default());
        if let Some(previous) = self.cancels.insert(key.clone(), cancel.clone()) {
            previous.cancel();
        }
        self.pending.push(Pending {
            key: Some(key),
            svc: Some(svc),
            cancel,
            _req: std::marker::PhantomData,
        });
    }

    /// Drops the service under `key`, ready or pending. True when one was
    /// held: an index into the ready set taken before is then stale (the
    /// last ready service moves into the evicted one's place).
    pub(super) fn evict(&mut self, key: &K) -> bool {
        let canceled = match self.cancels.remove(key) {
            Some(cancel) => {
                cancel.cancel();
                true
            }
            None => false,
        };
        match self.index.get(key) {
            Some(&at) => {
                self.swap_remove(at);
                true
            }
            None => canceled,
        }
    }

    /// Takes in the pending services that became ready; `cx` is woken when
    /// another does. `Ready(Ok)` when none is left pending; an error names a
    /// service whose readiness failed (it is dropped).
    pub(super) fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failed<K>>> {
        loop {
            match Pin::new(&mut self.pending).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Ready::Canceled)) => {}
                Poll::Ready(Some(Ready::Yes(key, svc, cancel))) => {
                    if !self.is_current(&key, &cancel) {
                        continue;
                    }
                    self.cancels.remove(&key);
                    match self.index.get(&key) {
                        // The replacement of a ready service takes its place.
                        Some(&at) => self.ready[at].1 = svc,
                        None => {
                            self.index.insert(key.clone(), self.ready.len());
                            self.ready.push((key, svc));
                        }
                    }
                }
                Poll::Ready(Some(Ready::Failed(key, error, cancel))) => {
                    if !self.is_current(&key, &cancel) {
                        continue;
                    }
                    self.cancels.remove(&key);
                    return Poll::Ready(Err(Failed(key, error)));
                }
            }
        }
    }

    /// Whether the ready service at `index` is still ready, asked right
    /// before it is called: one that is not goes to the pending set (false),
    /// one that failed is dropped (the error). Either way `index` and the
    /// indices after it are then stale.
    #[inline]
    pub(super) fn check_ready_index(
        &mut self,
        cx: &mut Context<'_>,
        index: usize,
    ) -> Result<bool, Failed<K>> {
        let Some((_, svc)) = self.ready.get_mut(index) else {
            return Ok(false);
        };
        match svc.poll_ready(cx) {
            Poll::Ready(Ok(())) => Ok(true),
            Poll::Pending => {
                let (key, svc) = self.swap_remove(index);
                // Not while a replacement is pending: that one takes over.
                if !self.cancels.contains_key(&key) {
                    self.push(key, svc);
                }
                Ok(false)
            }
            Poll::Ready(Err(error)) => {
                let (key, _) = self.swap_remove(index);
                Err(Failed(key, error.into()))
            }
        }
    }

    /// The ready service at `index`.
    #[inline]
    pub(super) fn get_ready_index(&self, index: usize) -> Option<&S> {
        self.ready.get(index).map(|(_, svc)| svc)
    }

    /// The ready service at `index`, to change.
    #[inline]
    pub(super) fn get_ready_index_mut(&mut self, index: usize) -> Option<&mut S> {
        self.ready.get_mut(index).map(|(_, svc)| svc)
    }

    /// Calls the service at `index`, which
    /// [`check_ready_index`](Self::check_ready_index) has just found ready.
    /// It stays in the ready set.
    #[inline]
    pub(super) fn call_ready_index(&mut self, index: usize, req: Req) -> S::Future {
        let (_, svc) = self
            .ready
            .get_mut(index)
            .expect("check_ready_index was not called");
        svc.call(req)
    }

    fn swap_remove(&mut self, at: usize) -> (K, S) {
        let (key, svc) = self.ready.swap_remove(at);
        self.index.remove(&key);
        if let Some((moved, _)) = self.ready.get(at) {
            self.index.insert(moved.clone(), at);
        }
        (key, svc)
    }

    /// Whether `cancel` is still the pending service of `key` (not evicted
    /// or replaced since it was pushed).
    fn is_current(&self, key: &K, cancel: &Arc<Cancel>) -> bool {
        self.cancels
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, cancel))
    }
}

/// A service waiting for readiness.
struct Pending<K, S, Req> {
    key: Option<K>,
    svc: Option<S>,
    cancel: Arc<Cancel>,
    _req: std::marker::PhantomData<fn(Req)>,
}

// Nothing is pinned: the service is moved out when ready.
impl<K, S, Req> Unpin for Pending<K, S, Req> {}

/// What became of a pending service.
enum Ready<K, S> {
    Yes(K, S, Arc<Cancel>),
    Failed(K, BoxError, Arc<Cancel>),
    Canceled,
}

impl<K, S, Req> Future for Pending<K, S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Ready<K, S>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.cancel.canceled.load(Ordering::SeqCst) {
            return Poll::Ready(Ready::Canceled);
        }
        let svc = this.svc.as_mut().expect("polled after ready");
        match svc.poll_ready(cx) {
            Poll::Pending => {
                this.cancel.waker.register(cx.waker());
                // Canceled while the service was asked: polled again.
                if this.cancel.canceled.load(Ordering::SeqCst) {
                    return Poll::Ready(Ready::Canceled);
                }
                Poll::Pending
            }
            Poll::Ready(Ok(())) => {
                let key = this.key.take().expect("polled after ready");
                let svc = this.svc.take().expect("polled after ready");
                Poll::Ready(Ready::Yes(key, svc, this.cancel.clone()))
            }
            Poll::Ready(Err(error)) => {
                let key = this.key.take().expect("polled after ready");
                Poll::Ready(Ready::Failed(key, error.into(), this.cancel.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Waker;

    /// A service whose readiness the test sets, counting its calls.
    #[derive(Clone)]
    struct Gate {
        ready: Arc<AtomicBool>,
        failed: Arc<AtomicBool>,
        calls: Arc<AtomicUsize>,
        waker: Arc<AtomicWaker>,
    }

    impl Gate {
        fn new(ready: bool) -> Self {
            Gate {
                ready: Arc::new(AtomicBool::new(ready)),
                failed: Arc::new(AtomicBool::new(false)),
                calls: Arc::new(AtomicUsize::new(0)),
                waker: Arc::new(AtomicWaker::new()),
            }
        }

        fn set_ready(&self, ready: bool) {
            self.ready.store(ready, Ordering::SeqCst);
            self.waker.wake();
        }
    }

    impl Service<()> for Gate {
        type Response = ();
        type Error = BoxError;
        type Future = std::future::Ready<Result<(), BoxError>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            if self.failed.load(Ordering::SeqCst) {
                return Poll::Ready(Err("failed".into()));
            }
            if self.ready.load(Ordering::SeqCst) {
                Poll::Ready(Ok(()))
            } else {
                self.waker.register(cx.waker());
                Poll::Pending
            }
        }

        fn call(&mut self, _: ()) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(()))
        }
    }

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    fn settle(set: &mut ReadySet<u64, Gate, ()>) {
        while let Poll::Ready(Err(_)) = set.poll_pending(&mut cx()) {}
    }

    #[test]
    fn a_new_service_is_pending_until_first_polled_ready() {
        let mut set = ReadySet::default();
        set.push(1u64, Gate::new(true));
        assert_eq!((set.ready_len(), set.len()), (0, 1));
        settle(&mut set);
        assert_eq!((set.ready_len(), set.len()), (1, 1));
    }

    #[test]
    fn a_called_service_stays_ready_and_is_called_again_after_a_check() {
        let gate = Gate::new(true);
        let mut set = ReadySet::default();
        set.push(1u64, gate.clone());
        settle(&mut set);
        for _ in 0..3 {
            assert!(set.check_ready_index(&mut cx(), 0).unwrap());
            drop(set.call_ready_index(0, ()));
        }
        assert_eq!(gate.calls.load(Ordering::SeqCst), 3);
        assert_eq!((set.ready_len(), set.len()), (1, 1));
    }

    #[test]
    fn a_service_no_longer_ready_moves_to_pending_and_back_when_it_wakes() {
        let gate = Gate::new(true);
        let mut set = ReadySet::default();
        set.push(1u64, gate.clone());
        settle(&mut set);
        gate.set_ready(false);
        assert!(!set.check_ready_index(&mut cx(), 0).unwrap());
        settle(&mut set);
        assert_eq!((set.ready_len(), set.len()), (0, 1));
        gate.set_ready(true);
        settle(&mut set);
        assert_eq!((set.ready_len(), set.len()), (1, 1));
    }

    #[test]
    fn a_failed_service_is_dropped_naming_its_key() {
        let gate = Gate::new(true);
        let mut set = ReadySet::default();
        set.push(7u64, gate.clone());
        settle(&mut set);
        gate.failed.store(true, Ordering::SeqCst);
        let Err(Failed(key, _)) = set.check_ready_index(&mut cx(), 0) else {
            panic!("the failure is reported");
        };
        assert_eq!((key, set.len()), (7, 0));
    }

    #[test]
    fn evicting_a_ready_service_moves_the_last_into_its_place() {
        let mut set = ReadySet::default();
        for key in 1u64..=3 {
            set.push(key, Gate::new(true));
        }
        settle(&mut set);
        let first = set.ready[0].0;
        assert!(set.evict(&first));
        assert_eq!(set.ready_len(), 2);
        for (at, (key, _)) in set.ready.iter().enumerate() {
            assert_eq!(set.index[key], at);
        }
        assert!(!set.evict(&first));
    }

    #[test]
    fn an_evicted_pending_service_is_dropped_at_the_next_poll() {
        let gate = Gate::new(false);
        let mut set = ReadySet::default();
        set.push(1u64, gate.clone());
        settle(&mut set);
        assert!(set.evict(&1));
        settle(&mut set);
        assert_eq!(set.len(), 0);
        // The service itself is gone: only the test's handle is left.
        assert_eq!(Arc::strong_count(&gate.ready), 1);
    }

    #[test]
    fn a_replacement_takes_the_ready_services_place_once_ready() {
        let old = Gate::new(true);
        let new = Gate::new(false);
        let mut set = ReadySet::default();
        set.push(1u64, old.clone());
        settle(&mut set);
        set.push(1, new.clone());
        settle(&mut set);
        assert!(set.check_ready_index(&mut cx(), 0).unwrap());
        drop(set.call_ready_index(0, ()));
        assert_eq!(old.calls.load(Ordering::SeqCst), 1);
        new.set_ready(true);
        settle(&mut set);
        assert_eq!((set.ready_len(), set.len()), (1, 1));
        assert!(set.check_ready_index(&mut cx(), 0).unwrap());
        drop(set.call_ready_index(0, ()));
        assert_eq!(new.calls.load(Ordering::SeqCst), 1);
        assert_eq!(Arc::strong_count(&old.ready), 1);
    }
}
