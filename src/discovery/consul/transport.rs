//! One query at a time over one long-lived connection (HTTP/1.1
//! keep-alive), reopened only when closed: the request (gzip asked for,
//! the token as a sensitive header), the answer's head, and its body read
//! whole, within a bound.
//!
//! A connection of our own rather than hyper-util's pool: the watch sends
//! one query after another, and the pool, asked for a connection before the
//! last answer's connection is back in it, opens a second one.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, HOST};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use super::decode::inflate_prefix;
use super::token::ConsulToken;
use crate::ConfigError;
use crate::discovery::registration::chain;

/// At most this much of an error answer is quoted in the error.
const MAX_MESSAGE: usize = 1024;

/// TCP keepalive on the connection a blocking query holds silent for up to
/// its wait: dead peers are noticed, and NATs keep its state.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// An answer as it came: its index, and its body still compressed when
/// Consul compressed it.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) index: u64,
    pub(super) body: Bytes,
    pub(super) gzip: bool,
}

/// An open connection: its sender, and the task that drives it, aborted
/// (the socket closed) when the connection is dropped: after an error, a
/// timeout, or with the watch.
struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The agent's HTTP client.
pub(super) struct Transport {
    connector: HttpsConnector<HttpConnector>,
    connection: Option<Connection>,
    token: Option<HeaderValue>,
    max_body: usize,
    received: u64,
}

impl Transport {
    /// A client for `http://` and `https://` agents (TLS by rustls with
    /// ring and the Mozilla roots, as rs-consul has it); `max_body` bounds
    /// an answer, as received and decompressed.
    pub(super) fn new(token: Option<&ConsulToken>, max_body: usize) -> Result<Self, ConfigError> {
        let token = match token {
            None => None,
            Some(t) => {
                let mut value = HeaderValue::from_str(t.secret()).map_err(|_| {
                    ConfigError::new("token", "the ACL token is not a valid header value")
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(TCP_KEEPALIVE));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| ConfigError::new("address", format!("TLS: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Transport {
            connector,
            connection: None,
            token,
            max_body,
            received: 0,
        })
    }

    /// Body bytes received so far, as sent (compressed when compressed).
    pub(super) fn received(&self) -> u64 {
        self.received
    }

    /// A new connection to `uri`'s agent, its task spawned.
    async fn connect(&self, uri: &Uri) -> Result<Connection, String> {
        let io = self
            .connector
            .clone()
            .oneshot(uri.clone())
            .await
            .map_err(|e| format!("cannot connect: {}", chain(&*e)))?;
        let (sender, connection) = http1::handshake(io)
            .await
            .map_err(|e| format!("cannot connect: {}", chain(&e)))?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, task })
    }

    /// `GET uri`: a 2xx answer with its `X-Consul-Index`, or what went
    /// wrong, in words (never the token). The connection is kept for the
    /// next query only when this one completes.
    pub(super) async fn get(&mut self, uri: &str) -> Result<Answer, String> {
        let uri: Uri = uri
            .parse()
            .map_err(|e| format!("cannot build the query: {e}"))?;
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let host = uri.authority().map_or("", |a| a.as_str());
        let mut request = Request::get(target)
            .header(HOST, host)
            .header(ACCEPT_ENCODING, "gzip");
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token.clone());
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| format!("cannot build the query: {e}"))?;
        // A kept connection the agent has closed since is noticed here; the
        // query, not sent, goes on a new one.
        let (connection, response) = match self.connection.take() {
            Some(mut kept) => match kept.sender.ready().await {
                Ok(()) => match kept.sender.try_send_request(request).await {
                    Ok(response) => (kept, response),
                    Err(mut e) => match e.take_message() {
                        Some(request) => self.send_anew(&uri, request).await?,
                        None => return Err(chain(e.error())),
                    },
                },
                Err(_) => self.send_anew(&uri, request).await?,
            },
            None => self.send_anew(&uri, request).await?,
        };
        let answer = self.read(response).await?;
        self.connection = Some(connection);
        Ok(answer)
    }

    /// `request` on a new connection.
    async fn send_anew(
        &self,
        uri: &Uri,
        request: Request<Empty<Bytes>>,
    ) -> Result<(Connection, http::Response<hyper::body::Incoming>), String> {
        let mut connection = self.connect(uri).await?;
        let response = connection
            .sender
            .send_request(request)
            .await
            .map_err(|e| chain(&e))?;
        Ok((connection, response))
    }

    /// The answer's head checked and its body read, within the bound.
    async fn read(
        &mut self,
        response: http::Response<hyper::body::Incoming>,
    ) -> Result<Answer, String> {
        let (head, mut body) = response.into_parts();
        let gzip = match head
            .headers
            .get(CONTENT_ENCODING)
            .map(HeaderValue::as_bytes)
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case(b"identity") => false,
            Some(v) if v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"x-gzip") => true,
            Some(v) => {
                return Err(format!(
                    "the answer's Content-Encoding {:?} is not gzip",
                    String::from_utf8_lossy(v)
                ));
            }
        };
        let length = head
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if length.is_some_and(|n| n > self.max_body as u64) {
            return Err(too_large(self.max_body));
        }
        // Error answers are quoted, not parsed: a little of them will do.
        let bound = if head.status.is_success() {
            self.max_body
        } else {
            MAX_MESSAGE * 64
        };
        let mut read = BytesMut::with_capacity(length.unwrap_or(0) as usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the answer broke off: {}", chain(&e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            self.received += data.len() as u64;
            if read.len() + data.len() > bound {
                if head.status.is_success() {
                    return Err(too_large(self.max_body));
                }
                read.extend_from_slice(&data[..bound - read.len()]);
                break;
            }
            read.extend_from_slice(&data);
        }
        if !head.status.is_success() {
            let text = if gzip {
                inflate_prefix(&read, MAX_MESSAGE + 4)
            } else {
                read.to_vec()
            };
            return Err(format!(
                "consul answered {}: {}",
                head.status,
                message(&text)
            ));
        }
        let index = head
            .headers
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .ok_or("the answer has no valid X-Consul-Index header")?;
        Ok(Answer {
            index,
            body: read.freeze(),
            gzip,
        })
    }
}

/// The error of an answer over `max_body_size`, naming the setting.
pub(super) fn too_large(max: usize) -> String {
    format!(
        "the answer is larger than max_body_size ({max} bytes); \
         raise it with ConsulDiscoveryBuilder::max_body_size"
    )
}

/// An error answer's text: lossy UTF-8, at most [`MAX_MESSAGE`] bytes cut
/// at a character boundary, `…` when cut.
fn message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(MAX_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text[..end].trim_end().to_string();
    if end < text.len() {
        out.push('…');
    }
    out
}
