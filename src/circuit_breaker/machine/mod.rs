//! The lock-free state machine: the [`Core`] of a breaker, acting on its
//! [`Slot`](super::slot::Slot).
//!
//! The slot holds what every call touches (`slot.rs`); the core holds the
//! rest (configuration, the window's snapshot ring, channels) and the
//! code of the state machine, by step of a call's life:
//!
//! - `admit.rs`: whether a call may go ahead, and as what ([`Role`]);
//! - `record.rs`: recording an outcome, the hot path of a call;
//! - `checkpoint.rs`: rotating the window and deciding whether to trip,
//!   under the checkpoint lock;
//! - `transition.rs`: the transitions between states and their
//!   announcements;
//! - `hold.rs`: opening for as long as the callee asked (`Retry-After`).
//!
//! How calls are counted is in `counts.rs`; how a state packs into one
//! word, in `word.rs`.

mod admit;
mod checkpoint;
mod hold;
mod record;
mod transition;

use std::sync::Arc as StdArc;

use tokio::sync::{Notify, broadcast, watch};

pub(crate) use admit::{Admission, Role};
pub(crate) use hold::asked_for;
pub(crate) use record::Record;

use super::config::{CircuitBreakerConfig, Rejection, Trip, Window};
use super::counts::Snap;
use super::metrics::BreakerMetrics;
use super::open_limit::OpenLimit;
use super::slot::{FLAG_COARSE, FLAG_CONSECUTIVE, FLAG_HOLD, FLAG_TIME_WINDOW, FLAG_WAIT, Slot};
use super::word::{CLOSED, VACANT, generation, pack};
use super::{Event, State};
use crate::clock;
use crate::sync::{AtomicBool, AtomicU64, Ordering::*};

/// Derived from the configuration once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Slow-call threshold in nanoseconds, `None` when detection is off.
    pub(crate) slow_nanos: Option<u64>,
    pub(crate) time_window: bool,
    pub(crate) consecutive: Option<u64>,
}

/// Everything else: configuration, the snapshot ring, channels.
pub(crate) struct Core {
    pub(crate) name: Box<str>,
    /// Shared, not copied, by breakers made from one configuration (a
    /// balancer's endpoints: thousands of breakers, one configuration).
    pub(crate) config: StdArc<CircuitBreakerConfig>,
    pub(crate) plan: Plan,
    /// Calls per bucket (count windows) or nanoseconds per bucket (time).
    bucket: u64,
    buckets: u64,
    ring: Box<[Snap]>,
    /// The sums at the last checkpoint: no failure or slow call recorded
    /// since is missing from them, which lets `rotate` rebuild the
    /// snapshots of count-window buckets crossed by successes alone.
    last: Snap,
    head: AtomicU64,
    base_calls: AtomicU64,
    window_start: AtomicU64,
    /// The checkpoint lock: `LOCK_IDLE`, `LOCK_BUSY`, or
    /// `LOCK_BUSY | LOCK_NOTED` (`checkpoint.rs`).
    checkpoint_lock: AtomicU64,
    reopens: AtomicU64,
    last_open: AtomicU64,
    rng_calls: AtomicU64,
    above_threshold: AtomicBool,
    /// Made at the first `watch`, as `events` at the first `subscribe`.
    state_tx: std::sync::OnceLock<watch::Sender<State>>,
    /// Made at the first `subscribe`: a channel of 64 events is 3 KB,
    /// which a breaker nobody listens to (an endpoint's among thousands)
    /// need not hold.
    events: std::sync::OnceLock<broadcast::Sender<Event>>,
    pub(crate) notify: StdArc<Notify>,
    /// Limits how many breakers of a group may be open at once; `None` for
    /// a lone breaker.
    pub(crate) open_limit: Option<StdArc<dyn OpenLimit>>,
    /// Count consecutive failures and time the last one whatever the trip
    /// condition, for the breaker's [`Health`](super::Health).
    pub(crate) track_failures: bool,
    /// The longest a callee's request for time holds the breaker open
    /// (`BreakerOptions::hold_cap`); zero when such requests are not heeded.
    pub(crate) hold_cap: std::time::Duration,
    metrics: BreakerMetrics,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn new(name: &str, config: impl Into<StdArc<CircuitBreakerConfig>>) -> Core {
        let config = config.into();
        let (bucket, buckets, time_window) = match config.window {
            Window::Count { size, buckets } => ((size / buckets) as u64, buckets as u64, false),
            Window::Time { duration, buckets } => (
                (duration.as_nanos() / buckets as u128) as u64,
                buckets as u64,
                true,
            ),
        };
        let plan = Plan {
            slow_nanos: config.slow.map(|s| s.duration.as_nanos() as u64),
            time_window,
            consecutive: match config.trip {
                Trip::ConsecutiveFailures(n) => Some(n as u64),
                Trip::FailureRate(_) => None,
            },
        };
        Core {
            name: name.into(),
            plan,
            bucket,
            buckets,
            ring: (0..=buckets).map(|_| Snap::default()).collect(),
            last: Snap::default(),
            head: AtomicU64::new(0),
            base_calls: AtomicU64::new(0),
            window_start: AtomicU64::new(0),
            checkpoint_lock: AtomicU64::new(checkpoint::LOCK_IDLE),
            reopens: AtomicU64::new(0),
            last_open: AtomicU64::new(0),
            rng_calls: AtomicU64::new(0),
            above_threshold: AtomicBool::new(false),
            state_tx: std::sync::OnceLock::new(),
            events: std::sync::OnceLock::new(),
            notify: StdArc::new(Notify::new()),
            open_limit: None,
            track_failures: false,
            hold_cap: std::time::Duration::ZERO,
            metrics: BreakerMetrics::new(name),
            config,
        }
    }

