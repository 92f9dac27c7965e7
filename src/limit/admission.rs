//! [`Admission`]: where one handle of a limited service stands between
//! `poll_ready` and `call` (the bulkhead's and the shedding server's).

use std::task::{Context, Poll};
use std::time::Duration;

use super::LimitExceeded;
use super::permits::{Permit, Permits, Waiting};

/// Where one handle of a limited service stands between `poll_ready` and
/// `call`: holding a slot, or else idle, queued or refused.
///
/// The slot is a field of its own, one word (a [`Permit`] is a pointer):
/// `poll_ready` writes it whole and `call` reads it whole. As one enum with
/// the queue's wait, `call` copied the whole wider value out at once, from
/// the separate stores `poll_ready` had just made, and the processor
/// stalled on that (store forwarding fails): a fifth of a bulkhead's call
/// on the development machine.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    permit: Option<Permit>,
    other: Pending,
}

/// An [`Admission`] without a slot.
#[derive(Debug, Default)]
enum Pending {
    #[default]
    Idle,
    Waiting(Waiting),
    Refused(LimitExceeded),
}

impl Admission {
    /// Takes a slot, or queues for one (at most `max_queue` callers, each
    /// for at most `max_wait`): ready when admitted or refused.
    #[inline]
    pub(crate) fn poll(
        &mut self,
        permits: &Permits,
        max_queue: usize,
        max_wait: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        // A free slot, inline: the rest is the queue's.
        if self.permit.is_none() && matches!(self.other, Pending::Idle) {
            if let Some(permit) = permits.try_acquire() {
                self.permit = Some(permit);
                return Poll::Ready(());
            }
        }
        self.poll_queue(permits, max_queue, max_wait, cx)
    }

    fn poll_queue(
        &mut self,
        permits: &Permits,
        max_queue: usize,
        max_wait: Duration,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.permit.is_some() {
            return Poll::Ready(());
        }
        loop {
            let admitted = match &mut self.other {
                Pending::Idle => match permits.try_acquire() {
                    Some(permit) => permit,
                    None => {
                        self.other = match permits.queue(max_queue, max_wait) {
                            Ok(waiting) => Pending::Waiting(waiting),
                            Err(refused) => Pending::Refused(refused),
                        };
                        continue;
                    }
                },
                Pending::Waiting(waiting) => match waiting.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(permit)) => permit,
                    Poll::Ready(Err(refused)) => {
                        self.other = Pending::Refused(refused);
                        return Poll::Ready(());
                    }
                },
                Pending::Refused(_) => return Poll::Ready(()),
            };
            self.other = Pending::Idle;
            self.permit = Some(admitted);
            return Poll::Ready(());
        }
    }

    /// Whether a slot is held.
    #[inline]
    pub(crate) fn is_admitted(&self) -> bool {
        self.permit.is_some()
    }

    /// The slot or the refusal, leaving the handle idle.
    ///
    /// # Panics
    ///
    /// If [`poll`](Self::poll) was not ready first: `call` without
    /// `poll_ready`.
    #[inline]
    pub(crate) fn take(&mut self) -> Result<Permit, LimitExceeded> {
        if let Some(permit) = self.permit.take() {
            return Ok(permit);
        }
        match std::mem::take(&mut self.other) {
            Pending::Refused(refused) => Err(refused),
            _ => panic!("call without poll_ready returning Ready"),
        }
    }
}
