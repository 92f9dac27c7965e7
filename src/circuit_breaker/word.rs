//! The state word and the probe word: how a state, its half-open permits
//! and its generation pack into one `u64`.
//!
//! The state word packs the state, the half-open permits handed out and a
//! generation. Every transition is a compare-and-swap from the word that was
//! read, so exactly one thread performs each one; the generation makes a
//! stale transition (or a stale outcome) fail instead of applying twice.

use super::State;

pub(crate) const CLOSED: u64 = 0;
pub(crate) const OPEN: u64 = 1;
pub(crate) const HALF_OPEN: u64 = 2;
pub(crate) const FORCED_OPEN: u64 = 3;
pub(crate) const DISABLED: u64 = 4;
pub(crate) const METRICS_ONLY: u64 = 5;
pub(crate) const VACANT: u64 = 7;

const KIND_MASK: u64 = 0xF;
pub(super) const ADMITTED_SHIFT: u32 = 4;
const ADMITTED_MASK: u64 = 0xF_FFFF;
pub(super) const GEN_SHIFT: u32 = 32;

#[inline]
pub(crate) fn kind(word: u64) -> u64 {
    word & KIND_MASK
}

#[inline]
pub(crate) fn generation(word: u64) -> u32 {
    (word >> GEN_SHIFT) as u32
}

#[inline]
pub(super) fn admitted(word: u64) -> u64 {
    (word >> ADMITTED_SHIFT) & ADMITTED_MASK
}

#[inline]
pub(super) fn pack(generation: u32, kind: u64, admitted: u64) -> u64 {
    ((generation as u64) << GEN_SHIFT) | (admitted << ADMITTED_SHIFT) | kind
}

pub(crate) fn state_of(word: u64) -> State {
    match kind(word) {
        CLOSED => State::Closed,
        OPEN => State::Open,
        HALF_OPEN => State::HalfOpen,
        FORCED_OPEN => State::ForcedOpen,
        DISABLED => State::Disabled,
        METRICS_ONLY => State::MetricsOnly,
        _ => State::Disabled,
    }
}

pub(super) fn kind_of(state: State) -> u64 {
    match state {
        State::Closed => CLOSED,
        State::Open => OPEN,
        State::HalfOpen => HALF_OPEN,
        State::ForcedOpen => FORCED_OPEN,
        State::Disabled => DISABLED,
        State::MetricsOnly => METRICS_ONLY,
    }
}

// Probe results: generation (32) | completed (10) | failures (10) | slow (10).
pub(super) const PROBE_BITS: u32 = 10;
pub(super) const PROBE_MASK: u64 = (1 << PROBE_BITS) - 1;

pub(super) fn probes_pack(generation: u32, completed: u64, failures: u64, slow: u64) -> u64 {
    ((generation as u64) << GEN_SHIFT)
        | (completed << (2 * PROBE_BITS))
        | (failures << PROBE_BITS)
        | slow
}

/// Whether generation `a` is older than `b`, wrapping.
pub(super) fn older(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}
