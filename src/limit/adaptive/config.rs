//! [`AdaptiveLimitConfig`]: the adaptive limit's algorithm and bounds.

use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// How the adaptive limit moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LimitAlgorithm {
    /// A gradient of latencies, as Envoy's adaptive concurrency filter and
    /// Netflix's Gradient2: the limit follows `min_rtt × tolerance ÷
    /// sample_rtt`, where `min_rtt` is re-measured periodically at a low
    /// concurrency and `sample_rtt` is the window's mean latency. Reacts to
    /// queueing before anything fails: the choice for upstreams that slow
    /// down when overloaded (most of them).
    #[default]
    Gradient,
    /// Additive increase, multiplicative decrease on drops (timeouts, 429,
    /// 503, `RESOURCE_EXHAUSTED`): the choice for upstreams that shed load
    /// explicitly. Latency alone never lowers it.
    Aimd,
}

/// The adaptive limit's settings. Built with
/// [`AdaptiveLimitConfig::builder`] or deserialized (durations as text);
/// invalid values fail with a [`ConfigError`] naming the field.
///
/// ```
/// use meshguard::limit::{AdaptiveLimitConfig, LimitAlgorithm};
///
/// let config: AdaptiveLimitConfig = toml::from_str(r#"
///     algorithm = "aimd"
///     initial_limit = 10
///     max_limit = 200
///     backoff_ratio = 0.8
///     coarse_clock = true
/// "#).unwrap();
/// assert_eq!(config.algorithm(), LimitAlgorithm::Aimd);
/// assert_eq!(config.initial_limit(), 10);
/// assert!(config.coarse_clock());
///
/// let err = AdaptiveLimitConfig::builder().min_limit(0).build().unwrap_err();
/// assert_eq!(err.field(), "min_limit");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RawAdaptive")]
pub struct AdaptiveLimitConfig {
    pub(super) algorithm: LimitAlgorithm,
    pub(super) initial_limit: usize,
    pub(super) min_limit: usize,
    pub(super) max_limit: usize,
    pub(super) window: Duration,
    pub(super) smoothing: f64,
    pub(super) tolerance: f64,
    pub(super) min_rtt_interval: Duration,
    pub(super) probe_limit: usize,
    pub(super) backoff_ratio: f64,
    pub(super) coarse_clock: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdaptive {
    #[serde(default)]
    algorithm: Option<LimitAlgorithm>,
    #[serde(default)]
    initial_limit: Option<usize>,
    #[serde(default)]
    min_limit: Option<usize>,
    #[serde(default)]
    max_limit: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    window: Option<Duration>,
    #[serde(default)]
    smoothing: Option<f64>,
    #[serde(default)]
    tolerance: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    min_rtt_interval: Option<Duration>,
    #[serde(default)]
    probe_limit: Option<usize>,
    #[serde(default)]
    backoff_ratio: Option<f64>,
    #[serde(default)]
    coarse_clock: Option<bool>,
}

impl TryFrom<RawAdaptive> for AdaptiveLimitConfig {
    type Error = ConfigError;
    fn try_from(raw: RawAdaptive) -> Result<Self, ConfigError> {
        let mut b = AdaptiveLimitConfig::builder();
        let c = &mut b.config;
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = raw.$f { c.$f = v; } )* };
        }
        set!(
            algorithm,
            initial_limit,
            min_limit,
            max_limit,
            window,
            smoothing,
            tolerance,
            min_rtt_interval,
            probe_limit,
            backoff_ratio,
            coarse_clock
        );
        b.build()
    }
}

