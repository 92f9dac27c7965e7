//! meshguard: the client half of a service mesh, in-process, as tower layers.
//!
//! Circuit breaking, retries with budgets, load balancing over endpoints
//! discovered in Consul with unhealthy ones ejected, and typed HTTP clients
//! that put it all behind one builder — without a sidecar.
//!
//! # Layout
//!
//! A call through a [`client::ServiceClient`] passes these layers, outermost
//! first (the picture, with the file of each, is in `docs/architecture.md`):
//! [`deadline`] → [`retry`] → [`limit`] (flow control, only if configured)
//! → [`circuit_breaker`] (the service's, fail fast)
//! → the [`retry`] module's hedge (only if configured) → [`balance`]
//! (shared p2c over PeakEwma) → [`circuit_breaker`] (each
//! endpoint's, wait mode: outlier ejection) → the client's transport. Each
//! attempt's result is read once, as a [`classify::Outcome`], by all of them.
//!
//! - [`classify`]: one [`Outcome`](classify::Outcome) per attempt (success, a
//!   failing status with its `Retry-After`, a rejection by the service's or an
//!   endpoint's breaker, timeout, deadline, connect, transport), read by
//!   every policy.
//! - [`deadline`]: [`DeadlineLayer`](deadline::DeadlineLayer) merges a call's
//!   deadlines once and ends the call by them; the `x-deadline-ms` and
//!   `grpc-timeout` formats.
//! - [`retry`]: retries on `tower::retry` with jittered backoff, a retry
//!   budget, `Retry-After`, attempt timeouts, and hedging on `tower::hedge`.
//! - [`limit`]: flow control for overloaded services: a bulkhead, an
//!   adaptive concurrency limit (gradient or AIMD), client-side throttling,
//!   and load shedding for servers (`docs/flow-control.md`).
//! - [`circuit_breaker`]: a lock-free circuit breaker as a tower layer, with
//!   count and time windows, slow-call detection, half-open probes, manual
//!   states, and fail-fast or wait rejection.
//! - [`balance`]: p2c over PeakEwma fed by discovery, with per-endpoint
//!   wait-mode breakers for outlier ejection (a maximum ejected share, a
//!   panic threshold), endpoints ranked by recent failures, and the balancer
//!   a client's clones share.
//! - [`backoff`]: constant and exponential delays with jitter; shared by the
//!   breaker's open period, retries and ejection.
//! - [`discovery`] (feature `consul` for Consul): endpoints as
//!   `tower::discover::Change`s, from a static list or a Consul health
//!   watch, and registration with a Consul agent.
//! - [`client`] (feature `client`): `ServiceClient`, one builder for the
//!   whole stack over hyper-util's pooled client, typed JSON calls and
//!   `ClientError`.
//! - `grpc` (feature `grpc`): `grpc::Channel`, the same layers for tonic
//!   clients over HTTP/2, with gRPC's retry rules.
//! - `reqwest` (feature `reqwest`): the same layers as a `reqwest_middleware`
//!   middleware.
//! - [`propagation`] (feature `client`): request IDs, trace context and
//!   deadlines across hops, with `PropagationLayer` for servers.
//! - `testing` (feature `test-util`): an in-process Consul-compatible
//!   registry and a fault-injection layer for tests and demos.
//!
//! The example services (a user service, an order service, a gateway)
//! and the mesh demo are the `meshguard-examples` crate in the repository's
//! `examples/` (not published).
//!
//! Feature `metrics` reports through the `metrics` facade (names in
//! `docs/observability.md`).
//! Feature `opentelemetry` lines the propagated trace context up with the
//! spans a tracing-opentelemetry layer exports (`docs/observability.md`).
//!
//! # Quick start
//!
//! ```
//! use meshguard::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), meshguard::BoxError> {
//! let breaker = CircuitBreaker::new("users", CircuitBreakerConfig::default());
//! let mut svc = ServiceBuilder::new()
//!     .layer(breaker.layer())
//!     .service_fn(|name: &'static str| async move { Ok::<_, std::io::Error>(format!("hi {name}")) });
//! let reply = svc.ready().await?.call("ada").await?;
//! assert_eq!(reply, "hi ada");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
// The library reports through `tracing` and `metrics`, never the console.
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
pub mod balance;
pub mod circuit_breaker;
pub mod classify;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
mod clock;
pub mod deadline;
pub mod discovery;
mod error;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;
mod intern;
pub mod limit;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod propagation;
mod recycle;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
pub mod retry;
mod sync;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

pub use error::{BoxError, ConfigError};

/// The README's examples, compiled as doctests so they stay true (with the
/// features they use; CI tests with all of them).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "client"))]
pub struct ReadmeDoctests;

/// docs/flow-control.md, its examples compiled and run as doctests.
#[doc = include_str!("../docs/flow-control.md")]
#[cfg(all(doctest, feature = "client"))]
pub struct FlowControlDoctests;

/// docs/architecture.md, checked by rustdoc (its links resolve).
#[doc = include_str!("../docs/architecture.md")]
#[cfg(all(doctest, feature = "client"))]
pub struct ArchitectureDoctests;

/// docs/balancing.md's examples, compiled as doctests.
#[doc = include_str!("../docs/balancing.md")]
#[cfg(doctest)]
pub struct BalancingDoctests;

/// docs/testing.md's examples, compiled as doctests.
#[doc = include_str!("../docs/testing.md")]
#[cfg(all(doctest, feature = "test-util", feature = "client", feature = "consul"))]
pub struct TestingDoctests;

/// docs/observability.md's example (the OpenTelemetry subscriber),
/// compiled as a doctest.
#[doc = include_str!("../docs/observability.md")]
#[cfg(all(doctest, feature = "opentelemetry"))]
pub struct ObservabilityDoctests;

/// docs/tls.md's example, compiled as a doctest.
#[doc = include_str!("../docs/tls.md")]
#[cfg(all(doctest, feature = "client"))]
pub struct TlsDoctests;

/// docs/discovery.md's examples, compiled as doctests.
#[doc = include_str!("../docs/discovery.md")]
#[cfg(all(doctest, feature = "consul"))]
pub struct DiscoveryDoctests;
