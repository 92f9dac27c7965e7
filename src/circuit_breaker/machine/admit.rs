//! Admission: whether a call may go ahead, and as what.

use std::time::Duration;

use tokio::time::Instant;

use super::Core;
use crate::circuit_breaker::slot::Slot;
use crate::circuit_breaker::word::{
    ADMITTED_SHIFT, CLOSED, DISABLED, FORCED_OPEN, HALF_OPEN, METRICS_ONLY, OPEN, VACANT, admitted,
    generation, kind,
};
use crate::circuit_breaker::{CircuitOpen, State};
use crate::clock;
use crate::sync::Ordering::*;

/// What a call was admitted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Closed or metrics-only: the outcome goes into the window.
    Record,
    /// A half-open probe holding a permit.
    Probe,
    /// Disabled: nothing is recorded.
    Pass,
}

/// Permission for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admission {
    pub(crate) generation: u32,
    pub(crate) role: Role,
}

impl Core {
    /// Decides whether a call may go ahead. Reads the clock only when the
    /// breaker is open or half-open with no permit left.
    #[inline]
    pub(crate) fn admit(&self, slot: &Slot) -> Result<Admission, CircuitOpen> {
        let word = slot.word();
        if kind(word) == CLOSED {
            return Ok(Admission {
                generation: generation(word),
                role: Role::Record,
            });
        }
        self.admit_slow(slot, word)
    }

    #[inline(never)]
    fn admit_slow(&self, slot: &Slot, word: u64) -> Result<Admission, CircuitOpen> {
        let admission = self.admit_or_reject(slot, word);
        if admission.is_err() {
            self.metrics.rejected();
        }
        admission
    }

    #[inline(always)]
    fn admit_or_reject(&self, slot: &Slot, mut word: u64) -> Result<Admission, CircuitOpen> {
        loop {
            match kind(word) {
                CLOSED | METRICS_ONLY => {
                    return Ok(Admission {
                        generation: generation(word),
                        role: Role::Record,
                    });
                }
                DISABLED | VACANT => {
                    return Ok(Admission {
                        generation: generation(word),
                        role: Role::Pass,
                    });
                }
                FORCED_OPEN => return Err(CircuitOpen::new(State::ForcedOpen, None)),
                OPEN => {
                    let g = generation(word);
                    if slot.state.deadline_gen.load(Acquire) != g as u64 {
                        // The opening thread has not published the deadline yet.
                        return Err(CircuitOpen::new(State::Open, None));
                    }
                    let until = slot.state.deadline.load(Relaxed);
                    let now = slot.call_now();
                    if now < until {
                        return Err(CircuitOpen::new(
                            State::Open,
                            Some(Duration::from_nanos(until - now)),
                        ));
                    }
                    match self.to_half_open(slot, word, now) {
                        Ok(admission) => return Ok(admission),
                        Err(actual) => word = actual,
                    }
                }
                HALF_OPEN => {
                    let taken = admitted(word);
                    if taken < self.config.half_open_calls as u64 {
                        let next = word + (1 << ADMITTED_SHIFT);
                        match slot
                            .state
                            .word
                            .compare_exchange(word, next, AcqRel, Acquire)
                        {
                            Ok(_) => {
                                return Ok(Admission {
                                    generation: generation(word),
                                    role: Role::Probe,
                                });
                            }
                            Err(actual) => {
                                word = actual;
                                continue;
                            }
                        }
                    }
                    if self.config.max_wait_in_half_open.is_some()
                        && slot.state.deadline_gen.load(Acquire) == generation(word) as u64
                    {
                        let now = self.now();
                        if now >= slot.state.deadline.load(Relaxed) {
                            if let Err(actual) = self.to_open(slot, word, now) {
                                word = actual;
                                continue;
                            }
                            word = slot.word();
                            continue;
                        }
                    }
                    return Err(CircuitOpen::new(State::HalfOpen, None));
                }
                _ => unreachable!("state word holds a known kind"),
            }
        }
    }

    /// Returns an unused half-open permit (a cancelled or ignored probe) and
    /// wakes whoever waits for one: a service waiting in `poll_ready`
    /// ([`Rejection::Wait`](crate::circuit_breaker::Rejection::Wait)) is
    /// polled again only when woken (a caller such as tower's p2c never
    /// re-polls a pending service on its own), so a permit given back in
    /// silence would strand it.
    #[cold]
    pub(crate) fn release_permit(slot: &Slot, generation_: u32) {
        let mut word = slot.word();
        while generation(word) == generation_ && kind(word) == HALF_OPEN && admitted(word) > 0 {
            match slot.state.word.compare_exchange(
                word,
                word - (1 << ADMITTED_SHIFT),
                AcqRel,
                Acquire,
            ) {
                Ok(_) => {
                    if let Some(core) = &*slot.core() {
                        core.notify.notify_waiters();
                    }
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// When the state of `word` ends by itself, if it is known: the end of
    /// the open period, or of the half-open wait (`max_wait_in_half_open`).
    /// A caller that waits for the breaker arms a timer for it.
    pub(crate) fn wait_until(&self, slot: &Slot, word: u64) -> Option<Instant> {
        if !matches!(kind(word), OPEN | HALF_OPEN)
            || slot.state.deadline_gen.load(Acquire) != generation(word) as u64
        {
            return None;
        }
        match slot.state.deadline.load(Relaxed) {
            u64::MAX => None,
            at => Some(clock::instant(at)),
        }
    }
}
