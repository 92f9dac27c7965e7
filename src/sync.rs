//! Atomics and `Arc`, from `loom` when the crate is model-checked
//! (`RUSTFLAGS="--cfg meshguard_loom"`), from `std` otherwise.

#[cfg(meshguard_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[cfg(not(meshguard_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Yields to other threads in the rare spin of the cold path.
pub(crate) fn spin() {
    #[cfg(meshguard_loom)]
    loom::thread::yield_now();
    #[cfg(not(meshguard_loom))]
    std::thread::yield_now();
}

/// A thread's place in striped counters: its stripe, and whether it is the
/// only thread that writes there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    pub(crate) index: usize,
    exclusive: bool,
}

impl Place {
    /// Adds one to `counter`, this thread's stripe of it, and returns the
    /// new value. A thread that owns its stripe does a load and a store, not
    /// a read-modify-write: only it writes there, so nothing is lost, and
    /// readers (who sum the stripes) see each store whole. Threads beyond
    /// the stripes share them with `fetch_add`.
    #[inline]
    pub(crate) fn bump(self, counter: &AtomicU64) -> u64 {
        if self.exclusive {
            let n = counter.load(Ordering::Relaxed) + 1;
            counter.store(n, Ordering::Release);
            n
        } else {
            counter.fetch_add(1, Ordering::Release) + 1
        }
    }

    /// Adds `n` to `counter`, this thread's stripe of it, as
    /// [`bump`](Self::bump) adds one (wrapping: readers take differences).
    #[inline]
    pub(crate) fn add(self, counter: &AtomicU64, n: u64) {
        if self.exclusive {
            let v = counter.load(Ordering::Relaxed).wrapping_add(n);
            counter.store(v, Ordering::Release);
        } else {
            counter.fetch_add(n, Ordering::Release);
        }
    }
}

/// This thread's place among `stripes` stripes: `stripes - 1` owned ones
/// and a last one shared by every thread that owns none.
///
/// Live threads hold distinct ids, handed out in the order they first
/// count and given back when they exit, so the first `stripes - 1` threads
/// each own a stripe.
#[inline]
pub(crate) fn place(stripes: usize) -> Place {
    let id = thread_id();
    let owned = stripes - 1;
    if id < owned {
        Place {
            index: id,
            exclusive: true,
        }
    } else {
        Place {
            index: owned,
            exclusive: false,
        }
    }
}

#[cfg(not(meshguard_loom))]
mod ids {
    use std::cell::Cell;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Ids of exited threads, to hand out again.
    static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    const UNSET: usize = usize::MAX;
    /// Past every stripe count: a thread whose id was given back (during
    /// its own exit) shares stripes from then on.
    const SHARED: usize = usize::MAX / 2;

    std::thread_local! {
        // `const` and without a destructor: a plain TLS read, no lazy state.
        static ID: Cell<usize> = const { Cell::new(UNSET) };
        // Gives the id back when the thread exits.
        static RELEASE: Release = const { Release };
    }

    /// Why reusing an exited thread's id is sound: a stripe must have one
    /// writer at a time, and its next writer must see the last one's
    /// stores. `Release::drop` runs among the thread's TLS destructors; it
    /// first sets `ID` to `SHARED` (a `const` local without a destructor,
    /// readable to the end), so any destructor that runs after it and
    /// counts uses the shared stripe with `fetch_add`, never the stripe it
    /// gave up. The id then goes through `FREE`'s mutex, so the thread that
    /// takes it sees every store the old one made. A thread whose
    /// destructors never run (the main thread at exit) keeps its id: a
    /// stripe lost, nothing shared.
    struct Release;

    impl Drop for Release {
        fn drop(&mut self) {
            let id = ID.replace(SHARED);
            if id < SHARED {
                FREE.lock().unwrap_or_else(|e| e.into_inner()).push(id);
            }
        }
    }

    #[inline]
    pub(super) fn thread_id() -> usize {
        let id = ID.get();
        if id != UNSET {
            return id;
        }
        assign()
    }

    #[cold]
    fn assign() -> usize {
        // Registering the destructor can fail while the thread is already
        // exiting; such a thread never takes an id.
        if RELEASE.try_with(|_| ()).is_err() {
            ID.set(SHARED);
            return SHARED;
        }
        let reused = FREE.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let id = reused
            .unwrap_or_else(|| NEXT.fetch_add(1, Ordering::Relaxed))
            .min(SHARED);
        ID.set(id);
        id
    }
}

/// Under loom the numbering starts afresh in every execution (a process-wide
/// counter would differ between the replays loom makes of one schedule).
#[cfg(meshguard_loom)]
mod ids {
    pub(super) fn thread_id() -> usize {
        loom::lazy_static! {
            static ref NEXT: loom::sync::atomic::AtomicUsize = loom::sync::atomic::AtomicUsize::new(0);
        }
        loom::thread_local! {
            static ID: usize = NEXT.fetch_add(1, super::Ordering::Relaxed);
        }
        ID.with(|i| *i)
    }
}

use ids::thread_id;

/// How many stripes a counter gets: one owned stripe for four threads per
/// hardware thread, from 8 to 64, plus the shared one. More than the cores,
/// so that a runtime's workers, its blocking threads and the application's
/// own threads mostly each own one.
pub(crate) fn stripe_count() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| {
        (std::thread::available_parallelism().map_or(4, |n| n.get()) * 4).clamp(8, 64) + 1
    })
}
