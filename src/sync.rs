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
pub(crate) fn stripe_index(mask: usize) -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    #[cfg(not(meshguard_loom))]
    std::thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    #[cfg(meshguard_loom)]
    loom::thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    INDEX.with(|i| *i & mask)
}
