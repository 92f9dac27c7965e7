//! Type-stable memory for state that requests reach on every call: values
//! leaked once and reused by later owners, never while anything of an
//! earlier owner can still reach them. The crate's one recycler (the
//! retry budget and the breaker's slots use it).
//!
//! # Why not `Arc`
//!
//! tower's `Retry` clones its policy for every request, and the policy
//! holds the budget. With an `Arc` that clone and its drop are two
//! read-modify-writes on one cache line that every thread calling the
//! service writes: measured with `benches/retry.rs` (2-core VM), retry over
//! tower's no-op policy went from +7 to +41 ns a call with two threads
//! sharing a service (the target is at most +15 ns) and from +4 to +11 ns
//! with one. The counts below cost a load and a store on a line only the
//! calling thread writes.
//!
//! # How a value is kept from a new owner
//!
//! A [`Pool`] hands out an [`Entry`] as a [`Lease`] (its owner). The lease
//! and every [`Handle`] made from it are counted in per-thread stripes: a
//! thread that makes one adds to `made` in its own stripe, a thread that
//! drops one adds to `gone` in its own. Both only grow. A dropped lease
//! puts its entry on the pool's list, and [`Pool::take`] reuses an entry
//! only when, read in this order, the sum of `gone` equals the sum of
//! `made`:
//!
//! - each handle is made before it is dropped (a clone is made while its
//!   source is alive, the lease's handles while the lease is), and a drop
//!   is a release store that the scan reads with acquire: a scan that
//!   counts a drop therefore counts the making of that handle too, and of
//!   the first handle in its line of clones whose drop it has not counted.
//!   So any handle still alive, or dropped unseen, leaves `made > gone`;
//! - with every handle dropped, none can be made again (there is nothing
//!   to clone), so the entry stays unreachable to the old owner for good.
//!
//! Holding this needs no agreement on when handles may be cloned: a handle
//! cloned after its lease is gone (tower never does, but nothing here
//! relies on it) still keeps the entry out of reuse. What reaches the new
//! owner is the memory, reset by it; `loom_tests` below checks that an old
//! handle never sees the new owner's writes. Debug builds also stamp each
//! handle with the entry's generation and check it on every access.
//!
//! A retired entry whose handles live on (a request in flight) waits on the
//! list; it costs its memory until they end, as an `Arc` would.

use std::sync::Mutex;

use crossbeam_utils::CachePadded;

use crate::sync::{
    AtomicU64,
    Ordering::{Acquire, Release},
    place, stripe_count,
};

/// Entries ready for reuse once their handles are gone. `new` is `const`,
/// so a pool is a `static` of the module whose values it keeps.
pub(crate) struct Pool<T: 'static> {
    // A std mutex even under loom: no loom operation runs while it is held
    // (the scan runs outside), and nothing relies on its ordering.
    retired: Mutex<Vec<&'static Entry<T>>>,
    /// Whether entries count in per-thread stripes: for values reached
    /// through [`Handle`]s made on every call. A pool whose values are
    /// reached only [`unguarded`](Lease::unguarded) counts its leases
    /// alone (two counts a lifetime) in one stripe, whatever the CPUs.
    striped: bool,
}

/// A value and the counts of what can reach it.
pub(crate) struct Entry<T> {
    value: T,
    /// Per-thread stripes of the counts, in a striped pool; empty in an
    /// unstriped one, which counts in `single`.
    counts: Box<[CachePadded<Counts>]>,
    /// The counts of an unstriped pool's entry: unpadded (a lease is made
    /// and dropped once, no call writes them), inside the entry rather
    /// than a 128-byte line of their own.
    single: Counts,
    /// Bumped for each owner; debug builds check handles against it.
    #[cfg(debug_assertions)]
    generation: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Counts {
    made: AtomicU64,
    gone: AtomicU64,
}

/// The owner of an entry: the value while it lives, then back to its pool.
pub(crate) struct Lease<T: 'static> {
    entry: &'static Entry<T>,
    pool: &'static Pool<T>,
}

/// What a request holds: reaches the value of the lease it was made from,
/// and keeps the entry from any later owner until it is dropped.
pub(crate) struct Handle<T: 'static> {
    entry: &'static Entry<T>,
    #[cfg(debug_assertions)]
    generation: u64,
}

impl<T> Pool<T> {
    pub(crate) const fn new() -> Self {
        Pool {
            retired: Mutex::new(Vec::new()),
            striped: true,
        }
    }

