//! The client's metrics (feature `metrics`; names in
//! docs/observability.md). With the feature off every handle is a unit
//! struct and every hook an empty inline function: nothing is paid, not
//! even a clock read.

/// The `outcome` label values of `meshguard_client_requests_total`.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) const OUTCOMES: [&str; 11] = [
    "success",
    "client_error",
    "server_error",
    "circuit_open",
    "timeout",
    "deadline_exceeded",
    "no_endpoints",
    "transport",
    "decode",
    "body_too_large",
    "invalid_request",
];

/// The `outcome` label of a call that got a response with `status`.
pub(crate) fn status_outcome(status: http::StatusCode) -> &'static str {
    if status.is_server_error() {
        "server_error"
    } else if status.is_client_error() {
        "client_error"
    } else {
        "success"
    }
}

#[cfg(feature = "metrics")]
mod imp {
    use metrics::{Counter, Histogram, counter, histogram};
    use tokio::time::Instant;

    /// Per client: attempts sent to an instance (first tries, retries and
    /// hedges; not calls failed before reaching one), beside
    /// `meshguard_client_requests_total` so retry amplification shows.
    #[derive(Clone)]
    pub(crate) struct AttemptMetrics(Counter);

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
    pub(crate) struct ClientMetrics {
        outcomes: Vec<(&'static str, Counter)>,
        latency: Histogram,
    }

    /// When a call started.
    #[derive(Clone, Copy)]
    pub(crate) struct CallTimer(Instant);

    impl CallTimer {
        #[inline]
        pub(crate) fn start() -> Self {
            CallTimer(Instant::now())
        }
    }

    impl ClientMetrics {
        pub(crate) fn new(service: &str) -> Self {
            let outcomes = super::OUTCOMES
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

        pub(crate) fn record(&self, outcome: &'static str, timer: CallTimer) {
            if let Some((_, c)) = self.outcomes.iter().find(|(o, _)| *o == outcome) {
                c.increment(1);
            }
            self.latency.record(timer.0.elapsed().as_secs_f64());
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    #[derive(Clone)]
    pub(crate) struct AttemptMetrics;

    impl AttemptMetrics {
        #[inline(always)]
        pub(crate) fn new(_: &str) -> Self {
            AttemptMetrics
        }

        #[inline(always)]
        pub(crate) fn sent(&self) {}
    }

    pub(crate) struct ClientMetrics;

    #[derive(Clone, Copy)]
    pub(crate) struct CallTimer;

    impl CallTimer {
        #[inline(always)]
        pub(crate) fn start() -> Self {
            CallTimer
        }
    }

    impl ClientMetrics {
        #[inline(always)]
        pub(crate) fn new(_: &str) -> Self {
            ClientMetrics
        }

        #[inline(always)]
        pub(crate) fn record(&self, _: &'static str, _: CallTimer) {}
    }
}

pub(crate) use imp::*;
