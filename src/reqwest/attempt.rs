//! One attempt of a reqwest call: the request as the layers carry it, the
//! service at the bottom that hands it to the rest of the middleware chain,
//! and how reqwest's answers read in the outcome model.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use ::reqwest::{Request, Response};
use http::{Extensions, HeaderValue, StatusCode};
use reqwest_middleware::{Error, Next};
use tokio::time::Instant;
use tower::Service;

use crate::BoxError;
use crate::classify::{Classified, Classify, HttpClassifier, Outcome};
use crate::client::{AttemptMetrics, transport_outcome};
use crate::deadline::{Bounded, Cut, DEADLINE, Deadline, DeadlineExceeded, HasDeadline};
use crate::propagation::{REQUEST_ID, TRACEPARENT, TRACESTATE, TraceParent, TraceState};
use crate::retry::{HttpRetryOn, NoReplay, Replay, RetryOn, Verdict};

/// A reqwest request on its way through the layers, with what each attempt
/// sends besides it.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) request: Request,
    /// The middleware chain's extensions, copied for each attempt.
    pub(crate) extensions: Extensions,
    /// The merged deadline (set by the deadline layer), or a caller's.
    pub(crate) deadline: Option<Deadline>,
    /// This call's own time limit (a [`Timeout`](crate::deadline::Timeout)
    /// in the request's extensions).
    pub(crate) timeout: Option<Duration>,
    /// Whether the attempt sends the propagation headers.
    pub(crate) propagate: bool,
    /// `x-request-id`, the same on every attempt: the served request's
    /// (`None` without one, or with propagation off).
    pub(crate) request_id: Option<HeaderValue>,
    /// `traceparent`: the caller's trace (`None` without one, or with
    /// propagation off).
    pub(crate) trace: Option<TraceParent>,
    /// `tracestate`, passed on unchanged beside the trace.
    pub(crate) trace_state: Option<TraceState>,
}

impl HasDeadline for Call {
    #[inline]
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    #[inline]
    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }

    #[inline]
    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

impl Replay for Call {
    fn replay(&self, allow_non_idempotent: bool) -> Result<Self, NoReplay> {
        if !allow_non_idempotent && !self.request.method().is_idempotent() {
            return Err(NoReplay::NotIdempotent);
        }
        // `None` for a streaming body: sent once.
        let request = self
            .request
            .try_clone()
            .ok_or(NoReplay::BodyNotReplayable)?;
        Ok(Call {
            request,
            extensions: self.extensions.clone(),
            deadline: self.deadline,
            timeout: self.timeout,
            propagate: self.propagate,
            request_id: self.request_id.clone(),
            trace: self.trace,
            trace_state: self.trace_state.clone(),
        })
    }
}

/// The bottom of the middleware's layers: the rest of the
/// `reqwest_middleware` chain (and the client), under the attempt's limit.
#[derive(Clone)]
pub(crate) struct Send<'a> {
    pub(crate) next: Next<'a>,
    /// Each attempt's timeout, unless the request sets its own.
    pub(crate) timeout: Option<Duration>,
    pub(crate) attempts: AttemptMetrics,
    /// The extensions the last attempt's later middlewares left, for the
    /// caller's map (borrowed from the middleware's call: no allocation).
    pub(crate) last: &'a Mutex<Option<Extensions>>,
}

/// What the rest of the chain answers, boxed as `Next::run` boxes it.
type Sent<'a> = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + std::marker::Send + 'a>>;

impl<'a> Service<Call> for Send<'a> {
    type Response = Response;
    type Error = BoxError;
    type Future = Bounded<Sent<'a>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let Call {
            mut request,
            mut extensions,
            deadline,
            propagate,
            request_id,
            trace,
            trace_state,
            ..
        } = call;
        let now = Instant::now();
        if deadline.is_some_and(|d| d.instant() <= now) {
            return Bounded::expired(Cut::Deadline);
        }
        let headers = request.headers_mut();
        // A caller's own ids win (its `traceparent` with its own
        // `tracestate` or none); the deadline is the merged one.
        if let Some(id) = request_id {
            headers.entry(REQUEST_ID).or_insert(id);
        }
        if let Some(trace) = trace {
            if let http::header::Entry::Vacant(entry) = headers.entry(TRACEPARENT) {
                entry.insert(trace.to_header_value());
                if let Some(state) = trace_state {
                    headers.entry(TRACESTATE).or_insert(state.to_header_value());
                }
            }
        }
        // The attempt's limit is reqwest's own timeout on the request, which
        // also covers the body the caller reads after this returns: the
        // request's own timeout if it set one, else the middleware's, and
        // never past the deadline.
        let mut limit = request.timeout().copied().or(self.timeout);
        if let Some(deadline) = deadline {
            if propagate {
                request
                    .headers_mut()
                    .insert(DEADLINE, deadline.to_header_value(now));
            }
            let left = deadline.instant() - now;
            limit = Some(limit.map_or(left, |t| t.min(left)));
        }
        if let Some(limit) = limit {
            *request.timeout_mut() = Some(limit);
        }
        self.attempts.sent();
        let (next, last) = (self.next.clone(), self.last);
        let sent: Sent<'a> = Box::pin(async move {
            let result = next.run(request, &mut extensions).await;
            *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(extensions);
            match result {
                Ok(response) => Ok(response),
                // reqwest's timeout, set to the deadline, fired as the
                // deadline layer's timer would have: the deadline's error.
                Err(Error::Reqwest(e))
                    if e.is_timeout()
                        && deadline.is_some_and(|d| d.instant() <= Instant::now()) =>
                {
                    Err(Classified::new(Outcome::DeadlineExceeded, DeadlineExceeded).into())
                }
                Err(e) => Err(classified(e)),
            }
        });
        Bounded::open(sent)
    }
}

/// A failed exchange with its outcome, decided here as `ServiceClient`'s
/// transport decides it for reqwest's errors (a connection never made is
/// [`Outcome::Connect`], reqwest's own timeout [`Outcome::Timeout`], a
/// connection closed before the whole answer [`Outcome::Transport`], TLS
/// refused a plain failure); a later middleware's error as
/// [`Outcome::of_error`] reads it.
fn classified(error: Error) -> BoxError {
    let outcome = match &error {
        Error::Reqwest(e) => transport_outcome(e),
        Error::Middleware(e) => Outcome::of_error(AsRef::<dyn std::error::Error>::as_ref(e)),
    };
    Classified::new(outcome, error).into()
}

impl<E: 'static> Classify<Response, E> for HttpClassifier {
    #[inline]
    fn classify(&self, result: &Result<Response, E>) -> Outcome {
        match result {
            Ok(response) => self.classify_parts(response.status(), response.headers()),
            Err(e) => crate::classify::error_outcome(e),
        }
    }
}

impl RetryOn<Response> for HttpRetryOn {
    #[inline]
    fn verdict(&self, result: &Result<Response, BoxError>) -> Verdict {
        match result {
            Ok(response) if !self.retries(response.status()) => Verdict::Done,
            Ok(response) => self.verdict_of(&Outcome::of_failed_status(
                response.status(),
                response.headers(),
            )),
            Err(e) => Verdict::of_failure(&Outcome::of_error(&**e)),
        }
    }
}

/// Whether `status` from reqwest's `http` matches ours (the same crate
/// today; this fails to build if they ever differ).
const _: fn(StatusCode) -> ::reqwest::StatusCode = |s| s;
