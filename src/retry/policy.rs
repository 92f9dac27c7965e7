//! `RetryPolicy` (the settings) and `Attempts` (the `tower::retry::Policy`
//! that applies them to one request).

use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::{Instant, Sleep};

use super::budget::Handle;
use super::budget_config::{RawBudget, RetryBudgetConfig};
use super::decide::{RetryOn, Verdict};
use super::replay::Replay;
use crate::backoff::{Backoff, Jitter, RawBackoff};
use crate::{BoxError, ConfigError};

/// How a call is retried: attempts, backoff, `Retry-After`, the attempt
/// timeout, the budget. (The deadline of the whole call is a
/// [`DeadlineLayer`](crate::deadline::DeadlineLayer)'s.) Built with [`RetryPolicy::builder`] or deserialized; invalid
/// values fail with a [`ConfigError`] naming the field.
///
/// ```
/// use meshguard::retry::RetryPolicy;
///
/// let policy: RetryPolicy = toml::from_str(r#"
///     max_attempts = 4
///     attempt_timeout = "500ms"
///     backoff = { kind = "exponential", base = "25ms", max = "250ms", jitter = "full" }
///     budget = { ratio = 0.2, min_per_second = 10, ttl = "10s" }
/// "#).unwrap();
/// assert_eq!(policy.max_attempts(), 4);
///
/// let err = RetryPolicy::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_attempts");
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawPolicy")]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) retry_non_idempotent: bool,
    pub(crate) max_retry_after: Duration,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) budget: RetryBudgetConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    backoff: Option<RawBackoff>,
    #[serde(default)]
    retry_non_idempotent: bool,
    #[serde(default, with = "humantime_serde")]
    max_retry_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    attempt_timeout: Option<Duration>,
    #[serde(default)]
    budget: Option<RawBudget>,
}

impl TryFrom<RawPolicy> for RetryPolicy {
    type Error = ConfigError;
    fn try_from(raw: RawPolicy) -> Result<Self, ConfigError> {
        let mut b = RetryPolicy::builder().retry_non_idempotent(raw.retry_non_idempotent);
        if let Some(n) = raw.max_attempts {
            b = b.max_attempts(n);
        }
        if let Some(backoff) = raw.backoff {
            b = b.backoff(Backoff::try_from(backoff).map_err(|e| e.within("backoff"))?);
        }
        if let Some(d) = raw.max_retry_after {
            b = b.max_retry_after(d);
        }
        if let Some(d) = raw.attempt_timeout {
            b = b.attempt_timeout(d);
        }
        if let Some(budget) = raw.budget {
            b = b.budget(RetryBudgetConfig::try_from(budget).map_err(|e| e.within("budget"))?);
        }
        b.build()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl RetryPolicy {
    /// A builder starting from the defaults: 3 attempts, exponential backoff
    /// from 25 ms capped at 250 ms with full jitter (Envoy's), idempotent
    /// requests only, `Retry-After` honoured up to 30 s, no attempt timeout,
    /// Finagle's budget (20% + 10/s over 10 s).
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: RetryPolicy {
                max_attempts: 3,
                backoff: Backoff::exponential(
                    Duration::from_millis(25),
                    Duration::from_millis(250),
                )
                .expect("valid")
                .with_jitter(Jitter::Full),
                retry_non_idempotent: false,
                max_retry_after: Duration::from_secs(30),
                attempt_timeout: None,
                budget: RetryBudgetConfig::default(),
            },
        }
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay before each retry.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Whether non-idempotent requests (POST, PATCH) are retried.
    pub fn retries_non_idempotent(&self) -> bool {
        self.retry_non_idempotent
    }

    /// The longest `Retry-After` honoured.
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// The timeout of each attempt, if any.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// The budget's settings.
    pub fn budget(&self) -> &RetryBudgetConfig {
        &self.budget
    }
}

/// Builds a [`RetryPolicy`]; see [`RetryPolicy::builder`] for the defaults.
#[derive(Debug, Clone)]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// Attempts in all, the first included: 1 to 100.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.policy.max_attempts = n;
        self
    }

    /// The delay before each retry.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = backoff;
        self
    }

    /// Retries POST, PATCH and other non-idempotent requests too. Only for
    /// upstreams that deduplicate (an idempotency key), or a retry may do
    /// the work twice.
    pub fn retry_non_idempotent(mut self, allow: bool) -> Self {
        self.policy.retry_non_idempotent = allow;
        self
    }

    /// The longest `Retry-After` honoured: longer ones (and ones past the
    /// deadline) return the response without retrying. At most 1 h.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.policy.max_retry_after = d;
        self
    }

    /// A timeout for each attempt; a timed-out attempt is retried.
    pub fn attempt_timeout(mut self, d: Duration) -> Self {
        self.policy.attempt_timeout = Some(d);
        self
    }

    /// The budget's settings (used when the layer makes its own budget).
    pub fn budget(mut self, budget: RetryBudgetConfig) -> Self {
        self.policy.budget = budget;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        let p = self.policy;
        if !(1..=100).contains(&p.max_attempts) {
            return Err(ConfigError::new(
                "max_attempts",
                format!("must be in [1, 100], got {}", p.max_attempts),
            ));
        }
        if p.max_retry_after > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "max_retry_after",
                format!("must be at most 1h, got {:?}", p.max_retry_after),
            ));
        }
        if p.attempt_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "attempt_timeout",
                "must be greater than zero",
            ));
        }
        Ok(p)
    }
}

