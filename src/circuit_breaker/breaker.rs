//! The [`CircuitBreaker`] handle.

use std::fmt;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::counts::Metrics;
use super::health::Health;
use super::machine::Core;
use super::open_limit::OpenLimit;
use super::owner::Owner;
use super::word::state_of;
use super::{CircuitBreakerConfig, CircuitBreakerLayer, Event, State};

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
    pub(super) owner: Arc<Owner>,
}

/// What a breaker made inside the crate may have beyond its configuration
/// ([`CircuitBreaker::with_options`]).
#[derive(Debug, Default)]
pub(crate) struct BreakerOptions {
    /// Asked before the breaker opens; `None` for no limit.
    pub(crate) open_limit: Option<Arc<dyn OpenLimit>>,
    /// Count consecutive failures and time the last one whatever the trip
    /// condition, for [`Health::recent_failures`].
    pub(crate) track_failures: bool,
    /// A failure whose callee asked for time (a 429 or 503 with a
    /// `Retry-After`, a gRPC pushback) opens the breaker for that long, at
    /// most this long; zero for never (the default).
    pub(crate) hold_cap: std::time::Duration,
    /// Count in a single stripe (128 bytes), not one per thread (one per
    /// four hardware threads, up to 64): for a breaker among thousands
    /// that each see a share of the calls (a balancer's endpoints), where
    /// per-thread stripes would cost kilobytes each for little contention.
    pub(crate) single_stripe: bool,
}

impl CircuitBreaker {
    /// A closed breaker named `name` (the name appears in its events).
    pub fn new(name: impl Into<String>, config: CircuitBreakerConfig) -> Self {
        Self::with_options(name, config, BreakerOptions::default())
    }

    /// A closed breaker with crate-private `options`: an open limit shared
    /// with other breakers, failure tracking for its [`Health`]. `config`
    /// may be an `Arc` shared by many breakers.
    pub(crate) fn with_options(
        name: impl Into<String>,
        config: impl Into<Arc<CircuitBreakerConfig>>,
        options: BreakerOptions,
    ) -> Self {
        let name = name.into();
        let mut core = Core::new(&name, config);
        core.open_limit = options.open_limit;
        core.track_failures = options.track_failures;
        core.hold_cap = options.hold_cap;
        CircuitBreaker {
            owner: Arc::new(Owner::new(core, options.single_stripe)),
        }
    }

    /// A read-only view of the breaker's health, read without chasing the
    /// handle's `Arc`; valid while this breaker lives.
    pub(crate) fn health(&self) -> Health {
        Health::new(self.owner.slot)
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
        state_of(self.owner.slot.word())
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
        self.owner.core.watch(self.owner.slot)
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
