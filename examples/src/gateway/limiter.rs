//! The gateway's rate limit per client: GCRA (the token bucket as one
//! timestamp per key), in a map that holds at most a number of clients.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How many clients the limiter tracks by default
/// (`RATE_LIMIT_MAX_CLIENTS`).
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// A rate limit per key: `per_second` requests a second, in bursts of up
/// to `per_second`.
///
/// A key is remembered only while its allowance is not full again (at
/// most a second after its last request); such keys are pruned when the
/// map reaches `max_keys`. If it is still full then (more than `max_keys`
/// clients active within a second), a *new* client is refused until room
/// frees up, while the clients already tracked keep their allowance.
/// Memory is bounded by `max_keys` whatever the callers do.
#[derive(Debug)]
pub struct KeyedLimiter {
    /// The time one request costs (GCRA's emission interval).
    cost: Duration,
    /// How far ahead of now a key's theoretical arrival time may run (the
    /// burst).
    burst: Duration,
    max_keys: usize,
    keys: Mutex<HashMap<String, Instant>>,
}

/// Why a request was refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The client spent its allowance.
    Rate {
        /// When one more request is allowed.
        retry_after: Duration,
    },
    /// The limiter tracks `max_keys` active clients; this one is new.
    Full {
        /// When the first tracked client's entry expires.
        retry_after: Duration,
    },
}

impl Limited {
    /// When to come back.
    pub fn retry_after(&self) -> Duration {
        match *self {
            Limited::Rate { retry_after } | Limited::Full { retry_after } => retry_after,
        }
    }
}

impl KeyedLimiter {
    /// `per_second` requests a second per key (at least 1), at most
    /// `max_keys` keys (at least 1).
    pub fn new(per_second: u32, max_keys: usize) -> KeyedLimiter {
        let per_second = per_second.max(1);
        let cost = Duration::from_secs(1) / per_second;
        KeyedLimiter {
            cost,
            burst: cost * (per_second - 1),
            max_keys: max_keys.max(1),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request from `key`, or says why not.
    pub fn check(&self, key: &str) -> Result<(), Limited> {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap();
        if let Some(tat) = keys.get_mut(key) {
            let start = (*tat).max(now);
            if start - now > self.burst {
                return Err(Limited::Rate {
                    retry_after: start - now - self.burst,
                });
            }
            *tat = start + self.cost;
            return Ok(());
        }
        if keys.len() >= self.max_keys {
            keys.retain(|_, tat| *tat > now);
            if keys.len() >= self.max_keys {
                let first = keys.values().min().copied().unwrap_or(now);
                return Err(Limited::Full {
                    retry_after: first.saturating_duration_since(now),
                });
            }
        }
        keys.insert(key.to_string(), now + self.cost);
        Ok(())
    }

    /// How many keys it holds now.
    pub fn len(&self) -> usize {
        self.keys.lock().unwrap().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys it holds.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }
}
