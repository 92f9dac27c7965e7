//! Checkpoints: bringing the window up to date and deciding whether to
//! trip, under the checkpoint lock.

use super::Core;
use crate::circuit_breaker::Event;
use crate::circuit_breaker::config::Trip;
use crate::circuit_breaker::counts::{Counts, Metrics, percent};
use crate::circuit_breaker::slot::{FLAG_SUCCESS_CHECKS, FLAG_SUCCESS_DUE, Slot};
use crate::circuit_breaker::word::{CLOSED, METRICS_ONLY, kind, state_of};
use crate::sync::{Ordering::*, spin};

/// The checkpoint lock is free.
pub(super) const LOCK_IDLE: u64 = 0;
/// A thread holds the checkpoint lock.
const LOCK_BUSY: u64 = 1;
/// Set beside `LOCK_BUSY`: a call asked for a checkpoint while the lock was
/// held, and the holder goes round again.
const LOCK_NOTED: u64 = 2;

impl Core {
    /// Takes the checkpoint lock, spinning: only transitions and
    /// `metrics()` do this, never a call.
    pub(super) fn lock(&self) {
        while self
            .checkpoint_lock
            .compare_exchange(LOCK_IDLE, LOCK_BUSY, AcqRel, Acquire)
            .is_err()
        {
            spin();
        }
    }

    /// Releases the lock; runs the checkpoint a call asked for meanwhile.
    pub(super) fn unlock(&self, slot: &Slot) {
        if self.checkpoint_lock.swap(LOCK_IDLE, AcqRel) & LOCK_NOTED != 0 {
            self.checkpoint(slot, None);
        }
    }

