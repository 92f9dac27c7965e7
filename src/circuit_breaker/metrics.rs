//! The breaker's metrics through the `metrics` facade (feature `metrics`):
//! `meshguard_breaker_*`, listed in docs/observability.md. With the feature
//! off the handle is a unit struct and every hook an empty inline function.
//!
//! Handles are registered when the breaker is made: install the recorder
//! (exporter) before building it.

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
}

pub(crate) use imp::BreakerMetrics;
