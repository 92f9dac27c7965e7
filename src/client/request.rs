//! [`RequestBuilder`]: one call, built and sent.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode};
use pin_project_lite::pin_project;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::Service;

use super::call::{Call, CallParts};
use super::error::STATUS_BODY_LIMIT;
use super::metrics::{CallTimer, status_outcome};
use super::stack::Stack;
use super::{ClientError, ServiceClient};
use crate::classify::parse_retry_after;
use crate::propagation::{CallContext, outgoing_trace};
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
    request: Unsent,
}

impl fmt::Debug for RequestBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("service", &self.client.name())
            .field("method", &self.request.method)
            .field("path", &self.request.path)
            .finish_non_exhaustive()
    }
}

impl<'a> RequestBuilder<'a> {
    pub(crate) fn new(client: &'a ServiceClient, method: Method, path: String) -> Self {
        RequestBuilder {
            client,
            request: Unsent {
                method,
                path,
                // Empty, which allocates nothing: most calls add no header
                // of their own (accept and the JSON content type are flags,
                // written by the transport with the rest).
                headers: http::HeaderMap::new(),
                body: Bytes::new(),
                accept_json: false,
                json_body: false,
                context: None,
                deadline: None,
                error: None,
            },
        }
    }

    /// Sends `value` as the JSON body (`content-type: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.request.body = body.into();
                self.request.json_body = true;
            }
            Err(e) => self.fail(format!("the body does not serialize: {e}")),
        }
        self
    }

    /// Sends `body` as it is.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.request.body = body.into();
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
                self.request.headers.append(n, v);
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
            let sep = if self.request.path.contains('?') {
                '&'
            } else {
                '?'
            };
            self.request.path.push(sep);
            self.request.path.push_str(&query);
        }
        self
    }

    /// Propagates `context` (request ID, trace, deadline) instead of the
    /// current one: for calls from a task the request's context is not
    /// current in, such as a spawned one.
    pub fn context(mut self, context: CallContext) -> Self {
        self.request.context = Some(context);
        self
    }

    /// A deadline for this call only, from now; the earliest of this, the
    /// client's and the caller's wins.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.request.deadline = Some(deadline);
        self
    }

    fn fail(&mut self, message: String) {
        self.request.error.get_or_insert(message);
    }

    /// Sends the call and decodes a 2xx response's JSON body as `T` (an
    /// empty body decodes as JSON `null`, so `()` and `Option<_>` accept a
    /// 204). Any other status is [`ClientError::Status`].
    ///
    /// Nothing happens until the future is first polled: the request is
    /// checked and built, and the propagated context read, then.
    pub fn send<T: DeserializeOwned>(self) -> impl Future<Output = Result<T, ClientError>> {
        self.accept_json().finishing(Json(PhantomData))
    }

    /// As [`send`](Self::send), but a 404 is `Ok(None)`.
    pub fn send_opt<T: DeserializeOwned>(
        self,
    ) -> impl Future<Output = Result<Option<T>, ClientError>> {
        self.accept_json().finishing(JsonOpt(PhantomData))
    }

    /// Sends the call and returns the response whatever its status, body
    /// read (up to the client's limit).
    pub fn send_raw(self) -> impl Future<Output = Result<Response<Bytes>, ClientError>> {
        self.finishing(Raw)
    }

    fn accept_json(mut self) -> Self {
        self.request.accept_json = true;
        self
    }

    fn finishing<F: Finish>(self, finish: F) -> Finishing<'a, F> {
        Finishing {
            sending: Sending {
                state: State::Ready {
                    stack: self.client.stack.clone(),
                    request: Request::Unsent(self.request),
                },
            },
            client: self.client,
            started: None,
            span: None,
            finish,
        }
    }
}

