//! JSON logs carrying the correlation ID, and Prometheus metrics.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Structured JSON logs on stdout (`RUST_LOG` filters, default `info`).
/// Every line logged while serving a request carries the request span's
/// fields: `request_id`, `trace_id`, `span_id`.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .try_init();
}

/// The process's Prometheus recorder, installed on first use: meshguard's
/// breakers and clients register their metrics with it when they are
/// built, so call this before building them.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics_handler() -> String {
    prometheus().render()
}
