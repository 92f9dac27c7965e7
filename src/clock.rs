//! Time as `u64` nanoseconds, so it fits in an atomic.
//!
//! All times come from `tokio::time::Instant`, so paused-time tests control
//! them. They are measured from a process-wide epoch with a bias of 2^62, so
//! an instant before the epoch (a paused test clock started earlier than the
//! first breaker) still maps to a valid, ordered value.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

const BIAS: u64 = 1 << 62;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `at` in biased nanoseconds.
#[inline]
pub(crate) fn nanos(at: Instant) -> u64 {
    let e = epoch();
    if at >= e {
        BIAS.saturating_add((at - e).as_nanos() as u64)
    } else {
        BIAS.saturating_sub((e - at).as_nanos() as u64)
    }
}

/// Now, in biased nanoseconds.
#[inline]
pub(crate) fn now() -> u64 {
    nanos(Instant::now())
}

/// The instant of a biased nanosecond value.
pub(crate) fn instant(nanos: u64) -> Instant {
    let e = epoch();
    if nanos >= BIAS {
        e + Duration::from_nanos(nanos - BIAS)
    } else {
        e.checked_sub(Duration::from_nanos(BIAS - nanos))
            .unwrap_or(e)
    }
}

/// Now, from the coarse clock: at most about a millisecond behind, one
/// atomic load. The clock is a background thread (started on first use)
/// storing the time every millisecond; it reads tokio's clock outside any
/// runtime, i.e. real time, so it ignores tokio's paused time.
#[inline]
pub(crate) fn coarse_now() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COARSE: AtomicU64 = AtomicU64::new(0);
    match COARSE.load(Ordering::Relaxed) {
        0 => start_coarse(&COARSE),
        t => t,
    }
}

#[cold]
// The coarse clock is the documented exception: a thread of its own that
// reads the real clock every millisecond, for breakers configured with
// `coarse_clock`, which trade paused-time control for a cheaper read.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn start_coarse(cell: &'static std::sync::atomic::AtomicU64) -> u64 {
    use std::sync::atomic::Ordering;
    static STARTED: OnceLock<()> = OnceLock::new();
    let real_now = || nanos(Instant::from_std(std::time::Instant::now()));
    STARTED.get_or_init(|| {
        cell.store(real_now(), Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("meshguard-clock".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(1));
                    cell.store(real_now(), Ordering::Relaxed);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the coarse clock thread; it will not advance");
        }
    });
    cell.load(Ordering::Relaxed).max(1)
}
