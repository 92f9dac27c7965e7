//! The pick: power of two choices over the endpoints' [`ReadySet`], as
//! `tower::balance::p2c::Balance` does it over tower's `ReadyCache` (from
//! which this is adapted), with two additions: the pick may be told the call's deadline, and then
//! never sends to an endpoint whose latency estimate is longer than the
//! time left; and the clock is read once per pick, for every load it
//! compares, the deadline's time left and the request's send time.
//!
//! A call without a deadline picks exactly as tower's p2c: two ready
//! endpoints at random, the lesser [`EndpointLoad`] wins. With a deadline,
//! an endpoint that cannot answer in time ranks behind every one that can
//! (`EndpointLoad::late`); when both draws are late, the ready endpoints
//! that fit are searched (one pass, two of them drawn at random as they
//! are met, the lesser load wins), and when none fits the pick says so
//! ([`Pick::TooSlow`]) instead of choosing.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::Service;
use tower::discover::Change;
use tower::ready_cache::error::Failed;

use super::load::{EndpointLoad, Ranked};
use super::ready::ReadySet;
use crate::clock;

/// What a pick came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// An endpoint is chosen: `call` sends to it.
    Ready,
    /// Endpoints are ready, but every one's latency estimate is longer
    /// than the time left before the deadline: none is chosen.
    TooSlow,
}

/// A p2c balancer over [`Ranked`] endpoints, keyed by `u64`.
pub(super) struct P2c<E, S, C, Req> {
    discover: E,
    services: ReadySet<u64, Ranked<S, C>, Req>,
    ready_index: Option<usize>,
    rng: fastrand::Rng,
    /// The last pick's clock read (biased nanoseconds).
    now: u64,
}

impl<E, S, C, Req> P2c<E, S, C, Req>
where
    Ranked<S, C>: Service<Req>,
{
    pub(super) fn new(discover: E) -> Self {
        P2c {
            discover,
            services: ReadySet::default(),
            ready_index: None,
            rng: fastrand::Rng::new(),
            now: 0,
        }
    }

    /// Endpoints held, ready or not.
    pub(super) fn len(&self) -> usize {
        self.services.len()
    }
}

