//! The agent's HTTP client: one `PUT` within a deadline, at most
//! [`MAX_BODY`] of an answer read, errors naming the agent and the step.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::error::{RegistrationError, RegistrationStep};
use crate::discovery::consul::ConsulToken;

/// requests are empty or a line of text.
const MAX_BODY: usize = 64 * 1024;

/// At most this much of an error answer is quoted in the error.
const MAX_MESSAGE: usize = 1024;

/// `s` as one URL path segment: everything but RFC 3986's unreserved
/// characters is percent-encoded, so `/`, `?`, `#`, `%` and spaces in an id
/// cannot change the path. The agent decodes it back.
pub(crate) fn path_segment(s: &str) -> String {
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
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
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

/// The agent at `base`, with the token and timeouts of a registration.
#[derive(Clone)]
pub(super) struct Agent {
    base: String,
    shown: String,
    token: Option<ConsulToken>,
    client: Client<HttpConnector, Full<Bytes>>,
    connect_timeout: Duration,
    pub(super) request_timeout: Duration,
}

impl Agent {
    pub(super) fn new(
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
    pub(super) async fn put(
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
