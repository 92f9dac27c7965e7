//! The bottom of the client stack: one endpoint's transport, over
//! hyper-util's pooled client or a `reqwest::Client` of the user's own,
//! reading the whole response under the attempt's timer, and classifying
//! what goes wrong where it is known.
//!
//! ```text
//! mod.rs      EndpointTransport: the URI, the deadline check, the attempt's timer, the connection
//! headers.rs  the full header set of an attempt, for either connection
//! future.rs   TransportFuture: the head, then the body (bounded), before the timer
//! reqwest.rs  the exchange through a reqwest::Client (feature `reqwest`)
//! outcome.rs  hyper-util's and reqwest's errors as Outcomes; BodyTooLarge
//! ```

mod future;
mod headers;
mod outcome;
#[cfg(feature = "reqwest")]
mod reqwest;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::Service;

use super::call::Call;
use super::error::InvalidUri;
use super::tls::{HttpProtocol, TlsConfig};
use crate::deadline::DeadlineExceeded;
use crate::discovery::Endpoint;
use crate::{BoxError, ConfigError};
pub(crate) use future::TransportFuture;
use future::TransportState;
pub(crate) use outcome::{BodyTooLarge, tls_refused, transport_outcome};

/// The request body every client call sends: buffered, so it can be sent
/// again by a retry.
pub(crate) type Body = Full<Bytes>;

/// One pool of connections for every endpoint of every client that shares
/// it; HTTP/1.1 or HTTP/2 over TCP, or over TLS (rustls) for `https`
/// endpoints.
pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

fn http_client(
    idle: Duration,
    max_idle_per_host: usize,
    tls: &TlsConfig,
    protocol: HttpProtocol,
) -> HttpClient {
    let https = connector(tls, protocol);
    let mut client = Client::builder(hyper_util::rt::TokioExecutor::new());
    client
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(max_idle_per_host);
    if protocol == HttpProtocol::Http2 {
        // Prior knowledge on `http` endpoints (h2c); on `https` ones ALPN
        // offers only `h2`.
        client.http2_only(true);
    }
    if protocol != HttpProtocol::Http1 {
        http2_keep_alive(&mut client);
    }
    client.build(https)
}

/// How long making a TCP connection may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an HTTP/2 connection is pinged, idle or not.
pub(crate) const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// How long a ping's answer may take before the connection is closed.
pub(crate) const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 pings on every connection, idle or not, so one to a host that
/// died silently (powered off, partitioned) is found dead within 30 s
/// instead of when the kernel gives up on it: a multiplexed connection
/// carries every call to its endpoint.
fn http2_keep_alive(client: &mut hyper_util::client::legacy::Builder) {
    client
        .timer(hyper_util::rt::TokioTimer::new())
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .http2_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .http2_keep_alive_while_idle(true);
}

/// TCP (no delay), then TLS by `tls` for `https` endpoints, with ALPN for
/// `protocol`: the connector of the built-in pool and of gRPC channels.
pub(crate) fn connector(
    tls: &TlsConfig,
    protocol: HttpProtocol,
) -> hyper_rustls::HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    // A connection made in the background (after the attempt that asked
    // for it gave up) is still bounded.
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.rustls())
        .https_or_http();
    let https = match tls.server_name_override() {
        Some(name) => {
            https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => https,
    };
    // ALPN: none for HTTP/1.1 (as before), `h2` alone, or both.
    match protocol {
        HttpProtocol::Http1 => https.enable_http1().wrap_connector(http),
        HttpProtocol::Http2 => https.enable_http2().wrap_connector(http),
        HttpProtocol::Negotiate => https.enable_all_versions().wrap_connector(http),
    }
}

/// What an endpoint's transport sends through: hyper-util's pool, built by
/// the client, or a `reqwest::Client` of the user's own. (With the
/// `reqwest` feature off, one variant: the match costs nothing.)
#[derive(Clone)]
// Not boxed: one per endpoint, made when it is discovered and never moved
// on a call's path, where a box would cost a pointer chase every call.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Connection {
    /// The built-in pool (`http_client`).
    Hyper(HttpClient),
    /// The user's client, with its own pool, proxies, cookies and TLS.
    #[cfg(feature = "reqwest")]
    Reqwest(::reqwest::Client),
}

impl Connection {
    /// The user's reqwest client, or the built-in pool with its settings
    /// (which a reqwest client does not use: set, they are rejected,
    /// naming the field).
    pub(crate) fn new(
        #[cfg(feature = "reqwest")] reqwest: Option<::reqwest::Client>,
        pool_idle_timeout: Option<Duration>,
        pool_max_idle_per_host: Option<usize>,
        tls: Option<TlsConfig>,
        protocol: Option<HttpProtocol>,
    ) -> Result<Connection, ConfigError> {
        #[cfg(feature = "reqwest")]
        if let Some(client) = reqwest {
            let pool = [
                ("pool_idle_timeout", pool_idle_timeout.is_some()),
                ("pool_max_idle_per_host", pool_max_idle_per_host.is_some()),
                ("tls", tls.is_some()),
                ("protocol", protocol.is_some()),
            ];
            if let Some((field, _)) = pool.into_iter().find(|(_, set)| *set) {
                return Err(ConfigError::new(
                    field,
                    "a setting of the built-in transport (its pool, TLS, HTTP version), which a \
                     client built with `reqwest(..)` does not use: set it on the \
                     `reqwest::ClientBuilder`",
                ));
            }
            return Ok(Connection::Reqwest(client));
        }
        Ok(Connection::Hyper(http_client(
            pool_idle_timeout.unwrap_or(Duration::from_secs(90)),
            pool_max_idle_per_host.unwrap_or(32),
            &tls.unwrap_or_default(),
            protocol.unwrap_or_default(),
        )))
    }

