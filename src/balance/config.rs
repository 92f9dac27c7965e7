//! [`BalanceConfig`]: how the balancer weighs endpoints and ejects
//! failing ones.

use std::time::Duration;

use crate::ConfigError;
use crate::circuit_breaker::{CircuitBreakerConfig, Rejection};

/// How the balancer weighs endpoints and ejects failing ones.
///
/// Deserializable, every field optional, durations as text; invalid values
/// name their field:
///
/// ```
/// use meshguard::balance::BalanceConfig;
///
/// let config: BalanceConfig = toml::from_str(r#"
///     default_rtt = "10ms"
///     max_ejection_percent = 30
///     ejection = { consecutive_failures = 3, open_duration = { kind = "constant", base = "5s" } }
/// "#).unwrap();
/// assert_eq!(config.max_ejection_percent(), 30.0);
///
/// let off: BalanceConfig = toml::from_str("ejection_enabled = false").unwrap();
/// assert!(off.ejection().is_none());
///
/// let err = toml::from_str::<BalanceConfig>("panic_threshold = 120").unwrap_err();
/// assert!(err.to_string().contains("`panic_threshold`"));
///
/// // An endpoint's Retry-After ejects it for at most 10 s; "0s" turns it off.
/// let capped: BalanceConfig = toml::from_str(r#"max_retry_after_ejection = "10s""#).unwrap();
/// assert_eq!(capped.max_retry_after_ejection(), std::time::Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(try_from = "RawBalance")]
pub struct BalanceConfig {
    pub(super) default_rtt: Duration,
    pub(super) decay: Duration,
    pub(super) ejection: Option<CircuitBreakerConfig>,
    pub(super) max_ejection_percent: f64,
    pub(super) panic_threshold: f64,
    pub(super) failure_penalty: Duration,
    pub(super) max_retry_after_ejection: Duration,
    pub(super) max_concurrent_per_endpoint: Option<usize>,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl BalanceConfig {
    /// Defaults: PeakEwma with a 30 ms first estimate decaying over 10 s
    /// (linkerd's), ejection after 5 consecutive failures (Envoy's
    /// `consecutive_5xx`) for 1 s, doubling per repeated ejection up to
    /// 1 min, each period up to half again as long (Linkerd's failure
    /// accrual: 1 s to 1 min, jitter 0.5; a recovered instance is back
    /// within about a second, a dead one costs a probe a minute), one probe
    /// to come back, at most 10% ejected (at least one endpoint), panic
    /// below 50% (Envoy's defaults); an endpoint answering 429 or 503 with
    /// a `Retry-After` is ejected for that long, at most 1 min (the longest
    /// failure-accrual ejection).
    pub fn builder() -> BalanceConfigBuilder {
        BalanceConfigBuilder {
            config: BalanceConfig {
                default_rtt: Duration::from_millis(30),
                decay: Duration::from_secs(10),
                ejection: Some(default_ejection()),
                max_ejection_percent: 10.0,
                panic_threshold: 50.0,
                failure_penalty: Duration::from_secs(1),
                max_retry_after_ejection: Duration::from_secs(60),
                max_concurrent_per_endpoint: None,
            },
        }
    }

    /// The per-endpoint breaker's configuration, if ejection is on.
    pub fn ejection(&self) -> Option<&CircuitBreakerConfig> {
        self.ejection.as_ref()
    }

    /// The largest share of endpoints ejected at once, in percent.
    pub fn max_ejection_percent(&self) -> f64 {
        self.max_ejection_percent
    }

    /// The share of endpoints, in percent, below which none is ejected.
    pub fn panic_threshold(&self) -> f64 {
        self.panic_threshold
    }

    /// How long after its last failure an endpoint ranks behind those
    /// with fewer consecutive failures.
    pub fn failure_penalty(&self) -> Duration {
        self.failure_penalty
    }

    /// The longest an endpoint's `Retry-After` ejects it; zero when a
    /// `Retry-After` ejects nothing.
    pub fn max_retry_after_ejection(&self) -> Duration {
        self.max_retry_after_ejection
    }

    /// The most calls in flight to one endpoint, if limited.
    pub fn max_concurrent_per_endpoint(&self) -> Option<usize> {
        self.max_concurrent_per_endpoint
    }
}

/// The largest [`BalanceConfigBuilder::max_retry_after_ejection`].
const MAX_RETRY_AFTER_EJECTION: Duration = Duration::from_secs(3600);

fn default_ejection() -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .consecutive_failures(5)
        // The breaker's default: ejected for 1 s, then 2, 4, ... up to 1 min
        // while probes keep failing, each up to half again as long.
        .open_duration(crate::circuit_breaker::default_open_duration())
        .half_open_calls(1)
        .rejection(Rejection::Wait)
        .build()
        .expect("valid")
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBalance {
    #[serde(default, with = "humantime_serde")]
    default_rtt: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    decay: Option<Duration>,
    #[serde(default)]
    ejection: Option<CircuitBreakerConfig>,
    #[serde(default = "yes")]
    ejection_enabled: bool,
    #[serde(default)]
    max_ejection_percent: Option<f64>,
    #[serde(default)]
    panic_threshold: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    failure_penalty: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_retry_after_ejection: Option<Duration>,
    #[serde(default)]
    max_concurrent_per_endpoint: Option<usize>,
}

fn yes() -> bool {
    true
}

impl TryFrom<RawBalance> for BalanceConfig {
    type Error = ConfigError;

