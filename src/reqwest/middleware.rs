//! [`Resilience`]: the `reqwest_middleware::Middleware`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ::reqwest::{Request, Response, Url};
use http::Extensions;
use reqwest_middleware::{Error, Middleware, Next};
use tower::timeout::error::Elapsed;
use tower::util::Either;
use tower::{Layer, ServiceExt};

use super::attempt::{Call, Send};
use super::builder::ResilienceBuilder;
use crate::BoxError;
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitOpen, State};
use crate::classify::{Classified, HttpClassifier};
use crate::client::{AttemptMetrics, BoxErrors, CallTimer, ClientMetrics, status_outcome};
use crate::deadline::{DeadlineExceeded, DeadlineLayer, Timeout};
use crate::propagation::{CallContext, outgoing_trace};
use crate::retry::{HttpRetryOn, RetryBudget, RetryLayer};

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
    pub(super) name: Arc<str>,
    /// The retry layer every host's is made from (its settings interned
    /// once, under the middleware's name); each host gets its own budget.
    pub(super) retry: RetryLayer<HttpRetryOn>,
    pub(super) classify: HttpClassifier,
    pub(super) breaker: Option<CircuitBreakerConfig>,
    pub(super) timeout: Option<Duration>,
    pub(super) deadline: DeadlineLayer,
    pub(super) propagate: bool,
    pub(super) max_hosts: usize,
    pub(super) hosts: RwLock<HashMap<String, Arc<Host>>>,
    /// Counts calls: a host's last use, for eviction.
    pub(super) tick: AtomicU64,
    pub(super) metrics: ClientMetrics,
    pub(super) attempts: AttemptMetrics,
}

/// What the middleware keeps per host (scheme, host and port).
pub(super) struct Host {
    /// The host's key (scheme and authority, no user info), for events.
    key: Arc<str>,
    retry: RetryLayer<HttpRetryOn>,
    breaker: Option<CircuitBreaker>,
    last_used: AtomicU64,
}

impl fmt::Debug for Resilience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts = self.inner.hosts.read().map_or(0, |h| h.len());
        f.debug_struct("Resilience")
            .field("name", &self.inner.name)
            .field("retry", self.inner.retry.policy())
            .field("breaker", &self.inner.breaker.is_some())
            .field("timeout", &self.inner.timeout)
            .field("deadline", &self.inner.deadline.after())
            .field("propagate", &self.inner.propagate)
            .field("hosts", &hosts)
            .finish()
    }
}

impl Resilience {
    /// Settings, from the defaults: the default
    /// [`RetryPolicy`](crate::retry::RetryPolicy), a fail-fast breaker per
    /// host with the default [`CircuitBreakerConfig`], 3 s per attempt,
    /// 10 s per call, propagation on.
    pub fn builder() -> ResilienceBuilder {
        ResilienceBuilder::default()
    }

    pub(super) fn new(inner: Inner) -> Self {
        Resilience {
            inner: Arc::new(inner),
        }
    }

    /// The breaker of `url`'s host, if it has been called (and not evicted
    /// since) and breakers are on. Hosts are keyed by scheme, host and
    /// port as the URL writes them (`https://api.example.com`: a default
    /// port is never written).
    pub fn breaker(&self, url: &Url) -> Option<CircuitBreaker> {
        let hosts = self.inner.hosts.read().unwrap_or_else(|e| e.into_inner());
        hosts.get(&*host_key(url)).and_then(|h| h.breaker.clone())
    }

    /// How many hosts have state now.
    pub fn hosts(&self) -> usize {
        self.inner.hosts.read().map_or(0, |h| h.len())
    }

    /// The state of `url`'s host, made at its first call.
    fn host(&self, url: &Url) -> Arc<Host> {
        let tick = self.inner.tick.fetch_add(1, Ordering::Relaxed);
        let key = host_key(url);
        if let Some(host) = self
            .inner
            .hosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&*key)
        {
            host.last_used.store(tick, Ordering::Relaxed);
            return host.clone();
        }
        let mut hosts = self.inner.hosts.write().unwrap_or_else(|e| e.into_inner());
        if let Some(host) = hosts.get(&*key) {
            return host.clone();
        }
        if hosts.len() >= self.inner.max_hosts {
            evict(&mut hosts);
        }
        let key = key.into_owned();
        let host = Arc::new(Host {
            key: Arc::from(key.as_str()),
            retry: self
                .inner
                .retry
                .clone()
                .with_budget(RetryBudget::new(*self.inner.retry.policy().budget())),
            breaker: self
                .inner
                .breaker
                .clone()
                .map(|config| CircuitBreaker::new(key.clone(), config)),
            last_used: AtomicU64::new(tick),
        });
        hosts.insert(key, host.clone());
        host
    }
}

