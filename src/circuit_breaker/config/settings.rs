//! [`CircuitBreakerConfig`]: the validated settings of a breaker.

use std::time::Duration;

use serde::Deserialize;

use super::raw::RawConfig;
use super::{MAX_HALF_OPEN_CALLS, Rejection, Window};
use crate::ConfigError;
use crate::backoff::{Backoff, Jitter};

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

/// Configuration of a [`CircuitBreaker`](crate::circuit_breaker::CircuitBreaker).
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
    /// [`CircuitBreakerConfigBuilder::coarse_clock`](super::CircuitBreakerConfigBuilder::coarse_clock).
    pub fn coarse_clock(&self) -> bool {
        self.coarse_clock
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
