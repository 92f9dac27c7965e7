//! The balancer's metrics through the `metrics` facade (feature `metrics`):
//! `meshguard_endpoints_*`, listed in docs/observability.md. With the
//! feature off the handle is a unit struct and every hook an empty inline
//! function.
//!
//! Handles are registered when the balancer is made: install the recorder
//! (exporter) before building it.

#[cfg(feature = "metrics")]
mod imp {
    use metrics::{Gauge, gauge};

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

pub(crate) use imp::EndpointMetrics;
