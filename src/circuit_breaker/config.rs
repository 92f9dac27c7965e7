//! Validated circuit breaker configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;
use crate::backoff::{Backoff, Jitter, RawBackoff};

/// The largest count window, in calls.
pub const MAX_WINDOW_CALLS: u32 = 1_000_000;
/// The largest number of buckets in a window.
pub const MAX_BUCKETS: u32 = 10_000;
/// The largest number of half-open probe calls.
pub const MAX_HALF_OPEN_CALLS: u32 = 1_000;

/// Which calls the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `size` calls, kept in `buckets` buckets of `size / buckets`
    /// calls. The window slides one bucket at a time, so it holds between
    /// `size` and `size + size / buckets - 1` calls; with `buckets == size`
    /// it is exact.
    Count {
        /// Calls in the window.
        size: u32,
        /// Buckets the window is kept in; must divide `size`.
        buckets: u32,
    },
    /// The calls completed in the last `duration`, kept in `buckets` buckets
    /// of `duration / buckets`. The window slides one bucket at a time, so it
    /// covers between `duration - duration / buckets` and `duration`.
    Time {
        /// How far back the window reaches.
        duration: Duration,
        /// Buckets the window is kept in.
        buckets: u32,
    },
}

impl Window {
    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Window::Count { size, buckets } => {
                if !(1..=MAX_WINDOW_CALLS).contains(&size) {
                    return Err(ConfigError::new(
                        "window.size",
                        format!("must be in [1, {MAX_WINDOW_CALLS}], got {size}"),
                    ));
                }
                if !(1..=size.min(MAX_BUCKETS)).contains(&buckets) || size % buckets != 0 {
                    return Err(ConfigError::new(
                        "window.buckets",
                        format!(
                            "must divide window.size ({size}) and be in [1, {}], got {buckets}",
                            size.min(MAX_BUCKETS)
                        ),
                    ));
                }
            }
            Window::Time { duration, buckets } => {
                if duration < Duration::from_millis(1) || duration > Duration::from_secs(86_400) {
                    return Err(ConfigError::new(
                        "window.duration",
                        format!("must be in [1ms, 24h], got {duration:?}"),
                    ));
                }
                if !(1..=MAX_BUCKETS).contains(&buckets)
                    || duration.as_nanos() / (buckets as u128) < 1_000_000
                {
                    return Err(ConfigError::new(
                        "window.buckets",
                        format!(
                            "must be in [1, {MAX_BUCKETS}] with buckets of at least 1ms, got {buckets}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What the breaker does with calls while it is open.
///
/// Deserializes from `"fail_fast"` or `"wait"`; `"gate"`, its earlier
/// name, is accepted as an alias of `"wait"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// `call` fails at once with [`CircuitOpen`](super::CircuitOpen). For a
    /// breaker in front of one service.
    #[default]
    FailFast,
    /// `poll_ready` waits (stays `Pending`) while the breaker is open and
    /// wakes when the open period ends. For a breaker in front of one
    /// endpoint inside a load balancer, which then routes around it
    /// (outlier ejection).
    #[serde(alias = "gate")]
    Wait,
}

/// What trips the breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Trip {
    /// The failure rate over the window reaches the threshold (percent).
    FailureRate(f64),
    /// This many failures in a row, whatever the window holds.
    ConsecutiveFailures(u32),
}

/// Slow-call detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SlowCalls {
    pub(crate) duration: Duration,
    pub(crate) rate_threshold: f64,
}

/// Configuration of a [`CircuitBreaker`](super::CircuitBreaker).
///
/// Built with [`CircuitBreakerConfig::builder`] or deserialized; both check
/// every value and name the field that is out of range. See
/// `docs/circuit-breaker.md` for each option's default and why.
///
/// ```
/// # use std::time::Duration;
/// use meshguard::circuit_breaker::{CircuitBreakerConfig, Window};
///
/// let config: CircuitBreakerConfig = toml::from_str(r#"
///     window = { kind = "time", duration = "10s", buckets = 10 }
///     failure_rate_threshold = 25
///     minimum_calls = 20
///     slow_call_duration = "500ms"
///     open_duration = { kind = "exponential", base = "5s", max = "2m", jitter = "equal" }
///     coarse_clock = true
/// "#).unwrap();
/// assert_eq!(
///     config.window(),
///     Window::Time { duration: Duration::from_secs(10), buckets: 10 }
/// );
/// assert!(config.coarse_clock());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct CircuitBreakerConfig {
    pub(crate) window: Window,
    pub(crate) trip: Trip,
    pub(crate) minimum_calls: u32,
    pub(crate) slow: Option<SlowCalls>,
    pub(crate) open_duration: Backoff,
    pub(crate) half_open_calls: u32,
    pub(crate) max_wait_in_half_open: Option<Duration>,
    pub(crate) rejection: Rejection,
    pub(crate) seed: Option<u64>,
    pub(crate) coarse_clock: bool,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            window: Window::Count {
                size: 100,
                buckets: 10,
            },
            trip: Trip::FailureRate(50.0),
            minimum_calls: 100,
            slow: None,
            open_duration: default_open_duration(),
            half_open_calls: 10,
            max_wait_in_half_open: None,
            rejection: Rejection::FailFast,
            seed: None,
            coarse_clock: false,
        }
    }
}

