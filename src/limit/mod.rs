//! Flow control: what keeps an *overloaded* service serving, where
//! breakers and retries handle one that fails.
//!
//! - [`Bulkhead`] ([`BulkheadLayer`]): a fixed concurrency limit with a
//!   bounded, timed queue (Resilience4j's and Polly's bulkheads). Keeps one
//!   slow dependency from taking every task or connection of the caller.
//! - [`AdaptiveLimit`] ([`AdaptiveLimitLayer`]): a concurrency limit that
//!   follows the latency and the overload signals it measures, by a
//!   gradient ([`LimitAlgorithm::Gradient`], as Envoy's adaptive
//!   concurrency filter and Netflix's Gradient2) or by AIMD. Finds the
//!   service's capacity without being told, and refuses the excess at once.
//! - [`Throttle`] ([`ThrottleLayer`]): client-side adaptive throttling
//!   (Google's SRE book): while the service keeps rejecting calls, refuse
//!   a share of them locally, so a dying service is not hit by its
//!   clients' full rate.
//! - [`Shed`] ([`ShedLayer`]): the server's half, load shedding for axum
//!   and hyper servers: a concurrency limit and a queue timeout, and a 503
//!   with `Retry-After` beyond them.
//!
//! A call refused by the client's layers fails with [`LimitExceeded`],
//! read as [`Outcome::RejectedByLimit`](crate::classify::Outcome::RejectedByLimit):
//! not retried, not counted by breakers. `ServiceClient` takes each layer
//! from its builder and configuration and puts them below its retry layer
//! (so every attempt passes them) and above its breaker and balancer.
//! When to use which, and what they do to an overloaded fleet:
//! `docs/flow-control.md`.

mod adaptive;
mod admission;
mod bulkhead;
mod bulkhead_config;
mod error;
mod future;
mod metrics;
mod permits;
mod shed;
mod stack;
mod throttle;

pub use adaptive::{
    AdaptiveFuture, AdaptiveLimit, AdaptiveLimitConfig, AdaptiveLimitConfigBuilder,
    AdaptiveLimitLayer, LimitAlgorithm,
};
pub use bulkhead::{Bulkhead, BulkheadLayer};
pub use bulkhead_config::{BulkheadConfig, BulkheadConfigBuilder};
pub use error::{LimitExceeded, LimitReason};
pub use future::ResponseFuture;
pub use shed::{Shed, ShedConfig, ShedConfigBuilder, ShedFuture, ShedLayer};
#[cfg(feature = "client")]
pub(crate) use stack::{FlowControl, Limited};
pub use throttle::{
    Throttle, ThrottleConfig, ThrottleConfigBuilder, ThrottleFuture, ThrottleLayer,
};
