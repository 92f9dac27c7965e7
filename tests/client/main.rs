//! `ServiceClient` against real axum servers: typed calls, errors and the
//! config file form, propagation across two hops, and discovery through
//! Consul (with the `consul` feature).
//!
//! Two client tests run in binaries of their own: `client_metrics` (a
//! global `metrics` recorder) and `client_recovery` (a real-time outage
//! and recovery under load).

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "consul")]
mod consul;
mod propagation;
mod service_client;