/// A request as the builder makes it, kept until the send's first poll.
struct Unsent {
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

impl Unsent {
    /// The request, checked and built into a [`Call`] with the propagated
    /// context current now; the message of an invalid one.
    fn build(self) -> Result<Call, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if !self.path.starts_with('/') {
            return Err(format!(
                "path {:?}: must start with `/` (the instance is chosen by discovery)",
                self.path
            ));
        }
        // Owned by one shared allocation: every attempt's URI holds it by a
        // reference count (a `Bytes` made from a `Vec` allocates a second
        // time at its first copy).
        let path = Bytes::from_owner(self.path);
        let path = match PathAndQuery::from_maybe_shared(path.clone()) {
            Ok(path) => path,
            Err(e) => {
                let path = String::from_utf8_lossy(&path);
                return Err(format!("path {path:?}: {e}"));
            }
        };
        let context = self.context.or_else(CallContext::current);
        let context = context.as_ref();
        let (trace, trace_state) = outgoing_trace(context).unzip();
        Ok(Call {
            parts: Arc::new(CallParts {
                method: self.method,
                path,
                headers: self.headers,
                body: self.body,
                accept_json: self.accept_json,
                json_body: self.json_body,
                request_id: context.and_then(|c| c.request_id().cloned()),
                trace,
                trace_state: trace_state.flatten(),
            }),
            // Carried as they are; the stack's deadline layer merges them
            // with the client's, once.
            deadline: context.and_then(|c| c.deadline()),
            timeout: self.deadline,
            attempt_end: None,
            hedge: false,
        })
    }
}

/// What a send makes of the response, and how the call is counted.
trait Finish {
    type Output;

    fn finish(
        &self,
        client: &ServiceClient,
        response: Result<Response<Bytes>, ClientError>,
    ) -> (Result<Self::Output, ClientError>, &'static str);
}

/// [`RequestBuilder::send`]'s: a 2xx's JSON body as `T`.
struct Json<T>(PhantomData<fn() -> T>);

impl<T: DeserializeOwned> Finish for Json<T> {
    type Output = T;

    fn finish(
        &self,
        client: &ServiceClient,
        response: Result<Response<Bytes>, ClientError>,
    ) -> (Result<T, ClientError>, &'static str) {
        let result = response
            .and_then(|r| success(r, &client.shared.retry_on))
            .and_then(decode);
        (result, "success")
    }
}

/// [`RequestBuilder::send_opt`]'s: a 404 is `None`.
struct JsonOpt<T>(PhantomData<fn() -> T>);

impl<T: DeserializeOwned> Finish for JsonOpt<T> {
    type Output = Option<T>;

    fn finish(
        &self,
        client: &ServiceClient,
        response: Result<Response<Bytes>, ClientError>,
    ) -> (Result<Option<T>, ClientError>, &'static str) {
        match response {
            Ok(r) if r.status() == StatusCode::NOT_FOUND => (Ok(None), "client_error"),
            other => {
                let result = other
                    .and_then(|r| success(r, &client.shared.retry_on))
                    .and_then(decode)
                    .map(Some);
                (result, "success")
            }
        }
    }
}

/// [`RequestBuilder::send_raw`]'s: the response as it came.
struct Raw;

impl Finish for Raw {
    type Output = Response<Bytes>;

    fn finish(
        &self,
        _: &ServiceClient,
        response: Result<Response<Bytes>, ClientError>,
    ) -> (Result<Response<Bytes>, ClientError>, &'static str) {
        let ok = match &response {
            Ok(r) => status_outcome(r.status()),
            Err(_) => "",
        };
        (response, ok)
    }
}

/// The `call` span of a send (kind client: its attempts send the span's
/// OpenTelemetry context, so the next hop's request span is this call's
/// child); nothing without the `opentelemetry` feature.
#[cfg(feature = "opentelemetry")]
type CallSpan = tracing::Span;

#[cfg(not(feature = "opentelemetry"))]
#[derive(Debug, Clone, Copy)]
struct CallSpan;

pin_project! {
    /// A send's future: the call, then what the send makes of its response,
    /// counted. By hand, not `async`: an `async fn` keeps its arguments (the
    /// builder) and every local it awaits across for its whole life, which
    /// made a send's future 2,720 bytes, copied whole at every move; this
    /// one holds the stack and the request, then the stack's future in
    /// their place (under 1 KiB).
    struct Finishing<'a, F> {
        #[pin]
        sending: Sending,
        client: &'a ServiceClient,
        // Set at the first poll, as an `async fn`'s body would run.
        started: Option<CallTimer>,
        span: Option<CallSpan>,
        finish: F,
    }
}

