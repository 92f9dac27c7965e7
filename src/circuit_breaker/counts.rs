//! What a breaker counts: striped monotonic counters, their sums and the
//! window's snapshots of them.
//!
//! Each thread records into its own cache-padded [`Stripe`] of monotonic
//! counters (calls, failures, slow calls): a success is one load and one
//! store on a line no other thread writes (threads own stripes by id, see
//! `crate::sync::place`; threads beyond the stripes share one with
//! `fetch_add`). The window is a ring of
//! snapshots of the stripes' sums, one per bucket; the window's counts are the
//! current sums minus the snapshot where the window starts. Sums are taken
//! only when a decision is due: on a failure or slow call, or when a time
//! bucket ends. A plain success never asks for one, since it cannot raise a
//! rate: in a count window the snapshots of the buckets that successes alone
//! crossed are rebuilt at the next checkpoint (the calls at a boundary are
//! known, and the failures there are those the last checkpoint saw).
//!
//! With one thread this is exact at bucket granularity. With several, a
//! failure recorded while another thread's checkpoint runs is counted by a
//! re-run of that checkpoint, and may be placed after a bucket boundary it
//! came before, so it can stay in the window up to one bucket longer;
//! failures are never lost.

use super::State;
use crate::sync::{AtomicU64, Ordering::*};

/// One thread's monotonic counters.
#[derive(Debug, Default)]
pub(crate) struct Stripe {
    pub(super) calls: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) slow: AtomicU64,
    /// The value of `calls` at which this stripe asks for a checkpoint.
    pub(super) next_check: AtomicU64,
}

/// Sums of the stripes, or a snapshot of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Counts {
    pub(super) fn minus(self, base: Counts) -> Counts {
        Counts {
            calls: self.calls.saturating_sub(base.calls),
            failures: self.failures.saturating_sub(base.failures),
            slow: self.slow.saturating_sub(base.slow),
        }
    }
}

/// A snapshot of the sums, in the window's ring.
#[derive(Debug, Default)]
pub(super) struct Snap {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl Snap {
    pub(super) fn store(&self, c: Counts) {
        self.calls.store(c.calls, Relaxed);
        self.failures.store(c.failures, Relaxed);
        self.slow.store(c.slow, Relaxed);
    }
    pub(super) fn load(&self) -> Counts {
        Counts {
            calls: self.calls.load(Relaxed),
            failures: self.failures.load(Relaxed),
            slow: self.slow.load(Relaxed),
        }
    }
}

/// A snapshot of the window, returned by `CircuitBreaker::metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// The state when the snapshot was taken.
    pub state: State,
    /// Calls in the window (ignored calls are not recorded).
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window, successful or not.
    pub slow_calls: u64,
}

impl Metrics {
    /// Failures as a percentage of calls, `0` when the window is empty.
    pub fn failure_rate(&self) -> f64 {
        percent(self.failures, self.calls)
    }

    /// Slow calls as a percentage of calls, `0` when the window is empty.
    pub fn slow_call_rate(&self) -> f64 {
        percent(self.slow_calls, self.calls)
    }
}

pub(super) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
