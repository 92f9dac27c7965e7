//! [`Resilience`]: the `reqwest_middleware::Middleware`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::reqwest::{Request, Response, Url};
use http::Extensions;
use reqwest_middleware::{Error, Middleware, Next};
use tower::timeout::error::Elapsed;
use tower::{ServiceBuilder, ServiceExt};

use super::attempt::{Call, Send};
use super::builder::ResilienceBuilder;
use crate::BoxError;
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitOpen};
use crate::classify::{Classified, HttpClassifier};
use crate::client::BoxErrors;
use crate::deadline::{DeadlineExceeded, DeadlineLayer, Timeout};
use crate::propagation::{CallContext, new_request_id, outgoing_trace};
use crate::retry::{HttpRetryOn, RetryLayer, RetryPolicy};

/// meshguard's resilience for any [`reqwest_middleware`] client: per-host
/// circuit breakers, retries within a per-host budget (jittered backoff,
/// `Retry-After`), each attempt's timeout, the whole call's deadline, and
/// the propagated `x-request-id`, `traceparent`, `tracestate` and
/// `x-deadline-ms`; see
/// the [module docs](super).
///
/// Cheap to clone (the state is shared). Build one per client with
/// [`Resilience::builder`].
#[derive(Clone)]
pub struct Resilience {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) retry: RetryPolicy,
    pub(super) retry_on: HttpRetryOn,
    pub(super) classify: HttpClassifier,
    pub(super) breaker: Option<CircuitBreakerConfig>,
    pub(super) timeout: Option<Duration>,
    pub(super) deadline: Option<Duration>,
    pub(super) max_hosts: usize,
    pub(super) hosts: RwLock<HashMap<String, Arc<Host>>>,
}

/// What the middleware keeps per host (scheme, host and port).
pub(super) struct Host {
    retry: RetryLayer<HttpRetryOn>,
    breaker: Option<CircuitBreaker>,
}

impl fmt::Debug for Resilience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts = self.inner.hosts.read().map_or(0, |h| h.len());
        f.debug_struct("Resilience")
            .field("retry", &self.inner.retry)
            .field("breaker", &self.inner.breaker.is_some())
            .field("timeout", &self.inner.timeout)
            .field("deadline", &self.inner.deadline)
            .field("hosts", &hosts)
            .finish()
    }
}

impl Resilience {
    /// Settings, from the defaults: the default [`RetryPolicy`], a
    /// fail-fast breaker per host with the default
    /// [`CircuitBreakerConfig`], 3 s per attempt, 10 s per call.
    pub fn builder() -> ResilienceBuilder {
        ResilienceBuilder::default()
    }

    pub(super) fn new(inner: Inner) -> Self {
        Resilience {
            inner: Arc::new(inner),
        }
    }

    /// The breaker of `url`'s host, if it has been called and breakers are
    /// on (the key is the origin: `https://api.example.com:443`).
    pub fn breaker(&self, url: &Url) -> Option<CircuitBreaker> {
        let hosts = self.inner.hosts.read().unwrap_or_else(|e| e.into_inner());
        hosts.get(&*host_key(url)).and_then(|h| h.breaker.clone())
    }

    /// The state of `url`'s host, made at its first call.
    fn host(&self, url: &Url) -> Arc<Host> {
        let key = host_key(url);
        if let Some(host) = self
            .inner
            .hosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&*key)
        {
            return host.clone();
        }
        let mut hosts = self.inner.hosts.write().unwrap_or_else(|e| e.into_inner());
        if let Some(host) = hosts.get(&*key) {
            return host.clone();
        }
        let key = key.into_owned();
        if hosts.len() >= self.inner.max_hosts {
            // A client calling ever new hosts must not grow without bound:
            // one host's state (its breaker, its budget) starts again.
            if let Some(old) = hosts.keys().next().cloned() {
                hosts.remove(&old);
            }
        }
        let host = Arc::new(Host {
            retry: RetryLayer::new(self.inner.retry.clone())
                .retry_on(self.inner.retry_on)
                .name(key.as_str()),
            breaker: self
                .inner
                .breaker
                .clone()
                .map(|config| CircuitBreaker::new(key.clone(), config)),
        });
        hosts.insert(key, host.clone());
        host
    }
}

#[async_trait::async_trait]
impl Middleware for Resilience {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let host = self.host(request.url());
        let context = CallContext::current();
        let context = context.as_ref();
        let (trace, trace_state) = outgoing_trace(context);
        let call = Call {
            request,
            extensions: extensions.clone(),
            deadline: context.and_then(|c| c.deadline()),
            timeout: extensions.get::<Timeout>().map(|t| t.0),
            request_id: context
                .and_then(|c| c.request_id().cloned())
                .unwrap_or_else(new_request_id),
            trace,
            trace_state,
        };
        let send = Send {
            next,
            timeout: self.inner.timeout,
        };
        let classify = self.inner.classify;
        let stack = ServiceBuilder::new()
            .layer(DeadlineLayer::optional(self.inner.deadline))
            .layer(host.retry.clone())
            .option_layer(host.breaker.as_ref().map(|b| {
                ServiceBuilder::new()
                    .layer_fn(BoxErrors)
                    .layer(b.layer().classify(classify))
            }))
            .service(send);
        stack.oneshot(call).await.map_err(into_error)
    }
}

/// A host's key: the URL's scheme and authority as written
/// (`https://api.example.com`, `http://127.0.0.1:8080`; a default port is
/// never written, the `url` crate drops it), user info left out. Sliced,
/// not formatted: `Url::origin` formats an IP address octet by octet,
/// about 2,600 instructions a call.
fn host_key(url: &Url) -> Cow<'_, str> {
    let scheme = &url[..url::Position::AfterScheme];
    let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
    // The common case, no user info: one slice of the serialization.
    let whole = &url[..url::Position::AfterPort];
    if whole.len() == scheme.len() + 3 + host.len() {
        Cow::Borrowed(whole)
    } else {
        // `user:pass@` between them, left out of the key.
        Cow::Owned(format!("{scheme}://{host}"))
    }
}

/// The stack's error as reqwest_middleware's: reqwest's and later
/// middlewares' errors as they were, meshguard's own as
/// [`Error::Middleware`] holding the error itself, so the `anyhow::Error`
/// downcasts to it: [`CircuitOpen`] (the host's breaker is open),
/// [`DeadlineExceeded`], tower's `Elapsed` (an attempt's timeout).
fn into_error(error: BoxError) -> Error {
    let error = match error.downcast::<Classified>() {
        Ok(classified) => classified.into_inner(),
        Err(error) => error,
    };
    let error = match error.downcast::<Error>() {
        Ok(error) => return *error,
        Err(error) => error,
    };
    // `anyhow::Error::from_boxed` keeps a box opaque (its `downcast_ref`
    // sees only the box): the errors a caller matches on go in unboxed.
    let error = match error.downcast::<CircuitOpen>() {
        Ok(open) => return Error::Middleware(anyhow::Error::new(*open)),
        Err(error) => error,
    };
    let error = match error.downcast::<DeadlineExceeded>() {
        Ok(passed) => return Error::Middleware(anyhow::Error::new(*passed)),
        Err(error) => error,
    };
    match error.downcast::<Elapsed>() {
        Ok(elapsed) => Error::Middleware(anyhow::Error::new(*elapsed)),
        Err(error) => Error::Middleware(anyhow::Error::from_boxed(error)),
    }
}