/// 1 s, doubling on each re-open up to 1 min, each period up to half again
/// as long (Linkerd's failure accrual: 1 s to 1 min, jitter 0.5). A short
/// first period keeps a brief outage brief: traffic is probed back within
/// about a second of the upstream's return, and a long outage still costs
/// the upstream no more than a few probes a minute.
pub(crate) fn default_open_duration() -> Backoff {
    Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60))
        .expect("valid default")
        .with_jitter(Jitter::Upward)
}

impl CircuitBreakerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> CircuitBreakerConfigBuilder {
        CircuitBreakerConfigBuilder {
            config: CircuitBreakerConfig::default(),
            slow_rate: None,
            failure_rate: None,
            consecutive: None,
            minimum_calls: None,
        }
    }

    /// The window the rates are computed over.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The failure-rate threshold in percent, or `None` when the breaker
    /// trips on consecutive failures instead.
    pub fn failure_rate_threshold(&self) -> Option<f64> {
        match self.trip {
            Trip::FailureRate(t) => Some(t),
            Trip::ConsecutiveFailures(_) => None,
        }
    }

    /// The consecutive failures that trip the breaker, when that is the
    /// trip condition.
    pub fn consecutive_failures(&self) -> Option<u32> {
        match self.trip {
            Trip::FailureRate(_) => None,
            Trip::ConsecutiveFailures(n) => Some(n),
        }
    }

    /// Calls the window must hold before its rates can trip the breaker.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// Calls at least this long count as slow, when slow-call detection is on.
    pub fn slow_call_duration(&self) -> Option<Duration> {
        self.slow.map(|s| s.duration)
    }

    /// The slow-call rate (percent) that trips the breaker.
    pub fn slow_call_rate_threshold(&self) -> Option<f64> {
        self.slow.map(|s| s.rate_threshold)
    }

    /// How long the breaker stays open, as a function of how many times it
    /// re-opened without recovering.
    pub fn open_duration(&self) -> &Backoff {
        &self.open_duration
    }

    /// Probe calls admitted in half-open.
    pub fn half_open_calls(&self) -> u32 {
        self.half_open_calls
    }

    /// The longest the breaker waits in half-open for its probes.
    pub fn max_wait_in_half_open(&self) -> Option<Duration> {
        self.max_wait_in_half_open
    }

    /// Fail fast or wait.
    pub fn rejection(&self) -> Rejection {
        self.rejection
    }

    /// Whether calls read the coarse clock; see
    /// [`CircuitBreakerConfigBuilder::coarse_clock`].
    pub fn coarse_clock(&self) -> bool {
        self.coarse_clock
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.window.validate()?;
        match self.trip {
            Trip::FailureRate(t) => check_percent("failure_rate_threshold", t)?,
            Trip::ConsecutiveFailures(n) => {
                if n == 0 {
                    return Err(ConfigError::new(
                        "consecutive_failures",
                        "must be at least 1, got 0",
                    ));
                }
            }
        }
        if let Some(slow) = self.slow {
            if slow.duration.is_zero() {
                return Err(ConfigError::new(
                    "slow_call_duration",
                    "must be greater than 0, got 0s",
                ));
            }
            check_percent("slow_call_rate_threshold", slow.rate_threshold)?;
        }
        let max_min_calls = match self.window {
            Window::Count { size, .. } => size,
            Window::Time { .. } => u32::MAX,
        };
        if !(1..=max_min_calls).contains(&self.minimum_calls) {
            return Err(ConfigError::new(
                "minimum_calls",
                format!(
                    "must be in [1, {max_min_calls}] (at most the window size), got {}",
                    self.minimum_calls
                ),
            ));
        }
        if !(1..=MAX_HALF_OPEN_CALLS).contains(&self.half_open_calls) {
            return Err(ConfigError::new(
                "half_open_calls",
                format!(
                    "must be in [1, {MAX_HALF_OPEN_CALLS}], got {}",
                    self.half_open_calls
                ),
            ));
        }
        if self.open_duration.base().is_zero() {
            return Err(ConfigError::new(
                "open_duration.base",
                "must be greater than 0, got 0s",
            ));
        }
        if self.open_duration.max() > Duration::from_secs(86_400 * 365) {
            return Err(ConfigError::new(
                "open_duration.max",
                format!("must be at most a year, got {:?}", self.open_duration.max()),
            ));
        }
        if let Some(wait) = self.max_wait_in_half_open {
            if wait.is_zero() {
                return Err(ConfigError::new(
                    "max_wait_in_half_open",
                    "must be greater than 0 (leave it out to wait for every probe), got 0s",
                ));
            }
        }
        Ok(())
    }
}

