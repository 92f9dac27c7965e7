//! Registering a service with the local Consul agent, and deregistering it
//! on shutdown.
//!
//! `rs-consul` 0.15 has no agent endpoints (its `register_entity` is the
//! catalog API, which bypasses the agent's health checks), so these are our
//! own small typed requests over `hyper-util`'s client:
//! `PUT /v1/agent/service/register`, `PUT /v1/agent/service/deregister/:id`
//! and `PUT /v1/agent/check/pass/:check_id`.
//!
//! Every request ends by a deadline: connecting has
//! [`connect_timeout`](Registration::connect_timeout) (default 2 s), the
//! whole exchange, the answer's body included, has
//! [`request_timeout`](Registration::request_timeout) (default 5 s). An
//! agent that accepts the connection and never answers fails the step with
//! [`RegistrationError::Timeout`] instead of holding up the service's
//! start. At most 64 KiB of an answer is read, and an error quotes at most
//! 1 KiB of it. Ids in paths are percent-encoded, so an instance id with
//! `/`, `?` or `%` reaches the agent as one path segment.

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
use tokio::time::MissedTickBehavior;

use super::consul::ConsulToken;
use crate::ConfigError;

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

/// At most this much of an answer is read: the agent's answers to these
/// requests are empty or a line of text.
const MAX_BODY: usize = 64 * 1024;

/// At most this much of an error answer is quoted in the error.
const MAX_MESSAGE: usize = 1024;

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
    /// The registration is invalid; nothing was sent.
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
    connect_timeout: Duration,
    request_timeout: Duration,
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
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
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
        for (field, timeout) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::new(
                    field,
                    format!("must be greater than zero, got {timeout:?}"),
                ));
            }
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
        let agent = Agent::new(
            self.agent.trim_end_matches('/'),
            self.token.clone(),
            self.connect_timeout,
            self.request_timeout,
        );
        agent
            .put(
                RegistrationStep::Register,
                "/v1/agent/service/register",
                self.body(),
                agent.request_timeout,
            )
            .await?;
        tracing::info!(service = %self.definition.name, id = %self.definition.id, "registered with consul");
        let heartbeat = match self.health {
            Health::Ttl(ttl) => {
                let (stop, stopped) = oneshot::channel();
                let path = format!(
                    "/v1/agent/check/pass/{}",
                    path_segment(&self.definition.check.check_id)
                );
                tokio::spawn(heartbeat(agent.clone(), path, ttl / 3, stopped));
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

/// Passes the TTL check every `every` until `stopped` resolves. Beats keep
/// their schedule: each waits at most until the next is due, so an agent
/// that hangs costs that beat and not the ones after it.
async fn heartbeat(
    agent: Agent,
    path: String,
    every: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let within = agent.request_timeout.min(every);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stopped => return,
        }
        let beat = agent.put(RegistrationStep::Heartbeat, &path, String::new(), within);
        tokio::select! {
            result = beat => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "consul TTL heartbeat failed");
                }
            }
            _ = &mut stopped => return,
        }
    }
}

/// `s` as one URL path segment: everything but RFC 3986's unreserved
/// characters is percent-encoded, so `/`, `?`, `#`, `%` and spaces in an id
/// cannot change the path. The agent decodes it back.
fn path_segment(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The agent's URL as errors show it: without the user information a URL
/// may carry.
fn shown(base: &str) -> String {
    match base.parse::<http::Uri>() {
        Ok(uri) => match uri.authority().and_then(|a| a.as_str().rsplit_once('@')) {
            Some((userinfo, _)) => base.replacen(&format!("{userinfo}@"), "", 1),
            None => base.to_string(),
        },
        Err(_) => base.to_string(),
    }
}

/// An error answer's text for the error: lossy UTF-8, at most
/// [`MAX_MESSAGE`] bytes cut at a character boundary, `…` when cut.
fn message(body: &[u8], truncated: bool) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(MAX_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text[..end].to_string();
    if truncated || end < text.len() {
        out.push('…');
    }
    out
}

/// An error and its sources, as one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Whether the connector gave up at its connect timeout.
fn connect_timed_out(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = s.source();
    }
    false
}

#[derive(Clone)]
struct Agent {
    base: String,
    shown: String,
    token: Option<ConsulToken>,
    client: Client<HttpConnector, Full<Bytes>>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Agent {
    fn new(
        base: &str,
        token: Option<ConsulToken>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Agent {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        Agent {
            base: base.to_string(),
            shown: shown(base),
            token,
            client: Client::builder(TokioExecutor::new()).build(connector),
            connect_timeout,
            request_timeout,
        }
    }

    /// `PUT base + path`, the whole exchange within `within`.
    async fn put(
        &self,
        step: RegistrationStep,
        path: &str,
        body: String,
        within: Duration,
    ) -> Result<(), RegistrationError> {
        match tokio::time::timeout(within, self.exchange(step, path, body)).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out(step, within)),
        }
    }

    async fn exchange(
        &self,
        step: RegistrationStep,
        path: &str,
        body: String,
    ) -> Result<(), RegistrationError> {
        let mut req = http::Request::put(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            let mut value = http::HeaderValue::from_str(token.secret()).map_err(|_| {
                self.unreachable(step, "the ACL token is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            req = req.header("X-Consul-Token", value);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.unreachable(step, chain(&e)))?;
        let response = self.client.request(req).await.map_err(|e| {
            if connect_timed_out(&e) {
                self.timed_out(step, self.connect_timeout)
            } else {
                self.unreachable(step, chain(&e))
            }
        })?;
        let status = response.status();
        // At most MAX_BODY bytes; the rest is never read (dropping the
        // body closes the connection).
        let mut body = response.into_body();
        let (mut read, mut truncated, mut broken) = (Vec::new(), false, None);
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let room = MAX_BODY - read.len();
                    if data.len() > room {
                        read.extend_from_slice(&data[..room]);
                        truncated = true;
                        break;
                    }
                    read.extend_from_slice(&data);
                }
                Err(e) => {
                    broken = Some(chain(&e));
                    break;
                }
            }
        }
        if status.is_success() {
            // The agent has done it; a broken or overlong body after a 2xx
            // changes nothing.
            return Ok(());
        }
        let body = match broken {
            None => message(&read, truncated),
            Some(e) if read.is_empty() => format!("(the answer broke off: {e})"),
            Some(e) => format!("{} (the answer broke off: {e})", message(&read, false)),
        };
        Err(RegistrationError::Rejected {
            agent: self.shown.clone(),
            step,
            status: status.as_u16(),
            body,
        })
    }

    fn timed_out(&self, step: RegistrationStep, after: Duration) -> RegistrationError {
        RegistrationError::Timeout {
            agent: self.shown.clone(),
            step,
            after,
        }
    }

    fn unreachable(&self, step: RegistrationStep, reason: String) -> RegistrationError {
        RegistrationError::Unreachable {
            agent: self.shown.clone(),
            step,
            reason,
        }
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
                RegistrationStep::Deregister,
                &format!("/v1/agent/service/deregister/{}", path_segment(&self.id)),
                String::new(),
                self.agent.request_timeout,
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
                    let path = format!("/v1/agent/service/deregister/{}", path_segment(&id));
                    let within = agent.request_timeout;
                    let step = RegistrationStep::Deregister;
                    if let Err(e) = agent.put(step, &path, String::new(), within).await {
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
