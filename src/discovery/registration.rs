//! Registering a service with the local Consul agent, and deregistering it
//! on shutdown.
//!
//! `rs-consul` 0.15 has no agent endpoints (its `register_entity` is the
//! catalog API, which bypasses the agent's health checks), so these are our
//! own small typed requests over `hyper-util`'s client:
//! `PUT /v1/agent/service/register`, `PUT /v1/agent/service/deregister/:id`
//! and `PUT /v1/agent/check/pass/:check_id`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::oneshot;

use super::consul::ConsulToken;
use crate::ConfigError;

/// A request to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The registration is invalid; nothing was sent.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The agent could not be reached.
    #[error("consul agent unreachable: {0}")]
    Unreachable(String),
    /// The agent answered with an error status.
    #[error("consul agent answered {status}: {body}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The agent's message.
        body: String,
    },
}

/// The service definition sent to the agent (Consul's field names).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct Definition {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    address: String,
    port: u16,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    meta: BTreeMap<String, String>,
    check: Check,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
struct Check {
    #[serde(rename = "CheckID")]
    check_id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    http: Option<String>,
    #[serde(rename = "Method", skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(rename = "Interval", skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(rename = "Timeout", skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(rename = "DeregisterCriticalServiceAfter")]
    deregister_after: String,
}

