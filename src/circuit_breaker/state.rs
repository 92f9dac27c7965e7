//! The lock-free state machine and where its memory lives.
//!
//! # Memory: a hot slot and a cold core
//!
//! A response future must record its outcome after the service that made it
//! is gone, so it needs a `'static` way to reach the breaker. An `Arc` clone
//! per call would cost two atomic read-modify-writes on a cache line that
//! every thread writes, which alone is more than the whole budget of a call
//! (DESIGN.md: at most 20 ns, one uncontended `fetch_add` is 9.6 ns here).
//!
//! So the state a call touches lives in a [`Slot`]: leaked once, never freed,
//! recycled through a free list when its breaker is dropped (type-stable
//! memory, as in RCU). Futures hold `&'static Slot` plus the generation of
//! the state they were admitted in; a slot is handed to a new breaker only
//! with a new generation, so outcomes from an old owner are ignored. The
//! rest (configuration, the window's snapshot ring, channels) lives in a
//! [`Core`] behind an `Arc` that the slot publishes through `arc-swap`, read
//! only on the cold path (a failure, a bucket rotation, a transition).
//!
//! # Counting: striped monotonic counters and snapshots
//!
//! Each thread records into its own cache-padded [`Stripe`] of monotonic
//! counters (calls, failures, slow calls): a success is one load and one
//! store on a line no other thread writes (threads own stripes by id, see
//! `crate::sync::place`; threads beyond the stripes share one with
//! `fetch_add`). The window is a ring of
//! snapshots of the stripes' sums, one per bucket; the window's counts are the
//! current sums minus the snapshot where the window starts. Sums are taken
//! only when a decision is due: on a failure or slow call, or when a time
//! bucket ends. A plain success never asks for one, since it cannot raise a
//! rate: in a count window the snapshots of the buckets that successes alone
//! crossed are rebuilt at the next checkpoint (the calls at a boundary are
//! known, and the failures there are those the last checkpoint saw).
//!
//! With one thread this is exact at bucket granularity. With several, a
//! failure recorded while another thread's checkpoint runs is counted by a
//! re-run of that checkpoint, and may be placed after a bucket boundary it
//! came before, so it can stay in the window up to one bucket longer;
//! failures are never lost.
//!
//! # Transitions
//!
//! The state word packs the state, the half-open permits handed out and a
//! generation. Every transition is a compare-and-swap from the word that was
//! read, so exactly one thread performs each one; the generation makes a
//! stale transition (or a stale outcome) fail instead of applying twice.

use std::sync::Arc as StdArc;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;

use super::config::{CircuitBreakerConfig, Trip, Window};
use super::{CircuitOpen, Event, State};
use crate::classify::Outcome;
use crate::clock;
use crate::recycle::{Lease, Pool};
use crate::sync::{AtomicBool, AtomicU64, Ordering::*, Place, place, spin, stripe_count};

pub(crate) const CLOSED: u64 = 0;
pub(crate) const OPEN: u64 = 1;
pub(crate) const HALF_OPEN: u64 = 2;
pub(crate) const FORCED_OPEN: u64 = 3;
pub(crate) const DISABLED: u64 = 4;
pub(crate) const METRICS_ONLY: u64 = 5;
pub(crate) const VACANT: u64 = 7;

const IDLE: u64 = 0;
const BUSY: u64 = 1;
const NOTED: u64 = 2;

const KIND_MASK: u64 = 0xF;
const ADMITTED_SHIFT: u32 = 4;
const ADMITTED_MASK: u64 = 0xF_FFFF;
const GEN_SHIFT: u32 = 32;

#[inline]
pub(crate) fn kind(word: u64) -> u64 {
    word & KIND_MASK
}

#[inline]
pub(crate) fn generation(word: u64) -> u32 {
    (word >> GEN_SHIFT) as u32
}

#[inline]
fn admitted(word: u64) -> u64 {
    (word >> ADMITTED_SHIFT) & ADMITTED_MASK
}

