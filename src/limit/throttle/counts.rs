//! The throttle's sliding window: requests and accepts in ten buckets, and
//! the rejection probability they give, cached.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::ThrottleConfig;
use crate::clock;

const BUCKETS: usize = 10;

/// Requests (low 32 bits) and accepts (high 32 bits) of one bucket, added
/// with one `fetch_add`.
#[derive(Debug, Default)]
struct Bucket {
    /// The bucket's index since the clock's epoch, `u64::MAX` unused.
    epoch: AtomicU64,
    counts: AtomicU64,
}

const ACCEPT: u64 = 1 << 32;
const REQUEST: u64 = 1;

/// Requests and accepts over the window.
///
/// The settings are atomics, so that a new owner of reused counts (the
/// throttle keeps them in the crate's recycler) can set them.
#[derive(Debug)]
pub(crate) struct Counts {
    buckets: [Bucket; BUCKETS],
    bucket_nanos: AtomicU64,
    /// `k`, as `f64` bits.
    k: AtomicU64,
    /// Read the coarse clock (`ThrottleConfig::coarse_clock`).
    coarse: AtomicBool,
    /// The rejection probability (`f64` bits) as of the last change that
    /// could raise or lower it.
    probability: AtomicU64,
}

impl Counts {
    pub(crate) fn new(config: &ThrottleConfig) -> Self {
        let buckets = std::array::from_fn(|_| Bucket {
            epoch: AtomicU64::new(u64::MAX),
            counts: AtomicU64::new(0),
        });
        let counts = Counts {
            buckets,
            bucket_nanos: AtomicU64::new(1),
            k: AtomicU64::new(0),
            coarse: AtomicBool::new(false),
            probability: AtomicU64::new(0f64.to_bits()),
        };
        counts.reset(config);
        counts
    }

    /// Empties the window and takes `config`'s settings, as new counts.
    pub(crate) fn reset(&self, config: &ThrottleConfig) {
        for b in &self.buckets {
            b.epoch.store(u64::MAX, Ordering::Relaxed);
            b.counts.store(0, Ordering::Relaxed);
        }
        let bucket_nanos = (config.window().as_nanos() as u64 / BUCKETS as u64).max(1);
        self.bucket_nanos.store(bucket_nanos, Ordering::Relaxed);
        self.k.store(config.k().to_bits(), Ordering::Relaxed);
        self.coarse.store(config.coarse_clock(), Ordering::Relaxed);
        self.probability.store(0f64.to_bits(), Ordering::Relaxed);
    }

    /// The rejection probability last computed: 0 while the service
    /// accepts (the fast path reads only this).
    #[inline]
    pub(crate) fn cached(&self) -> f64 {
        f64::from_bits(self.probability.load(Ordering::Relaxed))
    }

    /// The probability now, buckets past the window dropped.
    pub(crate) fn current(&self) -> f64 {
        self.recompute(self.epoch(self.now()))
    }

    /// Counts a call that ended, accepted or not.
    #[inline]
    pub(crate) fn record(&self, accepted: bool) {
        let epoch = self.epoch(self.now());
        let rotated = self.add(epoch, if accepted { REQUEST | ACCEPT } else { REQUEST });
        // An accept can only lower a probability that is already zero.
        if rotated || !accepted || self.cached() > 0.0 {
            self.recompute(epoch);
        }
    }

    /// Counts a call refused locally: a request without an accept.
    pub(crate) fn refused(&self) {
        let epoch = self.epoch(self.now());
        self.add(epoch, REQUEST);
        self.recompute(epoch);
    }

    /// Now from the coarse clock (one atomic load) or tokio's (a clock
    /// read, the larger part of a counted call's cost).
    #[inline]
    fn now(&self) -> u64 {
        if self.coarse.load(Ordering::Relaxed) {
            clock::coarse_now()
        } else {
            clock::now()
        }
    }

    #[inline]
    fn epoch(&self, now: u64) -> u64 {
        now / self.bucket_nanos.load(Ordering::Relaxed)
    }

    /// Adds to the bucket of `epoch`, emptying it first if it held an
    /// older one; whether it did.
    #[inline]
    fn add(&self, epoch: u64, n: u64) -> bool {
        let bucket = &self.buckets[(epoch % BUCKETS as u64) as usize];
        let seen = bucket.epoch.load(Ordering::Acquire);
        let rotated = seen != epoch
            && bucket
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if rotated {
            // Calls of the new epoch counted between the exchange and this
            // store are lost: a few calls, once per bucket.
            bucket.counts.store(0, Ordering::Release);
        }
        bucket.counts.fetch_add(n, Ordering::AcqRel);
        rotated
    }

    #[cold]
    fn recompute(&self, epoch: u64) -> f64 {
        let (mut requests, mut accepts) = (0u64, 0u64);
        for b in &self.buckets {
            let e = b.epoch.load(Ordering::Acquire);
            if e != u64::MAX && e <= epoch && epoch - e < BUCKETS as u64 {
                let c = b.counts.load(Ordering::Acquire);
                requests += c & (ACCEPT - 1);
                accepts += c >> 32;
            }
        }
        let k = f64::from_bits(self.k.load(Ordering::Relaxed));
        let p = ((requests as f64 - k * accepts as f64) / (requests as f64 + 1.0)).max(0.0);
        self.probability.store(p.to_bits(), Ordering::Relaxed);
        p
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn counts() -> Counts {
        Counts::new(&ThrottleConfig::default())
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_accepts_everything_is_never_throttled() {
        let c = counts();
        for _ in 0..100 {
            c.record(true);
        }
        assert_eq!(c.cached(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_probability_is_the_sre_books_formula() {
        let c = counts();
        for _ in 0..10 {
            c.record(true);
        }
        for _ in 0..89 {
            c.record(false);
        }
        // (99 - 2 × 10) / (99 + 1)
        assert_eq!(c.cached(), 0.79);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_older_than_the_window_no_longer_count() {
        let c = counts();
        for _ in 0..50 {
            c.record(false);
        }
        assert!(c.cached() > 0.9);
        tokio::time::advance(Duration::from_secs(121)).await;
        assert_eq!(c.current(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn accepts_bring_the_probability_back_down() {
        let c = counts();
        for _ in 0..9 {
            c.record(false);
        }
        assert_eq!(c.cached(), 0.9);
        for _ in 0..9 {
            c.record(true);
        }
        // (18 - 2 × 9) / 19
        assert_eq!(c.cached(), 0.0);
    }
}