/// Consul's duration format, whole milliseconds or seconds.
fn go(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// How the agent checks the service.
#[derive(Debug, Clone)]
enum Health {
    Http {
        url: String,
        interval: Duration,
        timeout: Duration,
    },
    Ttl(Duration),
}

/// Builds a registration; see [`Registration::builder`].
#[derive(Debug, Clone)]
pub struct Registration {
    agent: String,
    token: Option<ConsulToken>,
    definition: Definition,
    health: Health,
}

impl Registration {
    /// Registers `name` as instance `id` at `address:port` with the agent at
    /// `agent` (e.g. `http://127.0.0.1:8500`). Give it a health check with
    /// [`http_check`](Self::http_check) (the default: `GET /health` every
    /// 10 s, timeout 5 s) or [`ttl_check`](Self::ttl_check). Instances whose
    /// check stays critical for 10 minutes are removed by the agent
    /// (`DeregisterCriticalServiceAfter`), so a crashed process does not
    /// stay registered.
    pub fn builder(
        agent: impl Into<String>,
        name: impl Into<String>,
        id: impl Into<String>,
        address: impl Into<String>,
        port: u16,
    ) -> Registration {
        let (name, id, address) = (name.into(), id.into(), address.into());
        let url = format!(
            "http://{}:{port}/health",
            if address.is_empty() {
                "127.0.0.1"
            } else {
                &address
            }
        );
        Registration {
            agent: agent.into(),
            token: None,
            definition: Definition {
                check: Check {
                    check_id: format!("service:{id}"),
                    name: format!("Service '{name}' check"),
                    http: None,
                    method: None,
                    interval: None,
                    timeout: None,
                    ttl: None,
                    status: None,
                    deregister_after: "10m".into(),
                },
                id,
                name,
                tags: Vec::new(),
                address,
                port,
                meta: BTreeMap::new(),
            },
            health: Health::Http {
                url,
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
            },
        }
    }

    /// Tags (`Service.Tags`).
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.definition.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// A metadata entry (`Service.Meta`).
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.definition.meta.insert(key.into(), value.into());
        self
    }

    /// The ACL token (needs `service:write`).
    pub fn token(mut self, token: ConsulToken) -> Self {
        self.token = Some(token);
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
        self.health = Health::Http {
            url: url.into(),
            interval,
            timeout,
        };
        self
    }

    /// A TTL check the [`RegistrationGuard`] keeps passing by calling the
    /// agent every `ttl / 3` (a heartbeat): the instance turns critical if
    /// this process stops beating.
    pub fn ttl_check(mut self, ttl: Duration) -> Self {
        self.health = Health::Ttl(ttl);
        self
    }

    /// How long the check may stay critical before the agent removes the
    /// instance (Consul's minimum is 1 minute).
    pub fn deregister_critical_after(mut self, after: Duration) -> Self {
        self.definition.check.deregister_after = go(after);
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.definition.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.definition.id.is_empty() {
            return Err(ConfigError::new("id", "must not be empty"));
        }
        let uri: http::Uri = self.agent.parse().map_err(|e| {
            ConfigError::new("agent", format!("{:?} is not a URL: {e}", self.agent))
        })?;
        if uri.scheme_str() != Some("http") {
            return Err(ConfigError::new(
                "agent",
                format!("{:?}: only http:// agents are supported", self.agent),
            ));
        }
        match &self.health {
            Health::Http {
                interval, timeout, ..
            } => {
                if interval.is_zero() || timeout.is_zero() {
                    return Err(ConfigError::new(
                        "http_check",
                        "interval and timeout must be greater than zero",
                    ));
                }
            }
            Health::Ttl(ttl) => {
                if *ttl < Duration::from_secs(1) {
                    return Err(ConfigError::new(
                        "ttl_check",
                        format!("must be at least 1s, got {ttl:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The JSON body sent to `PUT /v1/agent/service/register`.
    pub fn body(&self) -> String {
        let mut d = self.definition.clone();
        match &self.health {
            Health::Http {
                url,
                interval,
                timeout,
            } => {
                d.check.http = Some(url.clone());
                d.check.method = Some("GET".into());
                d.check.interval = Some(go(*interval));
                d.check.timeout = Some(go(*timeout));
            }
            Health::Ttl(ttl) => {
                d.check.ttl = Some(go(*ttl));
                // Passing from the start: the heartbeat follows at once.
                d.check.status = Some("passing".into());
            }
        }
        serde_json::to_string(&d).expect("a definition serializes")
    }

    /// Registers with the agent. Keep the guard for as long as the service
    /// runs and call [`RegistrationGuard::deregister`] on graceful shutdown.
    pub async fn register(self) -> Result<RegistrationGuard, RegistrationError> {
        self.validate()?;
        let agent = Agent::new(self.agent.trim_end_matches('/'), self.token.clone());
        agent.put("/v1/agent/service/register", self.body()).await?;
        tracing::info!(service = %self.definition.name, id = %self.definition.id, "registered with consul");
        let heartbeat = match self.health {
            Health::Ttl(ttl) => {
                let (stop, stopped) = oneshot::channel();
                let agent = agent.clone();
                let path = format!("/v1/agent/check/pass/{}", self.definition.check.check_id);
                tokio::spawn(async move {
                    let mut stopped = stopped;
                    loop {
                        if let Err(e) = agent.put(&path, String::new()).await {
                            tracing::warn!(error = %e, "consul TTL heartbeat failed");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(ttl / 3) => {}
                            _ = &mut stopped => return,
                        }
                    }
                });
                Some(stop)
            }
            Health::Http { .. } => None,
        };
        Ok(RegistrationGuard {
            agent,
            id: self.definition.id,
            heartbeat,
            done: false,
        })
    }
}

#[derive(Clone)]
struct Agent {
    base: String,
    token: Option<ConsulToken>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Agent {
    fn new(base: &str, token: Option<ConsulToken>) -> Agent {
        Agent {
            base: base.to_string(),
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn put(&self, path: &str, body: String) -> Result<(), RegistrationError> {
        let mut req = http::Request::put(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.header("X-Consul-Token", token.secret());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| RegistrationError::Unreachable(e.to_string()))?;
        let response = self
            .client
            .request(req)
            .await
            .map_err(|e| RegistrationError::Unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Err(RegistrationError::Rejected {
            status: status.as_u16(),
            body,
        })
    }
}

/// Keeps a registration (and its TTL heartbeat) alive; deregisters on
/// [`deregister`](Self::deregister), or, as a fallback, when dropped inside a
/// tokio runtime.
pub struct RegistrationGuard {
    agent: Agent,
    id: String,
    heartbeat: Option<oneshot::Sender<()>>,
    done: bool,
}

impl fmt::Debug for RegistrationGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationGuard")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RegistrationGuard {
    /// The registered instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops the heartbeat and removes the instance from the agent: call it
    /// on graceful shutdown, before the server stops accepting requests, so
    /// clients stop picking this instance first.
    pub async fn deregister(mut self) -> Result<(), RegistrationError> {
        self.done = true;
        self.heartbeat.take();
        let result = self
            .agent
            .put(
                &format!("/v1/agent/service/deregister/{}", self.id),
                String::new(),
            )
            .await;
        if result.is_ok() {
            tracing::info!(id = %self.id, "deregistered from consul");
        }
        result
    }
}

impl Drop for RegistrationGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.heartbeat.take();
        let (agent, id) = (self.agent.clone(), self.id.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let path = format!("/v1/agent/service/deregister/{id}");
                    if let Err(e) = agent.put(&path, String::new()).await {
                        tracing::warn!(%id, error = %e, "deregistration on drop failed");
                    }
                });
            }
            Err(_) => tracing::warn!(
                %id,
                "registration guard dropped outside a tokio runtime: not deregistered \
                 (the agent removes it once its check has been critical long enough)"
            ),
        }
    }
}