#[inline]
fn pack(generation: u32, kind: u64, admitted: u64) -> u64 {
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

fn kind_of(state: State) -> u64 {
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
const PROBE_BITS: u32 = 10;
const PROBE_MASK: u64 = (1 << PROBE_BITS) - 1;

fn probes_pack(generation: u32, completed: u64, failures: u64, slow: u64) -> u64 {
    ((generation as u64) << GEN_SHIFT)
        | (completed << (2 * PROBE_BITS))
        | (failures << PROBE_BITS)
        | slow
}

/// Whether generation `a` is older than `b`, wrapping.
fn older(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

/// One thread's monotonic counters.
#[derive(Debug, Default)]
pub(crate) struct Stripe {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
    /// The value of `calls` at which this stripe asks for a checkpoint.
    next_check: AtomicU64,
}

/// Sums of the stripes, or a snapshot of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Counts {
    fn minus(self, base: Counts) -> Counts {
        Counts {
            calls: self.calls.saturating_sub(base.calls),
            failures: self.failures.saturating_sub(base.failures),
            slow: self.slow.saturating_sub(base.slow),
        }
    }
}

#[derive(Debug, Default)]
struct Snap {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl Snap {
    fn store(&self, c: Counts) {
        self.calls.store(c.calls, Relaxed);
        self.failures.store(c.failures, Relaxed);
        self.slow.store(c.slow, Relaxed);
    }
    fn load(&self) -> Counts {
        Counts {
            calls: self.calls.load(Relaxed),
            failures: self.failures.load(Relaxed),
            slow: self.slow.load(Relaxed),
        }
    }
}

/// The state every call reads or writes; see the module docs.
pub(crate) struct Slot {
    state: CachePadded<Hot>,
    stripes: Box<[CachePadded<Stripe>]>,
    probes: CachePadded<AtomicU64>,
    core: arc_swap::ArcSwapOption<Core>,
}

#[derive(Default)]
struct Hot {
    word: AtomicU64,
    /// Nanoseconds since the core's epoch: when the open period ends (Open)
    /// or when half-open gives up waiting (HalfOpen).
    deadline: AtomicU64,
    /// The generation `deadline` belongs to; written after it.
    deadline_gen: AtomicU64,
    /// Time windows: when the next bucket starts.
    rotate_at: AtomicU64,
    /// Slow-call threshold in nanoseconds; `u64::MAX` when detection is off.
    slow_nanos: AtomicU64,
    /// `FLAG_*` bits of the current owner.
    flags: AtomicU64,
    /// Failures since the last success. On the line every call reads, so a
    /// balancer ranking endpoints by it touches no other line; it is
    /// written only by failures (and the success after them).
    consecutive: AtomicU64,
    /// When the last failure was recorded (biased nanoseconds), kept only
    /// while consecutive failures are counted.
    last_failure: AtomicU64,
}

pub(crate) const FLAG_TIME_WINDOW: u64 = 1;
pub(crate) const FLAG_CONSECUTIVE: u64 = 2;
/// Gate rejection: kept here so a call reads only the slot's hot line.
pub(crate) const FLAG_GATE: u64 = 16;
/// Calls read the coarse clock (`CircuitBreakerConfigBuilder::coarse_clock`).
pub(crate) const FLAG_COARSE: u64 = 32;
/// Successes ask for a checkpoint every bucket: set while a metrics-only
/// count window is above its thresholds, so it notices falling below.
pub(crate) const FLAG_SUCCESS_CHECKS: u64 = 4;
/// Every success asks for a checkpoint: set while the window holds fewer
/// than the minimum calls and some of them failed or were slow, so the
/// success that brings it to the minimum can trip the breaker.
pub(crate) const FLAG_SUCCESS_DUE: u64 = 8;

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("state", &state_of(self.word()))
            .finish_non_exhaustive()
    }
}

impl Slot {
    pub(crate) fn new(stripes: usize) -> Slot {
        Slot {
            state: CachePadded::new(Hot {
                word: AtomicU64::new(pack(0, VACANT, 0)),
                ..Hot::default()
            }),
            stripes: (0..stripes)
                .map(|_| CachePadded::new(Stripe::default()))
                .collect(),
            probes: CachePadded::new(AtomicU64::new(0)),
            core: arc_swap::ArcSwapOption::empty(),
        }
    }

    #[inline]
    pub(crate) fn word(&self) -> u64 {
        self.state.word.load(Acquire)
    }

    /// This thread's place among the stripes.
    #[inline]
    fn place(&self) -> Place {
        place(self.stripes.len())
    }

    /// This thread's stripe.
    #[inline]
    fn stripe(&self) -> &Stripe {
        &self.stripes[self.place().index]
    }

    fn sum(&self) -> Counts {
        let mut c = Counts::default();
        for s in self.stripes.iter() {
            c.calls += s.calls.load(Acquire);
            c.failures += s.failures.load(Acquire);
            c.slow += s.slow.load(Acquire);
        }
        c
    }

    /// The slow-call threshold, if detection is on.
    #[inline]
    pub(crate) fn slow_nanos(&self) -> Option<u64> {
        match self.state.slow_nanos.load(Relaxed) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    #[inline]
    pub(crate) fn flags(&self) -> u64 {
        self.state.flags.load(Relaxed)
    }

    /// Now, for a call: the coarse clock when the owner asked for it.
    #[inline]
    pub(crate) fn call_now(&self) -> u64 {
        if self.flags() & FLAG_COARSE != 0 {
            clock::coarse_now()
        } else {
            clock::now()
        }
    }

    /// Whether the next call should be a probe: the breaker is half-open,
    /// or open with its open period over (it turns half-open when a call
    /// asks). Reads the clock only while open.
    ///
    /// A balancer ranks such an endpoint first. It needs to: an endpoint
    /// that opened while it sat in the balancer's ready set is not polled
    /// again until it is picked, and its failures and latency estimate
    /// would make it lose every pick, so it would stay out for good.
    #[inline]
    pub(crate) fn probe_due(&self) -> bool {
        let word = self.word();
        match kind(word) {
            HALF_OPEN => true,
            OPEN => self.open_period_over(word),
            _ => false,
        }
    }

    #[cold]
    fn open_period_over(&self, word: u64) -> bool {
        self.state.deadline_gen.load(Acquire) == generation(word) as u64
            && self.call_now() >= self.state.deadline.load(Relaxed)
    }

    /// Consecutive failures if the last one is younger than `window`
    /// nanoseconds, else 0. Reads the clock only when there are failures.
    #[inline]
    pub(crate) fn recent_failures(&self, window: u64) -> u64 {
        match self.state.consecutive.load(Relaxed) {
            0 => 0,
            n => self.recent(n, window),
        }
    }

    #[cold]
    fn recent(&self, n: u64, window: u64) -> u64 {
        if clock::now().saturating_sub(self.state.last_failure.load(Relaxed)) >= window {
            0
        } else {
            n
        }
    }

    /// The owner's core; a guard, not an `Arc` clone, in the common case.
    pub(crate) fn core(&self) -> arc_swap::Guard<Option<StdArc<Core>>> {
        self.core.load()
    }
}

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
    pub(crate) config: CircuitBreakerConfig,
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
    /// The checkpoint lock: `IDLE`, `BUSY`, or `BUSY | NOTED`.
    gate: AtomicU64,
    reopens: AtomicU64,
    last_open: AtomicU64,
    rng_calls: AtomicU64,
    above_threshold: AtomicBool,
    state_tx: watch::Sender<State>,
    events: broadcast::Sender<Event>,
    pub(crate) notify: StdArc<Notify>,
    /// Limits how many breakers of a group may be open at once (outlier
    /// ejection in a load balancer); `None` for a lone breaker.
    pub(crate) guard: Option<StdArc<dyn EjectionGuard>>,
    metrics: crate::telemetry::BreakerMetrics,
}

/// Consulted on the transitions into and out of the ejected states (open,
/// half-open, forced open) of breakers that share it.
pub(crate) trait EjectionGuard: Send + Sync + std::fmt::Debug {
    /// A closed breaker wants to open: whether it may.
    fn try_eject(&self) -> bool;
    /// A breaker was forced open: it counts, whatever the limit.
    fn force_eject(&self);
    /// A breaker left the ejected states (or went away while in them).
    fn release(&self);
}

/// Whether `kind` is one of the states that keep an endpoint out of a
/// balancer.
pub(crate) fn is_ejected(kind: u64) -> bool {
    matches!(kind, OPEN | HALF_OPEN | FORCED_OPEN)
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a call was admitted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Closed or metrics-only: the outcome goes into the window.
    Record,
    /// A half-open probe holding a permit.
    Probe,
    /// Disabled: nothing is recorded.
    Pass,
}

/// Permission for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admission {
    pub(crate) generation: u32,
    pub(crate) role: Role,
}

