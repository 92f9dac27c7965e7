//! A hedge layer's settings: [`HedgeConfig`] and its builder.

use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// When a [`HedgeLayer`](super::HedgeLayer) sends a hedge, and for which
/// requests. Built with [`HedgeConfig::builder`] or deserialized: every
/// field is optional, the period is text, and invalid values fail with a
/// [`ConfigError`] naming the field.
///
/// ```
/// use std::time::Duration;
/// use meshguard::retry::HedgeConfig;
///
/// let config: HedgeConfig = toml::from_str(r#"
///     percentile = 95
///     min_data_points = 100
///     period = "30s"
///     deposit = false
/// "#).unwrap();
/// assert_eq!(
///     config,
///     HedgeConfig::builder()
///         .percentile(95.0)
///         .min_data_points(100)
///         .period(Duration::from_secs(30))
///         .deposit(false)
///         .build()
///         .unwrap()
/// );
///
/// let err = HedgeConfig::builder().percentile(120.0).build().unwrap_err();
/// assert_eq!(err.field(), "percentile");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RawHedge")]
pub struct HedgeConfig {
    percentile: f64,
    min_data_points: u64,
    period: Duration,
    allow_non_idempotent: bool,
    deposit: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHedge {
    #[serde(default)]
    percentile: Option<f64>,
    #[serde(default)]
    min_data_points: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    period: Option<Duration>,
    #[serde(default)]
    allow_non_idempotent: Option<bool>,
    #[serde(default)]
    deposit: Option<bool>,
}

impl TryFrom<RawHedge> for HedgeConfig {
    type Error = ConfigError;
    fn try_from(raw: RawHedge) -> Result<Self, ConfigError> {
        let mut b = HedgeConfig::builder();
        if let Some(p) = raw.percentile {
            b = b.percentile(p);
        }
        if let Some(n) = raw.min_data_points {
            b = b.min_data_points(n);
        }
        if let Some(d) = raw.period {
            b = b.period(d);
        }
        if let Some(allow) = raw.allow_non_idempotent {
            b = b.allow_non_idempotent(allow);
        }
        if let Some(deposit) = raw.deposit {
            b = b.deposit(deposit);
        }
        b.build()
    }
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl HedgeConfig {
    /// A builder starting from the defaults: hedge at the 90th percentile
    /// once 20 latencies are known, over 10 s periods, idempotent requests
    /// only, each request depositing into the budget.
    pub fn builder() -> HedgeConfigBuilder {
        HedgeConfigBuilder {
            config: HedgeConfig {
                percentile: 90.0,
                min_data_points: 20,
                period: Duration::from_secs(10),
                allow_non_idempotent: false,
                deposit: true,
            },
        }
    }

    /// The latency percentile (0 to 100) after which a hedge is sent.
    pub fn percentile(&self) -> f64 {
        self.percentile
    }

    /// Latencies needed before any hedge is sent.
    pub fn min_data_points(&self) -> u64 {
        self.min_data_points
    }

    /// How long latencies are kept.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Whether non-idempotent requests are hedged too.
    pub fn allows_non_idempotent(&self) -> bool {
        self.allow_non_idempotent
    }

    /// Whether requests passing through deposit into the budget.
    pub fn deposits(&self) -> bool {
        self.deposit
    }

    /// These settings without deposits: for a hedge under a retry layer
    /// that shares its budget and deposits each call already.
    #[cfg(feature = "client")]
    pub(crate) fn without_deposit(mut self) -> Self {
        self.deposit = false;
        self
    }
}

/// Builds a [`HedgeConfig`]; see [`HedgeConfig::builder`] for the defaults.
#[derive(Debug, Clone)]
pub struct HedgeConfigBuilder {
    config: HedgeConfig,
}

impl HedgeConfigBuilder {
    /// The latency percentile after which a hedge is sent, 0 to 100
    /// (default 90).
    pub fn percentile(mut self, p: f64) -> Self {
        self.config.percentile = p;
        self
    }

    /// Latencies the previous period must hold before any hedge is sent,
    /// at least 1 (default 20).
    pub fn min_data_points(mut self, n: u64) -> Self {
        self.config.min_data_points = n;
        self
    }

    /// How long latencies are kept: hedges are timed by the latencies of
    /// the previous period (`tower::hedge` keeps two such windows).
    /// Greater than zero (default 10 s).
    pub fn period(mut self, period: Duration) -> Self {
        self.config.period = period;
        self
    }

    /// Hedges non-idempotent requests (POST, PATCH) too (default `false`).
    /// Only for upstreams that deduplicate, or a hedge may do the work twice.
    pub fn allow_non_idempotent(mut self, allow: bool) -> Self {
        self.config.allow_non_idempotent = allow;
        self
    }

    /// Whether requests passing through deposit into the budget: `true`
    /// (the default) alone, `false` below a [`RetryLayer`](super::RetryLayer)
    /// sharing the budget, which deposits already.
    pub fn deposit(mut self, deposit: bool) -> Self {
        self.config.deposit = deposit;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<HedgeConfig, ConfigError> {
        let c = self.config;
        // Written so that NaN fails too.
        if !(0.0..=100.0).contains(&c.percentile) {
            return Err(ConfigError::new(
                "percentile",
                format!("must be in [0, 100], got {}", c.percentile),
            ));
        }
        if c.min_data_points == 0 {
            return Err(ConfigError::new(
                "min_data_points",
                "must be at least 1 (with none, hedges go out at once while no latency is known), got 0",
            ));
        }
        if c.period.is_zero() {
            return Err(ConfigError::new(
                "period",
                "must be greater than zero, got 0s",
            ));
        }
        Ok(c)
    }
}
