//! Configuration from the environment, with defaults that run locally.

use std::time::Duration;

use meshguard::discovery::consul::{ConsulDiscoveryBuilder, ConsulToken};

/// A variable, or `default` when unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// A variable that may be unset.
pub fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A number, or `default`; a malformed value stops the service with a
/// message naming the variable.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match env_opt(name) {
        None => default,
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid number")),
    }
}

/// Where a service finds another: Consul when `CONSUL_HTTP_ADDR` is set
/// (with the ACL token in `CONSUL_HTTP_TOKEN`, if any), else the static URLs in `<SERVICE>_URLS` (comma-separated), else
/// `fallback`.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// `service`'s passing instances in the Consul agent at `address`.
    Consul {
        /// The agent's URL.
        address: String,
        /// The service's name in Consul.
        service: String,
    },
    /// A fixed list of base URLs.
    Urls(Vec<String>),
}

impl Upstream {
    /// `service`'s upstream from the environment, `urls_var` naming its
    /// static URLs variable.
    pub fn from_env(service: &str, urls_var: &str, fallback: &str) -> Upstream {
        match env_opt("CONSUL_HTTP_ADDR") {
            Some(address) => Upstream::Consul {
                address: with_scheme(&address),
                service: service.to_string(),
            },
            None => Upstream::Urls(
                env_or(urls_var, fallback)
                    .split(',')
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect(),
            ),
        }
    }
}

/// How the order service calls the user service: `USER_SERVICE_PROTOCOL`,
/// `grpc` (the default: `users.Users/Get`) or `http` (`GET /users/{id}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC over h2c, through `meshguard::grpc::Channel`.
    #[default]
    Grpc,
    /// JSON over HTTP, through `ServiceClient`.
    Http,
}

impl Protocol {
    /// The protocol in the variable `name`, or gRPC when unset; any other
    /// value stops the service with a message naming the variable.
    pub fn from_env(name: &str) -> Protocol {
        match env_opt(name).as_deref() {
            None | Some("grpc") => Protocol::Grpc,
            Some("http") => Protocol::Http,
            Some(other) => panic!("{name}={other:?}: expected \"grpc\" or \"http\""),
        }
    }
}

/// The Consul ACL token in `CONSUL_HTTP_TOKEN`, as Consul's own tools read
/// it: sent with registration and discovery requests, never logged
/// (`ConsulToken`'s `Debug` is redacted).
pub fn consul_token() -> Option<ConsulToken> {
    env_opt("CONSUL_HTTP_TOKEN").map(ConsulToken::new)
}

/// `builder` with the token of [`consul_token`], if any.
pub fn discovery(builder: ConsulDiscoveryBuilder) -> ConsulDiscoveryBuilder {
    match consul_token() {
        Some(token) => builder.token(token),
        None => builder,
    }
}

/// `CONSUL_HTTP_ADDR` may be `host:port`, as Consul's own tools accept.
pub fn with_scheme(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

/// How a service serves connections: its timeouts and how long it drains
/// at shutdown. Every field bounds what one client can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// A connection must send a request's headers within this time
    /// (`HEADER_READ_TIMEOUT_MS`, 5 s): from the moment it is accepted for
    /// its first request, from the moment it goes idle for the next ones. A
    /// client that sends nothing, or headers a byte at a time, is
    /// disconnected.
    pub header_read_timeout: Duration,
    /// A request must be answered within this time, its body read included
    /// (`REQUEST_TIMEOUT_MS`, 10 s); past it the answer is 503.
    pub request_timeout: Duration,
    /// At shutdown, deregistering and then draining in-flight requests end
    /// by this bound (`DRAIN_MS`, 10 s); connections still open then are
    /// closed. Kubernetes' `terminationGracePeriodSeconds` must be above it.
    pub drain: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    /// The defaults, overridden by `HEADER_READ_TIMEOUT_MS`,
    /// `REQUEST_TIMEOUT_MS` and `DRAIN_MS` (milliseconds, at least 1).
    pub fn from_env() -> ServerConfig {
        let d = ServerConfig::default();
        let ms = |name: &str, default: Duration| {
            Duration::from_millis(env_num(name, default.as_millis() as u64).max(1))
        };
        ServerConfig {
            header_read_timeout: ms("HEADER_READ_TIMEOUT_MS", d.header_read_timeout),
            request_timeout: ms("REQUEST_TIMEOUT_MS", d.request_timeout),
            drain: ms("DRAIN_MS", d.drain),
        }
    }
}
