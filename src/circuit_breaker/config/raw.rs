//! The deserialized form of a [`CircuitBreakerConfig`], checked by its
//! builder.

use std::time::Duration;

use serde::Deserialize;

use super::{CircuitBreakerConfig, Rejection};
use crate::ConfigError;
use crate::backoff::{Backoff, RawBackoff};

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
pub(super) struct RawConfig {
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