    /// A pool whose values are reached only
    /// [`unguarded`](Lease::unguarded), never through a [`Handle`]: each
    /// entry counts its lease in one stripe (128 bytes, not one per
    /// thread; unpadded, in the entry itself).
    pub(crate) const fn unstriped() -> Self {
        Pool {
            retired: Mutex::new(Vec::new()),
            striped: false,
        }
    }

    /// A lease on a retired entry that nothing reaches any more, or on a new
    /// one made by `make`. The value is as its last owner left it: the new
    /// owner resets it.
    pub(crate) fn take(&'static self, make: impl FnOnce() -> T) -> Lease<T> {
        // Creating an owner is rare (a layer, a breaker): scanning every
        // retired entry here keeps calls free of any of this.
        let retired = std::mem::take(&mut *self.lock());
        let mut found = None;
        let mut busy = Vec::new();
        for entry in retired {
            if found.is_none() && entry.unreachable() {
                found = Some(entry);
            } else {
                busy.push(entry);
            }
        }
        if !busy.is_empty() {
            self.lock().extend(busy);
        }
        let entry = found.unwrap_or_else(|| {
            Box::leak(Box::new(Entry {
                value: make(),
                counts: (0..if self.striped { stripe_count() } else { 0 })
                    .map(|_| CachePadded::new(Counts::default()))
                    .collect(),
                single: Counts::default(),
                #[cfg(debug_assertions)]
                generation: std::sync::atomic::AtomicU64::new(0),
            }))
        });
        #[cfg(debug_assertions)]
        entry
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        entry.made();
        Lease { entry, pool: self }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<&'static Entry<T>>> {
        self.retired.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> Entry<T> {
    #[inline]
    fn made(&self) {
        self.bump(|c| &c.made);
    }

    #[inline]
    fn gone(&self) {
        self.bump(|c| &c.gone);
    }

    #[inline(always)]
    fn bump(&self, which: impl Fn(&Counts) -> &AtomicU64) {
        let counts = &self.counts;
        if counts.is_empty() {
            // Unstriped: shared by every thread.
            which(&self.single).fetch_add(1, Release);
            return;
        }
        let p = place(counts.len());
        let counter = which(&counts[p.index]);
        // loom 0.7 remembers only the last access to an atomic: a thread's
        // own load right before its store hides the scan's earlier load
        // from its partial-order reduction, which then explores a single
        // interleaving (a two-thread model completed in 1 iteration
        // instead of 6). Under loom the count is therefore one RMW, which
        // it does see; what is checked here is the order of the scan. (The
        // breaker's loom models of the load-and-store bump have the same
        // blind spot.)
        #[cfg(meshguard_loom)]
        {
            let _ = p;
            counter.fetch_add(1, crate::sync::Ordering::Release);
        }
        #[cfg(not(meshguard_loom))]
        p.bump(counter);
    }

    /// Whether every lease and handle ever made is dropped; see the module
    /// docs for why the drops are read first.
    fn unreachable(&self) -> bool {
        let gone = self
            .counts
            .iter()
            .map(|c| &**c)
            .chain([&self.single])
            .fold(0u64, |n, c| n.wrapping_add(c.gone.load(Acquire)));
        let made = self
            .counts
            .iter()
            .map(|c| &**c)
            .chain([&self.single])
            .fold(0u64, |n, c| n.wrapping_add(c.made.load(Acquire)));
        gone == made
    }

    #[cfg(debug_assertions)]
    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl<T> Lease<T> {
    /// The value.
    #[inline]
    pub(crate) fn get(&self) -> &T {
        &self.entry.value
    }

    /// A handle that keeps the value this owner's while it lives.
    pub(crate) fn handle(&self) -> Handle<T> {
        self.entry.made();
        Handle {
            entry: self.entry,
            #[cfg(debug_assertions)]
            generation: self.entry.generation(),
        }
    }

    /// The value for as long as the program runs, NOT counted: a later
    /// owner will write it. Only for state that tells its owners apart by
    /// itself, as the breaker's slot does with the generation in its state
    /// word (an outcome of an earlier owner is dropped, not recorded).
    pub(crate) fn unguarded(&self) -> &'static T {
        &self.entry.value
    }
}

impl<T> Drop for Lease<T> {
    fn drop(&mut self) {
        self.entry.gone();
        self.pool.lock().push(self.entry);
    }
}

impl<T> Handle<T> {
    /// The value of the lease this handle was made from.
    #[inline(always)]
    pub(crate) fn get(&self) -> &T {
        #[cfg(debug_assertions)]
        debug_assert_eq!(
            self.generation,
            self.entry.generation(),
            "a handle reached a later owner's value"
        );
        &self.entry.value
    }
}

impl<T> Clone for Handle<T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        self.entry.made();
        Handle {
            entry: self.entry,
            #[cfg(debug_assertions)]
            generation: self.generation,
        }
    }
}

