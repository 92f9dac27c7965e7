//! [`BulkheadConfig`] and its builder.

use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// A bulkhead's settings: at most `max_concurrent` calls in flight, up to
/// `max_queue` more waiting at most `max_wait` for a slot; beyond that a
/// call fails at once with [`LimitExceeded`](super::LimitExceeded).
///
/// Built with [`BulkheadConfig::builder`] or deserialized (durations as
/// text); invalid values fail with a [`ConfigError`] naming the field.
///
/// ```
/// use std::time::Duration;
/// use meshguard::limit::BulkheadConfig;
///
/// let config: BulkheadConfig = toml::from_str(r#"
///     max_concurrent = 32
///     max_queue = 64
///     max_wait = "50ms"
/// "#).unwrap();
/// assert_eq!(config.max_concurrent(), 32);
/// assert_eq!(config.max_wait(), Duration::from_millis(50));
///
/// let err = BulkheadConfig::builder().max_concurrent(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_concurrent");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawBulkhead")]
pub struct BulkheadConfig {
    max_concurrent: usize,
    max_queue: usize,
    max_wait: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBulkhead {
    #[serde(default)]
    max_concurrent: Option<usize>,
    #[serde(default)]
    max_queue: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    max_wait: Option<Duration>,
}

impl TryFrom<RawBulkhead> for BulkheadConfig {
    type Error = ConfigError;
    fn try_from(raw: RawBulkhead) -> Result<Self, ConfigError> {
        let mut b = BulkheadConfig::builder();
        if let Some(n) = raw.max_concurrent {
            b = b.max_concurrent(n);
        }
        if let Some(n) = raw.max_queue {
            b = b.max_queue(n);
        }
        if let Some(d) = raw.max_wait {
            b = b.max_wait(d);
        }
        b.build()
    }
}

impl Default for BulkheadConfig {
    /// 64 calls in flight, no queue (Resilience4j's bulkhead waits 0 by
    /// default too: refusing at once keeps the caller's latency bounded).
    fn default() -> Self {
        BulkheadConfig::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl BulkheadConfig {
    /// A builder starting from the defaults: 64 in flight, no queue, a
    /// 100 ms maximum wait once a queue is set.
    pub fn builder() -> BulkheadConfigBuilder {
        BulkheadConfigBuilder {
            config: BulkheadConfig {
                max_concurrent: 64,
                max_queue: 0,
                max_wait: Duration::from_millis(100),
            },
        }
    }

    /// Calls in flight at most.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// Calls waiting for a slot at most.
    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// How long a queued call waits for a slot at most.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }
}

/// Builds a [`BulkheadConfig`]; see [`BulkheadConfig::builder`] for the
/// defaults.
#[derive(Debug, Clone)]
pub struct BulkheadConfigBuilder {
    config: BulkheadConfig,
}

impl BulkheadConfigBuilder {
    /// Calls in flight at most, at least 1 (default 64).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.config.max_concurrent = n;
        self
    }

    /// Calls that may wait for a slot (default 0: none waits).
    pub fn max_queue(mut self, n: usize) -> Self {
        self.config.max_queue = n;
        self
    }

    /// How long a queued call waits at most, more than zero and at most
    /// 1 min (default 100 ms).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.config.max_wait = wait;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<BulkheadConfig, ConfigError> {
        let c = self.config;
        if c.max_concurrent == 0 {
            return Err(ConfigError::new("max_concurrent", "must be at least 1"));
        }
        if c.max_wait.is_zero() || c.max_wait > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "max_wait",
                format!("must be in (0, 1min], got {:?}", c.max_wait),
            ));
        }
        Ok(c)
    }
}
