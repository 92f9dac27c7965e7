//! The ejection pool: how many of a balancer's endpoints are ejected, and
//! whether one more may be.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::BalanceConfig;
use super::metrics::EndpointMetrics;
use crate::circuit_breaker::OpenLimit;

/// Counts the endpoints of one balancer and how many are ejected. Each
/// endpoint's breaker asks it before opening (it is the breakers'
/// [`OpenLimit`]): at most `max_ejection_percent` of the endpoints (at
/// least one) may be ejected at once, and never so many that fewer than
/// `panic_threshold` percent remain.
#[derive(Debug)]
pub(crate) struct EjectionPool {
    endpoints: AtomicUsize,
    ejected: AtomicUsize,
    max_percent: f64,
    panic_threshold: f64,
    metrics: EndpointMetrics,
}

impl EjectionPool {
    pub(super) fn new(name: &str, config: &BalanceConfig) -> Self {
        EjectionPool {
            endpoints: AtomicUsize::new(0),
            ejected: AtomicUsize::new(0),
            max_percent: config.max_ejection_percent,
            panic_threshold: config.panic_threshold,
            metrics: EndpointMetrics::new(name),
        }
    }

    /// Publishes the counts (on changes only: insertions, removals,
    /// ejections and readmissions).
    fn publish(&self) {
        self.metrics.set(
            self.endpoints.load(Ordering::Acquire),
            self.ejected.load(Ordering::Acquire),
        );
    }

    pub(super) fn add_endpoint(&self) {
        self.endpoints.fetch_add(1, Ordering::AcqRel);
        self.publish();
    }

    pub(super) fn remove_endpoint(&self) {
        self.endpoints.fetch_sub(1, Ordering::AcqRel);
        self.publish();
    }

    /// Endpoints ejected now.
    #[cfg(test)]
    fn ejected(&self) -> usize {
        self.ejected.load(Ordering::Acquire)
    }
}

impl OpenLimit for EjectionPool {
    /// An endpoint's breaker wants to open: eject it if the pool allows.
    fn try_acquire(&self) -> bool {
        let total = self.endpoints.load(Ordering::Acquire);
        let max = ((total as f64 * self.max_percent / 100.0).floor() as usize).max(1);
        let mut ejected = self.ejected.load(Ordering::Acquire);
        loop {
            let remaining = total.saturating_sub(ejected + 1);
            let panic =
                total == 0 || (remaining as f64) * 100.0 < self.panic_threshold * total as f64;
            if ejected >= max || panic {
                return false;
            }
            match self.ejected.compare_exchange(
                ejected,
                ejected + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.publish();
                    return true;
                }
                Err(actual) => ejected = actual,
            }
        }
    }

    /// An endpoint's breaker was forced open: it counts as ejected,
    /// whatever the limit.
    fn acquire(&self) {
        self.ejected.fetch_add(1, Ordering::AcqRel);
        self.publish();
    }

    /// An endpoint is back (or gone while ejected).
    fn release(&self) {
        let _ = self
            .ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| e.checked_sub(1));
        self.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(endpoints: usize, max_percent: f64, panic: f64) -> EjectionPool {
        let p = EjectionPool::new(
            "test",
            &BalanceConfig::builder()
                .max_ejection_percent(max_percent)
                .panic_threshold(panic)
                .build()
                .unwrap(),
        );
        p.endpoints.store(endpoints, Ordering::Relaxed);
        p
    }

    fn ejections(p: &EjectionPool) -> usize {
        std::iter::from_fn(|| p.try_acquire().then_some(()))
            .take(1000)
            .count()
    }

    #[test]
    fn ten_percent_of_three_still_ejects_one() {
        assert_eq!(ejections(&pool(3, 10.0, 50.0)), 1);
    }

    #[test]
    fn ten_percent_of_twenty_ejects_two() {
        assert_eq!(ejections(&pool(20, 10.0, 50.0)), 2);
    }

    #[test]
    fn a_lone_endpoint_is_never_ejected_below_the_panic_threshold() {
        assert_eq!(ejections(&pool(1, 100.0, 50.0)), 0);
    }

    #[test]
    fn the_panic_threshold_caps_a_generous_ejection_limit() {
        // 100% may be ejected, but 60% must remain: 4 of 10.
        assert_eq!(ejections(&pool(10, 100.0, 60.0)), 4);
    }

    #[test]
    fn a_released_ejection_can_be_taken_again() {
        let p = pool(3, 10.0, 50.0);
        assert!(p.try_acquire());
        assert!(!p.try_acquire());
        p.release();
        assert_eq!(p.ejected(), 0);
        assert!(p.try_acquire());
    }
}