fn check_percent(field: &str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 100.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be in (0, 100], got {value}"),
        ))
    }
}

/// Builds a [`CircuitBreakerConfig`]; see each method for the default.
#[derive(Debug, Clone)]
pub struct CircuitBreakerConfigBuilder {
    config: CircuitBreakerConfig,
    slow_rate: Option<f64>,
    failure_rate: Option<f64>,
    consecutive: Option<u32>,
    minimum_calls: Option<u32>,
}

impl CircuitBreakerConfigBuilder {
    /// Rates over the last `size` calls in `buckets` buckets
    /// (default: 100 calls in 10 buckets).
    pub fn count_window(mut self, size: u32, buckets: u32) -> Self {
        self.config.window = Window::Count { size, buckets };
        self
    }

    /// Rates over the calls of the last `duration`, in `buckets` buckets.
    pub fn time_window(mut self, duration: Duration, buckets: u32) -> Self {
        self.config.window = Window::Time { duration, buckets };
        self
    }

    /// Trip when the failure rate reaches `percent` (default 50).
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.failure_rate = Some(percent);
        self
    }

    /// Trip on `count` failures in a row instead of on the failure rate.
    pub fn consecutive_failures(mut self, count: u32) -> Self {
        self.consecutive = Some(count);
        self
    }

    /// Calls the window must hold before its rates count (default 100, or
    /// the count window's size when that is smaller).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = Some(calls);
        self
    }

    /// Count calls lasting at least `duration` as slow, even when they
    /// succeed (default: off, and no clock is read).
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        let rate = self.config.slow.map_or(100.0, |s| s.rate_threshold);
        self.config.slow = Some(SlowCalls {
            duration,
            rate_threshold: rate,
        });
        self
    }

    /// Trip when the slow-call rate reaches `percent` (default 100).
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.slow_rate = Some(percent);
        self
    }

    /// How long the breaker stays open (default: exponential from 1 s,
    /// doubling on each re-open without recovery, capped at 1 min, with
    /// [`Jitter::Upward`](crate::backoff::Jitter::Upward)).
    pub fn open_duration(mut self, backoff: Backoff) -> Self {
        self.config.open_duration = backoff;
        self
    }

    /// Probe calls admitted in half-open (default 10).
    pub fn half_open_calls(mut self, calls: u32) -> Self {
        self.config.half_open_calls = calls;
        self
    }

    /// Re-open when the probes have not all finished within `wait`
    /// (default: wait for them however long they take).
    pub fn max_wait_in_half_open(mut self, wait: Duration) -> Self {
        self.config.max_wait_in_half_open = Some(wait);
        self
    }

    /// Fail fast (default) or wait in `poll_ready` while open.
    pub fn rejection(mut self, rejection: Rejection) -> Self {
        self.config.rejection = rejection;
        self
    }

    /// Seeds the open-duration jitter, for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Calls read a coarse clock instead of tokio's: a process-wide time
    /// kept by a background thread, updated every millisecond, read with one
    /// atomic load instead of a clock read (31 ns on the development
    /// machine). It makes slow-call detection, time windows and open-state
    /// rejections cheap, at a resolution of about 1 ms. Off by default
    /// because the coarse clock is real time: it does not follow tokio's
    /// paused clock (`tokio::time::pause`/`advance`), so tests on paused
    /// time must leave it off. State transitions always use tokio's clock.
    pub fn coarse_clock(mut self, on: bool) -> Self {
        self.config.coarse_clock = on;
        self
    }

    /// Checks every value.
    pub fn build(mut self) -> Result<CircuitBreakerConfig, ConfigError> {
        match (self.failure_rate, self.consecutive) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "consecutive_failures",
                    "cannot be combined with failure_rate_threshold; choose one trip condition",
                ));
            }
            (Some(rate), None) => self.config.trip = Trip::FailureRate(rate),
            (None, Some(n)) => self.config.trip = Trip::ConsecutiveFailures(n),
            (None, None) => {}
        }
        if let Some(rate) = self.slow_rate {
            match &mut self.config.slow {
                Some(slow) => slow.rate_threshold = rate,
                None => {
                    return Err(ConfigError::new(
                        "slow_call_rate_threshold",
                        "needs slow_call_duration to be set",
                    ));
                }
            }
        }
        self.config.minimum_calls = match (self.minimum_calls, self.config.window) {
            (Some(n), _) => n,
            (None, Window::Count { size, .. }) => size.min(100),
            (None, Window::Time { .. }) => 100,
        };
        self.config.validate()?;
        Ok(self.config)
    }
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum RawWindow {
    Count {
        size: u32,
        #[serde(default)]
        buckets: Option<u32>,
    },
    Time {
        #[serde(with = "humantime_serde")]
        duration: Duration,
        #[serde(default)]
        buckets: Option<u32>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    window: Option<RawWindow>,
    #[serde(default)]
    failure_rate_threshold: Option<f64>,
    #[serde(default)]
    consecutive_failures: Option<u32>,
    #[serde(default)]
    minimum_calls: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    slow_call_duration: Option<Duration>,
    #[serde(default)]
    slow_call_rate_threshold: Option<f64>,
    #[serde(default)]
    open_duration: Option<RawBackoff>,
    #[serde(default)]
    half_open_calls: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    max_wait_in_half_open: Option<Duration>,
    #[serde(default)]
    rejection: Option<Rejection>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    coarse_clock: bool,
}

impl TryFrom<RawConfig> for CircuitBreakerConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let mut b = CircuitBreakerConfig::builder();
        match raw.window {
            Some(RawWindow::Count { size, buckets }) => {
                // Default: ten buckets when they divide the size, else exact.
                let buckets = buckets.unwrap_or(if size % 10 == 0 { 10 } else { size.max(1) });
                b = b.count_window(size, buckets);
            }
            Some(RawWindow::Time { duration, buckets }) => {
                let buckets = buckets.unwrap_or(10);
                b = b.time_window(duration, buckets);
            }
            None => {}
        }
        if let Some(v) = raw.failure_rate_threshold {
            b = b.failure_rate_threshold(v);
        }
        if let Some(v) = raw.consecutive_failures {
            b = b.consecutive_failures(v);
        }
        if let Some(v) = raw.minimum_calls {
            b = b.minimum_calls(v);
        }
        if let Some(v) = raw.slow_call_duration {
            b = b.slow_call_duration(v);
        }
        if let Some(v) = raw.slow_call_rate_threshold {
            b = b.slow_call_rate_threshold(v);
        }
        if let Some(v) = raw.open_duration {
            b = b.open_duration(Backoff::try_from(v).map_err(|e| e.within("open_duration"))?);
        }
        if let Some(v) = raw.half_open_calls {
            b = b.half_open_calls(v);
        }
        if let Some(v) = raw.max_wait_in_half_open {
            b = b.max_wait_in_half_open(v);
        }
        if let Some(v) = raw.rejection {
            b = b.rejection(v);
        }
        b = b.coarse_clock(raw.coarse_clock);
        if let Some(v) = raw.seed {
            b = b.seed(v);
        }
        b.build()
    }
}
