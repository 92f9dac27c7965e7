//! Delays that grow: one backoff shared by the breaker's open period, retries
//! and outlier ejection.
//!
//! A [`Backoff`] is a constant or exponential schedule with a cap and one of
//! five kinds of [`Jitter`]. Jitter matters: without it every client that saw
//! the same failure retries (or probes) at the same instant, and the
//! recovering service meets a synchronized wave. The kinds are the ones
//! compared in Marc Brooker's "Exponential Backoff And Jitter" (AWS
//! Architecture Blog, 2015); full jitter is what Envoy and gRPC use for
//! retries.
//!
//! ```
//! use std::time::Duration;
//! use meshguard::backoff::{Backoff, Jitter};
//!
//! let backoff = Backoff::exponential(Duration::from_millis(25), Duration::from_millis(250))
//!     .unwrap()
//!     .with_jitter(Jitter::None);
//! let delays: Vec<_> = backoff.delays(0).take(5).collect();
//! assert_eq!(delays, [25, 50, 100, 200, 250].map(Duration::from_millis));
//! ```
//!
//! In configuration files a backoff reads
//! `{ kind = "exponential", base = "25ms", max = "250ms", jitter = "full" }`;
//! `multiplier` defaults to 2 and `jitter` to `none`.

use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// How a delay is randomised around the schedule's value `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Exactly `d`. Deterministic; use it in tests.
    #[default]
    None,
    /// Uniform in `[0, d]`: the least synchronized, the lowest mean delay.
    Full,
    /// Uniform in `[d/2, d]`: never shorter than half the schedule.
    Equal,
    /// Uniform in `[base, 3 × previous delay]`, capped: each delay depends on
    /// the last one rather than on the attempt number.
    Decorrelated,
    /// Uniform in `[d, 1.5 d]`, capped: never shorter than the schedule, so
    /// a growing schedule really grows (Linkerd's failure accrual, jitter
    /// 0.5). The default for breakers' open periods: a probe never comes
    /// sooner than the schedule says, and at most half a step later.
    Upward,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Constant,
    Exponential,
}

/// A validated backoff schedule: constant or exponential, capped, jittered.
///
/// Built with [`Backoff::constant`] or [`Backoff::exponential`], or
/// deserialized (durations as `"250ms"`, `"30s"`); either way invalid values
/// are rejected with a [`ConfigError`] naming the field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawBackoff")]
pub struct Backoff {
    kind: Kind,
    base: Duration,
    max: Duration,
    multiplier: f64,
    jitter: Jitter,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackoff {
    kind: Kind,
    #[serde(with = "humantime_serde")]
    base: Duration,
    #[serde(default, with = "humantime_serde")]
    max: Option<Duration>,
    #[serde(default)]
    multiplier: Option<f64>,
    #[serde(default)]
    jitter: Jitter,
}

impl TryFrom<RawBackoff> for Backoff {
    type Error = ConfigError;

    fn try_from(raw: RawBackoff) -> Result<Self, ConfigError> {
        let mut backoff = match raw.kind {
            Kind::Constant => {
                if raw.max.is_some() {
                    return Err(ConfigError::new(
                        "max",
                        "a constant backoff has no cap; remove `max` or use kind = \"exponential\"",
                    ));
                }
                Backoff::constant(raw.base)
            }
            Kind::Exponential => {
                let max = raw.max.ok_or_else(|| {
                    ConfigError::new("max", "an exponential backoff needs a cap, e.g. \"30s\"")
                })?;
                Backoff::exponential(raw.base, max)?
            }
        };
        if let Some(m) = raw.multiplier {
            backoff = backoff.with_multiplier(m)?;
        }
        Ok(backoff.with_jitter(raw.jitter))
    }
}

impl Backoff {
    /// The same delay every time (before jitter).
    pub fn constant(delay: Duration) -> Backoff {
        Backoff {
            kind: Kind::Constant,
            base: delay,
            max: delay,
            multiplier: 1.0,
            jitter: Jitter::None,
        }
    }

