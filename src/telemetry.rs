//! Hooks into the `metrics` facade (feature `metrics`). With the feature
//! off every hook is an empty inline function and every handle a unit
//! struct, so nothing is paid. Names and labels: docs/observability.md.
//!
//! Handles are registered when the breaker or client is made: install the
//! recorder (exporter) before building them.

#[cfg(feature = "metrics")]
mod imp {
    use metrics::{Counter, Gauge, counter, gauge};

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
}

pub(crate) use imp::*;
