//! One query over a long-lived pooled connection: the request (gzip asked
//! for, the token as a sensitive header), the answer's head, and its body
//! read whole, within a bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

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

/// The agent's HTTP client: one pooled connection reused from query to
/// query (HTTP/1.1 keep-alive).
pub(super) struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    token: Option<HeaderValue>,
    max_body: usize,
    received: AtomicU64,
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
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| ConfigError::new("address", format!("TLS: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .build(https);
        Ok(Transport {
            client,
            token,
            max_body,
            received: AtomicU64::new(0),
        })
    }

    /// Body bytes received so far, as sent (compressed when compressed).
    pub(super) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// `GET uri`: a 2xx answer with its `X-Consul-Index`, or what went
    /// wrong, in words (never the token).
    pub(super) async fn get(&self, uri: &str) -> Result<Answer, String> {
        let mut request = Request::get(uri).header(ACCEPT_ENCODING, "gzip");
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token.clone());
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| format!("cannot build the query: {e}"))?;
        let response = self.client.request(request).await.map_err(|e| chain(&e))?;
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
            self.received
                .fetch_add(data.len() as u64, Ordering::Relaxed);
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
