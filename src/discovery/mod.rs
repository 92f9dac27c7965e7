//! Where a service's instances are: endpoints, as `tower::discover` changes.
//!
//! A discovery source is a stream of [`Change`]s keyed by instance id, which
//! is what `tower::discover::Discover` and so `tower::balance` consume.
//! [`StaticDiscovery`] serves a fixed list (local runs, tests); the Consul
//! health watch is in [`consul`] (feature `consul`), and registering an
//! instance with the agent in [`registration`]. Balancing over the
//! endpoints, connecting each [`Endpoint`], is
//! [`balance::balance`](crate::balance::balance)'s job.

#[cfg(feature = "consul")]
#[cfg_attr(docsrs, doc(cfg(feature = "consul")))]
pub mod consul;
#[cfg(feature = "consul")]
#[cfg_attr(docsrs, doc(cfg(feature = "consul")))]
pub mod registration;

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::ConfigError;

/// One instance of a service, where to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    id: String,
    scheme: Scheme,
    host: String,
    port: u16,
    tags: Vec<String>,
}

/// How an endpoint is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http://`
    Http,
    /// `https://`
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl Endpoint {
    /// An endpoint `id` at `host:port`.
    pub fn new(id: impl Into<String>, scheme: Scheme, host: impl Into<String>, port: u16) -> Self {
        Endpoint {
            id: id.into(),
            scheme,
            host: host.into(),
            port,
            tags: Vec::new(),
        }
    }

    /// With these tags (Consul's `Service.Tags`).
    pub fn with_tags(mut self, tags: Vec<String>) -> Self {
        self.tags = tags;
        self
    }

    /// An endpoint from a URL such as `http://10.0.0.7:8080`; its id is the
    /// URL's authority. Only `http` and `https` are accepted; the port
    /// defaults to the scheme's.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| ConfigError::new("url", format!("{url:?} is not a URL: {e}")))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(other) => {
                return Err(ConfigError::new(
                    "url",
                    format!("unknown URL scheme {other:?} in {url:?}: use http or https"),
                ));
            }
            None => {
                return Err(ConfigError::new(
                    "url",
                    format!("{url:?} has no scheme: write http://{url}"),
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| ConfigError::new("url", format!("{url:?} has no host")))?;
        let port = authority.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        Ok(Endpoint::new(
            authority.as_str(),
            scheme,
            authority.host(),
            port,
        ))
    }

    /// The instance id (Consul's `Service.ID`), the key of its changes.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host (an IP address or a name).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// `scheme://host:port`, for building request URIs. IPv6 hosts are
    /// bracketed.
    pub fn base_url(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("{}://[{}]:{}", self.scheme.as_str(), self.host, self.port)
        } else {
            format!("{}://{}:{}", self.scheme.as_str(), self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id, self.base_url())
    }
}

/// A change to the set of endpoints, keyed by instance id.
pub type Change = tower::discover::Change<String, Endpoint>;

/// A fixed list of endpoints: inserts them all, then ends.
///
/// ```
/// use meshguard::discovery::StaticDiscovery;
///
/// let d = StaticDiscovery::from_urls(["http://127.0.0.1:8081", "http://127.0.0.1:8082"]).unwrap();
/// assert_eq!(d.len(), 2);
/// let err = StaticDiscovery::from_urls(["ftp://files"]).unwrap_err();
/// assert_eq!(err.field(), "url");
/// ```
#[derive(Debug, Clone)]
pub struct StaticDiscovery {
    pending: Vec<Endpoint>,
}

impl StaticDiscovery {
    /// From endpoints.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        let mut pending = endpoints;
        pending.reverse();
        StaticDiscovery { pending }
    }

    /// From URLs; fails on the first one that is not an `http` or `https`
    /// URL, naming it.
    pub fn from_urls<I, S>(urls: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints = urls
            .into_iter()
            .map(|u| Endpoint::from_url(u.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StaticDiscovery::new(endpoints))
    }

    /// Endpoints not yet yielded.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether every endpoint has been yielded.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

impl futures_core::Stream for StaticDiscovery {
    type Item = Result<Change, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Ends once every endpoint is yielded, as tower's `ServiceList`
        // does; tower's balancer keeps the endpoints it has.
        Poll::Ready(
            self.pending
                .pop()
                .map(|e| Ok(Change::Insert(e.id.clone(), e))),
        )
    }
}
