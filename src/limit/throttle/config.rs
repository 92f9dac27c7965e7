//! [`ThrottleConfig`]: client-side adaptive throttling's settings.

use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// Client-side adaptive throttling's settings (Google's SRE book, chapter
/// "Handling Overload"): a call is refused locally with probability
/// `max(0, (requests - k × accepts) / (requests + 1))` over the last
/// `window`.
///
/// ```
/// use std::time::Duration;
/// use meshguard::limit::ThrottleConfig;
///
/// let config: ThrottleConfig = toml::from_str(r#"
///     k = 1.5
///     window = "30s"
///     coarse_clock = true
/// "#).unwrap();
/// assert_eq!(config.k(), 1.5);
/// assert_eq!(config.window(), Duration::from_secs(30));
/// assert!(config.coarse_clock());
///
/// let err = ThrottleConfig::builder().k(0.5).build().unwrap_err();
/// assert_eq!(err.field(), "k");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RawThrottle")]
pub struct ThrottleConfig {
    k: f64,
    window: Duration,
    coarse_clock: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    #[serde(default)]
    k: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    window: Option<Duration>,
    #[serde(default)]
    coarse_clock: bool,
}

impl TryFrom<RawThrottle> for ThrottleConfig {
    type Error = ConfigError;
    fn try_from(raw: RawThrottle) -> Result<Self, ConfigError> {
        let mut b = ThrottleConfig::builder();
        if let Some(k) = raw.k {
            b = b.k(k);
        }
        if let Some(w) = raw.window {
            b = b.window(w);
        }
        b.coarse_clock(raw.coarse_clock).build()
    }
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl ThrottleConfig {
    /// A builder starting from the SRE book's defaults: `k` = 2 over the
    /// last 2 minutes.
    pub fn builder() -> ThrottleConfigBuilder {
        ThrottleConfigBuilder {
            config: ThrottleConfig {
                k: 2.0,
                window: Duration::from_secs(120),
                coarse_clock: false,
            },
        }
    }

    /// How many requests per accepted one the service is sent before
    /// refusing locally.
    pub fn k(&self) -> f64 {
        self.k
    }

    /// How far back requests and accepts are counted.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Whether finished calls are counted by the coarse clock; see
    /// [`ThrottleConfigBuilder::coarse_clock`].
    pub fn coarse_clock(&self) -> bool {
        self.coarse_clock
    }
}

/// Builds a [`ThrottleConfig`]; see [`ThrottleConfig::builder`] for the
/// defaults.
#[derive(Debug, Clone)]
pub struct ThrottleConfigBuilder {
    config: ThrottleConfig,
}

impl ThrottleConfigBuilder {
    /// Requests sent per accepted one before refusing locally, 1 to 100
    /// (default 2: lower is more aggressive).
    pub fn k(mut self, k: f64) -> Self {
        self.config.k = k;
        self
    }

    /// How far back calls are counted, 1 s to 1 h (default 2 min), in ten
    /// buckets of a tenth each.
    pub fn window(mut self, window: Duration) -> Self {
        self.config.window = window;
        self
    }

    /// Calls are counted in their window's buckets by a coarse clock
    /// instead of tokio's: a process-wide time kept by a background thread,
    /// updated every millisecond, read with one atomic load instead of a
    /// clock read (22-31 ns on the development machine, once a call). A
    /// bucket is a tenth of the window (at least 100 ms), so a millisecond
    /// off changes nothing that matters. Off by default because the coarse
    /// clock is real time: it does not follow tokio's paused clock
    /// (`tokio::time::pause`/`advance`), so tests on paused time must
    /// leave it off.
    pub fn coarse_clock(mut self, on: bool) -> Self {
        self.config.coarse_clock = on;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<ThrottleConfig, ConfigError> {
        let c = self.config;
        if !(1.0..=100.0).contains(&c.k) {
            return Err(ConfigError::new(
                "k",
                format!("must be in [1, 100], got {}", c.k),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&c.window) {
            return Err(ConfigError::new(
                "window",
                format!("must be in [1s, 1h], got {:?}", c.window),
            ));
        }
        Ok(c)
    }
}
