//! The retry layer's metrics (feature `metrics`; names in
//! docs/observability.md). Off, every hook is an empty inline function.

/// A retry was planned (cold path: looked up per retry).
#[cfg(feature = "metrics")]
pub(crate) fn retried(service: &'static str, reason: &'static str) {
    metrics::counter!("meshguard_retries_total", "service" => service, "reason" => reason)
        .increment(1);
}

/// A retry was wanted but the budget had nothing left.
#[cfg(feature = "metrics")]
pub(crate) fn budget_exhausted(service: &'static str) {
    metrics::counter!("meshguard_retry_budget_exhausted_total", "service" => service).increment(1);
}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn retried(_: &'static str, _: &'static str) {}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn budget_exhausted(_: &'static str) {}
