//! `ServiceClient` against real axum servers: typed calls, errors and the
//! config file form, hedging, propagation across two hops, and discovery
//! through Consul (with the `consul` feature), the same client over a
//! reqwest client of the caller's own (with the `reqwest` feature), TLS
//! with a CA of the caller's own and mutual TLS, HTTP/2, and the
//! balancer's flow control (an instance's `Retry-After` ejects it for that
//! long; a call's deadline keeps it from instances too slow for it).
//!
//! Two client tests run in binaries of their own: `client_metrics` (a
//! global `metrics` recorder) and `client_recovery` (a real-time outage
//! and recovery under load).

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "consul")]
mod consul;
mod deadline_admission;
mod endpoint_limit;
mod fleet_scale;
mod hedging;
mod http2;
mod propagation;
#[cfg(feature = "reqwest")]
mod reqwest_transport;
mod retry_after_ejection;
mod service_client;
mod tls;
