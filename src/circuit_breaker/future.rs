//! The response future of [`CircuitBreakerService`](super::CircuitBreakerService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::machine::{Admission, Core, Record, Role, asked_for};
use super::slot::{FLAG_HOLD, FLAG_TIME_WINDOW, Slot};
use super::{BreakerError, CircuitOpen};
use crate::classify::{Classify, Outcome};

pin_project! {
    /// Records the inner call's outcome when it finishes. Dropped before
    /// then, it records nothing and hands back a half-open permit.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        // In place, not an `Option` to `take()`: moving it out as one 16-byte
        // value right after `call` wrote it field by field stalled on store
        // forwarding (a third of a call's cost in `perf annotate`).
        recorder: Recorder,
        classify: C,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Rejected { error: Option<CircuitOpen> },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, recorder: Recorder, classify: C) -> Self {
        ResponseFuture {
            kind: Kind::Called { future },
            recorder,
            classify,
        }
    }

    pub(crate) fn rejected(error: CircuitOpen, slot: &'static Slot, classify: C) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
            recorder: Recorder::done(slot),
            classify,
        }
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("recorder", &self.recorder)
            .finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, BreakerError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Rejected { error } => {
                // A rejection touches no tokio resource, so without this a
                // task calling in a loop against an open breaker would never
                // yield and could starve its worker thread. It spends the
                // task's budget as tokio's own resources do.
                ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                Poll::Ready(Err(BreakerError::Open(
                    error.take().expect("polled after completion"),
                )))
            }
            KindProj::Called { future } => {
                let result = ready!(future.poll(cx));
                if this.recorder.admission.role != Role::Pass {
                    this.recorder.finish(this.classify.classify(&result));
                }
                Poll::Ready(result.map_err(BreakerError::Inner))
            }
        }
    }
}

/// What a call needs to record its outcome: no `Arc`, see `slot.rs`.
#[derive(Debug)]
pub(crate) struct Recorder {
    slot: &'static Slot,
    admission: Admission,
    /// When the call started (biased nanoseconds), when slow calls are
    /// detected; else 0.
    start: u64,
}

impl Recorder {
    #[inline]
    pub(crate) fn new(slot: &'static Slot, admission: Admission) -> Self {
        let start = if admission.role != Role::Pass && slot.slow_nanos().is_some() {
            slot.call_now()
        } else {
            0
        };
        Recorder {
            slot,
            admission,
            start,
        }
    }

    /// A recorder with nothing to record.
    pub(crate) fn done(slot: &'static Slot) -> Self {
        Recorder {
            slot,
            admission: Admission {
                generation: 0,
                role: Role::Pass,
            },
            start: 0,
        }
    }

    #[inline]
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        // A success, a failure, or nothing (see `Outcome::counts`).
        let record = Record::of(&outcome);
        let slot = self.slot;
        if record == Record::Failure && slot.flags() & FLAG_HOLD != 0 && self.hold(&outcome) {
            // Open for as long as the callee asked, instead of counted.
            self.admission.role = Role::Pass;
            return;
        }
        let outcome = record;
        let role = std::mem::replace(&mut self.admission.role, Role::Pass);
        let generation = self.admission.generation;
        match role {
            Role::Pass => {}
            Role::Record
                if outcome != Record::Ignored
                    && self.start == 0
                    && slot.flags() & FLAG_TIME_WINDOW == 0 =>
            {
                // The common case: a count window, no slow-call detection,
                // no clock.
                if Core::record(slot, generation, outcome, false) {
                    checkpoint(slot, None);
                }
            }
            _ => self.finish_timed(role, outcome),
        }
    }

    /// A failure whose callee asked for time: holds the breaker open that
    /// long (at most its cap). Whether it did.
    #[cold]
    #[inline(never)]
    fn hold(&self, outcome: &Outcome) -> bool {
        if self.admission.role == Role::Pass {
            return false;
        }
        let Some(asked) = asked_for(outcome) else {
            return false;
        };
        let Some(core) = &*self.slot.core() else {
            return false;
        };
        let delay = asked.min(core.hold_cap);
        !delay.is_zero()
            && core.hold_open(
                self.slot,
                self.admission.generation,
                delay,
                self.slot.call_now(),
            )
    }

    #[cold]
    #[inline(never)]
    fn finish_timed(&mut self, role: Role, outcome: Record) {
        let slot = self.slot;
        let generation = self.admission.generation;
        let needs_clock = self.start != 0 || slot.flags() & FLAG_TIME_WINDOW != 0;
        let now = if needs_clock { slot.call_now() } else { 0 };
        let slow = match slot.slow_nanos() {
            Some(limit) if self.start != 0 && outcome != Record::Ignored => {
                now.saturating_sub(self.start) >= limit
            }
            _ => false,
        };
        match role {
            Role::Probe => {
                if let Some(core) = &*slot.core() {
                    core.record_probe(slot, generation, outcome, slow);
                }
            }
            Role::Record if outcome != Record::Ignored => {
                let time = (slot.flags() & FLAG_TIME_WINDOW != 0).then_some(now);
                if let Some(now) = time {
                    if Core::rotation_due(slot, now) {
                        checkpoint(slot, Some(now));
                    }
                }
                if Core::record(slot, generation, outcome, slow) {
                    checkpoint(slot, time);
                }
            }
            _ => {}
        }
    }
}

#[cold]
#[inline(never)]
fn checkpoint(slot: &Slot, now: Option<u64>) {
    if let Some(core) = &*slot.core() {
        core.checkpoint(slot, now);
    }
}

impl Drop for Recorder {
    #[inline]
    fn drop(&mut self) {
        if self.admission.role == Role::Probe {
            // Cancelled: the permit goes back, nothing is counted.
            Core::release_permit(self.slot, self.admission.generation);
        }
    }
}
