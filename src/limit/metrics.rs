//! Flow control's metrics through the `metrics` facade (feature
//! `metrics`): `meshguard_limit_*`, listed in docs/observability.md. With
//! the feature off the handle is a unit struct and every hook an empty
//! inline function.

#[cfg(feature = "metrics")]
mod imp {
    use metrics::{Gauge, counter, gauge};

    use crate::limit::LimitReason;

    /// Per limiter: refusals by reason, and the current limit.
    #[derive(Debug)]
    pub(crate) struct LimitMetrics {
        name: String,
        layer: &'static str,
        limit: Gauge,
        throttle: Gauge,
    }

    impl LimitMetrics {
        pub(crate) fn new(name: &str, layer: &'static str) -> Self {
            LimitMetrics {
                name: name.to_string(),
                layer,
                limit: gauge!("meshguard_limit_concurrency", "service" => name.to_string()),
                throttle: gauge!("meshguard_limit_throttle_probability", "service" => name.to_string()),
            }
        }

        /// A refused call (the cold path: the counter is looked up here).
        #[cold]
        pub(crate) fn refused(&self, reason: LimitReason) {
            counter!(
                "meshguard_limit_rejections_total",
                "service" => self.name.clone(),
                "layer" => self.layer,
                "reason" => reason.name(),
            )
            .increment(1);
        }

        pub(crate) fn limit(&self, limit: usize) {
            self.limit.set(limit as f64);
        }

        pub(crate) fn throttle(&self, probability: f64) {
            self.throttle.set(probability);
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    use crate::limit::LimitReason;

    #[derive(Debug)]
    pub(crate) struct LimitMetrics;

    impl LimitMetrics {
        #[inline(always)]
        pub(crate) fn new(_: &str, _: &'static str) -> Self {
            LimitMetrics
        }

        #[inline(always)]
        pub(crate) fn refused(&self, _: LimitReason) {}

        #[inline(always)]
        pub(crate) fn limit(&self, _: usize) {}

        #[inline(always)]
        pub(crate) fn throttle(&self, _: f64) {}
    }
}

pub(crate) use imp::LimitMetrics;
