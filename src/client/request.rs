//! [`RequestBuilder`]: one call, built and sent.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::Service;

use super::call::{Call, CallParts};
use super::error::STATUS_BODY_LIMIT;
use super::metrics::{CallTimer, status_outcome};
use super::{ClientError, ServiceClient};
use crate::classify::parse_retry_after;
use crate::propagation::{CallContext, new_request_id, outgoing_trace};
use crate::retry::HttpRetryOn;

/// A call being built; send it with [`send`](Self::send) (JSON in, typed
/// value out), [`send_opt`](Self::send_opt) (404 is `None`) or
/// [`send_raw`](Self::send_raw) (the response as it came).
///
/// Errors made while building (an invalid header, a body that does not
/// serialize) are kept and returned by the send, as
/// [`ClientError::InvalidRequest`].
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder<'a> {
    client: &'a ServiceClient,
    method: Method,
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
    accept_json: bool,
    json_body: bool,
    context: Option<CallContext>,
    deadline: Option<Duration>,
    error: Option<String>,
}

impl fmt::Debug for RequestBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("service", &self.client.name())
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<'a> RequestBuilder<'a> {
    pub(crate) fn new(client: &'a ServiceClient, method: Method, path: String) -> Self {
        RequestBuilder {
            client,
            method,
            path,
            // Empty, which allocates nothing: most calls add no header of
            // their own (accept and the JSON content type are flags, written
            // by the transport with the rest).
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
            accept_json: false,
            json_body: false,
            context: None,
            deadline: None,
            error: None,
        }
    }

    /// Sends `value` as the JSON body (`content-type: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.body = body.into();
                self.json_body = true;
            }
            Err(e) => self.fail(format!("the body does not serialize: {e}")),
        }
        self
    }

    /// Sends `body` as it is.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a header (replacing a default header of the same name, and the
    /// `accept` or `content-type` that [`send`](Self::send) and
    /// [`json`](Self::json) would set).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: fmt::Display,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: fmt::Display,
    {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            (Err(e), _) => self.fail(format!("invalid header name: {e}")),
            (_, Err(e)) => self.fail(format!("invalid header value: {e}")),
        }
        self
    }

    /// Appends `pairs` to the path as a URL-encoded query string.
    pub fn query<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            query.append_pair(k.as_ref(), v.as_ref());
        }
        let query = query.finish();
        if !query.is_empty() {
            let sep = if self.path.contains('?') { '&' } else { '?' };
            self.path.push(sep);
            self.path.push_str(&query);
        }
        self
    }

    /// Propagates `context` (request ID, trace, deadline) instead of the
    /// current one: for calls from a task the request's context is not
    /// current in, such as a spawned one.
    pub fn context(mut self, context: CallContext) -> Self {
        self.context = Some(context);
        self
    }

    /// A deadline for this call only, from now; the earliest of this, the
    /// client's and the caller's wins.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    fn fail(&mut self, message: String) {
        self.error.get_or_insert(message);
    }

    /// Sends the call and decodes a 2xx response's JSON body as `T` (an
    /// empty body decodes as JSON `null`, so `()` and `Option<_>` accept a
    /// 204). Any other status is [`ClientError::Status`].
    pub async fn send<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        let client = self.client;
        let started = CallTimer::start();
        let result = self
            .accept_json()
            .run()
            .await
            .and_then(|r| success(r, &client.shared.retry_on))
            .and_then(decode);
        client.record(&result, "success", started);
        result
    }

    /// As [`send`](Self::send), but a 404 is `Ok(None)`.
    pub async fn send_opt<T: DeserializeOwned>(self) -> Result<Option<T>, ClientError> {
        let client = self.client;
        let started = CallTimer::start();
        let result = match self.accept_json().run().await {
            Ok(r) if r.status() == StatusCode::NOT_FOUND => Ok(None),
            other => other
                .and_then(|r| success(r, &client.shared.retry_on))
                .and_then(decode)
                .map(Some),
        };
        let ok = match &result {
            Ok(None) => "client_error",
            _ => "success",
        };
        client.record(&result, ok, started);
        result
    }

    /// Sends the call and returns the response whatever its status, body
    /// read (up to the client's limit).
    pub async fn send_raw(self) -> Result<Response<Bytes>, ClientError> {
        let client = self.client;
        let started = CallTimer::start();
        let result = self.run().await;
        let ok = match &result {
            Ok(r) => status_outcome(r.status()),
            Err(_) => "",
        };
        client.record(&result, ok, started);
        result
    }

    fn accept_json(mut self) -> Self {
        self.accept_json = true;
        self
    }

    /// The call's future.
    #[cfg(not(feature = "opentelemetry"))]
    #[inline]
    fn run(self) -> impl Future<Output = Result<Response<Bytes>, ClientError>> {
        self.execute()
    }

    /// The call's future, in a `call` span of kind client: its attempts
    /// send the span's OpenTelemetry context, so the next hop's request
    /// span is this call's child.
    #[cfg(feature = "opentelemetry")]
    fn run(self) -> impl Future<Output = Result<Response<Bytes>, ClientError>> {
        use tracing::Instrument;
        let span = crate::propagation::call_span(self.client.name(), &self.method, &self.path);
        self.execute().instrument(span)
    }

    async fn execute(self) -> Result<Response<Bytes>, ClientError> {
        let invalid = if let Some(e) = self.error {
            Some(e)
        } else if !self.path.starts_with('/') {
            Some(format!(
                "path {:?}: must start with `/` (the instance is chosen by discovery)",
                self.path
            ))
        } else {
            None
        };
        if let Some(message) = invalid {
            return Err(rejected(message).await);
        }
        // Owned by one shared allocation: every attempt's URI holds it by a
        // reference count (a `Bytes` made from a `Vec` allocates a second
        // time at its first copy).
        let path = Bytes::from_owner(self.path);
        let path = match PathAndQuery::from_maybe_shared(path.clone()) {
            Ok(path) => path,
            Err(e) => {
                let path = String::from_utf8_lossy(&path);
                return Err(rejected(format!("path {path:?}: {e}")).await);
            }
        };
        let context = self.context.or_else(CallContext::current);
        let context = context.as_ref();
        let (trace, trace_state) = outgoing_trace(context);
        let req = Call {
            parts: Arc::new(CallParts {
                method: self.method,
                path,
                headers: self.headers,
                body: self.body,
                accept_json: self.accept_json,
                json_body: self.json_body,
                request_id: context
                    .and_then(|c| c.request_id().cloned())
                    .unwrap_or_else(new_request_id),
                trace,
                trace_state,
            }),
            // Carried as they are; the stack's deadline layer merges them
            // with the client's, once.
            deadline: context.and_then(|c| c.deadline()),
            timeout: self.deadline,
            attempt_end: None,
            hedge: false,
        };

        // Not `oneshot`: its future holds the service and the request and
        // then the call's future, 1,280 bytes moved around on every call.
        let mut stack = self.client.stack.clone();
        std::future::poll_fn(|cx| stack.poll_ready(cx))
            .await
            .map_err(ClientError::from_stack)?;
        // Awaited in place, not boxed: the stack's future type names no
        // function pointer, so an axum handler awaiting this is `Send`
        // (see `client::stack::BoxErrors`). The body was read inside the
        // attempt, up to the client's limit.
        stack.call(req).await.map_err(ClientError::from_stack)
    }
}

