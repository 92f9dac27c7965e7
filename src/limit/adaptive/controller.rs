//! The adaptive limit's controller: latencies and drops gathered per
//! window in atomics, and the limit recomputed once per window by
//! whichever call ends it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::config::{AdaptiveLimitConfig, LimitAlgorithm};
use super::window::{Sample, Taken, Window};
use crate::clock;
use crate::limit::metrics::LimitMetrics;
use crate::limit::permits::Permits;
use crate::recycle::{Handle, Lease, Pool};

/// Cores of dropped limits, reused by new ones.
static CORES: Pool<Core> = Pool::new();

/// One adaptive limit, shared by every service of its layer: the owner of
/// the [`Core`] its calls reach.
#[derive(Debug)]
pub(crate) struct Controller {
    core: Lease<Core>,
    metrics: Arc<LimitMetrics>,
}

/// What a call reaches: the limit's slots, the window's counts and what a
/// window's end needs. A call holds a handle of the crate's recycler
/// (`crate::recycle`) to it, not an `Arc`, whose clone and drop were 16 ns
/// of a call (`benches/limit.rs`). A core is reused once no call of its
/// last owner can reach it, so its settings are atomics and a mutex, which
/// each new owner sets.
#[derive(Debug)]
pub(crate) struct Core {
    pub(super) permits: Permits,
    window: Window,
    window_nanos: AtomicU64,
    coarse: AtomicBool,
    /// Read and changed by the call that ends a window.
    cold: Mutex<Cold>,
}

/// The limit's state and settings, for the end of a window.
#[derive(Debug)]
struct Cold {
    state: State,
    config: AdaptiveLimitConfig,
    metrics: Arc<LimitMetrics>,
    name: Box<str>,
    /// Where the current window's sums begin.
    taken: Taken,
}

/// The limit as a real number, and the minimum latency it is judged by.
#[derive(Debug)]
struct State {
    limit: f64,
    /// The minimum latency (gradient), in nanoseconds, once measured.
    min_rtt: Option<f64>,
    /// This window measures the minimum latency at the probe limit; the
    /// limit to return to after it.
    probing: Option<f64>,
    /// When the minimum latency is measured again.
    next_probe: u64,
}

/// A window's totals, taken when it ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Totals {
    pub(super) samples: u64,
    pub(super) latency_sum: u64,
    pub(super) drops: u64,
    pub(super) max_in_flight: u64,
}

impl Controller {
    pub(super) fn new(name: &str, config: AdaptiveLimitConfig) -> Self {
        let now = now(config.coarse_clock);
        let gradient = config.algorithm == LimitAlgorithm::Gradient;
        let initial = config.initial_limit as f64;
        // The gradient needs the minimum latency first: the first window
        // measures it at the probe limit.
        let start_limit = if gradient {
            config.probe_limit.min(config.initial_limit)
        } else {
            config.initial_limit
        };
        let metrics = Arc::new(LimitMetrics::new(name, "adaptive_limit"));
        metrics.limit(start_limit);
        let cold = Cold {
            state: State {
                limit: initial,
                min_rtt: None,
                probing: gradient.then_some(initial),
                next_probe: u64::MAX,
            },
            config,
            metrics: metrics.clone(),
            name: name.into(),
            taken: Taken::default(),
        };
        let mut fresh = Some(cold);
        let core = CORES.take(|| Core {
            permits: Permits::new(start_limit),
            window: Window::new(now),
            window_nanos: AtomicU64::new(0),
            coarse: AtomicBool::new(false),
            cold: Mutex::new(fresh.take().expect("made once")),
        });
        // Set as for a new core: a reused one is as its last owner's calls
        // left it (none in flight).
        let c = core.get();
        if let Some(mut cold) = fresh {
            cold.taken = c.window.restart(now);
            *c.cold.lock().unwrap_or_else(|e| e.into_inner()) = cold;
            c.permits.set_limit(start_limit);
        }
        c.window_nanos
            .store(config.window.as_nanos() as u64, Ordering::Relaxed);
        c.coarse.store(config.coarse_clock, Ordering::Relaxed);
        Controller { core, metrics }
    }

    /// What calls reach, for this owner's services.
    #[inline]
    pub(super) fn core(&self) -> &Core {
        self.core.get()
    }

    /// A call's handle to the core.
    #[inline]
    pub(super) fn handle(&self) -> Handle<Core> {
        self.core.handle()
    }

    pub(super) fn metrics(&self) -> &LimitMetrics {
        &self.metrics
    }

    /// The limit now.
    pub(super) fn limit(&self) -> usize {
        self.core().permits.limit()
    }
}

