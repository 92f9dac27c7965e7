#![doc = include_str!("../../docs/reqwest.md")]

mod attempt;
mod builder;
mod middleware;

pub use builder::ResilienceBuilder;
pub use middleware::Resilience;
