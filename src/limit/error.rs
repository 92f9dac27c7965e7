//! [`LimitExceeded`]: a call refused by the client's own flow control.

use std::fmt;

/// Why a flow-control layer refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitReason {
    /// The bulkhead's calls in flight and its queue were both full.
    QueueFull,
    /// The call waited in the bulkhead's queue for its maximum wait.
    QueueTimeout,
    /// The adaptive concurrency limit was reached (it queues nobody).
    ConcurrencyLimit,
    /// Client-side throttling: the service has been rejecting calls, and
    /// this one was refused locally with the probability that says.
    Throttled,
}

impl LimitReason {
    /// A short, stable name: the `reason` label of metrics.
    pub fn name(&self) -> &'static str {
        match self {
            LimitReason::QueueFull => "queue_full",
            LimitReason::QueueTimeout => "queue_timeout",
            LimitReason::ConcurrencyLimit => "concurrency_limit",
            LimitReason::Throttled => "throttled",
        }
    }
}

impl fmt::Display for LimitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitReason::QueueFull => "the bulkhead and its queue are full",
            LimitReason::QueueTimeout => "waited too long in the bulkhead's queue",
            LimitReason::ConcurrencyLimit => "the adaptive concurrency limit is reached",
            LimitReason::Throttled => "throttled: the service has been rejecting calls",
        })
    }
}

/// A call refused by a flow-control layer ([`Bulkhead`](super::Bulkhead),
/// [`AdaptiveLimit`](super::AdaptiveLimit), [`Throttle`](super::Throttle)):
/// it was not sent. Read as
/// [`Outcome::RejectedByLimit`](crate::classify::Outcome::RejectedByLimit):
/// not counted by breakers, not retried (another attempt would add load to
/// a service already at its limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitExceeded {
    reason: LimitReason,
}

impl LimitExceeded {
    /// A refusal for `reason`.
    pub fn new(reason: LimitReason) -> Self {
        LimitExceeded { reason }
    }

    /// Why the call was refused.
    pub fn reason(&self) -> LimitReason {
        self.reason
    }
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call refused: {}", self.reason)
    }
}

impl std::error::Error for LimitExceeded {}
