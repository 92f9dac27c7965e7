//! [`RegistrationConfigBuilder`], and the deserialized form that goes
//! through it, so both check the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::{HealthCheck, RegistrationConfig, Token};
use super::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
use crate::ConfigError;
use crate::discovery::consul::ConsulToken;

/// The agent's address unless set, as `CONSUL_HTTP_ADDR` defaults.
const DEFAULT_AGENT: &str = "http://127.0.0.1:8500";

/// Builds a [`RegistrationConfig`]; see [`RegistrationConfig::builder`].
#[derive(Debug, Clone)]
pub struct RegistrationConfigBuilder {
    agent: String,
    service: Option<String>,
    id: Option<String>,
    address: String,
    port: Option<u16>,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
    check: Check,
    deregister_critical_after: Duration,
    connect_timeout: Duration,
    request_timeout: Duration,
    token: Option<Token>,
}

/// The check as set, resolved by `build` (the default URL needs the
/// address and port).
#[derive(Debug, Clone)]
enum Check {
    Http {
        url: Option<String>,
        interval: Duration,
        timeout: Duration,
    },
    Ttl(Duration),
}

impl RegistrationConfigBuilder {
    pub(super) fn new() -> Self {
        RegistrationConfigBuilder {
            agent: DEFAULT_AGENT.to_string(),
            service: None,
            id: None,
            address: String::new(),
            port: None,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            check: Check::Http {
                url: None,
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
            },
            deregister_critical_after: Duration::from_secs(10 * 60),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            token: None,
        }
    }

    /// The agent's URL (default `http://127.0.0.1:8500`); only `http://`.
    pub fn agent(mut self, url: impl Into<String>) -> Self {
        self.agent = url.into();
        self
    }

    /// The service name (Consul's `Name`). Required.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// The instance id (Consul's `ID`), unique on the agent. Required.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The address clients dial (default none: Consul's answers then carry
    /// the node's address).
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// The port clients dial. Required.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Tags (`Service.Tags`).
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// A metadata entry (`Service.Meta`).
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// The ACL token (needs `service:write`).
    pub fn token(mut self, token: ConsulToken) -> Self {
        self.token = Some(Token::Value(token));
        self
    }

    /// The name of the environment variable holding the ACL token, read
    /// when registering.
    pub fn token_env(mut self, var: impl Into<String>) -> Self {
        self.token = Some(Token::Env(var.into()));
        self
    }

    /// The agent calls `url` every `interval`: 2xx is passing, 429 warning,
    /// anything else critical.
    pub fn http_check(
        mut self,
        url: impl Into<String>,
        interval: Duration,
        timeout: Duration,
    ) -> Self {
        self.check = Check::Http {
            url: Some(url.into()),
            interval,
            timeout,
        };
        self
    }

    /// A TTL check the [`RegistrationGuard`](super::RegistrationGuard)
    /// keeps passing by calling the agent every `ttl / 3` (a heartbeat):
    /// the instance turns critical if this process stops beating. At
    /// least 1 s.
    pub fn ttl_check(mut self, ttl: Duration) -> Self {
        self.check = Check::Ttl(ttl);
        self
    }

    /// How long the check may stay critical before the agent removes the
    /// instance (default 10 minutes; Consul's minimum is 1 minute).
    pub fn deregister_critical_after(mut self, after: Duration) -> Self {
        self.deregister_critical_after = after;
        self
    }

