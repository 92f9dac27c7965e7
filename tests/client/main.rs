//! `ServiceClient` against real axum servers: typed calls, errors and the
//! config file form, hedging, propagation across two hops, and discovery
//! through Consul (with the `consul` feature), the same client over a
//! reqwest client of the caller's own (with the `reqwest` feature), TLS
//! with a CA of the caller's own and mutual TLS, and HTTP/2.
//!
//! Two client tests run in binaries of their own: `client_metrics` (a
//! global `metrics` recorder) and `client_recovery` (a real-time outage
//! and recovery under load).

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "consul")]
mod consul;
mod hedging;
mod http2;
mod propagation;
#[cfg(feature = "reqwest")]
mod reqwest_transport;
mod service_client;
mod tls;
