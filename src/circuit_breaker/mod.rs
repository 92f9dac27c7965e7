#![doc = include_str!("../../docs/circuit-breaker.md")]

// The public handle, its layer and service.
mod breaker;
mod config;
pub mod error;
pub mod future;
mod layer;
mod service;
mod state;

// The lock-free core: see `slot.rs` for where its memory lives and
// `machine/` for the state machine.
mod counts;
mod machine;
mod owner;
mod slot;
mod word;

// What the rest of the crate may read or share.
mod health;
mod metrics;
mod open_limit;

#[cfg(all(test, meshguard_loom))]
mod loom_tests;

pub use breaker::CircuitBreaker;
pub use config::{
    CircuitBreakerConfig, CircuitBreakerConfigBuilder, MAX_BUCKETS, MAX_HALF_OPEN_CALLS,
    MAX_WINDOW_CALLS, Rejection, Window,
};
pub use counts::Metrics;
pub use error::{BreakerError, CircuitOpen};
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreakerService;
pub use state::{Event, State};

pub(crate) use breaker::BreakerOptions;
pub(crate) use config::default_open_duration;
pub(crate) use health::Health;
pub(crate) use open_limit::OpenLimit;
