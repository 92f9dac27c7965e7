//! What to register and how to reach the agent: [`RegistrationConfig`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::builder::{RawRegistration, RegistrationConfigBuilder};
use super::error::RegistrationError;
use super::guard::RegistrationGuard;
use crate::ConfigError;
use crate::discovery::consul::ConsulToken;

/// An instance to register with the local Consul agent, its health check,
/// and how to reach the agent; made by [`RegistrationConfig::builder`] or
/// deserialized (every field but `service`, `id` and `port` optional,
/// durations as text). [`register`](Self::register) registers it.
///
/// ```
/// use meshguard::discovery::registration::RegistrationConfig;
///
/// let config: RegistrationConfig = toml::from_str(r#"
///     agent = "http://127.0.0.1:8500"
///     service = "users"
///     id = "users-1"
///     address = "10.0.0.7"
///     port = 8080
///     tags = ["v2"]
///     check = { kind = "http", interval = "5s", timeout = "2s" }
///     token_env = "CONSUL_HTTP_TOKEN"
/// "#).unwrap();
/// assert_eq!(config.id(), "users-1");
///
/// let err = toml::from_str::<RegistrationConfig>(r#"service = "users""#).unwrap_err();
/// assert!(err.to_string().contains("invalid `id`: must be set"));
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(try_from = "RawRegistration")]
pub struct RegistrationConfig {
    pub(super) agent: String,
    pub(super) service: String,
    pub(super) id: String,
    pub(super) address: String,
    pub(super) port: u16,
    pub(super) tags: Vec<String>,
    pub(super) meta: BTreeMap<String, String>,
    pub(super) check: HealthCheck,
    pub(super) deregister_critical_after: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) request_timeout: Duration,
    pub(super) token: Option<Token>,
}

/// How the agent checks the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthCheck {
    /// The agent calls `url` with `GET` every `interval`, each call within
    /// `timeout`: 2xx is passing, 429 warning, anything else critical.
    Http {
        /// The URL the agent calls.
        url: String,
        /// How often.
        interval: Duration,
        /// How long each call may take.
        timeout: Duration,
    },
    /// A TTL check the [`RegistrationGuard`] keeps passing by calling the
    /// agent every `ttl / 3` (a heartbeat): the instance turns critical if
    /// this process stops beating.
    Ttl {
        /// How long the check stays passing without a beat.
        ttl: Duration,
    },
}

/// Where the ACL token comes from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    /// Given in code.
    Value(ConsulToken),
    /// Read from this environment variable when registering (a token never
    /// sits in a configuration file).
    Env(String),
}

impl RegistrationConfig {
    /// A builder; `service`, `id` and `port` must be set. Defaults: the
    /// agent at `http://127.0.0.1:8500`, no address (the agent's is used),
    /// an HTTP check of `http://<address>:<port>/health` (`127.0.0.1` when
    /// there is no address) every 10 s with a 5 s timeout, removal by the
    /// agent after 10 minutes critical (`DeregisterCriticalServiceAfter`, so
    /// a crashed process does not stay registered), connect timeout
    /// [`DEFAULT_CONNECT_TIMEOUT`](super::DEFAULT_CONNECT_TIMEOUT) (2 s),
    /// request timeout [`DEFAULT_REQUEST_TIMEOUT`](super::DEFAULT_REQUEST_TIMEOUT)
    /// (5 s), no ACL token.
    pub fn builder() -> RegistrationConfigBuilder {
        RegistrationConfigBuilder::new()
    }

    /// The agent's URL (e.g. `http://127.0.0.1:8500`).
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The service name (Consul's `Name`).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The instance id (Consul's `ID`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The instance's address; empty for the agent's.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The instance's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The tags (`Service.Tags`).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The metadata (`Service.Meta`).
    pub fn meta(&self) -> &BTreeMap<String, String> {
        &self.meta
    }

    /// The health check.
    pub fn check(&self) -> &HealthCheck {
        &self.check
    }

    /// How long the check may stay critical before the agent removes the
    /// instance.
    pub fn deregister_critical_after(&self) -> Duration {
        self.deregister_critical_after
    }

    /// How long connecting to the agent may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long each request to the agent may take, from connecting to the
    /// last byte of the answer.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The JSON body sent to `PUT /v1/agent/service/register`.
    pub fn body(&self) -> String {
        super::definition::body(self)
    }

    /// Registers with the agent. Keep the guard for as long as the service
    /// runs and call [`RegistrationGuard::deregister`] on graceful shutdown.
    /// A `token_env` that is not set fails with
    /// [`RegistrationError::Invalid`] before anything is sent.
    pub async fn register(self) -> Result<RegistrationGuard, RegistrationError> {
        let token = match &self.token {
            None => None,
            Some(Token::Value(token)) => Some(token.clone()),
            Some(Token::Env(var)) => Some(ConsulToken::new(std::env::var(var).map_err(|_| {
                ConfigError::new(
                    "token_env",
                    format!("environment variable {var} is not set"),
                )
            })?)),
        };
        RegistrationGuard::start(self, token).await
    }
}