impl<T> Drop for Handle<T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.entry.gone();
    }
}

impl<T> std::fmt::Debug for Lease<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(meshguard_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    fn pool() -> &'static Pool<AtomicU64> {
        Box::leak(Box::new(Pool::new()))
    }

    #[test]
    fn a_dropped_lease_with_no_handles_is_reused() {
        let pool = pool();
        let first = pool.take(|| AtomicU64::new(1));
        let memory: *const AtomicU64 = first.get();
        drop(first);
        let second = pool.take(|| AtomicU64::new(2));
        assert!(std::ptr::eq(memory, second.get()));
    }

    #[test]
    fn an_entry_is_not_reused_while_a_handle_of_its_owner_lives() {
        let pool = pool();
        let first = pool.take(|| AtomicU64::new(1));
        let memory: *const AtomicU64 = first.get();
        let handle = first.handle();
        drop(first);
        let second = pool.take(|| AtomicU64::new(2));
        assert!(!std::ptr::eq(memory, second.get()));
        assert_eq!(handle.get().load(Relaxed), 1);
        drop(handle);
        let third = pool.take(|| AtomicU64::new(3));
        assert!(std::ptr::eq(memory, third.get()));
    }

    #[test]
    fn a_clone_made_after_its_lease_is_gone_still_keeps_the_entry() {
        let pool = pool();
        let first = pool.take(|| AtomicU64::new(1));
        let handle = first.handle();
        drop(first);
        let clone = std::thread::spawn(move || handle.clone()).join().unwrap();
        let second = pool.take(|| AtomicU64::new(2));
        assert_eq!(second.get().load(Relaxed), 2, "a new entry");
        assert_eq!(clone.get().load(Relaxed), 1);
        drop(clone);
        drop(second);
    }

    #[test]
    fn handles_made_and_dropped_on_different_threads_let_the_entry_go() {
        let pool = pool();
        let first = pool.take(|| AtomicU64::new(1));
        let memory: *const AtomicU64 = first.get();
        let handles: Vec<_> = (0..8).map(|_| first.handle()).collect();
        drop(first);
        std::thread::spawn(move || drop(handles)).join().unwrap();
        let second = pool.take(|| AtomicU64::new(2));
        assert!(std::ptr::eq(memory, second.get()));
    }
}

#[cfg(all(test, meshguard_loom))]
mod loom_tests {
    //! Run with `RUSTFLAGS="--cfg meshguard_loom" cargo test --lib --release loom`.
    use super::*;
    use crate::sync::Ordering::Relaxed;

    /// An owner's mark, written by each owner when it takes the entry.
    fn mark(owner: u64) -> impl FnOnce() -> AtomicU64 {
        move || AtomicU64::new(owner)
    }

    #[test]
    fn loom_a_handle_never_sees_a_later_owners_writes() {
        loom::model(|| {
            let pool: &'static Pool<AtomicU64> = Box::leak(Box::new(Pool::new()));
            let first = pool.take(mark(1));
            let handle = first.handle();
            // The request: moves to another thread, is cloned there (as a
            // hedge might), and reads its value before each drop.
            let request = loom::thread::spawn(move || {
                let clone = handle.clone();
                assert_eq!(handle.get().load(Relaxed), 1);
                drop(handle);
                assert_eq!(clone.get().load(Relaxed), 1);
            });
            // Meanwhile the owner goes and another takes an entry.
            drop(first);
            let second = pool.take(mark(2));
            second.get().store(2, Relaxed);
            request.join().unwrap();
            assert_eq!(second.get().load(Relaxed), 2);
        });
    }

    #[test]
    fn loom_an_entry_is_reused_once_its_handles_are_gone() {
        loom::model(|| {
            let pool: &'static Pool<AtomicU64> = Box::leak(Box::new(Pool::new()));
            let first = pool.take(mark(1));
            let memory: *const AtomicU64 = first.get();
            let handle = first.handle();
            let request = loom::thread::spawn(move || drop(handle));
            drop(first);
            request.join().unwrap();
            let second = pool.take(mark(2));
            assert!(std::ptr::eq(memory, second.get()));
        });
    }
}
