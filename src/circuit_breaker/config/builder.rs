//! [`CircuitBreakerConfigBuilder`].

use std::time::Duration;

use super::{CircuitBreakerConfig, Rejection, SlowCalls, Trip, Window};
use crate::ConfigError;
use crate::backoff::Backoff;

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
