//! A retry budget's settings: [`RetryBudgetConfig`] and its builder.

use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// A retry budget's settings. Built with [`RetryBudgetConfig::builder`] or
/// deserialized (inside a [`RetryPolicy`](super::RetryPolicy), the
/// `budget` section): every field is optional, the TTL is text, and invalid
/// values fail with a [`ConfigError`] naming the field.
///
/// ```
/// use std::time::Duration;
/// use meshguard::retry::RetryBudgetConfig;
///
/// let config: RetryBudgetConfig =
///     toml::from_str(r#"ratio = 0.1
///                       ttl = "30s""#).unwrap();
/// assert_eq!(
///     config,
///     RetryBudgetConfig::builder()
///         .ratio(0.1)
///         .ttl(Duration::from_secs(30))
///         .build()
///         .unwrap()
/// );
/// assert_eq!(config.min_per_second(), 10);
///
/// let err = RetryBudgetConfig::builder().ratio(-1.0).build().unwrap_err();
/// assert_eq!(err.field(), "ratio");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RawBudget")]
pub struct RetryBudgetConfig {
    ratio: f64,
    min_per_second: u32,
    ttl: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    #[serde(default)]
    ratio: Option<f64>,
    #[serde(default)]
    min_per_second: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    ttl: Option<Duration>,
}

impl TryFrom<RawBudget> for RetryBudgetConfig {
    type Error = ConfigError;
    fn try_from(raw: RawBudget) -> Result<Self, ConfigError> {
        let mut b = RetryBudgetConfig::builder();
        if let Some(ratio) = raw.ratio {
            b = b.ratio(ratio);
        }
        if let Some(n) = raw.min_per_second {
            b = b.min_per_second(n);
        }
        if let Some(ttl) = raw.ttl {
            b = b.ttl(ttl);
        }
        b.build()
    }
}

impl Default for RetryBudgetConfig {
    /// Finagle's defaults: 20% of requests plus 10 retries a second, over
    /// the last 10 seconds.
    fn default() -> Self {
        RetryBudgetConfig::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl RetryBudgetConfig {
    /// A builder starting from the defaults (Finagle's): retries may be 20%
    /// of the requests of the last 10 s, plus 10 a second whatever the
    /// traffic.
    pub fn builder() -> RetryBudgetConfigBuilder {
        RetryBudgetConfigBuilder {
            config: RetryBudgetConfig {
                ratio: 0.2,
                min_per_second: 10,
                ttl: Duration::from_secs(10),
            },
        }
    }

    /// Retries allowed per request.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Retries allowed per second regardless of traffic.
    pub fn min_per_second(&self) -> u32 {
        self.min_per_second
    }

    /// How long a request keeps earning retries.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// Builds a [`RetryBudgetConfig`]; see [`RetryBudgetConfig::builder`] for
/// the defaults.
#[derive(Debug, Clone)]
pub struct RetryBudgetConfigBuilder {
    config: RetryBudgetConfig,
}

impl RetryBudgetConfigBuilder {
    /// Retries each request earns, 0 to 1000 (default 0.2: one retry for
    /// every five requests).
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.config.ratio = ratio;
        self
    }

    /// Retries allowed per second of `ttl` whatever the traffic, for
    /// services with little of it (default 10).
    pub fn min_per_second(mut self, n: u32) -> Self {
        self.config.min_per_second = n;
        self
    }

    /// How long a request keeps earning retries, 1 s to 1 h (default 10 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<RetryBudgetConfig, ConfigError> {
        let c = self.config;
        if !(0.0..=1000.0).contains(&c.ratio) {
            return Err(ConfigError::new(
                "ratio",
                format!(
                    "must be in [0, 1000] (retries per request), got {}",
                    c.ratio
                ),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&c.ttl) {
            return Err(ConfigError::new(
                "ttl",
                format!("must be in [1s, 1h], got {:?}", c.ttl),
            ));
        }
        Ok(c)
    }
}