    fn now(&self) -> u64 {
        clock::now()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events
            .get_or_init(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Sends `event` to the subscribers, if any.
    fn send_event(&self, event: Event) {
        if let Some(events) = self.events.get() {
            let _ = events.send(event);
        }
    }

    pub(crate) fn watch(&self, slot: &Slot) -> watch::Receiver<State> {
        let now = || super::word::state_of(slot.word());
        let tx = self.state_tx.get_or_init(|| watch::channel(now()).0);
        // A transition announced while the channel was being made found
        // none: the state now, if the channel holds an older one.
        tx.send_if_modified(|state| {
            let now = now();
            *state != now && {
                *state = now;
                true
            }
        });
        tx.subscribe()
    }

    /// Publishes `state` to the watchers, if any.
    fn publish(&self, state: State) {
        if let Some(tx) = self.state_tx.get() {
            tx.send_replace(state);
        }
    }

    /// Takes `slot` for this core: a new generation, Closed, empty window.
    pub(crate) fn assign(&self, slot: &Slot) {
        let old = slot.word();
        let generation = generation(old).wrapping_add(1);
        self.lock();
        self.reset_window(slot, self.now());
        self.unlock(slot);
        slot.state.consecutive.store(0, Relaxed);
        slot.state
            .slow_nanos
            .store(self.plan.slow_nanos.unwrap_or(u64::MAX), Relaxed);
        let mut flags = 0;
        if self.plan.time_window {
            flags |= FLAG_TIME_WINDOW;
        }
        // A breaker whose health is read counts consecutive failures
        // whatever its trip condition (`Health::recent_failures`).
        if self.plan.consecutive.is_some() || self.track_failures {
            flags |= FLAG_CONSECUTIVE;
        }
        if self.config.rejection == Rejection::Wait {
            flags |= FLAG_WAIT;
        }
        if self.config.coarse_clock {
            flags |= FLAG_COARSE;
        }
        if !self.hold_cap.is_zero() {
            flags |= FLAG_HOLD;
        }
        slot.state.flags.store(flags, Relaxed);
        slot.state.word.store(pack(generation, CLOSED, 0), Release);
    }

    /// Gives `slot` up: outcomes still in flight see a new generation.
    pub(crate) fn vacate(&self, slot: &Slot) {
        let old = slot.word();
        slot.state
            .word
            .store(pack(generation(old).wrapping_add(1), VACANT, 0), Release);
    }
}