impl<F: Finish> Future for Finishing<'_, F> {
    type Output = Result<F::Output, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let started = *this.started.get_or_insert_with(CallTimer::start);
        if this.span.is_none() {
            *this.span = Some(this.sending.as_ref().call_span(this.client));
        }
        let response = {
            let _entered = entered(this.span);
            ready!(this.sending.as_mut().poll(cx))
        };
        let (result, ok) = this.finish.finish(this.client, response);
        this.client.record(&result, ok, started);
        Poll::Ready(result)
    }
}

#[cfg(feature = "opentelemetry")]
fn entered(span: &Option<CallSpan>) -> Option<tracing::span::Entered<'_>> {
    span.as_ref().map(|s| s.enter())
}

#[cfg(not(feature = "opentelemetry"))]
#[inline]
fn entered(_: &Option<CallSpan>) -> Option<CallSpan> {
    None
}

pin_project! {
    /// A request on its way through the stack: built at the first poll,
    /// then the stack's readiness, then its future. Not `oneshot`: its
    /// future holds the service and the request beside the call's future.
    struct Sending {
        #[pin]
        state: State,
    }
}

/// The request a [`Sending`] holds until the stack takes it.
// Its size does not matter: it shares the send's state with the stack's
// future, which is larger (boxing `Unsent` would cost an allocation a call).
#[allow(clippy::large_enum_variant)]
enum Request {
    Unsent(Unsent),
    Built(Call),
    Taken,
}

pin_project! {
    #[project = StateProj]
    #[project_ref = StateProjRef]
    enum State {
        Ready { stack: Stack, request: Request },
        // The stack's future, awaited in place, not boxed: its type names
        // no function pointer, so an axum handler awaiting a call is
        // `Send` (see `client::stack::BoxErrors`). The body was read
        // inside the attempt, up to the client's limit.
        Called { #[pin] future: <Stack as Service<Call>>::Future },
        // Refused before anything was sent.
        Rejected { message: String },
        Done,
    }
}

impl Sending {
    /// The call's span, for a send not polled yet.
    #[cfg(feature = "opentelemetry")]
    fn call_span(self: Pin<&Self>, client: &ServiceClient) -> CallSpan {
        match self.project_ref().state.project_ref() {
            StateProjRef::Ready {
                request: Request::Unsent(unsent),
                ..
            } => crate::propagation::call_span(client.name(), &unsent.method, &unsent.path),
            _ => tracing::Span::none(),
        }
    }

    #[cfg(not(feature = "opentelemetry"))]
    #[inline]
    fn call_span(self: Pin<&Self>, _: &ServiceClient) -> CallSpan {
        CallSpan
    }
}

impl Future for Sending {
    type Output = Result<Response<Bytes>, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Ready { stack, request } => {
                    if let Request::Unsent(_) = request {
                        let Request::Unsent(unsent) = std::mem::replace(request, Request::Taken)
                        else {
                            unreachable!("matched above")
                        };
                        match unsent.build() {
                            Ok(call) => *request = Request::Built(call),
                            Err(message) => {
                                state.set(State::Rejected { message });
                                continue;
                            }
                        }
                    }
                    if let Err(e) = ready!(stack.poll_ready(cx)) {
                        state.set(State::Done);
                        return Poll::Ready(Err(ClientError::from_stack(e)));
                    }
                    let Request::Built(call) = std::mem::replace(request, Request::Taken) else {
                        panic!("`Sending` polled after completion")
                    };
                    let future = stack.call(call);
                    state.set(State::Called { future });
                }
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx));
                    state.set(State::Done);
                    return Poll::Ready(result.map_err(ClientError::from_stack));
                }
                StateProj::Rejected { message } => {
                    // Refused without awaiting any tokio resource: spend the
                    // task's cooperative budget, or a caller looping on a bad
                    // request would never yield its worker.
                    ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                    let message = std::mem::take(message);
                    state.set(State::Done);
                    return Poll::Ready(Err(ClientError::InvalidRequest(message)));
                }
                StateProj::Done => panic!("`Sending` polled after completion"),
            }
        }
    }
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
