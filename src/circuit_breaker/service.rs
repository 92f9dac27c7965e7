use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::futures::OwnedNotified;
use tokio::time::Sleep;
use tower::Service;

use super::future::{Recorder, ResponseFuture};
use super::machine::{Admission, Core, Role};
use super::slot::{FLAG_WAIT, Slot};
use super::word::{CLOSED, DISABLED, METRICS_ONLY, VACANT, kind};
use super::{BreakerError, CircuitBreaker, CircuitOpen};
use crate::classify::{Classify, ErrorsAreFailures};

/// Wraps a service in a [`CircuitBreaker`]; made by
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
pub struct CircuitBreakerService<S, C = ErrorsAreFailures> {
    inner: S,
    breaker: CircuitBreaker,
    classify: C,
    readiness: Readiness,
}

/// What `poll_ready` decided for the next call, and, in wait mode
/// ([`Rejection::Wait`](super::Rejection::Wait)), what it waits on. Empty
/// (and allocation-free) while the breaker is closed.
#[derive(Default)]
struct Readiness {
    reserved: Option<Reserved>,
    /// Fail-fast mode: `poll_ready` found the breaker open and answered
    /// Ready without polling the inner service; the next `call` fails with
    /// this.
    rejected: Option<CircuitOpen>,
    sleep: Option<Pin<Box<Sleep>>>,
    notified: Option<Pin<Box<OwnedNotified>>>,
}

impl Readiness {
    #[inline]
    fn is_idle(&self) -> bool {
        self.reserved.is_none() && self.rejected.is_none() && self.notified.is_none()
    }
}

/// A call admitted by `poll_ready` and not yet made.
struct Reserved {
    admission: Admission,
    slot: &'static Slot,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.admission.role == Role::Probe {
            // The service went away (or was never called): return the permit.
            Core::release_permit(self.slot, self.admission.generation);
        }
    }
}

impl Reserved {
    fn take(self) -> Admission {
        let admission = self.admission;
        std::mem::forget(self);
        admission
    }
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Wraps `inner` in `breaker`, classifying outcomes with `classify`.
    pub fn new(inner: S, breaker: CircuitBreaker, classify: C) -> Self {
        CircuitBreakerService {
            inner,
            breaker,
            classify,
            readiness: Readiness::default(),
        }
    }

    /// The breaker guarding this service.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Fail-fast mode, breaker not closed: decides the next call now. An
    /// open breaker answers Ready at once, without polling the inner service
    /// (which may itself be waiting: a full buffer or limit), and the call
    /// then fails with [`CircuitOpen`]; an admitted call is reserved, so the
    /// inner service's readiness is polled for a call that will be made.
    #[inline(never)]
    fn decide(&mut self) {
        if self.readiness.reserved.is_some() || self.readiness.rejected.is_some() {
            return;
        }
        let owner = &self.breaker.owner;
        match owner.core.admit(owner.slot) {
            Ok(admission) => {
                self.readiness.reserved = Some(Reserved {
                    admission,
                    slot: owner.slot,
                })
            }
            Err(open) => self.readiness.rejected = Some(open),
        }
    }

    /// Wait mode: `Ready` once the breaker admits a call, reserving it.
    /// While it cannot, the task is registered to be woken by every event
    /// that may let a call through: a transition, a half-open permit given
    /// back, and a timer for the end of the open period or of the half-open
    /// wait. Nothing here relies on being polled again by someone else.
    #[inline(never)]
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let owner = &self.breaker.owner;
        let (slot, core) = (owner.slot, &owner.core);
        loop {
            if self.readiness.reserved.is_some() {
                self.readiness.notified = None;
                return Poll::Ready(());
            }
            let word = slot.word();
            if matches!(kind(word), CLOSED | METRICS_ONLY | DISABLED | VACANT) {
                self.readiness.notified = None;
                return Poll::Ready(());
            }
            // Listen before looking, so a transition in between is not missed.
            if self.readiness.notified.is_none() {
                let mut notified = Box::pin(core.notify.clone().notified_owned());
                notified.as_mut().enable();
                self.readiness.notified = Some(notified);
                continue;
            }
            match core.admit(slot) {
                Ok(admission) => {
                    self.readiness.reserved = Some(Reserved { admission, slot });
                    continue;
                }
                Err(_) => {
                    if let Some(until) = core.wait_until(slot, slot.word()) {
                        let sleep = self
                            .readiness
                            .sleep
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                        if sleep.deadline() != until {
                            sleep.as_mut().reset(until);
                        }
                        if sleep.as_mut().poll(cx).is_ready() {
                            continue;
                        }
                    }
                    let notified = self.readiness.notified.as_mut().expect("armed above");
                    if notified.as_mut().poll(cx).is_ready() {
                        self.readiness.notified = None;
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

use std::future::Future as _;

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    fn clone(&self) -> Self {
        CircuitBreakerService::new(
            self.inner.clone(),
            self.breaker.clone(),
            self.classify.clone(),
        )
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for CircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BreakerError<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let slot = self.breaker.owner.slot;
        // The common case, inline: closed, nothing decided or armed.
        if !(self.readiness.is_idle() && kind(slot.word()) == CLOSED) {
            if slot.flags() & FLAG_WAIT != 0 {
                if self.poll_wait(cx).is_pending() {
                    return Poll::Pending;
                }
            } else {
                self.decide();
                if self.readiness.rejected.is_some() {
                    return Poll::Ready(Ok(()));
                }
            }
        }
        self.inner.poll_ready(cx).map_err(BreakerError::Inner)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let owner = &self.breaker.owner;
        let admission = match self.readiness.reserved.take() {
            Some(r) => Ok(r.take()),
            None => match self.readiness.rejected.take() {
                Some(open) => Err(open),
                None => owner.core.admit(owner.slot),
            },
        };
        match admission {
            Ok(admission) => {
                let recorder = Recorder::new(owner.slot, admission);
                ResponseFuture::called(self.inner.call(req), recorder, self.classify.clone())
            }
            Err(open) => {
                let open = open.with_rejection(owner.core.config.rejection);
                ResponseFuture::rejected(open, owner.slot, self.classify.clone())
            }
        }
    }
}
