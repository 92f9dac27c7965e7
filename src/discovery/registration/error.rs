//! What can go wrong talking to the agent, and at which step.

use std::fmt;
use std::time::Duration;

use crate::ConfigError;

/// The request to the agent that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegistrationStep {
    /// `PUT /v1/agent/service/register`.
    Register,
    /// `PUT /v1/agent/service/deregister/:id`.
    Deregister,
    /// `PUT /v1/agent/check/pass/:check_id`, the TTL heartbeat.
    Heartbeat,
}

impl fmt::Display for RegistrationStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegistrationStep::Register => "register",
            RegistrationStep::Deregister => "deregister",
            RegistrationStep::Heartbeat => "TTL heartbeat",
        })
    }
}

/// A request to the agent failed. Each failure names the agent (its URL
/// without credentials) and the step; none carries the ACL token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The registration is invalid; nothing was sent. `register` returns
    /// it when `token_env` names a variable that is not set; `?` turns a
    /// [`RegistrationConfigBuilder::build`](super::RegistrationConfigBuilder::build)
    /// error into it.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The agent could not be reached (refused, reset, no such host), or
    /// its answer broke off.
    #[error("consul agent {agent} unreachable during {step}: {reason}")]
    Unreachable {
        /// The agent's URL.
        agent: String,
        /// The request that failed.
        step: RegistrationStep,
        /// What went wrong, from the connection's error.
        reason: String,
    },
    /// The agent did not connect within the connect timeout, or did not
    /// answer in full within the request timeout.
    #[error("consul agent {agent}: {step} timed out after {after:?}")]
    Timeout {
        /// The agent's URL.
        agent: String,
        /// The request that failed.
        step: RegistrationStep,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The agent answered with an error status.
    #[error("consul agent {agent} rejected {step} with {status}: {body}")]
    Rejected {
        /// The agent's URL.
        agent: String,
        /// The request that failed.
        step: RegistrationStep,
        /// The HTTP status.
        status: u16,
        /// The agent's message: at most 1 KiB, cut at a character boundary
        /// and ended with `…` when longer.
        body: String,
    },
}