/// A snapshot of the window, returned by `CircuitBreaker::metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// The state when the snapshot was taken.
    pub state: State,
    /// Calls in the window (ignored calls are not recorded).
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window, successful or not.
    pub slow_calls: u64,
}

impl Metrics {
    /// Failures as a percentage of calls, `0` when the window is empty.
    pub fn failure_rate(&self) -> f64 {
        percent(self.failures, self.calls)
    }

    /// Slow calls as a percentage of calls, `0` when the window is empty.
    pub fn slow_call_rate(&self) -> f64 {
        percent(self.slow_calls, self.calls)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

impl Core {
    pub(crate) fn new(name: &str, config: CircuitBreakerConfig) -> Core {
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
            gate: AtomicU64::new(IDLE),
            reopens: AtomicU64::new(0),
            last_open: AtomicU64::new(0),
            rng_calls: AtomicU64::new(0),
            above_threshold: AtomicBool::new(false),
            state_tx: watch::channel(State::Closed).0,
            events: broadcast::channel(64).0,
            notify: StdArc::new(Notify::new()),
            guard: None,
            metrics: crate::telemetry::BreakerMetrics::new(name),
            config,
        }
    }

    fn now(&self) -> u64 {
        clock::now()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub(crate) fn watch(&self) -> watch::Receiver<State> {
        self.state_tx.subscribe()
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
        // Balancer endpoints (guarded) always count consecutive failures:
        // the balancer ranks endpoints by them.
        if self.plan.consecutive.is_some() || self.guard.is_some() {
            flags |= FLAG_CONSECUTIVE;
        }
        if self.config.rejection == super::config::Rejection::Gate {
            flags |= FLAG_GATE;
        }
        if self.config.coarse_clock {
            flags |= FLAG_COARSE;
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

    // ---- admission -------------------------------------------------------

    /// Decides whether a call may go ahead. Reads the clock only when the
    /// breaker is open or half-open with no permit left.
    #[inline]
    pub(crate) fn admit(&self, slot: &Slot) -> Result<Admission, CircuitOpen> {
        let word = slot.word();
        if kind(word) == CLOSED {
            return Ok(Admission {
                generation: generation(word),
                role: Role::Record,
            });
        }
        self.admit_slow(slot, word)
    }

    #[inline(never)]
    fn admit_slow(&self, slot: &Slot, word: u64) -> Result<Admission, CircuitOpen> {
        let admission = self.admit_or_reject(slot, word);
        if admission.is_err() {
            self.metrics.rejected();
        }
        admission
    }

    #[inline(always)]
    fn admit_or_reject(&self, slot: &Slot, mut word: u64) -> Result<Admission, CircuitOpen> {
        loop {
            match kind(word) {
                CLOSED | METRICS_ONLY => {
                    return Ok(Admission {
                        generation: generation(word),
                        role: Role::Record,
                    });
                }
                DISABLED | VACANT => {
                    return Ok(Admission {
                        generation: generation(word),
                        role: Role::Pass,
                    });
                }
                FORCED_OPEN => return Err(CircuitOpen::new(State::ForcedOpen, None)),
                OPEN => {
                    let g = generation(word);
                    if slot.state.deadline_gen.load(Acquire) != g as u64 {
                        // The opening thread has not published the deadline yet.
                        return Err(CircuitOpen::new(State::Open, None));
                    }
                    let until = slot.state.deadline.load(Relaxed);
                    let now = slot.call_now();
                    if now < until {
                        return Err(CircuitOpen::new(
                            State::Open,
                            Some(Duration::from_nanos(until - now)),
                        ));
                    }
                    match self.to_half_open(slot, word, now) {
                        Ok(admission) => return Ok(admission),
                        Err(actual) => word = actual,
                    }
                }
                HALF_OPEN => {
                    let taken = admitted(word);
                    if taken < self.config.half_open_calls as u64 {
                        let next = word + (1 << ADMITTED_SHIFT);
                        match slot
                            .state
                            .word
                            .compare_exchange(word, next, AcqRel, Acquire)
                        {
                            Ok(_) => {
                                return Ok(Admission {
                                    generation: generation(word),
                                    role: Role::Probe,
                                });
                            }
                            Err(actual) => {
                                word = actual;
                                continue;
                            }
                        }
                    }
                    if self.config.max_wait_in_half_open.is_some()
                        && slot.state.deadline_gen.load(Acquire) == generation(word) as u64
                    {
                        let now = self.now();
                        if now >= slot.state.deadline.load(Relaxed) {
                            if let Err(actual) = self.to_open(slot, word, now) {
                                word = actual;
                                continue;
                            }
                            word = slot.word();
                            continue;
                        }
                    }
                    return Err(CircuitOpen::new(State::HalfOpen, None));
                }
                _ => unreachable!("state word holds a known kind"),
            }
        }
    }

    /// Returns an unused half-open permit (a cancelled or ignored probe) and
    /// wakes whoever waits for one: a gate parked in `poll_ready` is polled
    /// again only when woken (tower's p2c never re-polls a pending endpoint
    /// on its own), so a permit given back in silence would strand it.
    #[cold]
    pub(crate) fn release_permit(slot: &Slot, generation_: u32) {
        let mut word = slot.word();
        while generation(word) == generation_ && kind(word) == HALF_OPEN && admitted(word) > 0 {
            match slot.state.word.compare_exchange(
                word,
                word - (1 << ADMITTED_SHIFT),
                AcqRel,
                Acquire,
            ) {
                Ok(_) => {
                    if let Some(core) = &*slot.core() {
                        core.notify.notify_waiters();
                    }
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    // ---- recording -------------------------------------------------------

    /// Hot path for a call admitted with [`Role::Record`]. Returns whether a
    /// checkpoint is due; the caller then runs [`Core::checkpoint`].
    ///
    /// A plain success (not slow) is one increment of the thread's own
    /// stripe (a load and a store, see [`Place::bump`]) and never asks for a
    /// checkpoint: it cannot raise a rate, and the count window's snapshots
    /// for the buckets it crosses are rebuilt exactly at the next checkpoint
    /// (see [`Core::rotate`]). Failures and slow calls always ask.
    #[inline]
    pub(crate) fn record(slot: &Slot, generation_: u32, outcome: Outcome, slow: bool) -> bool {
        if outcome == Outcome::Ignored || generation(slot.word()) != generation_ {
            // Ignored, or admitted under an earlier state: says nothing now.
            return false;
        }
        let place = slot.place();
        let stripe = &slot.stripes[place.index];
        let calls = place.bump(&stripe.calls);
        if outcome == Outcome::Success && !slow {
            let flags = slot.flags();
            if flags & (FLAG_SUCCESS_CHECKS | FLAG_SUCCESS_DUE) == 0
                && (flags & FLAG_CONSECUTIVE == 0 || slot.state.consecutive.load(Relaxed) == 0)
            {
                return false;
            }
            return Self::record_success_flagged(slot, stripe, calls, flags);
        }
        Self::record_bad(slot, place, outcome, slow)
    }

    /// A success when consecutive failures are counted, or while a
    /// metrics-only breaker is above its thresholds and must notice the
    /// rates falling.
    #[cold]
    fn record_success_flagged(slot: &Slot, stripe: &Stripe, calls: u64, flags: u64) -> bool {
        if flags & FLAG_CONSECUTIVE != 0 && slot.state.consecutive.load(Relaxed) != 0 {
            slot.state.consecutive.store(0, Relaxed);
        }
        flags & FLAG_SUCCESS_DUE != 0
            || (flags & FLAG_SUCCESS_CHECKS != 0 && calls >= stripe.next_check.load(Relaxed))
    }

    #[cold]
    fn record_bad(slot: &Slot, place: Place, outcome: Outcome, slow: bool) -> bool {
        let stripe = &slot.stripes[place.index];
        if outcome == Outcome::Failure {
            place.bump(&stripe.failures);
            if slot.flags() & FLAG_CONSECUTIVE != 0 {
                slot.state.last_failure.store(clock::now(), Relaxed);
            }
            slot.state.consecutive.fetch_add(1, Relaxed);
        } else if slot.flags() & FLAG_CONSECUTIVE != 0 && slot.state.consecutive.load(Relaxed) != 0
        {
            slot.state.consecutive.store(0, Relaxed);
        }
        if slow {
            place.bump(&stripe.slow);
        }
        true
    }

    /// Whether a time window's bucket has ended by `now`.
    #[inline]
    pub(crate) fn rotation_due(slot: &Slot, now: u64) -> bool {
        now >= slot.state.rotate_at.load(Relaxed)
    }

    /// Records a probe's result; the thread that records the last one
    /// decides between closing and re-opening.
    pub(crate) fn record_probe(&self, slot: &Slot, generation_: u32, outcome: Outcome, slow: bool) {
        if outcome == Outcome::Ignored {
            Self::release_permit(slot, generation_);
            return;
        }
        let (f, s) = ((outcome == Outcome::Failure) as u64, slow as u64);
        let mut current = slot.probes.load(Acquire);
        let next = loop {
            let tag = (current >> GEN_SHIFT) as u32;
            let next = if tag == generation_ {
                current + probes_pack(0, 1, f, s)
            } else if older(tag, generation_) {
                probes_pack(generation_, 1, f, s)
            } else {
                return;
            };
            match slot.probes.compare_exchange(current, next, AcqRel, Acquire) {
                Ok(_) => break next,
                Err(actual) => current = actual,
            }
        };
        let completed = (next >> (2 * PROBE_BITS)) & PROBE_MASK;
        let permitted = self.config.half_open_calls as u64;
        if completed < permitted {
            return;
        }
        let word = slot.word();
        if generation(word) != generation_ || kind(word) != HALF_OPEN {
            return;
        }
        let failures = (next >> PROBE_BITS) & PROBE_MASK;
        let slows = next & PROBE_MASK;
        let mut reopen = match self.config.trip {
            Trip::FailureRate(t) => percent(failures, permitted) >= t,
            Trip::ConsecutiveFailures(_) => failures > 0,
        };
        if let Some(sc) = self.config.slow {
            reopen |= percent(slows, permitted) >= sc.rate_threshold;
        }
        let now = self.now();
        let _ = if reopen {
            self.to_open(slot, word, now)
        } else {
            self.to_closed(slot, word, now)
        };
    }

    // ---- checkpoints -----------------------------------------------------

    /// Takes the checkpoint lock, spinning: only transitions and
    /// `metrics()` do this, never a call.
    fn lock(&self) {
        while self
            .gate
            .compare_exchange(IDLE, BUSY, AcqRel, Acquire)
            .is_err()
        {
            spin();
        }
    }

    /// Releases the lock; runs the checkpoint a call asked for meanwhile.
    fn unlock(&self, slot: &Slot) {
        if self.gate.swap(IDLE, AcqRel) & NOTED != 0 {
            self.checkpoint(slot, None);
        }
    }

    /// Rotates the window and evaluates the trip conditions. Never waits:
    /// when another thread holds the lock, this leaves it a note to go round
    /// again. Lock and note share one atomic, so every note is read by an
    /// RMW of the holder, which also makes the noter's counts visible.
    pub(crate) fn checkpoint(&self, slot: &Slot, now: Option<u64>) {
        let mut current = self.gate.load(Acquire);
        loop {
            let next = if current & BUSY == 0 {
                BUSY
            } else {
                current | NOTED
            };
            match self.gate.compare_exchange(current, next, AcqRel, Acquire) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        if current & BUSY != 0 {
            return;
        }
        loop {
            self.checkpoint_locked(slot, now);
            match self.gate.compare_exchange(BUSY, IDLE, AcqRel, Acquire) {
                Ok(_) => return,
                Err(_) => {
                    self.gate.swap(BUSY, AcqRel);
                }
            }
        }
    }

    fn checkpoint_locked(&self, slot: &Slot, now: Option<u64>) {
        let word = slot.word();
        let k = kind(word);
        if k != CLOSED && k != METRICS_ONLY {
            return;
        }
        let mut now = now;
        if self.plan.time_window && now.is_none() {
            now = Some(self.now());
        }
        let sums = slot.sum();
        let window = self.rotate(slot, sums, now);
        let mut trip = false;
        let mut reason = "";
        if let Some(n) = self.plan.consecutive {
            if slot.state.consecutive.load(Relaxed) >= n {
                trip = true;
                reason = "consecutive failures";
            }
        }
        let short = window.calls < self.config.minimum_calls as u64;
        set_flag(
            slot,
            FLAG_SUCCESS_DUE,
            short && (window.failures > 0 || window.slow > 0),
        );
        if !short {
            if let Trip::FailureRate(t) = self.config.trip {
                if percent(window.failures, window.calls) >= t {
                    trip = true;
                    reason = "failure rate";
                }
            }
            if let Some(sc) = self.config.slow {
                if percent(window.slow, window.calls) >= sc.rate_threshold {
                    trip = true;
                    reason = "slow-call rate";
                }
            }
        }
        if k == METRICS_ONLY {
            if trip != self.above_threshold.swap(trip, Relaxed) {
                if !self.plan.time_window {
                    set_flag(slot, FLAG_SUCCESS_CHECKS, trip);
                }
                let failure_rate = percent(window.failures, window.calls);
                let slow_call_rate = percent(window.slow, window.calls);
                tracing::info!(
                    breaker = %self.name,
                    failure_rate,
                    slow_call_rate,
                    above = trip,
                    "circuit breaker thresholds crossed (metrics only)"
                );
                let _ = self.events.send(Event::ThresholdCrossed {
                    above: trip,
                    failure_rate,
                    slow_call_rate,
                });
            }
        } else if trip {
            tracing::debug!(
                breaker = %self.name,
                reason,
                calls = window.calls,
                failures = window.failures,
                slow = window.slow,
                "circuit breaker tripped"
            );
            let now = now.unwrap_or_else(|| self.now());
            let _ = self.to_open(slot, word, now);
        }
    }

    /// Brings the snapshot ring up to date with `sums` and returns the
    /// window's counts. Called with the checkpoint lock held.
    fn rotate(&self, slot: &Slot, sums: Counts, now: Option<u64>) -> Counts {
        let b = self.buckets;
        let head = self.head.load(Relaxed);
        let h = if self.plan.time_window {
            let start = self.window_start.load(Relaxed);
            now.unwrap_or(start).saturating_sub(start) / self.bucket
        } else {
            sums.calls.saturating_sub(self.base_calls.load(Relaxed)) / self.bucket
        };
        if h > head {
            let base = self.base_calls.load(Relaxed);
            let last = self.last.load();
            for i in (head + 1).max(h.saturating_sub(b))..=h {
                let at = base + i * self.bucket;
                let snap = if self.plan.time_window || at >= sums.calls {
                    sums
                } else {
                    // A count-window boundary crossed since the last
                    // checkpoint: only successes came between, so the
                    // snapshot there is `at` calls with the failures and
                    // slow calls the last checkpoint saw.
                    Counts {
                        calls: at,
                        failures: last.failures,
                        slow: last.slow,
                    }
                };
                self.ring[(i % (b + 1)) as usize].store(snap);
            }
            self.head.store(h, Relaxed);
        }
        self.last.store(sums);
        let head = h.max(head);
        if self.plan.time_window {
            let start = self.window_start.load(Relaxed);
            slot.state
                .rotate_at
                .store(start + (head + 1) * self.bucket, Relaxed);
        } else {
            // Only this thread's stripe: writing the others' would steal
            // their cache lines from the threads that own them.
            let boundary = self.base_calls.load(Relaxed) + (head + 1) * self.bucket;
            let remaining = boundary.saturating_sub(sums.calls).max(1);
            let own = slot.stripe();
            own.next_check
                .store(own.calls.load(Relaxed) + remaining, Relaxed);
        }
        let first = if self.plan.time_window {
            (head + 1).saturating_sub(b)
        } else {
            head.saturating_sub(b)
        };
        sums.minus(self.ring[(first % (b + 1)) as usize].load())
    }

    /// Empties the window. Called with the checkpoint lock held.
    fn reset_window(&self, slot: &Slot, now: u64) {
        let sums = slot.sum();
        self.ring[0].store(sums);
        self.last.store(sums);
        self.head.store(0, Relaxed);
        self.base_calls.store(sums.calls, Relaxed);
        self.window_start.store(now, Relaxed);
        self.above_threshold.store(false, Relaxed);
        set_flag(slot, FLAG_SUCCESS_CHECKS | FLAG_SUCCESS_DUE, false);
        if self.plan.time_window {
            slot.state.rotate_at.store(now + self.bucket, Relaxed);
        } else {
            for s in slot.stripes.iter() {
                s.next_check
                    .store(s.calls.load(Relaxed) + self.bucket, Relaxed);
            }
        }
        slot.state.consecutive.store(0, Relaxed);
    }

    /// The window's counts now, for `CircuitBreaker::metrics`.
    pub(crate) fn metrics(&self, slot: &Slot) -> Metrics {
        self.lock();
        let now = self.plan.time_window.then(|| self.now());
        let window = self.rotate(slot, slot.sum(), now);
        self.unlock(slot);
        Metrics {
            state: state_of(slot.word()),
            calls: window.calls,
            failures: window.failures,
            slow_calls: window.slow,
        }
    }

    // ---- transitions -----------------------------------------------------

    fn to_open(&self, slot: &Slot, from: u64, now: u64) -> Result<(), u64> {
        let g = generation(from).wrapping_add(1);
        let guarded = !is_ejected(kind(from)) && self.guard.is_some();
        if guarded && !self.guard.as_ref().is_some_and(|g| g.try_eject()) {
            tracing::debug!(
                breaker = %self.name,
                "not opening: the group's ejection limit is reached"
            );
            return Err(from);
        }
        if let Err(actual) =
            slot.state
                .word
                .compare_exchange(from, pack(g, OPEN, 0), AcqRel, Acquire)
        {
            if guarded {
                self.release_guard();
            }
            return Err(actual);
        }
        let attempt = if kind(from) == HALF_OPEN {
            self.reopens.fetch_add(1, Relaxed) + 1
        } else {
            self.reopens.store(0, Relaxed);
            0
        };
        let previous = match self.last_open.load(Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        };
        let seed = self
            .config
            .seed
            .unwrap_or(now)
            .wrapping_add(self.rng_calls.fetch_add(1, Relaxed));
        let mut rng = fastrand::Rng::with_seed(seed);
        let delay = self.config.open_duration.delay(
            attempt.min(u32::MAX as u64) as u32,
            previous,
            &mut rng,
        );
        self.last_open.store(delay.as_nanos() as u64, Relaxed);
        slot.state
            .deadline
            .store(now.saturating_add(delay.as_nanos() as u64), Relaxed);
        slot.state.deadline_gen.store(g as u64, Release);
        self.announce(state_of(from), State::Open, Some(delay));
        Ok(())
    }

    fn to_half_open(&self, slot: &Slot, from: u64, now: u64) -> Result<Admission, u64> {
        let g = generation(from).wrapping_add(1);
        slot.state
            .word
            .compare_exchange(from, pack(g, HALF_OPEN, 1), AcqRel, Acquire)?;
        let deadline = match self.config.max_wait_in_half_open {
            Some(wait) => now.saturating_add(wait.as_nanos() as u64),
            None => u64::MAX,
        };
        slot.state.deadline.store(deadline, Relaxed);
        slot.state.deadline_gen.store(g as u64, Release);
        self.announce(State::Open, State::HalfOpen, None);
        Ok(Admission {
            generation: g,
            role: Role::Probe,
        })
    }

    fn to_closed(&self, slot: &Slot, from: u64, now: u64) -> Result<(), u64> {
        self.lock();
        self.reset_window(slot, now);
        let result = slot.state.word.compare_exchange(
            from,
            pack(generation(from).wrapping_add(1), CLOSED, 0),
            AcqRel,
            Acquire,
        );
        self.unlock(slot);
        result?;
        self.release_guard();
        self.reopens.store(0, Relaxed);
        self.last_open.store(0, Relaxed);
        self.announce(State::HalfOpen, State::Closed, None);
        Ok(())
    }

    fn release_guard(&self) {
        if let Some(g) = &self.guard {
            g.release();
        }
    }

    /// A manual transition (`force_open`, `disable`, `metrics_only`, `reset`).
    pub(crate) fn set(&self, slot: &Slot, to: State) {
        let to_kind = kind_of(to);
        self.lock();
        if matches!(to, State::Closed | State::MetricsOnly) {
            self.reset_window(slot, self.now());
        }
        let mut word = slot.word();
        let from = loop {
            let next = pack(generation(word).wrapping_add(1), to_kind, 0);
            match slot
                .state
                .word
                .compare_exchange(word, next, AcqRel, Acquire)
            {
                Ok(_) => break word,
                Err(actual) => word = actual,
            }
        };
        self.unlock(slot);
        match (is_ejected(kind(from)), is_ejected(to_kind)) {
            (true, false) => self.release_guard(),
            (false, true) => {
                if let Some(g) = &self.guard {
                    g.force_eject();
                }
            }
            _ => {}
        }
        if to == State::Closed {
            self.reopens.store(0, Relaxed);
            self.last_open.store(0, Relaxed);
        }
        self.announce(state_of(from), to, None);
    }

    fn announce(&self, from: State, to: State, open_for: Option<Duration>) {
        match open_for {
            Some(d) => tracing::info!(
                breaker = %self.name, ?from, ?to, open_for = ?d,
                "circuit breaker state changed"
            ),
            None => tracing::info!(
                breaker = %self.name, ?from, ?to,
                "circuit breaker state changed"
            ),
        }
        self.metrics.transition(to);
        self.state_tx.send_replace(to);
        let _ = self.events.send(Event::StateChanged { from, to });
        self.notify.notify_waiters();
    }

    /// When the state of `word` ends by itself, if it is known: the end of
    /// the open period, or of the half-open wait (`max_wait_in_half_open`).
    /// A caller that waits for the breaker arms a timer for it.
    pub(crate) fn wait_until(&self, slot: &Slot, word: u64) -> Option<Instant> {
        if !matches!(kind(word), OPEN | HALF_OPEN)
            || slot.state.deadline_gen.load(Acquire) != generation(word) as u64
        {
            return None;
        }
        match slot.state.deadline.load(Relaxed) {
            u64::MAX => None,
            at => Some(clock::instant(at)),
        }
    }
}

/// Sets or clears `flag`, writing only on a change: the flags share a cache
/// line with the state word every call reads.
fn set_flag(slot: &Slot, flag: u64, on: bool) {
    let flags = slot.flags();
    if (flags & flag != 0) != on {
        if on {
            slot.state.flags.fetch_or(flag, Relaxed);
        } else {
            slot.state.flags.fetch_and(!flag, Relaxed);
        }
    }
}

// ---- slots: leased from the crate's recycler -------------------------------

/// Slots of dropped breakers, reused by new ones (`crate::recycle`).
static SLOTS: Pool<Slot> = Pool::new();

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
    pub(crate) fn new(core: Core) -> Owner {
        // The pool is touched only when a breaker is created or dropped,
        // never by a call.
        let lease = SLOTS.take(|| Slot::new(stripe_count()));
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
        if is_ejected(kind(slot.word())) {
            self.core.release_guard();
        }
        self.core.vacate(slot);
        slot.core.store(None);
        // `lease`, dropped next, hands the slot back.
    }
}

#[cfg(all(test, meshguard_loom))]
mod loom_tests {
    //! Model checks of the concurrent parts: run with
    //! `RUSTFLAGS="--cfg meshguard_loom" cargo test --lib --release loom`.
    use super::*;
    use crate::circuit_breaker::CircuitBreakerConfig;
    use loom::sync::Arc;

    fn setup(config: CircuitBreakerConfig) -> (&'static Slot, Arc<Core>) {
        setup_striped(config, 2)
    }

    fn setup_striped(config: CircuitBreakerConfig, stripes: usize) -> (&'static Slot, Arc<Core>) {
        let slot: &'static Slot = Box::leak(Box::new(Slot::new(stripes)));
        let core = Arc::new(Core::new("loom", config));
        core.assign(slot);
        (slot, core)
    }

    fn record(slot: &Slot, core: &Core, g: u32, outcome: Outcome) {
        if Core::record(slot, g, outcome, false) {
            core.checkpoint(slot, None);
        }
    }

    #[test]
    fn loom_concurrent_records_are_never_lost() {
        // Two owned stripes and the shared one: each thread owns a stripe.
        records_are_never_lost(3);
    }

    #[test]
    fn loom_records_of_an_owner_and_a_sharer_are_never_lost() {
        records_are_never_lost(2);
    }

    #[test]
    fn loom_records_of_threads_sharing_a_stripe_are_never_lost() {
        records_are_never_lost(1);
    }

    fn records_are_never_lost(stripes: usize) {
        loom::model(move || {
            let config = CircuitBreakerConfig::builder()
                .count_window(4, 2)
                .minimum_calls(4)
                .failure_rate_threshold(100.0)
                .build()
                .unwrap();
            let (slot, core) = setup_striped(config, stripes);
            let g = generation(slot.word());
            let threads: Vec<_> = (0..2)
                .map(|i| {
                    let core = core.clone();
                    loom::thread::spawn(move || {
                        let o = if i == 0 {
                            Outcome::Failure
                        } else {
                            Outcome::Success
                        };
                        record(slot, &core, g, o);
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let sums = slot.sum();
            assert_eq!((sums.calls, sums.failures), (2, 1));
            assert_eq!(kind(slot.word()), CLOSED);
        });
    }

    #[test]
    fn loom_exactly_one_thread_opens_the_breaker() {
        loom::model(|| {
            let config = CircuitBreakerConfig::builder()
                .count_window(2, 2)
                .minimum_calls(2)
                .failure_rate_threshold(50.0)
                .build()
                .unwrap();
            let (slot, core) = setup(config);
            let mut events = core.subscribe();
            let g = generation(slot.word());
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let core = core.clone();
                    loom::thread::spawn(move || record(slot, &core, g, Outcome::Failure))
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(kind(slot.word()), OPEN);
            assert_eq!(generation(slot.word()), g.wrapping_add(1));
            assert_eq!(
                events.try_recv().unwrap(),
                Event::StateChanged {
                    from: State::Closed,
                    to: State::Open
                }
            );
            assert!(
                events.try_recv().is_err(),
                "a second transition was announced"
            );
        });
    }

    #[test]
    fn loom_half_open_never_admits_more_than_the_permits() {
        loom::model(|| {
            let config = CircuitBreakerConfig::builder()
                .half_open_calls(1)
                .build()
                .unwrap();
            let (slot, core) = setup(config);
            core.set(slot, State::Open);
            // An open period that has already ended.
            let word = slot.word();
            slot.state.deadline.store(0, Relaxed);
            slot.state
                .deadline_gen
                .store(generation(word) as u64, Release);
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let core = core.clone();
                    loom::thread::spawn(move || core.admit(slot).is_ok())
                })
                .collect();
            let admitted: usize = threads
                .into_iter()
                .map(|t| t.join().unwrap() as usize)
                .sum();
            assert_eq!(admitted, 1);
            assert_eq!(kind(slot.word()), HALF_OPEN);
        });
    }

    #[test]
    fn loom_a_released_permit_is_reused_and_the_last_probe_decides_once() {
        loom::model(|| {
            let config = CircuitBreakerConfig::builder()
                .half_open_calls(2)
                .build()
                .unwrap();
            let (slot, core) = setup(config);
            core.set(slot, State::Open);
            let word = slot.word();
            slot.state.deadline.store(0, Relaxed);
            slot.state
                .deadline_gen
                .store(generation(word) as u64, Release);
            let a = core.admit(slot).unwrap();
            let b = core.admit(slot).unwrap();
            assert_eq!(a.role, Role::Probe);
            assert!(core.admit(slot).is_err());
            let mut events = core.subscribe();
            let t1 = {
                let core = core.clone();
                loom::thread::spawn(move || {
                    core.record_probe(slot, a.generation, Outcome::Success, false)
                })
            };
            let t2 = {
                let core = core.clone();
                loom::thread::spawn(move || {
                    // Cancelled, then admitted again and succeeding.
                    Core::release_permit(slot, b.generation);
                    if let Ok(c) = core.admit(slot) {
                        core.record_probe(slot, c.generation, Outcome::Success, false);
                    }
                })
            };
            t1.join().unwrap();
            t2.join().unwrap();
            assert_eq!(kind(slot.word()), CLOSED);
            assert_eq!(
                events.try_recv().unwrap(),
                Event::StateChanged {
                    from: State::HalfOpen,
                    to: State::Closed
                }
            );
            assert!(events.try_recv().is_err());
        });
    }
}