    fn name(&self) -> &'static str {
        match self {
            Connection::Hyper(_) => "hyper-util",
            #[cfg(feature = "reqwest")]
            Connection::Reqwest(_) => "reqwest",
        }
    }
}

/// Sends [`Call`]s to one endpoint, over the shared [`Connection`], with
/// the propagated headers and the remaining deadline in the
/// [`DEADLINE`](crate::deadline::DEADLINE) header, and reads the response
/// body (up to the client's limit) before it answers.
///
/// The body is read here, under the endpoint's breaker and inside the
/// attempt, because that is where its failures belong: a body that stalls
/// ends with the attempt's timeout and one cut off mid-way is a transport
/// error (retried for idempotent requests), and both count against the
/// instance. Read above the stack, a stalled body hung the call past every
/// timeout while the instance's breaker had already recorded a success.
#[derive(Clone)]
pub(crate) struct EndpointTransport {
    connection: Connection,
    scheme: Scheme,
    authority: Result<Authority, Arc<str>>,
    limits: Limits,
    /// Headers sent with every call that does not set its own.
    defaults: Arc<HeaderMap>,
    attempts: super::metrics::AttemptMetrics,
}

/// What bounds one exchange with an endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The attempt timeout: headers and body, from the call.
    pub(crate) timeout: Option<Duration>,
    /// The largest response body read.
    pub(crate) max_body_size: usize,
}

impl fmt::Debug for EndpointTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointTransport")
            .field("connection", &self.connection.name())
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl EndpointTransport {
    pub(crate) fn new(
        connection: Connection,
        endpoint: &Endpoint,
        limits: Limits,
        defaults: Arc<HeaderMap>,
        attempts: super::metrics::AttemptMetrics,
    ) -> Self {
        let base = endpoint.base_url();
        let authority = base
            .split_once("://")
            .map_or(base.as_str(), |(_, rest)| rest)
            .parse::<Authority>()
            .map_err(|e| Arc::from(format!("{base}: {e}")));
        let scheme = match endpoint.scheme() {
            crate::discovery::Scheme::Http => Scheme::HTTP,
            crate::discovery::Scheme::Https => Scheme::HTTPS,
        };
        EndpointTransport {
            connection,
            scheme,
            authority,
            limits,
            defaults,
            attempts,
        }
    }
}

impl Service<Call> for EndpointTransport {
    type Response = Response<Bytes>;
    type Error = BoxError;
    type Future = TransportFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Both clients queue for a pooled connection inside `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> TransportFuture {
        let authority = match &self.authority {
            Ok(a) => a.clone(),
            Err(e) => return TransportFuture::failed(InvalidUri(e.to_string()).into()),
        };
        let parts = &*call.parts;
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(authority);
        uri.path_and_query = Some(parts.path.clone());
        let uri = match Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(e) => return TransportFuture::failed(InvalidUri(e.to_string()).into()),
        };
        // One clock read for the header and the timer (about 30 ns each here).
        let now = Instant::now();
        if call.deadline.is_some_and(|d| d.instant() <= now) {
            // Passed while the call waited for an endpoint: not sent.
            return TransportFuture::failed(DeadlineExceeded.into());
        }
        let headers = headers::attempt_headers(&call, &self.defaults, now);
        let method = parts.method.clone();
        let body = parts.body.clone();
        let state = match &self.connection {
            Connection::Hyper(client) => {
                let mut req = Request::new(Full::new(body));
                *req.method_mut() = method;
                *req.uri_mut() = uri;
                *req.headers_mut() = headers;
                TransportState::sent(client.request(req))
            }
            #[cfg(feature = "reqwest")]
            Connection::Reqwest(client) => {
                let limit = self.limits.max_body_size;
                match reqwest::exchange(client, method, uri, headers, body, limit) {
                    Ok(exchange) => TransportState::exchange(exchange),
                    Err(e) => return TransportFuture::failed(e),
                }
            }
        };
        // The attempt's end, if it comes before the deadline: past the
        // deadline the layer above cancels the attempt (the caller's budget
        // ran out, which says nothing about this instance), before it the
        // attempt fails here with a timeout that this instance's breaker
        // records.
        let timer = self.limits.timeout.and_then(|timeout| {
            let mut end = now.checked_add(timeout)?;
            if let Some(at) = call.attempt_end {
                end = end.min(at);
            }
            match call.deadline {
                Some(d) if d.instant() <= end => None,
                _ => Some(tokio::time::sleep_until(end)),
            }
        });
        self.attempts.sent();
        TransportFuture::new(state, timer, self.limits.max_body_size)
    }
}
