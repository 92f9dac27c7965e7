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

/// The stripe this thread records into: threads are numbered in the order
/// they first record, so the first `stripes` threads never share one.
#[inline]
pub(crate) fn stripe_index(mask: usize) -> usize {
    thread_index() & mask
}

#[cfg(not(meshguard_loom))]
#[inline]
fn thread_index() -> usize {
    use std::cell::Cell;
    // A `const` thread-local without a destructor is a plain TLS read: no
    // lazy-initialisation state to check on every call.
    std::thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    let i = INDEX.get();
    if i != usize::MAX {
        return i;
    }
    let i = next_thread_index();
    INDEX.set(i);
    i
}

/// Under loom the numbering starts afresh in every execution (a process-wide
/// counter would differ between the replays loom makes of one schedule).
#[cfg(meshguard_loom)]
fn thread_index() -> usize {
    loom::lazy_static! {
        static ref NEXT: loom::sync::atomic::AtomicUsize = loom::sync::atomic::AtomicUsize::new(0);
    }
    loom::thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i)
}

#[cfg(not(meshguard_loom))]
#[cold]
fn next_thread_index() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (usize::MAX / 2)
}

/// How many counter stripes a shared counter gets: the machine's threads,
/// rounded up to a power of two, at least 2 and at most 64.
pub(crate) fn stripe_count() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .next_power_of_two()
            .clamp(2, 64)
    })
}