impl<E, S, C, Req> P2c<E, S, C, Req>
where
    E: futures_core::Stream<Item = Result<Change<u64, Ranked<S, C>>, Infallible>> + Unpin,
    Ranked<S, C>: Service<Req>,
    <Ranked<S, C> as Service<Req>>::Error: Into<crate::BoxError>,
{
    /// Readiness: takes in discovery's changes and the endpoints that
    /// became ready, then picks one, among those that can answer before
    /// `deadline` (biased nanoseconds) when there is one. `Pending` while no
    /// endpoint is ready (the task is woken by discovery or by an endpoint
    /// becoming ready).
    pub(super) fn poll_pick(&mut self, cx: &mut Context<'_>, deadline: Option<u64>) -> Poll<Pick> {
        self.drain(cx);
        self.pick(cx, deadline)
    }

    /// [`poll_pick`](Self::poll_pick) without taking in discovery's
    /// changes: for a balancer whose discovery is drained by
    /// [`drain`](Self::drain) with a waker of its own (`shared.rs`).
    pub(super) fn pick(&mut self, cx: &mut Context<'_>, deadline: Option<u64>) -> Poll<Pick> {
        self.promote_pending_to_ready(cx);
        self.now = clock::now();
        let within = deadline.map(|d| d.saturating_sub(self.now));
        let mut chosen_now = false;
        loop {
            // An endpoint already chosen must still be ready, checked right
            // before the request goes to it (its breaker may have opened);
            // one chosen by an earlier poll, also still in time.
            if let Some(index) = self.ready_index.take() {
                match self.services.check_ready_index(cx, index) {
                    Ok(true)
                        if chosen_now || within.is_none() || !self.load(index, within).late =>
                    {
                        self.ready_index = Some(index);
                        return Poll::Ready(Pick::Ready);
                    }
                    Ok(true) => {}
                    Ok(false) => tracing::trace!("ready endpoint became unavailable"),
                    Err(Failed(_, error)) => {
                        let error: crate::BoxError = error;
                        tracing::debug!(%error, "endpoint failed");
                    }
                }
            }
            chosen_now = true;
            match self.choose(cx, within) {
                Some(Ok(index)) => self.ready_index = Some(index),
                Some(Err(TooSlow)) => return Poll::Ready(Pick::TooSlow),
                // Interest in discovery and in the pending endpoints is
                // registered above.
                None => return Poll::Pending,
            }
        }
    }

    /// Sends `req` to the endpoint the last `poll_pick` chose, timed from
    /// that pick's clock read.
    pub(super) fn call(&mut self, req: Req) -> <Ranked<S, C> as Service<Req>>::Future {
        let index = self.ready_index.take().expect("called before ready");
        if let Some(svc) = self.services.get_ready_index_mut(index) {
            svc.sending_at(self.now);
        }
        self.services.call_ready_index(index, req)
    }

    /// Takes in every change discovery has ready, `cx` woken on the next.
    pub(super) fn drain(&mut self, cx: &mut Context<'_>) -> Drained {
        let mut drained = Drained::default();
        loop {
            match Pin::new(&mut self.discover).poll_next(cx) {
                Poll::Ready(Some(Ok(Change::Insert(key, svc)))) => {
                    // Replaces an endpoint of the same key once ready.
                    self.services.push(key, svc);
                    drained.applied += 1;
                }
                Poll::Ready(Some(Ok(Change::Remove(key)))) => {
                    // Eviction moves the last ready endpoint into the
                    // evicted one's place: an index chosen before is stale
                    // (tower issue #856).
                    if self.services.evict(&key) {
                        self.ready_index = None;
                    }
                    drained.applied += 1;
                }
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => {
                    drained.ended = true;
                    return drained;
                }
                Poll::Pending => return drained,
            }
        }
    }

    fn promote_pending_to_ready(&mut self, cx: &mut Context<'_>) {
        loop {
            match self.services.poll_pending(cx) {
                Poll::Ready(Ok(())) | Poll::Pending => return,
                Poll::Ready(Err(error)) => {
                    // An endpoint's service failed: it is dropped, the
                    // others still count.
                    tracing::debug!(%error, "dropping failed endpoint");
                }
            }
        }
    }

    /// The ready endpoint at `index`'s load now.
    #[inline]
    fn load(&self, index: usize, within: Option<u64>) -> EndpointLoad {
        let svc = self.services.get_ready_index(index).expect("a ready index");
        svc.load_at(self.now, within)
    }

    /// Two ready endpoints at random, the lesser load; `None` when none is
    /// ready.
    ///
    /// An endpoint stays in the ready set after a call until it is asked
    /// for readiness again (`ready.rs`), so one whose breaker opened since
    /// is still there: drawn, it is asked now, goes pending (to come back
    /// when its breaker lets a probe through), and the pick draws again,
    /// so that it never takes the place of a ready endpoint in a draw.
    fn choose(
        &mut self,
        cx: &mut Context<'_>,
        within: Option<u64>,
    ) -> Option<Result<usize, TooSlow>> {
        let (index, load) = loop {
            let len = self.services.ready_len();
            let drawn = match len {
                0 => return None,
                1 => [0, 0],
                _ => {
                    let a = self.rng.usize(..len);
                    [a, (a + 1 + self.rng.usize(..len - 1)) % len]
                }
            };
            if let Some(&out) = drawn.iter().find(|&&i| self.rejects(i)) {
                if self.shelve(cx, out) {
                    continue;
                }
            }
            let [a, b] = drawn;
            let la = self.load(a, within);
            if a == b {
                break (a, la);
            }
            let lb = self.load(b, within);
            break if la <= lb { (a, la) } else { (b, lb) };
        };
        if !load.late {
            return Some(Ok(index));
        }
        Some(self.choose_in_time(within))
    }

    /// Whether the ready endpoint at `index`'s breaker turns calls away.
    #[inline]
    fn rejects(&self, index: usize) -> bool {
        self.services
            .get_ready_index(index)
            .is_some_and(|svc| svc.rejects())
    }

    /// Asks the ready endpoint at `index` for readiness, out of turn: true
    /// when it left the ready set (pending, or failed and dropped), which
    /// moves another into its index.
    #[cold]
    fn shelve(&mut self, cx: &mut Context<'_>, index: usize) -> bool {
        match self.services.check_ready_index(cx, index) {
            Ok(true) => false,
            Ok(false) => true,
            Err(Failed(_, error)) => {
                let error: crate::BoxError = error;
                tracing::debug!(%error, "endpoint failed");
                true
            }
        }
    }

    /// Both draws were late: two endpoints drawn at random among the ready
    /// ones that can answer in time, the lesser load; [`TooSlow`] when no
    /// ready endpoint can. One pass over the ready endpoints.
    #[cold]
    #[inline(never)]
    fn choose_in_time(&mut self, within: Option<u64>) -> Result<usize, TooSlow> {
        let mut drawn: [Option<(usize, EndpointLoad)>; 2] = [None, None];
        let mut fitting = 0;
        for index in 0..self.services.ready_len() {
            let load = self.load(index, within);
            if load.late {
                continue;
            }
            fitting += 1;
            // Reservoir sampling: each fitting endpoint is one of the two
            // with the same chance.
            let slot = if fitting <= 2 {
                fitting - 1
            } else {
                self.rng.usize(..fitting)
            };
            if let Some(place) = drawn.get_mut(slot) {
                *place = Some((index, load));
            }
        }
        match drawn {
            [Some((a, la)), Some((b, lb))] => Ok(if la <= lb { a } else { b }),
            [Some((a, _)), None] => Ok(a),
            _ => Err(TooSlow),
        }
    }
}

/// What a [`P2c::drain`] took in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Drained {
    /// Changes applied.
    pub(crate) applied: usize,
    /// Discovery has ended: no change will follow.
    pub(crate) ended: bool,
}

/// No ready endpoint can answer before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooSlow;
