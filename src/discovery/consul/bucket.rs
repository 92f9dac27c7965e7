//! The loop's rate limit, as Consul's docs advise for blocking queries.

use std::time::Duration;

use tokio::time::Instant;

/// The loop's rate limit: `burst` queries at once, then one per `every`.
pub(super) struct TokenBucket {
    burst: f64,
    tokens: f64,
    every: Duration,
    at: Instant,
}

impl TokenBucket {
    pub(super) fn new(burst: u32, every: Duration) -> Self {
        TokenBucket {
            burst: burst as f64,
            tokens: burst as f64,
            every,
            at: Instant::now(),
        }
    }

    pub(super) async fn take(&mut self) {
        let now = Instant::now();
        let refill = now.saturating_duration_since(self.at).as_secs_f64()
            / self.every.as_secs_f64().max(1e-9);
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens < 1.0 {
            let wait = self.every.mul_f64(1.0 - self.tokens);
            tokio::time::sleep(wait).await;
            self.tokens = 1.0;
            self.at = Instant::now();
        }
        self.tokens -= 1.0;
    }
}