impl Default for AdaptiveLimitConfig {
    fn default() -> Self {
        AdaptiveLimitConfig::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl AdaptiveLimitConfig {
    /// A builder starting from the defaults: the gradient algorithm, a
    /// limit starting at 20 within [1, 1000], updated every 100 ms window,
    /// smoothing 0.2, latency tolerance 1.25 (Envoy's 25% buffer), the
    /// minimum latency re-measured every 60 s at a limit of 3 (Envoy's
    /// `min_concurrency`); for AIMD a backoff ratio of 0.9.
    pub fn builder() -> AdaptiveLimitConfigBuilder {
        AdaptiveLimitConfigBuilder {
            config: AdaptiveLimitConfig {
                algorithm: LimitAlgorithm::Gradient,
                initial_limit: 20,
                min_limit: 1,
                max_limit: 1000,
                window: Duration::from_millis(100),
                smoothing: 0.2,
                tolerance: 1.25,
                min_rtt_interval: Duration::from_secs(60),
                probe_limit: 3,
                backoff_ratio: 0.9,
                coarse_clock: false,
            },
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> LimitAlgorithm {
        self.algorithm
    }

    /// The limit before the first update.
    pub fn initial_limit(&self) -> usize {
        self.initial_limit
    }

    /// The lowest the limit goes.
    pub fn min_limit(&self) -> usize {
        self.min_limit
    }

    /// The highest the limit goes.
    pub fn max_limit(&self) -> usize {
        self.max_limit
    }

    /// How often the limit is updated from the latencies and drops
    /// measured since the last update.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Whether calls are timed by the coarse clock; see
    /// [`AdaptiveLimitConfigBuilder::coarse_clock`].
    pub fn coarse_clock(&self) -> bool {
        self.coarse_clock
    }
}

/// Builds an [`AdaptiveLimitConfig`]; see
/// [`AdaptiveLimitConfig::builder`] for the defaults.
#[derive(Debug, Clone)]
pub struct AdaptiveLimitConfigBuilder {
    config: AdaptiveLimitConfig,
}

impl AdaptiveLimitConfigBuilder {
    /// The algorithm (default [`LimitAlgorithm::Gradient`]).
    pub fn algorithm(mut self, algorithm: LimitAlgorithm) -> Self {
        self.config.algorithm = algorithm;
        self
    }

    /// The limit before the first update (default 20), within the bounds.
    pub fn initial_limit(mut self, n: usize) -> Self {
        self.config.initial_limit = n;
        self
    }

    /// The lowest limit, at least 1 (default 1).
    pub fn min_limit(mut self, n: usize) -> Self {
        self.config.min_limit = n;
        self
    }

    /// The highest limit (default 1000).
    pub fn max_limit(mut self, n: usize) -> Self {
        self.config.max_limit = n;
        self
    }

    /// How often the limit is updated, 10 ms to 10 s (default 100 ms, as
    /// Envoy's `concurrency_update_interval`).
    pub fn window(mut self, window: Duration) -> Self {
        self.config.window = window;
        self
    }

    /// Gradient: how much of each update is taken, in (0, 1] (default
    /// 0.2: the new limit is 80% the old one and 20% the computed one).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.config.smoothing = smoothing;
        self
    }

    /// Gradient: how much slower than the minimum latency calls may get
    /// before the limit falls, 1 to 10 (default 1.25).
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.config.tolerance = tolerance;
        self
    }

    /// Gradient: how often the minimum latency is re-measured, at least
    /// 1 s (default 60 s, jittered by up to 10%).
    pub fn min_rtt_interval(mut self, interval: Duration) -> Self {
        self.config.min_rtt_interval = interval;
        self
    }

    /// Gradient: the limit while the minimum latency is measured (one
    /// window), at least 1 (default 3).
    pub fn probe_limit(mut self, n: usize) -> Self {
        self.config.probe_limit = n;
        self
    }

    /// AIMD: the factor the limit is multiplied by after a window with a
    /// drop, in [0.5, 1) (default 0.9).
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.config.backoff_ratio = ratio;
        self
    }

    /// Calls are timed by a coarse clock instead of tokio's: a process-wide
    /// time kept by a background thread, updated every millisecond, read
    /// with one atomic load instead of a clock read (22-31 ns on the
    /// development machine, twice a call: when it starts and when it
    /// ends). Each latency is then whole milliseconds, but the tick falls
    /// anywhere within a call, so a window's mean latency (what the
    /// gradient reads) stays right on average; the minimum latency is
    /// taken as at least 1 ms, so with calls faster than that the gradient
    /// lowers the limit only once they take over about `tolerance` ms.
    /// Windows end within a millisecond of their time. Off by default
    /// because the coarse clock is real time: it does not follow tokio's
    /// paused clock (`tokio::time::pause`/`advance`), so tests on paused
    /// time must leave it off.
    pub fn coarse_clock(mut self, on: bool) -> Self {
        self.config.coarse_clock = on;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<AdaptiveLimitConfig, ConfigError> {
        let c = self.config;
        if c.min_limit == 0 {
            return Err(ConfigError::new("min_limit", "must be at least 1"));
        }
        if c.max_limit < c.min_limit {
            return Err(ConfigError::new(
                "max_limit",
                format!("must be at least min_limit ({})", c.min_limit),
            ));
        }
        if !(c.min_limit..=c.max_limit).contains(&c.initial_limit) {
            return Err(ConfigError::new(
                "initial_limit",
                format!(
                    "must be in [min_limit, max_limit] = [{}, {}]",
                    c.min_limit, c.max_limit
                ),
            ));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&c.window) {
            return Err(ConfigError::new(
                "window",
                format!("must be in [10ms, 10s], got {:?}", c.window),
            ));
        }
        if !(c.smoothing > 0.0 && c.smoothing <= 1.0) {
            return Err(ConfigError::new("smoothing", "must be in (0, 1]"));
        }
        if !(1.0..=10.0).contains(&c.tolerance) {
            return Err(ConfigError::new("tolerance", "must be in [1, 10]"));
        }
        if c.min_rtt_interval < Duration::from_secs(1) {
            return Err(ConfigError::new("min_rtt_interval", "must be at least 1s"));
        }
        if c.probe_limit == 0 {
            return Err(ConfigError::new("probe_limit", "must be at least 1"));
        }
        if !(0.5..1.0).contains(&c.backoff_ratio) {
            return Err(ConfigError::new("backoff_ratio", "must be in [0.5, 1)"));
        }
        Ok(c)
    }
}
