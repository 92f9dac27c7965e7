//! Hooks into the `metrics` facade (feature `metrics`). With the feature
//! off every hook is an empty inline function and every handle a unit
//! struct, so nothing is paid. Names and labels: docs/observability.md.
//!
//! Handles are registered when the client is made: install the recorder
//! (exporter) before building it. The breaker's and the balancer's metrics
//! are defined beside them (`circuit_breaker/metrics.rs`,
//! `balance/metrics.rs`).

#[cfg(feature = "metrics")]
mod imp {
    use metrics::counter;
    #[cfg(feature = "client")]
    use metrics::{Counter, Histogram, histogram};

    /// A retry was planned (cold path: looked up per retry).
    pub(crate) fn retried(service: &'static str, reason: &'static str) {
        counter!("meshguard_retries_total", "service" => service, "reason" => reason).increment(1);
    }

    /// A retry was wanted but the budget had nothing left.
    pub(crate) fn budget_exhausted(service: &'static str) {
        counter!("meshguard_retry_budget_exhausted_total", "service" => service).increment(1);
    }

    /// Per client: attempts sent to an instance (first tries, retries and
    /// hedges; not calls failed before reaching one), beside
    /// `meshguard_client_requests_total` so retry amplification shows.
    #[cfg(feature = "client")]
    #[derive(Clone)]
    pub(crate) struct AttemptMetrics(Counter);

    #[cfg(feature = "client")]
    impl AttemptMetrics {
        pub(crate) fn new(service: &str) -> Self {
            AttemptMetrics(counter!(
                "meshguard_client_attempts_total",
                "service" => service.to_string()
            ))
        }

        #[inline]
        pub(crate) fn sent(&self) {
            self.0.increment(1);
        }
    }

    /// Per client: calls by outcome and their latency.
    #[cfg(feature = "client")]
    pub(crate) struct ClientMetrics {
        outcomes: Vec<(&'static str, Counter)>,
        latency: Histogram,
    }

    #[cfg(feature = "client")]
    impl ClientMetrics {
        pub(crate) fn new(service: &str) -> Self {
            let outcomes = crate::client::OUTCOMES
                .iter()
                .map(|&o| {
                    let c = counter!(
                        "meshguard_client_requests_total",
                        "service" => service.to_string(),
                        "outcome" => o,
                    );
                    (o, c)
                })
                .collect();
            ClientMetrics {
                outcomes,
                latency: histogram!(
                    "meshguard_client_request_duration_seconds",
                    "service" => service.to_string()
                ),
            }
        }

        pub(crate) fn record(&self, outcome: &'static str, elapsed: std::time::Duration) {
            if let Some((_, c)) = self.outcomes.iter().find(|(o, _)| *o == outcome) {
                c.increment(1);
            }
            self.latency.record(elapsed.as_secs_f64());
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    #[inline(always)]
    pub(crate) fn retried(_: &'static str, _: &'static str) {}

    #[inline(always)]
    pub(crate) fn budget_exhausted(_: &'static str) {}

    #[cfg(feature = "client")]
    #[derive(Clone)]
    pub(crate) struct AttemptMetrics;

    #[cfg(feature = "client")]
    impl AttemptMetrics {
        #[inline(always)]
        pub(crate) fn new(_: &str) -> Self {
            AttemptMetrics
        }

        #[inline(always)]
        pub(crate) fn sent(&self) {}
    }

    #[cfg(feature = "client")]
    pub(crate) struct ClientMetrics;

    #[cfg(feature = "client")]
    impl ClientMetrics {
        #[inline(always)]
        pub(crate) fn new(_: &str) -> Self {
            ClientMetrics
        }

        #[inline(always)]
        pub(crate) fn record(&self, _: &'static str, _: std::time::Duration) {}
    }
}

pub(crate) use imp::*;