    fn try_from(raw: RawBalance) -> Result<Self, ConfigError> {
        let mut b = BalanceConfig::builder();
        if let Some(d) = raw.default_rtt {
            b = b.default_rtt(d);
        }
        if let Some(d) = raw.decay {
            b = b.decay(d);
        }
        if let Some(e) = raw.ejection {
            b = b.ejection(Some(e));
        }
        if !raw.ejection_enabled {
            b = b.ejection(None);
        }
        if let Some(p) = raw.max_ejection_percent {
            b = b.max_ejection_percent(p);
        }
        if let Some(p) = raw.panic_threshold {
            b = b.panic_threshold(p);
        }
        if let Some(d) = raw.failure_penalty {
            b = b.failure_penalty(d);
        }
        if let Some(d) = raw.max_retry_after_ejection {
            b = b.max_retry_after_ejection(d);
        }
        if let Some(n) = raw.max_concurrent_per_endpoint {
            b = b.max_concurrent_per_endpoint(Some(n));
        }
        b.build()
    }
}

/// Builds a [`BalanceConfig`].
#[derive(Debug, Clone)]
pub struct BalanceConfigBuilder {
    config: BalanceConfig,
}

impl BalanceConfigBuilder {
    /// PeakEwma's estimate for an endpoint with no measurements yet.
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.config.default_rtt = rtt;
        self
    }

    /// Over how long PeakEwma's estimate decays.
    pub fn decay(mut self, decay: Duration) -> Self {
        self.config.decay = decay;
        self
    }

    /// The per-endpoint breaker (its rejection mode is always
    /// [`Rejection::Wait`]), or
    /// `None` to turn ejection off (endpoints are still ranked by their
    /// consecutive failures).
    pub fn ejection(mut self, breaker: Option<CircuitBreakerConfig>) -> Self {
        self.config.ejection = breaker;
        self
    }

    /// The largest share of endpoints ejected at once (0 to 100); at least
    /// one endpoint may always be ejected, panic threshold permitting.
    pub fn max_ejection_percent(mut self, percent: f64) -> Self {
        self.config.max_ejection_percent = percent;
        self
    }