    /// How long connecting to the agent may take (default
    /// [`DEFAULT_CONNECT_TIMEOUT`], 2 s). Must be greater than zero.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long each request to the agent may take, from connecting to the
    /// last byte of the answer (default [`DEFAULT_REQUEST_TIMEOUT`], 5 s).
    /// Must be greater than zero. A TTL heartbeat waits at most until the
    /// next beat is due, if that is sooner.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Checks every value; an error names the field (`service`, `id`,
    /// `port`, `agent`, `connect_timeout`, `request_timeout`,
    /// `check.interval`, `check.timeout`, `check.ttl`, `token_env`).
    pub fn build(self) -> Result<RegistrationConfig, ConfigError> {
        let service = required("service", self.service)?;
        let id = required("id", self.id)?;
        let port = self
            .port
            .ok_or_else(|| ConfigError::new("port", "must be set"))?;
        let uri: http::Uri = self.agent.parse().map_err(|e| {
            ConfigError::new("agent", format!("{:?} is not a URL: {e}", self.agent))
        })?;
        if uri.scheme_str() != Some("http") {
            return Err(ConfigError::new(
                "agent",
                format!("{:?}: only http:// agents are supported", self.agent),
            ));
        }
        for (field, timeout) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            positive(field, timeout)?;
        }
        let check = match self.check {
            Check::Http {
                url,
                interval,
                timeout,
            } => {
                positive("check.interval", interval)?;
                positive("check.timeout", timeout)?;
                let url = url.unwrap_or_else(|| {
                    let host = if self.address.is_empty() {
                        "127.0.0.1"
                    } else {
                        &self.address
                    };
                    format!("http://{host}:{port}/health")
                });
                HealthCheck::Http {
                    url,
                    interval,
                    timeout,
                }
            }
            Check::Ttl(ttl) => {
                if ttl < Duration::from_secs(1) {
                    return Err(ConfigError::new(
                        "check.ttl",
                        format!("must be at least 1s, got {ttl:?}"),
                    ));
                }
                HealthCheck::Ttl { ttl }
            }
        };
        if let Some(Token::Env(var)) = &self.token {
            if var.is_empty() {
                return Err(ConfigError::new("token_env", "must not be empty"));
            }
        }
        Ok(RegistrationConfig {
            agent: self.agent,
            service,
            id,
            address: self.address,
            port,
            tags: self.tags,
            meta: self.meta,
            check,
            deregister_critical_after: self.deregister_critical_after,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            token: self.token,
        })
    }
}

/// A set, non-empty text.
fn required(field: &str, value: Option<String>) -> Result<String, ConfigError> {
    match value {
        None => Err(ConfigError::new(field, "must be set")),
        Some(v) if v.is_empty() => Err(ConfigError::new(field, "must not be empty")),
        Some(v) => Ok(v),
    }
}

fn positive(field: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::new(
            field,
            format!("must be greater than zero, got {d:?}"),
        ));
    }
    Ok(())
}

/// A [`RegistrationConfig`] as written in a file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistration {
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    #[serde(default)]
    check: Option<RawCheck>,
    #[serde(default, with = "humantime_serde")]
    deregister_critical_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    request_timeout: Option<Duration>,
    #[serde(default)]
    token_env: Option<String>,
}

/// `check = { kind = "http", url = "...", interval = "10s", timeout = "5s" }`
/// (each but `kind` optional) or `check = { kind = "ttl", ttl = "30s" }`.
#[derive(serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum RawCheck {
    Http {
        #[serde(default)]
        url: Option<String>,
        #[serde(default, with = "humantime_serde")]
        interval: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
    },
    Ttl {
        #[serde(with = "humantime_serde")]
        ttl: Duration,
    },
}

impl TryFrom<RawRegistration> for RegistrationConfig {
    type Error = ConfigError;

    fn try_from(raw: RawRegistration) -> Result<Self, ConfigError> {
        let mut b = RegistrationConfigBuilder::new();
        b.service = raw.service;
        b.id = raw.id;
        b.port = raw.port;
        b.tags = raw.tags;
        b.meta = raw.meta;
        if let Some(agent) = raw.agent {
            b.agent = agent;
        }
        if let Some(address) = raw.address {
            b.address = address;
        }
        match raw.check {
            None => {}
            Some(RawCheck::Http {
                url,
                interval,
                timeout,
            }) => {
                if let Check::Http {
                    url: u,
                    interval: i,
                    timeout: t,
                } = &mut b.check
                {
                    *u = url;
                    *i = interval.unwrap_or(*i);
                    *t = timeout.unwrap_or(*t);
                }
            }
            Some(RawCheck::Ttl { ttl }) => b.check = Check::Ttl(ttl),
        }
        if let Some(d) = raw.deregister_critical_after {
            b.deregister_critical_after = d;
        }
        if let Some(d) = raw.connect_timeout {
            b.connect_timeout = d;
        }
        if let Some(d) = raw.request_timeout {
            b.request_timeout = d;
        }
        if let Some(var) = raw.token_env {
            b = b.token_env(var);
        }
        b.build()
    }
}