    /// `base × 2^attempt`, never above `max`.
    ///
    /// Fails when `base` is zero or `max` is below `base`.
    pub fn exponential(base: Duration, max: Duration) -> Result<Backoff, ConfigError> {
        if base.is_zero() {
            return Err(ConfigError::new("base", "must be greater than 0, got 0s"));
        }
        if max < base {
            return Err(ConfigError::new(
                "max",
                format!("must be at least `base` ({base:?}), got {max:?}"),
            ));
        }
        Ok(Backoff {
            kind: Kind::Exponential,
            base,
            max,
            multiplier: 2.0,
            jitter: Jitter::None,
        })
    }

    /// Sets the growth factor of an exponential backoff (default 2).
    ///
    /// Fails unless `multiplier` is finite and in `[1, 100]`.
    pub fn with_multiplier(mut self, multiplier: f64) -> Result<Backoff, ConfigError> {
        if !(1.0..=100.0).contains(&multiplier) {
            return Err(ConfigError::new(
                "multiplier",
                format!("must be in [1, 100], got {multiplier}"),
            ));
        }
        if self.kind == Kind::Constant && multiplier != 1.0 {
            return Err(ConfigError::new(
                "multiplier",
                "a constant backoff does not grow; use an exponential one",
            ));
        }
        self.multiplier = multiplier;
        Ok(self)
    }

    /// Sets the jitter (default [`Jitter::None`]).
    pub fn with_jitter(mut self, jitter: Jitter) -> Backoff {
        self.jitter = jitter;
        self
    }

    /// The first delay, before jitter.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The cap: no delay is longer.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The jitter kind.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The schedule's value for `attempt` (0-based) before jitter.
    pub fn nominal(&self, attempt: u32) -> Duration {
        match self.kind {
            Kind::Constant => self.base,
            Kind::Exponential => {
                let factor = self.multiplier.powi(attempt.min(i32::MAX as u32) as i32);
                let nanos = self.base.as_nanos() as f64 * factor;
                if !nanos.is_finite() || nanos >= self.max.as_nanos() as f64 {
                    self.max
                } else {
                    Duration::from_nanos(nanos as u64)
                }
            }
        }
    }

    /// The delay for `attempt` (0-based), jittered with `rng`.
    ///
    /// `previous` is the delay returned for the attempt before (only
    /// [`Jitter::Decorrelated`] uses it; `None` on the first attempt).
    pub fn delay(
        &self,
        attempt: u32,
        previous: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let d = self.nominal(attempt);
        let uniform = |rng: &mut fastrand::Rng, lo: Duration, hi: Duration| {
            if hi <= lo {
                lo
            } else {
                let (lo, hi) = (lo.as_nanos() as u64, hi.as_nanos() as u64);
                Duration::from_nanos(rng.u64(lo..=hi))
            }
        };
        match self.jitter {
            Jitter::None => d,
            Jitter::Full => uniform(rng, Duration::ZERO, d),
            Jitter::Equal => uniform(rng, d / 2, d),
            Jitter::Upward => uniform(rng, d, (d + d / 2).min(self.max).max(d)),
            Jitter::Decorrelated => {
                let prev = previous.unwrap_or(self.base);
                let hi = prev.saturating_mul(3).min(self.max);
                uniform(rng, self.base.min(hi), hi)
            }
        }
    }

