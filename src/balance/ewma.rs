//! An endpoint's latency estimate: [`Rtt`], tower's PeakEwma algorithm
//! (Finagle's and linkerd's) kept by the balancer itself, so that it can
//! tell an estimate learnt from responses from the first guess, and read
//! it at a time the pick has already taken.
//!
//! The algorithm is tower's `load::PeakEwma`, step for step: a sample above
//! the estimate replaces it (the peak); one below it is averaged in with a
//! weight that grows with the time since the last update (over `decay`);
//! and every reading decays the estimate towards zero by the time since the
//! last update, so an endpoint that gets no traffic looks cheaper as time
//! passes and is tried again. The differences: times are the crate's
//! nanosecond clock (`crate::clock`), a reading takes its `now` from the
//! caller (one clock read per pick instead of one per endpoint read), a
//! sample's receive time is its update time (one clock read instead of
//! two), and the estimate knows whether a response ever set it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock;

/// An endpoint's round-trip-time estimate, shared with the [`Handle`]s of
/// its requests in flight (so `Arc::strong_count - 1` is how many).
#[derive(Debug)]
pub(crate) struct Rtt {
    decay_ns: f64,
    // Locked as tower's is: once per reading, once per response.
    estimate: Mutex<Estimate>,
}

#[derive(Debug, Clone, Copy)]
struct Estimate {
    rtt_ns: f64,
    /// When it was last updated (biased nanoseconds, `crate::clock`).
    update_at: u64,
    /// Whether a response (or a request given up) ever updated it: until
    /// then it is `default_rtt`, a guess.
    sampled: bool,
}

/// The estimate at a given time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    /// Nanoseconds.
    pub(crate) rtt_ns: f64,
    /// Learnt from responses, not the first guess.
    pub(crate) sampled: bool,
}

impl Rtt {
    /// `default_rtt` until the first response, decaying over `decay_ns`.
    pub(crate) fn new(default_rtt: Duration, decay_ns: f64) -> Arc<Rtt> {
        Arc::new(Rtt {
            decay_ns,
            estimate: Mutex::new(Estimate {
                rtt_ns: default_rtt.as_nanos() as f64,
                update_at: clock::now(),
                sampled: false,
            }),
        })
    }

    /// The estimate at `now`, decayed to it (tower's `PeakEwma::load`).
    #[inline]
    pub(crate) fn at(&self, now: u64) -> Reading {
        let mut e = self.estimate.lock().unwrap_or_else(|p| p.into_inner());
        let rtt_ns = e.update(0.0, now, self.decay_ns);
        Reading {
            rtt_ns,
            sampled: e.sampled,
        }
    }

    /// A request took `rtt_ns`, answered at `now`.
    fn sample(&self, rtt_ns: f64, now: u64) {
        let mut e = self.estimate.lock().unwrap_or_else(|p| p.into_inner());
        e.update(rtt_ns, now, self.decay_ns);
        e.sampled = true;
    }
}

impl Estimate {
    /// tower's `RttEstimate::update`; a `now` older than the last update
    /// (another thread's later reading got the lock first) counts as no
    /// time passed.
    #[inline]
    fn update(&mut self, rtt_ns: f64, now: u64, decay_ns: f64) -> f64 {
        if self.rtt_ns < rtt_ns {
            self.rtt_ns = rtt_ns;
        } else {
            let elapsed = now.saturating_sub(self.update_at) as f64;
            let decay = (-elapsed / decay_ns).exp();
            self.rtt_ns = self.rtt_ns * decay + rtt_ns * (1.0 - decay);
        }
        self.update_at = self.update_at.max(now);
        self.rtt_ns
    }
}

/// One request in flight: samples its round trip when dropped (when its
/// response arrives, or when it is given up: tower's `Handle`).
#[derive(Debug)]
pub(crate) struct Handle {
    rtt: Arc<Rtt>,
    /// When it was sent (biased nanoseconds).
    sent_at: u64,
}

impl Handle {
    /// A request to the endpoint of `rtt`, sent at `sent_at`.
    #[inline]
    pub(crate) fn new(rtt: Arc<Rtt>, sent_at: u64) -> Self {
        Handle { rtt, sent_at }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let now = clock::now();
        self.rtt
            .sample(now.saturating_sub(self.sent_at) as f64, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1_000_000.0;

    fn rtt() -> Arc<Rtt> {
        Rtt::new(
            Duration::from_millis(30),
            Duration::from_secs(10).as_nanos() as f64,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_guess_is_not_a_sample() {
        let r = rtt();
        let reading = r.at(clock::now());
        assert_eq!(reading.rtt_ns, 30.0 * MS);
        assert!(!reading.sampled);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_response_sets_the_estimate_at_once() {
        let r = rtt();
        let handle = Handle::new(r.clone(), clock::now());
        assert_eq!(Arc::strong_count(&r), 2, "one request in flight");
        tokio::time::advance(Duration::from_millis(200)).await;
        drop(handle);
        let reading = r.at(clock::now());
        assert_eq!(reading.rtt_ns, 200.0 * MS);
        assert!(reading.sampled);
    }

    #[tokio::test(start_paused = true)]
    async fn an_estimate_decays_over_time_without_traffic() {
        let r = rtt();
        let handle = Handle::new(r.clone(), clock::now());
        tokio::time::advance(Duration::from_millis(200)).await;
        drop(handle);
        tokio::time::advance(Duration::from_secs(10)).await;
        let decayed = r.at(clock::now()).rtt_ns;
        // e^-1 of 200 ms, read in one step or in many.
        assert!(
            (decayed - 200.0 * MS / std::f64::consts::E).abs() < 1.0,
            "{decayed}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_older_than_the_last_update_counts_no_time() {
        let r = rtt();
        let before = clock::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = r.at(clock::now());
        assert_eq!(r.at(before).rtt_ns, r.at(clock::now()).rtt_ns);
    }
}