impl Core {
    /// Now, by the clock the configuration asks for.
    #[inline]
    pub(super) fn now(&self) -> u64 {
        now(self.coarse.load(Ordering::Relaxed))
    }

    /// Records one finished call that started at `start` with `in_flight`
    /// calls in flight (itself included).
    #[inline]
    pub(super) fn record(&self, start: u64, in_flight: usize, sample: Sample) {
        let now = self.now();
        self.window
            .record(now.saturating_sub(start), in_flight, sample);
        if now.saturating_sub(self.window.start()) >= self.window_nanos.load(Ordering::Relaxed) {
            self.end_window(now);
        }
    }

    /// Ends the window (if no other call is ending it) and updates the
    /// limit.
    #[cold]
    fn end_window(&self, now: u64) {
        let Ok(mut cold) = self.cold.try_lock() else {
            return;
        };
        if now.saturating_sub(self.window.start()) < self.window_nanos.load(Ordering::Relaxed) {
            return;
        }
        let Cold {
            state,
            config,
            metrics,
            name,
            taken,
        } = &mut *cold;
        let totals = self.window.end(now, taken);
        let before = self.permits.limit();
        let after = state.update(config, totals, now);
        if after != before {
            self.permits.set_limit(after);
            metrics.limit(after);
            tracing::debug!(
                service = %name,
                from = before,
                to = after,
                min_rtt = ?state.min_rtt.map(|n| Duration::from_nanos(n as u64)),
                window_latency = ?(totals.samples > 0)
                    .then(|| Duration::from_nanos(totals.latency_sum / totals.samples)),
                drops = totals.drops,
                "adaptive concurrency limit changed"
            );
        }
    }
}

/// Now from the coarse clock (one atomic load) or tokio's (a clock read,
/// the larger part of a call's cost here: two a call).
#[inline]
fn now(coarse: bool) -> u64 {
    if coarse {
        clock::coarse_now()
    } else {
        clock::now()
    }
}

impl State {
    /// The new whole limit after a window with `t`.
    fn update(&mut self, c: &AdaptiveLimitConfig, t: Totals, now: u64) -> usize {
        match c.algorithm {
            LimitAlgorithm::Aimd => self.aimd(c, t),
            LimitAlgorithm::Gradient => return self.gradient(c, t, now),
        }
        self.limit.round() as usize
    }

    fn aimd(&mut self, c: &AdaptiveLimitConfig, t: Totals) {
        if t.drops > 0 {
            self.limit = (self.limit * c.backoff_ratio).max(c.min_limit as f64);
        } else if t.samples > 0 && t.max_in_flight as f64 * 2.0 >= self.limit {
            // One more per round of the limit's worth of calls: TCP's one
            // segment per round trip.
            let rounds = (t.samples as f64 / self.limit).floor().max(1.0);
            self.limit = (self.limit + rounds).min(c.max_limit as f64);
        }
    }

    fn gradient(&mut self, c: &AdaptiveLimitConfig, t: Totals, now: u64) -> usize {
        let mean = (t.samples > 0).then(|| t.latency_sum as f64 / t.samples as f64);
        if let Some(restore) = self.probing {
            let Some(mean) = mean else {
                // Nothing measured yet: keep probing.
                return c.probe_limit.min(restore.round() as usize);
            };
            self.min_rtt = Some(mean.max(min_rtt_floor(c)));
            self.probing = None;
            self.limit = restore;
            let jitter = 1.0 + fastrand::f64() * 0.1;
            self.next_probe =
                now.saturating_add((c.min_rtt_interval.as_nanos() as f64 * jitter) as u64);
            return self.limit.round() as usize;
        }
        if now >= self.next_probe {
            self.probing = Some(self.limit);
            return c.probe_limit.min(self.limit.round() as usize);
        }
        let Some(min_rtt) = self.min_rtt else {
            return self.limit.round() as usize;
        };
        let gradient = match mean {
            _ if t.drops > 0 => 0.5,
            Some(mean) => (c.tolerance * min_rtt / mean).clamp(0.5, 2.0),
            None => return self.limit.round() as usize,
        };
        // Not using its limit: it has shown nothing about a higher one.
        let app_limited = (t.max_in_flight as f64) * 2.0 < self.limit;
        if gradient >= 1.0 && app_limited {
            return self.limit.round() as usize;
        }
        let computed = self.limit * gradient + self.limit.sqrt();
        self.limit = (self.limit * (1.0 - c.smoothing) + computed * c.smoothing)
            .clamp(c.min_limit as f64, c.max_limit as f64);
        if let Some(mean) = mean {
            // A window faster than the minimum lowers it at once.
            if mean < min_rtt {
                self.min_rtt = Some(mean.max(min_rtt_floor(c)));
            }
        }
        self.limit.round() as usize
    }
}