    /// The delays for attempts 0, 1, 2, … as an endless iterator. The same
    /// `seed` gives the same sequence.
    pub fn delays(&self, seed: u64) -> Delays {
        Delays {
            backoff: self.clone(),
            attempt: 0,
            previous: None,
            rng: fastrand::Rng::with_seed(seed),
        }
    }
}

/// The delays of a [`Backoff`], one per attempt; see [`Backoff::delays`].
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: Backoff,
    attempt: u32,
    previous: Option<Duration>,
    rng: fastrand::Rng,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self
            .backoff
            .delay(self.attempt, self.previous, &mut self.rng);
        self.attempt = self.attempt.saturating_add(1);
        self.previous = Some(d);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn exponential_without_jitter_doubles_up_to_the_cap() {
        let b = Backoff::exponential(MS(100), MS(1000)).unwrap();
        let got: Vec<_> = b.delays(1).take(6).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000].map(MS));
    }

    #[test]
    fn multiplier_changes_growth() {
        let b = Backoff::exponential(MS(10), MS(10_000))
            .unwrap()
            .with_multiplier(3.0)
            .unwrap();
        let got: Vec<_> = b.delays(1).take(4).collect();
        assert_eq!(got, [10, 30, 90, 270].map(MS));
    }

    #[test]
    fn huge_attempt_numbers_stay_at_the_cap() {
        let b = Backoff::exponential(MS(1), Duration::from_secs(60)).unwrap();
        assert_eq!(b.nominal(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn full_jitter_stays_within_zero_and_nominal() {
        let b = Backoff::exponential(MS(100), MS(1000))
            .unwrap()
            .with_jitter(Jitter::Full);
        for (i, d) in b.delays(7).take(200).enumerate() {
            assert!(d <= b.nominal(i as u32), "attempt {i}: {d:?}");
        }
    }

    #[test]
    fn equal_jitter_stays_within_half_and_nominal() {
        let b = Backoff::exponential(MS(100), MS(1000))
            .unwrap()
            .with_jitter(Jitter::Equal);
        for (i, d) in b.delays(7).take(200).enumerate() {
            let n = b.nominal(i as u32);
            assert!(d >= n / 2 && d <= n, "attempt {i}: {d:?}");
        }
    }

    #[test]
    fn upward_jitter_stays_within_nominal_and_one_and_a_half_times_it_capped() {
        let b = Backoff::exponential(MS(100), MS(1000))
            .unwrap()
            .with_jitter(Jitter::Upward);
        let delays: Vec<_> = b.delays(7).take(200).collect();
        for (i, d) in delays.iter().enumerate() {
            let n = b.nominal(i as u32);
            let hi = (n + n / 2).min(MS(1000)).max(n);
            assert!(*d >= n && *d <= hi, "attempt {i}: {d:?}");
        }
        // Past the cap, the cap exactly.
        assert!(delays[4..].iter().all(|d| *d == MS(1000)));
        // Jittered: the first delays are not all the nominal ones.
        assert_ne!(delays[..4], [100, 200, 400, 800].map(MS));
    }

    #[test]
    fn decorrelated_jitter_stays_within_base_and_three_times_previous() {
        let b = Backoff::exponential(MS(10), MS(5000))
            .unwrap()
            .with_jitter(Jitter::Decorrelated);
        let mut prev = MS(10);
        for d in b.delays(3).take(200) {
            assert!(
                d >= MS(10) && d <= (prev * 3).min(MS(5000)),
                "{d:?} after {prev:?}"
            );
            prev = d;
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let b = Backoff::exponential(MS(10), MS(5000))
            .unwrap()
            .with_jitter(Jitter::Full);
        let a: Vec<_> = b.delays(42).take(20).collect();
        let c: Vec<_> = b.delays(42).take(20).collect();
        let d: Vec<_> = b.delays(43).take(20).collect();
        assert_eq!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn constant_never_grows() {
        let b = Backoff::constant(MS(30));
        assert_eq!(
            b.delays(0).take(3).collect::<Vec<_>>(),
            [30, 30, 30].map(MS)
        );
    }

    #[test]
    fn invalid_values_name_their_field() {
        assert_eq!(
            Backoff::exponential(MS(0), MS(1)).unwrap_err().field(),
            "base"
        );
        assert_eq!(
            Backoff::exponential(MS(5), MS(1)).unwrap_err().field(),
            "max"
        );
        let err = Backoff::exponential(MS(1), MS(5))
            .unwrap()
            .with_multiplier(0.5)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid `multiplier`: must be in [1, 100], got 0.5"
        );
    }

    #[test]
    fn deserializes_human_durations() {
        let b: Backoff = serde_json::from_str(
            r#"{"kind":"exponential","base":"25ms","max":"250ms","jitter":"full"}"#,
        )
        .unwrap();
        assert_eq!(
            b,
            Backoff::exponential(MS(25), MS(250))
                .unwrap()
                .with_jitter(Jitter::Full)
        );
        let err =
            serde_json::from_str::<Backoff>(r#"{"kind":"exponential","base":"25ms"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid `max`"), "{err}");
    }
}