/// The `tower::retry::Policy` the retry layer runs: one copy per request,
/// counting that request's attempts. Small and `Clone` without an `Arc`
/// (tower clones it for every request and moves it into every response
/// future, so its size is paid on every call). Made by [`RetryLayer`](super::RetryLayer).
#[derive(Debug, Clone)]
pub(crate) struct Attempts<C> {
    settings: &'static Settings,
    budget: Handle,
    retry_on: C,
    attempt: u32,
    /// The last backoff delay, in nanoseconds; 0 before the first retry.
    previous: u64,
}

/// The parts of [`RetryPolicy`] a request needs.
#[derive(Debug, PartialEq)]
pub(crate) struct Settings {
    service: Box<str>,
    max_attempts: u32,
    backoff: Backoff,
    retry_non_idempotent: bool,
    max_retry_after: Duration,
}

impl Settings {
    /// The shared copy of what `policy` retrying `service` needs: made
    /// when a layer is configured, not per service it wraps (interning
    /// clones the backoff and searches the table, several hundred
    /// instructions).
    pub(crate) fn of(policy: &RetryPolicy, service: &str) -> &'static Settings {
        crate::intern::intern(Settings {
            service: service.into(),
            max_attempts: policy.max_attempts,
            backoff: policy.backoff.clone(),
            retry_non_idempotent: policy.retry_non_idempotent,
            max_retry_after: policy.max_retry_after,
        })
    }
}

impl<C> Attempts<C> {
    pub(crate) fn new(settings: &'static Settings, budget: Handle, retry_on: C) -> Self {
        Attempts {
            settings,
            budget,
            retry_on,
            attempt: 0,
            previous: 0,
        }
    }
}

impl<Req, Res, C> tower::retry::Policy<Req, Res, BoxError> for Attempts<C>
where
    Req: Replay,
    C: RetryOn<Res>,
{
    // Boxed: tower keeps the policy's future inline in every response future,
    // and an inline `Sleep` (about 100 bytes) made each call's future big
    // enough that moving it cost more than the rest of the call. The box is
    // allocated only when a retry is planned.
    type Future = Pin<Box<Sleep>>;

    #[inline]
    fn retry(
        &mut self,
        req: &mut Req,
        result: &mut Result<Res, BoxError>,
    ) -> Option<Pin<Box<Sleep>>> {
        match self.retry_on.verdict(result) {
            Verdict::Done => None,
            Verdict::Retry { reason } => self.plan(req, reason, None),
            Verdict::RetryAfter { reason, after } => self.plan(req, reason, Some(after)),
        }
    }

    #[inline(always)]
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        if self.attempt == 0 {
            // The first attempt of a request: it earns part of a retry.
            self.budget.deposit();
        }
        match req.replay(self.settings.retry_non_idempotent) {
            Ok(copy) => Some(copy),
            Err(why) => {
                if self.attempt == 0 {
                    tracing::debug!(reason = %why, "request will not be retried");
                }
                None
            }
        }
    }
}

impl<C> Attempts<C> {
    /// Decides whether and when the next attempt goes; the failure path.
    #[cold]
    fn plan<Req: Replay>(
        &mut self,
        req: &Req,
        reason: &'static str,
        asked: Option<Duration>,
    ) -> Option<Pin<Box<Sleep>>> {
        let attempt = self.attempt + 1;
        if attempt >= self.settings.max_attempts {
            tracing::debug!(
                attempts = attempt,
                reason,
                "not retrying: attempts exhausted"
            );
            return None;
        }
        let now = Instant::now();
        let deadline = req.deadline().map(|d| d.instant());
        let delay = match asked {
            Some(after) => {
                if after > self.settings.max_retry_after {
                    tracing::debug!(retry_after = ?after, reason, "not retrying: Retry-After beyond the maximum");
                    return None;
                }
                after
            }
            None => {
                let mut rng = fastrand::Rng::new();
                let previous = (self.previous != 0).then(|| Duration::from_nanos(self.previous));
                self.settings
                    .backoff
                    .delay(self.attempt, previous, &mut rng)
            }
        };
        if let Some(deadline) = deadline {
            if now + delay >= deadline {
                tracing::debug!(delay = ?delay, reason, "not retrying: the deadline would pass first");
                return None;
            }
        }
        let service: &'static str = &self.settings.service;
        if !self.budget.withdraw() {
            tracing::debug!(service, reason, "not retrying: retry budget exhausted");
            super::metrics::budget_exhausted(service);
            return None;
        }
        super::metrics::retried(service, reason);
        self.attempt = attempt;
        self.previous = (delay.as_nanos() as u64).max(1);
        tracing::info!(
            service,
            attempt = attempt + 1,
            reason,
            delay = ?delay,
            retry_after = asked.is_some(),
            "retrying"
        );
        Some(Box::pin(tokio::time::sleep_until(now + delay)))
    }
}
