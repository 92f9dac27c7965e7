//! A read-only view of a breaker's health, for other parts of the crate.

use super::slot::Slot;
use super::word::{HALF_OPEN, OPEN, generation, kind};
use crate::clock;
use crate::sync::Ordering::*;

/// What a breaker knows about its downstream's health, read from the
/// slot's hot line without chasing the handle's `Arc`: for a reader that
/// looks at many breakers often (a load balancer ranking its endpoints on
/// every pick). Obtained from [`CircuitBreaker::health`](super::CircuitBreaker::health).
///
/// The view reads the breaker's slot, which outlives the breaker and may be
/// handed to another one after it is dropped: hold the breaker as long as
/// the view.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Health {
    slot: &'static Slot,
}

impl Health {
    pub(super) fn new(slot: &'static Slot) -> Self {
        Health { slot }
    }

    /// Whether the next call should be a probe: the breaker is half-open,
    /// or open with its open period over (it turns half-open when a call
    /// asks). Reads the clock only while open.
    #[inline]
    pub(crate) fn probe_due(&self) -> bool {
        let word = self.slot.word();
        match kind(word) {
            HALF_OPEN => true,
            OPEN => self.open_period_over(word),
            _ => false,
        }
    }

    /// Whether the breaker turns calls away now: open, with its open period
    /// not over. Reads the clock only while open.
    #[inline]
    pub(crate) fn rejects(&self) -> bool {
        let word = self.slot.word();
        kind(word) == OPEN && !self.open_period_over(word)
    }

    #[cold]
    fn open_period_over(&self, word: u64) -> bool {
        self.slot.state.deadline_gen.load(Acquire) == generation(word) as u64
            && self.slot.call_now() >= self.slot.state.deadline.load(Relaxed)
    }

    /// Consecutive failures if the last one is younger than `window`
    /// nanoseconds, else 0. Reads the clock only when there are failures.
    ///
    /// Meaningful only for breakers that trip on consecutive failures or
    /// were made to track them (`BreakerOptions::track_failures`); the
    /// others do not time their failures.
    #[inline]
    pub(crate) fn recent_failures(&self, window: u64) -> u64 {
        match self.slot.state.consecutive.load(Relaxed) {
            0 => 0,
            n => self.recent(n, window),
        }
    }

    #[cold]
    fn recent(&self, n: u64, window: u64) -> u64 {
        if clock::now().saturating_sub(self.slot.state.last_failure.load(Relaxed)) >= window {
            0
        } else {
            n
        }
    }
}
