//! Validated circuit breaker configuration: [`CircuitBreakerConfig`]
//! (`settings.rs`), built by [`CircuitBreakerConfigBuilder`] (`builder.rs`)
//! or deserialized (`raw.rs`), with its [`Window`] and [`Rejection`] mode.

mod builder;
mod raw;
mod rejection;
mod settings;
mod window;

pub use builder::CircuitBreakerConfigBuilder;
pub use rejection::Rejection;
pub use settings::CircuitBreakerConfig;
pub(crate) use settings::default_open_duration;
pub(crate) use settings::{SlowCalls, Trip};
pub use window::Window;

/// The largest count window, in calls.
pub const MAX_WINDOW_CALLS: u32 = 1_000_000;
/// The largest number of buckets in a window.
pub const MAX_BUCKETS: u32 = 10_000;
/// The largest number of half-open probe calls.
pub const MAX_HALF_OPEN_CALLS: u32 = 1_000;