/// Makes room for one host: the least recently used of those with no call
/// in flight and no breaker open or probing (whose state would be lost),
/// else the least recently used of all.
fn evict(hosts: &mut HashMap<String, Arc<Host>>) {
    let idle = |h: &Arc<Host>| {
        Arc::strong_count(h) == 1
            && h.breaker
                .as_ref()
                .is_none_or(|b| b.state() == State::Closed)
    };
    let last = |h: &Arc<Host>| h.last_used.load(Ordering::Relaxed);
    let victim = hosts
        .iter()
        .filter(|(_, h)| idle(h))
        .min_by_key(|(_, h)| last(h))
        .or_else(|| hosts.iter().min_by_key(|(_, h)| last(h)))
        .map(|(k, _)| k.clone());
    if let Some(key) = victim {
        hosts.remove(&key);
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
        let started = CallTimer::start();
        let inner = &*self.inner;
        let host = self.host(request.url());
        let context = CallContext::current();
        let context = context.as_ref();
        let (trace, trace_state) = match inner.propagate {
            true => outgoing_trace(context).unzip(),
            false => (None, None),
        };
        let call = Call {
            request,
            extensions: extensions.clone(),
            deadline: context.and_then(|c| c.deadline()),
            timeout: extensions.get::<Timeout>().map(|t| t.0),
            propagate: inner.propagate,
            request_id: context
                .filter(|_| inner.propagate)
                .and_then(|c| c.request_id().cloned()),
            trace,
            trace_state: trace_state.flatten(),
        };
        let last = Mutex::new(None);
        let send = Send {
            next,
            timeout: inner.timeout,
            attempts: inner.attempts.clone(),
            last: &last,
        };
        // By hand, not a `ServiceBuilder`: the host's layers are used by
        // reference, nothing is copied per call.
        let below = match &host.breaker {
            Some(b) => Either::Left(BoxErrors(b.layer().classify(inner.classify).layer(send))),
            None => Either::Right(send),
        };
        let stack = inner.deadline.layer(host.retry.layer(below));
        let result = stack.oneshot(call).await.map_err(into_error);
        // What the last attempt's later middlewares left in the extensions.
        if let Some(last) = last.lock().unwrap_or_else(|e| e.into_inner()).take() {
            *extensions = last;
        }
        let outcome = match &result {
            Ok(response) => status_outcome(response.status()),
            Err(e) => {
                let outcome = error_outcome(e);
                // Not reqwest's own text: it carries the whole URL, user
                // info (a password) and query included.
                let error: &dyn std::fmt::Display = match e {
                    Error::Reqwest(_) => &"reqwest error",
                    Error::Middleware(m) => m,
                };
                tracing::debug!(
                    service = %inner.name,
                    host = %host.key,
                    outcome,
                    error = %error,
                    "call failed"
                );
                outcome
            }
        };
        inner.metrics.record(outcome, started);
        result
    }
}

/// The `outcome` label of a failed call.
fn error_outcome(error: &Error) -> &'static str {
    match error {
        Error::Middleware(e) if e.is::<CircuitOpen>() => "circuit_open",
        Error::Middleware(e) if e.is::<DeadlineExceeded>() => "deadline_exceeded",
        Error::Reqwest(e) if e.is_timeout() => "timeout",
        _ => "transport",
    }
}

/// A host's key: the URL's scheme and authority as written
/// (`https://api.example.com`, `http://127.0.0.1:8080`, `http://[::1]:80`
/// is `http://[::1]`: a default port is never written, the `url` crate
/// drops it), user info left out. Sliced, not formatted: `Url::origin`
/// formats an IP address octet by octet, about 2,600 instructions a call.
pub(super) fn host_key(url: &Url) -> Cow<'_, str> {
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
/// [`DeadlineExceeded`], tower's `Elapsed`.
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

#[cfg(test)]
mod tests {
    use super::host_key;

    fn key(url: &str) -> String {
        host_key(&url.parse().unwrap()).into_owned()
    }

    #[test]
    fn a_hosts_key_is_its_scheme_and_authority_without_a_default_port() {
        assert_eq!(
            key("https://api.example.com/v1?x=1"),
            "https://api.example.com"
        );
        assert_eq!(
            key("https://api.example.com:443/v1"),
            "https://api.example.com"
        );
        assert_eq!(
            key("http://127.0.0.1:8080/users/7"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(key("http://[::1]:8080/"), "http://[::1]:8080");
        assert_eq!(key("http://[::1]:80/"), "http://[::1]");
    }

    #[test]
    fn user_info_is_left_out_of_a_hosts_key() {
        assert_eq!(
            key("https://user:secret@api.example.com/v1"),
            "https://api.example.com"
        );
        assert_eq!(key("http://user@10.0.0.7:8080/"), "http://10.0.0.7:8080");
    }
}
