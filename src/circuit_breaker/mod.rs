#![doc = include_str!("../../docs/circuit-breaker.md")]

mod config;
pub mod error;
pub mod future;
mod layer;
mod service;
mod state;

use std::fmt;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

pub use config::{
    CircuitBreakerConfig, CircuitBreakerConfigBuilder, MAX_BUCKETS, MAX_HALF_OPEN_CALLS,
    MAX_WINDOW_CALLS, Rejection, Window,
};
pub use error::{BreakerError, CircuitOpen};
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreakerService;
pub use state::Metrics;

pub(crate) use config::default_open_duration;
use state::{Core, Owner};
pub(crate) use state::{EjectionGuard, Slot};

/// The state of a circuit breaker.
///
/// `Closed`, `Open` and `HalfOpen` are the automatic states; the other three
/// are entered only by hand and left only by [`CircuitBreaker::reset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls go through and their outcomes are recorded.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A limited number of probe calls go through; their outcomes decide
    /// between `Closed` and `Open`.
    HalfOpen,
    /// Every call is rejected until [`CircuitBreaker::reset`].
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

/// Something a breaker did, as sent to [`CircuitBreaker::subscribe`]rs.
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

/// A circuit breaker: a cheap `Clone` handle on shared, lock-free state.
///
/// Wrap services with [`CircuitBreakerLayer::new`]; use the handle to read
/// the state, force states by hand and subscribe to changes.
///
/// ```
/// use meshguard::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, State};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let breaker = CircuitBreaker::new("users", CircuitBreakerConfig::default());
/// let mut changes = breaker.watch();
/// breaker.force_open();
/// assert_eq!(breaker.state(), State::ForcedOpen);
/// assert_eq!(*changes.borrow_and_update(), State::ForcedOpen);
/// breaker.reset();
/// assert_eq!(breaker.state(), State::Closed);
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    owner: Arc<Owner>,
}

impl CircuitBreaker {
    /// A closed breaker named `name` (the name appears in its events).
    pub fn new(name: impl Into<String>, config: CircuitBreakerConfig) -> Self {
        let name = name.into();
        CircuitBreaker {
            owner: Arc::new(Owner::new(Core::new(&name, config))),
        }
    }

    /// A breaker whose openings are limited by `guard` (the balancer's
    /// ejection pool).
    pub(crate) fn with_guard(
        name: impl Into<String>,
        config: CircuitBreakerConfig,
        guard: Arc<dyn EjectionGuard>,
    ) -> Self {
        let name = name.into();
        let mut core = Core::new(&name, config);
        core.guard = Some(guard);
        CircuitBreaker {
            owner: Arc::new(Owner::new(core)),
        }
    }

    /// The breaker's hot state, for readers that must not chase the
    /// handle's `Arc` on every look (the balancer ranking endpoints).
    pub(crate) fn slot(&self) -> &'static state::Slot {
        self.owner.slot
    }

    /// A layer sharing this breaker among the services it wraps.
    pub fn layer(&self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(self.clone())
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.owner.core.name
    }

    /// Its configuration.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.owner.core.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        state::state_of(self.owner.slot.word())
    }

    /// The window's counts now.
    pub fn metrics(&self) -> Metrics {
        self.owner.core.metrics(self.owner.slot)
    }

    /// Rejects every call until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.owner.core.set(self.owner.slot, State::ForcedOpen);
    }

    /// Lets every call through without recording it, until
    /// [`reset`](Self::reset).
    pub fn disable(&self) {
        self.owner.core.set(self.owner.slot, State::Disabled);
    }

    /// Lets every call through and records it, emitting
    /// [`Event::ThresholdCrossed`] instead of opening, until
    /// [`reset`](Self::reset).
    pub fn metrics_only(&self) {
        self.owner.core.set(self.owner.slot, State::MetricsOnly);
    }

    /// Closes the breaker with an empty window and the open duration back at
    /// its first step.
    pub fn reset(&self) {
        self.owner.core.set(self.owner.slot, State::Closed);
    }

    /// Every event from now on. A receiver that falls more than 64 events
    /// behind loses the oldest ones (see [`broadcast`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.owner.core.subscribe()
    }

    /// The latest state, without history: never lags.
    pub fn watch(&self) -> watch::Receiver<State> {
        self.owner.core.watch()
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}
