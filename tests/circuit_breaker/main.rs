//! The circuit breaker: its rules on paused time, `?` from its error, real
//! HTTP calls through it, and its windows against a reference model.
//!
//! Two breaker tests run in binaries of their own: `circuit_breaker_alloc`
//! (a counting global allocator) and `circuit_breaker_slot_reuse` (a
//! dropped breaker's slot must go to the next breaker made).

#[path = "../support/mod.rs"]
mod support;

mod behaviour;
mod error;
mod http;
mod window_model;
