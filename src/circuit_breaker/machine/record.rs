//! Recording outcomes: the hot path of a call, and half-open probes.

use super::Core;
use crate::circuit_breaker::config::Trip;
use crate::circuit_breaker::counts::{Stripe, percent};
use crate::circuit_breaker::slot::{FLAG_CONSECUTIVE, FLAG_SUCCESS_CHECKS, FLAG_SUCCESS_DUE, Slot};
use crate::circuit_breaker::word::{
    GEN_SHIFT, HALF_OPEN, PROBE_BITS, PROBE_MASK, generation, kind, older, probes_pack,
};
use crate::classify::Outcome;
use crate::clock;
use crate::sync::{Ordering::*, Place};

/// What a breaker records of a call: its [`Outcome`], as
/// [`Outcome::counts`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    Success,
    Failure,
    Ignored,
}

impl Record {
    #[inline]
    pub(crate) fn of(outcome: &Outcome) -> Record {
        match outcome.counts() {
            Some(true) => Record::Success,
            Some(false) => Record::Failure,
            None => Record::Ignored,
        }
    }
}

impl Core {
    /// Hot path for a call admitted with [`Role::Record`](super::Role::Record).
    /// Returns whether a checkpoint is due; the caller then runs
    /// [`Core::checkpoint`].
    ///
    /// A plain success (not slow) is one increment of the thread's own
    /// stripe (a load and a store, see [`Place::bump`]) and never asks for a
    /// checkpoint: it cannot raise a rate, and the count window's snapshots
    /// for the buckets it crosses are rebuilt exactly at the next checkpoint
    /// (see [`Core::rotate`]). Failures and slow calls always ask.
    #[inline]
    pub(crate) fn record(slot: &Slot, generation_: u32, outcome: Record, slow: bool) -> bool {
        if outcome == Record::Ignored || generation(slot.word()) != generation_ {
            // Ignored, or admitted under an earlier state: says nothing now.
            return false;
        }
        let place = slot.place();
        let stripe = &slot.stripes[place.index];
        let calls = place.bump(&stripe.calls);
        if outcome == Record::Success && !slow {
            let flags = slot.flags();
            if flags & (FLAG_SUCCESS_CHECKS | FLAG_SUCCESS_DUE) == 0
                && (flags & FLAG_CONSECUTIVE == 0 || slot.state.consecutive.load(Relaxed) == 0)
            {
                return false;
            }
            return Self::record_success_flagged(slot, stripe, calls, flags);
        }
        Self::record_bad(slot, place, outcome, slow)
    }

    /// A success when consecutive failures are counted, or while a
    /// metrics-only breaker is above its thresholds and must notice the
    /// rates falling.
    #[cold]
    fn record_success_flagged(slot: &Slot, stripe: &Stripe, calls: u64, flags: u64) -> bool {
        if flags & FLAG_CONSECUTIVE != 0 && slot.state.consecutive.load(Relaxed) != 0 {
            slot.state.consecutive.store(0, Relaxed);
        }
        flags & FLAG_SUCCESS_DUE != 0
            || (flags & FLAG_SUCCESS_CHECKS != 0 && calls >= stripe.next_check.load(Relaxed))
    }

    #[cold]
    fn record_bad(slot: &Slot, place: Place, outcome: Record, slow: bool) -> bool {
        let stripe = &slot.stripes[place.index];
        if outcome == Record::Failure {
            place.bump(&stripe.failures);
            if slot.flags() & FLAG_CONSECUTIVE != 0 {
                slot.state.last_failure.store(clock::now(), Relaxed);
            }
            slot.state.consecutive.fetch_add(1, Relaxed);
        } else if slot.flags() & FLAG_CONSECUTIVE != 0 && slot.state.consecutive.load(Relaxed) != 0
        {
            slot.state.consecutive.store(0, Relaxed);
        }
        if slow {
            place.bump(&stripe.slow);
        }
        true
    }

    /// Whether a time window's bucket has ended by `now`.
    #[inline]
    pub(crate) fn rotation_due(slot: &Slot, now: u64) -> bool {
        now >= slot.state.rotate_at.load(Relaxed)
    }

    /// Records a probe's result; the thread that records the last one
    /// decides between closing and re-opening.
    pub(crate) fn record_probe(&self, slot: &Slot, generation_: u32, outcome: Record, slow: bool) {
        if outcome == Record::Ignored {
            Self::release_permit(slot, generation_);
            return;
        }
        let (f, s) = ((outcome == Record::Failure) as u64, slow as u64);
        let mut current = slot.probes.load(Acquire);
        let next = loop {
            let tag = (current >> GEN_SHIFT) as u32;
            let next = if tag == generation_ {
                current + probes_pack(0, 1, f, s)
            } else if older(tag, generation_) {
                probes_pack(generation_, 1, f, s)
            } else {
                return;
            };
            match slot.probes.compare_exchange(current, next, AcqRel, Acquire) {
                Ok(_) => break next,
                Err(actual) => current = actual,
            }
        };
        let completed = (next >> (2 * PROBE_BITS)) & PROBE_MASK;
        let permitted = self.config.half_open_calls as u64;
        if completed < permitted {
            return;
        }
        let word = slot.word();
        if generation(word) != generation_ || kind(word) != HALF_OPEN {
            return;
        }
        let failures = (next >> PROBE_BITS) & PROBE_MASK;
        let slows = next & PROBE_MASK;
        let mut reopen = match self.config.trip {
            Trip::FailureRate(t) => percent(failures, permitted) >= t,
            Trip::ConsecutiveFailures(_) => failures > 0,
        };
        if let Some(sc) = self.config.slow {
            reopen |= percent(slows, permitted) >= sc.rate_threshold;
        }
        let now = self.now();
        let _ = if reopen {
            self.to_open(slot, word, now)
        } else {
            self.to_closed(slot, word, now)
        };
    }
}
