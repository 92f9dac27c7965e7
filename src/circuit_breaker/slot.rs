//! The state every call touches: the [`Slot`].
//!
//! # Memory: a hot slot and a cold core
//!
//! A response future must record its outcome after the service that made it
//! is gone, so it needs a `'static` way to reach the breaker. An `Arc` clone
//! per call would cost two atomic read-modify-writes on a cache line that
//! every thread writes, which alone is more than the whole budget of a call
//! (the target: at most 20 ns; one uncontended `fetch_add` is 9.6 ns here).
//!
//! So the state a call touches lives in a [`Slot`]: leaked once, never freed,
//! recycled through a free list when its breaker is dropped (type-stable
//! memory, as in RCU; see `owner.rs`). Futures hold `&'static Slot` plus the
//! generation of the state they were admitted in; a slot is handed to a new
//! breaker only with a new generation, so outcomes from an old owner are
//! ignored. The rest (configuration, the window's snapshot ring, channels)
//! lives in a [`Core`] behind an `Arc` that the slot publishes through
//! `arc-swap`, read only on the cold path (a failure, a bucket rotation, a
//! transition).

use std::sync::Arc as StdArc;

use crossbeam_utils::CachePadded;

use super::counts::{Counts, Stripe};
use super::machine::Core;
use super::word::{VACANT, pack, state_of};
use crate::clock;
use crate::sync::{AtomicU64, Ordering::*, Place, place};

/// The state every call reads or writes; see the module docs.
pub(crate) struct Slot {
    pub(super) state: CachePadded<Hot>,
    pub(super) stripes: Box<[CachePadded<Stripe>]>,
    pub(super) probes: CachePadded<AtomicU64>,
    pub(super) core: arc_swap::ArcSwapOption<Core>,
}

/// The slot's first cache line: what a call reads.
#[derive(Default)]
pub(super) struct Hot {
    pub(super) word: AtomicU64,
    /// Nanoseconds since the core's epoch: when the open period ends (Open)
    /// or when half-open gives up waiting (HalfOpen).
    pub(super) deadline: AtomicU64,
    /// The generation `deadline` belongs to; written after it.
    pub(super) deadline_gen: AtomicU64,
    /// Time windows: when the next bucket starts.
    pub(super) rotate_at: AtomicU64,
    /// Slow-call threshold in nanoseconds; `u64::MAX` when detection is off.
    pub(super) slow_nanos: AtomicU64,
    /// `FLAG_*` bits of the current owner.
    pub(super) flags: AtomicU64,
    /// Failures since the last success. On the line every call reads, so a
    /// reader of the breaker's [`Health`](super::Health) touches no other
    /// line; it is written only by failures (and the success after them).
    pub(super) consecutive: AtomicU64,
    /// When the last failure was recorded (biased nanoseconds), kept only
    /// while consecutive failures are counted.
    pub(super) last_failure: AtomicU64,
}

pub(crate) const FLAG_TIME_WINDOW: u64 = 1;
/// Consecutive failures are counted, with the time of the last one: the
/// trip condition needs them, or the breaker's health is read.
pub(crate) const FLAG_CONSECUTIVE: u64 = 2;
/// Wait rejection ([`Rejection::Wait`](super::Rejection::Wait)): kept here
/// so a call reads only the slot's hot line.
pub(crate) const FLAG_WAIT: u64 = 16;
/// Calls read the coarse clock (`CircuitBreakerConfigBuilder::coarse_clock`).
pub(crate) const FLAG_COARSE: u64 = 32;
/// Successes ask for a checkpoint every bucket: set while a metrics-only
/// count window is above its thresholds, so it notices falling below.
pub(crate) const FLAG_SUCCESS_CHECKS: u64 = 4;
/// Every success asks for a checkpoint: set while the window holds fewer
/// than the minimum calls and some of them failed or were slow, so the
/// success that brings it to the minimum can trip the breaker.
pub(crate) const FLAG_SUCCESS_DUE: u64 = 8;
/// A failure whose callee asked for time (a `Retry-After`) opens the
/// breaker for that long (`BreakerOptions::hold_cap`): an endpoint's breaker.
pub(crate) const FLAG_HOLD: u64 = 64;

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("state", &state_of(self.word()))
            .finish_non_exhaustive()
    }
}

impl Slot {
    pub(crate) fn new(stripes: usize) -> Slot {
        Slot {
            state: CachePadded::new(Hot {
                word: AtomicU64::new(pack(0, VACANT, 0)),
                ..Hot::default()
            }),
            stripes: (0..stripes)
                .map(|_| CachePadded::new(Stripe::default()))
                .collect(),
            probes: CachePadded::new(AtomicU64::new(0)),
            core: arc_swap::ArcSwapOption::empty(),
        }
    }

    #[inline]
    pub(crate) fn word(&self) -> u64 {
        self.state.word.load(Acquire)
    }

    /// This thread's place among the stripes.
    #[inline]
    pub(super) fn place(&self) -> Place {
        place(self.stripes.len())
    }

    /// This thread's stripe.
    #[inline]
    pub(super) fn stripe(&self) -> &Stripe {
        &self.stripes[self.place().index]
    }

    pub(super) fn sum(&self) -> Counts {
        let mut c = Counts::default();
        for s in self.stripes.iter() {
            c.calls += s.calls.load(Acquire);
            c.failures += s.failures.load(Acquire);
            c.slow += s.slow.load(Acquire);
        }
        c
    }

    /// The slow-call threshold, if detection is on.
    #[inline]
    pub(crate) fn slow_nanos(&self) -> Option<u64> {
        match self.state.slow_nanos.load(Relaxed) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    #[inline]
    pub(crate) fn flags(&self) -> u64 {
        self.state.flags.load(Relaxed)
    }

    /// Sets or clears `flag`, writing only on a change: the flags share a
    /// cache line with the state word every call reads.
    pub(super) fn set_flag(&self, flag: u64, on: bool) {
        let flags = self.flags();
        if (flags & flag != 0) != on {
            if on {
                self.state.flags.fetch_or(flag, Relaxed);
            } else {
                self.state.flags.fetch_and(!flag, Relaxed);
            }
        }
    }

    /// Now, for a call: the coarse clock when the owner asked for it.
    #[inline]
    pub(crate) fn call_now(&self) -> u64 {
        if self.flags() & FLAG_COARSE != 0 {
            clock::coarse_now()
        } else {
            clock::now()
        }
    }

    /// The owner's core; a guard, not an `Arc` clone, in the common case.
    pub(crate) fn core(&self) -> arc_swap::Guard<Option<StdArc<Core>>> {
        self.core.load()
    }
}
