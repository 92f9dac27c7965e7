//! Hooks into the `metrics` facade (feature `metrics`). With the feature
//! off every hook is an empty inline function and every handle a unit
//! struct, so nothing is paid. Names and labels: docs/observability.md.
//!
//! Handles are registered when the breaker or client is made: install the
//! recorder (exporter) before building them.

#[cfg(feature = "metrics")]
mod imp {
    use metrics::{Counter, Gauge, counter, gauge};
    #[cfg(feature = "client")]
    use metrics::{Histogram, histogram};

    use crate::circuit_breaker::State;

    /// Per breaker: rejections and its state as a number.
    pub(crate) struct BreakerMetrics {
        rejections: Counter,
        state: Gauge,
        name: String,
    }

    impl BreakerMetrics {
        pub(crate) fn new(name: &str) -> Self {
            let state = gauge!("meshguard_breaker_state", "breaker" => name.to_string());
            state.set(state_code(State::Closed));
            BreakerMetrics {
                rejections: counter!("meshguard_breaker_rejections_total", "breaker" => name.to_string()),
                state,
                name: name.to_string(),
            }
        }

        #[inline]
        pub(crate) fn rejected(&self) {
            self.rejections.increment(1);
        }

        pub(crate) fn transition(&self, to: State) {
            self.state.set(state_code(to));
            counter!(
                "meshguard_breaker_transitions_total",
                "breaker" => self.name.clone(),
                "to" => state_label(to),
            )
            .increment(1);
        }
    }

    fn state_code(state: State) -> f64 {
        match state {
            State::Closed => 0.0,
            State::Open => 1.0,
            State::HalfOpen => 2.0,
            State::ForcedOpen => 3.0,
            State::Disabled => 4.0,
            State::MetricsOnly => 5.0,
        }
    }

    fn state_label(state: State) -> &'static str {
        match state {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }

    /// A retry was planned (cold path: looked up per retry).
    pub(crate) fn retried(service: &'static str, reason: &'static str) {
        counter!("meshguard_retries_total", "service" => service, "reason" => reason).increment(1);
    }

    /// A retry was wanted but the budget had nothing left.
    pub(crate) fn budget_exhausted(service: &'static str) {
        counter!("meshguard_retry_budget_exhausted_total", "service" => service).increment(1);
    }

    /// Per balancer: endpoints held and ejected.
    pub(crate) struct EndpointMetrics {
        ready: Gauge,
        ejected: Gauge,
    }

    impl std::fmt::Debug for EndpointMetrics {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("EndpointMetrics")
        }
    }

    impl EndpointMetrics {
        pub(crate) fn new(service: &str) -> Self {
            EndpointMetrics {
                ready: gauge!("meshguard_endpoints_ready", "service" => service.to_string()),
                ejected: gauge!("meshguard_endpoints_ejected", "service" => service.to_string()),
            }
        }

        pub(crate) fn set(&self, endpoints: usize, ejected: usize) {
            self.ready.set(endpoints.saturating_sub(ejected) as f64);
            self.ejected.set(ejected as f64);
        }
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
    use crate::circuit_breaker::State;

    pub(crate) struct BreakerMetrics;

    impl BreakerMetrics {
        #[inline(always)]
        pub(crate) fn new(_: &str) -> Self {
            BreakerMetrics
        }

        #[inline(always)]
        pub(crate) fn rejected(&self) {}

        #[inline(always)]
        pub(crate) fn transition(&self, _: State) {}
    }

    #[inline(always)]
    pub(crate) fn retried(_: &'static str, _: &'static str) {}

    #[inline(always)]
    pub(crate) fn budget_exhausted(_: &'static str) {}

    #[derive(Debug)]
    pub(crate) struct EndpointMetrics;

    impl EndpointMetrics {
        #[inline(always)]
        pub(crate) fn new(_: &str) -> Self {
            EndpointMetrics
        }

        #[inline(always)]
        pub(crate) fn set(&self, _: usize, _: usize) {}
    }

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
