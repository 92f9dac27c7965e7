//! Who owns a slot: slots are leased from the crate's recycler
//! (`crate::recycle`) for a breaker's lifetime.

use std::sync::Arc as StdArc;

use super::machine::Core;
use super::open_limit::holds_place;
use super::slot::Slot;
use super::word::kind;
use crate::recycle::{Lease, Pool};
use crate::sync::stripe_count;

/// Slots of dropped breakers, reused by new ones (`crate::recycle`): a
/// breaker's calls reach its slot unguarded, so the pool counts leases
/// alone.
static SLOTS: Pool<Slot> = Pool::unstriped();

/// Slots with a single stripe, for the breakers of a balancer's endpoints
/// (`BreakerOptions::single_stripe`): one per endpoint, thousands of them,
/// each taking a share of the calls.
static SINGLE_STRIPE_SLOTS: Pool<Slot> = Pool::unstriped();

/// Owns a slot for a breaker's lifetime; gives it back on drop.
///
/// Calls reach the slot as a bare `&'static Slot` ([`Lease::unguarded`]),
/// not a counted handle: the breaker's target is 20 ns a call, and every
/// call already tells owners apart by the generation in the state word,
/// which [`Core::assign`] and [`Core::vacate`] advance. An outcome admitted
/// under an earlier owner is therefore dropped rather than recorded. The
/// lease keeps the slot from a new breaker while this owner lives.
#[derive(Debug)]
pub(crate) struct Owner {
    pub(crate) slot: &'static Slot,
    pub(crate) core: StdArc<Core>,
    lease: Lease<Slot>,
}

impl Owner {
    pub(crate) fn new(core: Core, single_stripe: bool) -> Owner {
        // The pool is touched only when a breaker is created or dropped,
        // never by a call.
        let lease = if single_stripe {
            SINGLE_STRIPE_SLOTS.take(|| Slot::new(1))
        } else {
            SLOTS.take(|| Slot::new(stripe_count()))
        };
        let slot = lease.unguarded();
        let core = StdArc::new(core);
        slot.core.store(Some(core.clone()));
        core.assign(slot);
        Owner { slot, core, lease }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let slot = self.lease.unguarded();
        if holds_place(kind(slot.word())) {
            self.core.release_open_place();
        }
        self.core.vacate(slot);
        slot.core.store(None);
        // `lease`, dropped next, hands the slot back.
    }
}