    /// Rotates the window and evaluates the trip conditions. Never waits:
    /// when another thread holds the lock, this leaves it a note to go round
    /// again. Lock and note share one atomic, so every note is read by an
    /// RMW of the holder, which also makes the noter's counts visible.
    pub(crate) fn checkpoint(&self, slot: &Slot, now: Option<u64>) {
        let mut current = self.checkpoint_lock.load(Acquire);
        loop {
            let next = if current & LOCK_BUSY == 0 {
                LOCK_BUSY
            } else {
                current | LOCK_NOTED
            };
            match self
                .checkpoint_lock
                .compare_exchange(current, next, AcqRel, Acquire)
            {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        if current & LOCK_BUSY != 0 {
            return;
        }
        loop {
            self.checkpoint_locked(slot, now);
            match self
                .checkpoint_lock
                .compare_exchange(LOCK_BUSY, LOCK_IDLE, AcqRel, Acquire)
            {
                Ok(_) => return,
                Err(_) => {
                    self.checkpoint_lock.swap(LOCK_BUSY, AcqRel);
                }
            }
        }
    }

    fn checkpoint_locked(&self, slot: &Slot, now: Option<u64>) {
        let word = slot.word();
        let k = kind(word);
        if k != CLOSED && k != METRICS_ONLY {
            return;
        }
        let mut now = now;
        if self.plan.time_window && now.is_none() {
            now = Some(self.now());
        }
        let sums = slot.sum();
        let window = self.rotate(slot, sums, now);
        let mut trip = false;
        let mut reason = "";
        if let Some(n) = self.plan.consecutive {
            if slot.state.consecutive.load(Relaxed) >= n {
                trip = true;
                reason = "consecutive failures";
            }
        }
        let short = window.calls < self.config.minimum_calls as u64;
        slot.set_flag(
            FLAG_SUCCESS_DUE,
            short && (window.failures > 0 || window.slow > 0),
        );
        if !short {
            if let Trip::FailureRate(t) = self.config.trip {
                if percent(window.failures, window.calls) >= t {
                    trip = true;
                    reason = "failure rate";
                }
            }
            if let Some(sc) = self.config.slow {
                if percent(window.slow, window.calls) >= sc.rate_threshold {
                    trip = true;
                    reason = "slow-call rate";
                }
            }
        }
        if k == METRICS_ONLY {
            if trip != self.above_threshold.swap(trip, Relaxed) {
                if !self.plan.time_window {
                    slot.set_flag(FLAG_SUCCESS_CHECKS, trip);
                }
                let failure_rate = percent(window.failures, window.calls);
                let slow_call_rate = percent(window.slow, window.calls);
                tracing::info!(
                    breaker = %self.name,
                    failure_rate,
                    slow_call_rate,
                    above = trip,
                    "circuit breaker thresholds crossed (metrics only)"
                );
                self.send_event(Event::ThresholdCrossed {
                    above: trip,
                    failure_rate,
                    slow_call_rate,
                });
            }
        } else if trip {
            tracing::debug!(
                breaker = %self.name,
                reason,
                calls = window.calls,
                failures = window.failures,
                slow = window.slow,
                "circuit breaker tripped"
            );
            let now = now.unwrap_or_else(|| self.now());
            let _ = self.to_open(slot, word, now);
        }
    }

    /// Brings the snapshot ring up to date with `sums` and returns the
    /// window's counts. Called with the checkpoint lock held.
    fn rotate(&self, slot: &Slot, sums: Counts, now: Option<u64>) -> Counts {
        let b = self.buckets;
        let head = self.head.load(Relaxed);
        let h = if self.plan.time_window {
            let start = self.window_start.load(Relaxed);
            now.unwrap_or(start).saturating_sub(start) / self.bucket
        } else {
            sums.calls.saturating_sub(self.base_calls.load(Relaxed)) / self.bucket
        };
        if h > head {
            let base = self.base_calls.load(Relaxed);
            let last = self.last.load();
            for i in (head + 1).max(h.saturating_sub(b))..=h {
                let at = base + i * self.bucket;
                let snap = if self.plan.time_window || at >= sums.calls {
                    sums
                } else {
                    // A count-window boundary crossed since the last
                    // checkpoint: only successes came between, so the
                    // snapshot there is `at` calls with the failures and
                    // slow calls the last checkpoint saw.
                    Counts {
                        calls: at,
                        failures: last.failures,
                        slow: last.slow,
                    }
                };
                self.ring[(i % (b + 1)) as usize].store(snap);
            }
            self.head.store(h, Relaxed);
        }
        self.last.store(sums);
        let head = h.max(head);
        if self.plan.time_window {
            let start = self.window_start.load(Relaxed);
            slot.state
                .rotate_at
                .store(start + (head + 1) * self.bucket, Relaxed);
        } else {
            // Only this thread's stripe: writing the others' would steal
            // their cache lines from the threads that own them.
            let boundary = self.base_calls.load(Relaxed) + (head + 1) * self.bucket;
            let remaining = boundary.saturating_sub(sums.calls).max(1);
            let own = slot.stripe();
            own.next_check
                .store(own.calls.load(Relaxed) + remaining, Relaxed);
        }
        let first = if self.plan.time_window {
            (head + 1).saturating_sub(b)
        } else {
            head.saturating_sub(b)
        };
        sums.minus(self.ring[(first % (b + 1)) as usize].load())
    }

    /// Empties the window. Called with the checkpoint lock held.
    pub(super) fn reset_window(&self, slot: &Slot, now: u64) {
        let sums = slot.sum();
        self.ring[0].store(sums);
        self.last.store(sums);
        self.head.store(0, Relaxed);
        self.base_calls.store(sums.calls, Relaxed);
        self.window_start.store(now, Relaxed);
        self.above_threshold.store(false, Relaxed);
        slot.set_flag(FLAG_SUCCESS_CHECKS | FLAG_SUCCESS_DUE, false);
        if self.plan.time_window {
            slot.state.rotate_at.store(now + self.bucket, Relaxed);
        } else {
            for s in slot.stripes.iter() {
                s.next_check
                    .store(s.calls.load(Relaxed) + self.bucket, Relaxed);
            }
        }
        slot.state.consecutive.store(0, Relaxed);
    }

    /// The window's counts now, for `CircuitBreaker::metrics`.
    pub(crate) fn metrics(&self, slot: &Slot) -> Metrics {
        self.lock();
        let now = self.plan.time_window.then(|| self.now());
        let window = self.rotate(slot, slot.sum(), now);
        self.unlock(slot);
        Metrics {
            state: state_of(slot.word()),
            calls: window.calls,
            failures: window.failures,
            slow_calls: window.slow,
        }
    }
}
