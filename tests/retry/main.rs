//! The retry layer: its rules on paused time (hedging and deadlines too),
//! the budget and the settings, real HTTP calls through it, and streaming
//! bodies (with the `hyper` feature).
//!
//! Two retry tests run in binaries of their own: `retry_events` (`tracing`
//! events, whose call-site interest is cached process-wide) and
//! `retry_budget_owner` (a dropped layer's budget must go to the next
//! budget made).

#[path = "../support/mod.rs"]
mod support;

mod behaviour;
mod budget;
mod http;
#[cfg(feature = "hyper")]
mod streaming;