/// A call refused before anything was sent. It completes without awaiting
/// any tokio resource, so it spends the task's cooperative budget, or a
/// caller looping on a bad request would never yield its worker.
async fn rejected(message: String) -> ClientError {
    tokio::task::coop::consume_budget().await;
    ClientError::InvalidRequest(message)
}

fn success(
    response: Response<Bytes>,
    retry_on: &HttpRetryOn,
) -> Result<Response<Bytes>, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| parse_retry_after(v.as_bytes(), std::time::SystemTime::now()));
    let body = response.body();
    let mut end = body.len().min(STATUS_BODY_LIMIT);
    let text = loop {
        // Cut at a character boundary (at most 3 bytes back).
        match std::str::from_utf8(&body[..end]) {
            Ok(t) => break t,
            Err(e) if e.error_len().is_none() => end = e.valid_up_to(),
            Err(_) => break "<binary>",
        }
    };
    Err(ClientError::Status {
        status,
        body: text.to_string(),
        retry_after,
        retryable: retry_on.retries(status),
    })
}

fn decode<T: DeserializeOwned>(response: Response<Bytes>) -> Result<T, ClientError> {
    let body = response.body();
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(ClientError::Decode)
}

impl ServiceClient {
    /// Logs a failure and counts the call by outcome: by status when a
    /// response came (`success`, `client_error`, `server_error`), else by
    /// the error's kind.
    fn record<T>(&self, result: &Result<T, ClientError>, ok: &'static str, started: CallTimer) {
        let outcome = match result {
            Ok(_) => ok,
            Err(ClientError::Status { status, .. }) => status_outcome(*status),
            Err(e) => e.kind(),
        };
        if let Err(e) = result {
            tracing::debug!(service = %self.name(), outcome, error = %e, "call failed");
        }
        self.shared.metrics.record(outcome, started);
    }
}