/// The least minimum latency, in nanoseconds: the clock's resolution. The
/// coarse clock's is a millisecond: a few calls shorter than that can
/// measure 0 together, which must not become a minimum no later window
/// gets near (the limit would fall every window until the next probe).
fn min_rtt_floor(c: &AdaptiveLimitConfig) -> f64 {
    if c.coarse_clock { 1e6 } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(samples: u64, mean_ms: u64, drops: u64, max_in_flight: u64) -> Totals {
        Totals {
            samples,
            latency_sum: samples * mean_ms * 1_000_000,
            drops,
            max_in_flight,
        }
    }

    fn state(limit: f64, min_rtt_ms: Option<f64>) -> State {
        State {
            limit,
            min_rtt: min_rtt_ms.map(|m| m * 1e6),
            probing: None,
            next_probe: u64::MAX,
        }
    }

    fn aimd() -> AdaptiveLimitConfig {
        AdaptiveLimitConfig::builder()
            .algorithm(LimitAlgorithm::Aimd)
            .build()
            .unwrap()
    }

    #[test]
    fn aimd_multiplies_the_limit_down_after_a_window_with_a_drop() {
        let mut s = state(20.0, None);
        assert_eq!(s.update(&aimd(), totals(100, 10, 1, 20), 0), 18);
    }

    #[test]
    fn aimd_adds_one_per_round_of_calls_when_the_limit_is_used() {
        let mut s = state(20.0, None);
        assert_eq!(s.update(&aimd(), totals(60, 10, 0, 20), 0), 23);
    }

    #[test]
    fn aimd_does_not_grow_a_limit_the_calls_do_not_use() {
        let mut s = state(20.0, None);
        assert_eq!(s.update(&aimd(), totals(60, 10, 0, 9), 0), 20);
    }

    #[test]
    fn gradient_falls_when_latency_rises_past_the_tolerance() {
        let c = AdaptiveLimitConfig::default();
        let mut s = state(40.0, Some(10.0));
        // 25 ms against 12.5 ms tolerated: gradient 0.5.
        // 40 * 0.8 + (40 * 0.5 + sqrt(40)) * 0.2 = 37.26
        assert_eq!(s.update(&c, totals(100, 25, 0, 40), 0), 37);
    }

    #[test]
    fn gradient_grows_a_used_limit_while_latency_stays_low() {
        let c = AdaptiveLimitConfig::default();
        let mut s = state(20.0, Some(10.0));
        // 10 ms: gradient 1.25. 20 * 0.8 + (25 + sqrt(20)) * 0.2 = 21.89
        assert_eq!(s.update(&c, totals(100, 10, 0, 20), 0), 22);
    }

    #[test]
    fn gradient_holds_an_unused_limit_while_latency_stays_low() {
        let c = AdaptiveLimitConfig::default();
        let mut s = state(20.0, Some(10.0));
        assert_eq!(s.update(&c, totals(100, 10, 0, 5), 0), 20);
    }

    #[test]
    fn gradient_halves_its_gradient_after_a_drop() {
        let c = AdaptiveLimitConfig::default();
        let mut s = state(40.0, Some(10.0));
        assert_eq!(s.update(&c, totals(100, 10, 3, 40), 0), 37);
    }

    #[test]
    fn the_first_window_measures_the_minimum_latency_then_restores_the_limit() {
        let c = AdaptiveLimitConfig::default();
        let mut s = state(20.0, None);
        s.probing = Some(20.0);
        assert_eq!(s.update(&c, totals(0, 0, 0, 0), 0), 3);
        assert_eq!(s.update(&c, totals(30, 10, 0, 3), 0), 20);
        assert_eq!(s.min_rtt, Some(10.0 * 1e6));
    }

    #[test]
    fn with_the_coarse_clock_the_minimum_latency_is_at_least_a_millisecond() {
        let c = AdaptiveLimitConfig::builder()
            .coarse_clock(true)
            .build()
            .unwrap();
        let mut s = state(20.0, None);
        s.probing = Some(20.0);
        // A probe window of calls that all fell within one tick.
        assert_eq!(s.update(&c, totals(30, 0, 0, 3), 0), 20);
        assert_eq!(s.min_rtt, Some(1e6));
    }

    #[test]
    fn the_minimum_latency_is_measured_again_after_its_interval() {
        let c = AdaptiveLimitConfig::default();
        let mut s = state(30.0, Some(10.0));
        s.next_probe = 1_000;
        assert_eq!(s.update(&c, totals(100, 10, 0, 30), 1_000), 3);
        assert_eq!(s.update(&c, totals(30, 12, 0, 3), 2_000), 30);
        assert_eq!(s.min_rtt, Some(12.0 * 1e6));
    }
}
