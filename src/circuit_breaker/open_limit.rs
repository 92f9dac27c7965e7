//! A limit on how many breakers of a group may be open at once.

use super::word::{FORCED_OPEN, HALF_OPEN, OPEN};

/// Shared by a group of breakers and asked before one of them opens, so
/// that only so many are open (or half-open, or forced open) at once. A
/// breaker that may not open stays closed and keeps letting calls through.
///
/// Consulted on the transitions into and out of those states. A load
/// balancer uses it to keep its outlier ejection from taking out too many
/// endpoints.
pub(crate) trait OpenLimit: Send + Sync + std::fmt::Debug {
    /// A closed breaker wants to open: whether it may. Taking a place if so.
    fn try_acquire(&self) -> bool;
    /// A breaker was forced open: it takes a place, whatever the limit.
    fn acquire(&self);
    /// A breaker left the limited states (or went away while in one): its
    /// place is free.
    fn release(&self);
}

/// Whether `kind` is one of the states that hold a place under an
/// [`OpenLimit`]: open, half-open and forced open.
pub(super) fn holds_place(kind: u64) -> bool {
    matches!(kind, OPEN | HALF_OPEN | FORCED_OPEN)
}
