//! Transitions between states, and their announcements.
//!
//! Every transition is a compare-and-swap from the state word that was
//! read, so exactly one thread performs each; the loser gets the word it
//! found instead.

use std::time::Duration;

use super::Core;
use super::admit::{Admission, Role};
use crate::circuit_breaker::open_limit::holds_place;
use crate::circuit_breaker::slot::Slot;
use crate::circuit_breaker::word::{
    CLOSED, HALF_OPEN, OPEN, generation, kind, kind_of, pack, state_of,
};
use crate::circuit_breaker::{Event, State};
use crate::sync::Ordering::*;

impl Core {
    pub(super) fn to_open(&self, slot: &Slot, from: u64, now: u64) -> Result<(), u64> {
        let g = generation(from).wrapping_add(1);
        let limited = !holds_place(kind(from)) && self.open_limit.is_some();
        if limited && !self.open_limit.as_ref().is_some_and(|l| l.try_acquire()) {
            tracing::debug!(
                breaker = %self.name,
                "not opening: the group's open limit is reached"
            );
            return Err(from);
        }
        if let Err(actual) =
            slot.state
                .word
                .compare_exchange(from, pack(g, OPEN, 0), AcqRel, Acquire)
        {
            if limited {
                self.release_open_place();
            }
            return Err(actual);
        }
        let attempt = if kind(from) == HALF_OPEN {
            self.reopens.fetch_add(1, Relaxed) + 1
        } else {
            self.reopens.store(0, Relaxed);
            0
        };
        let previous = match self.last_open.load(Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        };
        let seed = self
            .config
            .seed
            .unwrap_or(now)
            .wrapping_add(self.rng_calls.fetch_add(1, Relaxed));
        let mut rng = fastrand::Rng::with_seed(seed);
        let delay = self.config.open_duration.delay(
            attempt.min(u32::MAX as u64) as u32,
            previous,
            &mut rng,
        );
        self.last_open.store(delay.as_nanos() as u64, Relaxed);
        slot.state
            .deadline
            .store(now.saturating_add(delay.as_nanos() as u64), Relaxed);
        slot.state.deadline_gen.store(g as u64, Release);
        self.announce(state_of(from), State::Open, Some(delay));
        Ok(())
    }

    pub(super) fn to_half_open(&self, slot: &Slot, from: u64, now: u64) -> Result<Admission, u64> {
        let g = generation(from).wrapping_add(1);
        slot.state
            .word
            .compare_exchange(from, pack(g, HALF_OPEN, 1), AcqRel, Acquire)?;
        let deadline = match self.config.max_wait_in_half_open {
            Some(wait) => now.saturating_add(wait.as_nanos() as u64),
            None => u64::MAX,
        };
        slot.state.deadline.store(deadline, Relaxed);
        slot.state.deadline_gen.store(g as u64, Release);
        self.announce(State::Open, State::HalfOpen, None);
        Ok(Admission {
            generation: g,
            role: Role::Probe,
        })
    }

    pub(super) fn to_closed(&self, slot: &Slot, from: u64, now: u64) -> Result<(), u64> {
        self.lock();
        self.reset_window(slot, now);
        let result = slot.state.word.compare_exchange(
            from,
            pack(generation(from).wrapping_add(1), CLOSED, 0),
            AcqRel,
            Acquire,
        );
        self.unlock(slot);
        result?;
        self.release_open_place();
        self.reopens.store(0, Relaxed);
        self.last_open.store(0, Relaxed);
        self.announce(State::HalfOpen, State::Closed, None);
        Ok(())
    }

    /// Gives the breaker's place under its open limit back, if it has a
    /// limit.
    pub(crate) fn release_open_place(&self) {
        if let Some(l) = &self.open_limit {
            l.release();
        }
    }

    /// A manual transition (`force_open`, `disable`, `metrics_only`, `reset`).
    pub(crate) fn set(&self, slot: &Slot, to: State) {
        let to_kind = kind_of(to);
        self.lock();
        if matches!(to, State::Closed | State::MetricsOnly) {
            self.reset_window(slot, self.now());
        }
        let mut word = slot.word();
        let from = loop {
            let next = pack(generation(word).wrapping_add(1), to_kind, 0);
            match slot
                .state
                .word
                .compare_exchange(word, next, AcqRel, Acquire)
            {
                Ok(_) => break word,
                Err(actual) => word = actual,
            }
        };
        self.unlock(slot);
        match (holds_place(kind(from)), holds_place(to_kind)) {
            (true, false) => self.release_open_place(),
            (false, true) => {
                if let Some(l) = &self.open_limit {
                    l.acquire();
                }
            }
            _ => {}
        }
        if to == State::Closed {
            self.reopens.store(0, Relaxed);
            self.last_open.store(0, Relaxed);
        }
        self.announce(state_of(from), to, None);
    }

    pub(super) fn announce(&self, from: State, to: State, open_for: Option<Duration>) {
        match open_for {
            Some(d) => tracing::info!(
                breaker = %self.name, ?from, ?to, open_for = ?d,
                "circuit breaker state changed"
            ),
            None => tracing::info!(
                breaker = %self.name, ?from, ?to,
                "circuit breaker state changed"
            ),
        }
        self.metrics.transition(to);
        self.publish(to);
        self.send_event(Event::StateChanged { from, to });
        self.notify.notify_waiters();
    }
}
