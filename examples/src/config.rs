//! Configuration from the environment, with defaults that run locally.

use std::time::Duration;

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

/// Where a service finds another: Consul when `CONSUL_HTTP_ADDR` is set,
/// else the static URLs in `<SERVICE>_URLS` (comma-separated), else
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

/// `CONSUL_HTTP_ADDR` may be `host:port`, as Consul's own tools accept.
pub fn with_scheme(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

/// The time a service waits for in-flight requests at shutdown.
pub const DRAIN: Duration = Duration::from_secs(10);
