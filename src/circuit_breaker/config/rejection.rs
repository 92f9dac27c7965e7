//! [`Rejection`]: what the breaker does with calls while it is open.

use serde::Deserialize;

/// What the breaker does with calls while it is open.
///
/// Deserializes from `"fail_fast"` or `"wait"`; `"gate"`, its earlier
/// name, is accepted as an alias of `"wait"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// `call` fails at once with
    /// [`CircuitOpen`](crate::circuit_breaker::CircuitOpen). For a breaker
    /// in front of one service.
    #[default]
    FailFast,
    /// `poll_ready` waits (stays `Pending`) while the breaker is open and
    /// wakes when the open period ends. For a breaker in front of one
    /// endpoint inside a load balancer, which then routes around it
    /// (outlier ejection).
    #[serde(alias = "gate")]
    Wait,
}