    /// How long after its last failure an endpoint ranks behind endpoints
    /// with fewer consecutive failures (default 1 s; zero turns the
    /// ranking off). Long enough that a retry goes elsewhere, short enough
    /// that an endpoint with one transient error is soon picked again.
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.config.failure_penalty = penalty;
        self
    }

    /// The longest an endpoint is ejected at its own request (default
    /// 1 min; zero turns it off). An endpoint that answers 429 or 503 with a
    /// valid `Retry-After` (or a gRPC status with a non-negative
    /// `grpc-retry-pushback-ms`) is taken out of rotation for that long,
    /// capped here, within the ejection limits (`max_ejection_percent`,
    /// `panic_threshold`: when they refuse, it keeps its traffic), and comes
    /// back by itself when the time is up (its next request is a probe).
    /// Needs ejection on ([`ejection`](Self::ejection)). At most 1 h: an
    /// instance that asks for longer is better removed from discovery.
    pub fn max_retry_after_ejection(mut self, max: Duration) -> Self {
        self.config.max_retry_after_ejection = max;
        self
    }

    /// A bulkhead per endpoint (default `None`: no limit): at most `n`
    /// calls in flight to one instance. An instance at its limit is not
    /// ready, so the balancer picks another; when every instance is at its
    /// limit, a call waits for a slot in the balancer, up to its attempt
    /// timeout (as tower's `ConcurrencyLimit` under p2c, which this is).
    /// For a bounded queue with a fail-fast refusal in front of the whole
    /// service, add the client's [`bulkhead`](crate::limit::BulkheadLayer).
    pub fn max_concurrent_per_endpoint(mut self, n: Option<usize>) -> Self {
        self.config.max_concurrent_per_endpoint = n;
        self
    }

    /// No ejection may leave fewer than this share of endpoints (0 to 100).
    pub fn panic_threshold(mut self, percent: f64) -> Self {
        self.config.panic_threshold = percent;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<BalanceConfig, ConfigError> {
        let c = self.config;
        if c.max_concurrent_per_endpoint == Some(0) {
            return Err(ConfigError::new(
                "max_concurrent_per_endpoint",
                "must be at least 1 (or unset for no limit)",
            ));
        }
        if c.default_rtt.is_zero() {
            return Err(ConfigError::new("default_rtt", "must be greater than zero"));
        }
        if c.decay.is_zero() {
            return Err(ConfigError::new("decay", "must be greater than zero"));
        }
        if c.max_retry_after_ejection > MAX_RETRY_AFTER_EJECTION {
            return Err(ConfigError::new(
                "max_retry_after_ejection",
                format!("must be at most 1h, got {:?}", c.max_retry_after_ejection),
            ));
        }
        for (field, v) in [
            ("max_ejection_percent", c.max_ejection_percent),
            ("panic_threshold", c.panic_threshold),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err(ConfigError::new(
                    field,
                    format!("must be in [0, 100], got {v}"),
                ));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_name_their_field() {
        let err = BalanceConfig::builder()
            .max_ejection_percent(120.0)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "max_ejection_percent");
        let err = BalanceConfig::builder()
            .decay(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "decay");
    }

    #[test]
    fn a_retry_after_ejection_cap_over_an_hour_is_rejected_naming_its_field() {
        let err = BalanceConfig::builder()
            .max_retry_after_ejection(Duration::from_secs(3601))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "max_retry_after_ejection");
        let hour = BalanceConfig::builder()
            .max_retry_after_ejection(Duration::from_secs(3600))
            .build()
            .unwrap();
        assert_eq!(hour.max_retry_after_ejection(), Duration::from_secs(3600));
    }

    #[test]
    fn the_retry_after_ejection_cap_reads_as_text_and_zero_turns_it_off() {
        let off: BalanceConfig = toml::from_str(r#"max_retry_after_ejection = "0s""#).unwrap();
        assert_eq!(off.max_retry_after_ejection(), Duration::ZERO);
        assert_eq!(
            BalanceConfig::default().max_retry_after_ejection(),
            Duration::from_secs(60)
        );
        let err =
            toml::from_str::<BalanceConfig>(r#"max_retry_after_ejection = "2h""#).unwrap_err();
        assert!(
            err.to_string().contains("`max_retry_after_ejection`"),
            "{err}"
        );
    }
}
