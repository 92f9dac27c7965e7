//! The states a breaker can be in, and the events it sends.

use std::fmt;

/// The state of a circuit breaker.
///
/// `Closed`, `Open` and `HalfOpen` are the automatic states; the other three
/// are entered only by hand and left only by
/// [`CircuitBreaker::reset`](super::CircuitBreaker::reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls go through and their outcomes are recorded.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A limited number of probe calls go through; their outcomes decide
    /// between `Closed` and `Open`.
    HalfOpen,
    /// Every call is rejected until
    /// [`CircuitBreaker::reset`](super::CircuitBreaker::reset).
    ForcedOpen,
    /// Every call goes through and nothing is recorded.
    Disabled,
    /// Every call goes through and is recorded; crossing a threshold emits
    /// an event instead of opening.
    MetricsOnly,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced-open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics-only",
        })
    }
}

/// Something a breaker did, as sent to
/// [`CircuitBreaker::subscribe`](super::CircuitBreaker::subscribe)rs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// The state changed.
    StateChanged {
        /// The state before.
        from: State,
        /// The state now.
        to: State,
    },
    /// In [`State::MetricsOnly`], the rates went above a threshold (or back
    /// below all of them).
    ThresholdCrossed {
        /// Whether a threshold is now reached.
        above: bool,
        /// The failure rate, in percent.
        failure_rate: f64,
        /// The slow-call rate, in percent.
        slow_call_rate: f64,
    },
}
