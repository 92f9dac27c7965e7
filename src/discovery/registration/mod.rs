//! Registering a service with the local Consul agent, and deregistering it
//! on shutdown.
//!
//! A [`RegistrationConfig`] (built with [`RegistrationConfig::builder`] or
//! deserialized) says what to register; [`RegistrationConfig::register`]
//! registers it and returns the [`RegistrationGuard`] that keeps a TTL
//! check beating and deregisters:
//!
//! ```no_run
//! use std::time::Duration;
//! use meshguard::discovery::registration::{RegistrationConfig, RegistrationError};
//!
//! # async fn run() -> Result<(), RegistrationError> {
//! let guard = RegistrationConfig::builder()
//!     .service("users")
//!     .id("users-1")
//!     .address("10.0.0.7")
//!     .port(8080)
//!     .ttl_check(Duration::from_secs(30))
//!     .build()?
//!     .register()
//!     .await?;
//! // ... serve; on shutdown:
//! guard.deregister().await?;
//! # Ok(()) }
//! ```
//!
//! `rs-consul` 0.15 has no agent endpoints (its `register_entity` is the
//! catalog API, which bypasses the agent's health checks), so these are our
//! own small typed requests over `hyper-util`'s client:
//! `PUT /v1/agent/service/register`, `PUT /v1/agent/service/deregister/:id`
//! and `PUT /v1/agent/check/pass/:check_id`.
//!
//! Every request ends by a deadline: connecting has
//! [`connect_timeout`](RegistrationConfigBuilder::connect_timeout) (default
//! 2 s), the whole exchange, the answer's body included, has
//! [`request_timeout`](RegistrationConfigBuilder::request_timeout) (default
//! 5 s). An agent that accepts the connection and never answers fails the
//! step with [`RegistrationError::Timeout`] instead of holding up the
//! service's start. At most 64 KiB of an answer is read, and an error
//! quotes at most 1 KiB of it. Ids in paths are percent-encoded, so an
//! instance id with `/`, `?` or `%` reaches the agent as one path segment.
//!
//! The parts: the configuration (`config.rs`, `builder.rs`), the body sent
//! to the agent (`definition.rs`), the agent's HTTP client (`agent.rs`),
//! registering, the heartbeat and the guard (`guard.rs`), and the errors
//! (`error.rs`).

use std::time::Duration;

mod agent;
mod builder;
mod config;
mod definition;
mod error;
mod guard;

pub(crate) use agent::{chain, path_segment};
pub use builder::RegistrationConfigBuilder;
pub use config::{HealthCheck, RegistrationConfig};
pub use error::{RegistrationError, RegistrationStep};
pub use guard::RegistrationGuard;

/// How long connecting to the agent may take unless set. The agent runs
/// on the same host or in the same pod, where a connection takes well under
/// a millisecond; 2 s still covers one lost SYN (Linux retransmits it after
/// 1 s), and a service whose agent is gone fails its start in seconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one request to the agent may take, connect, headers and body
/// included, unless set. The agent answers these from its local state
/// (anti-entropy syncs to the servers later), in milliseconds; 5 s leaves
/// room for a loaded agent and an ACL token resolved through the servers,
/// and bounds how long a start or a shutdown can be held up.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
