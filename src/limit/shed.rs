//! [`Shed`]: load shedding for servers: a concurrency limit and a queue
//! timeout, answering 503 with `Retry-After` beyond them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use serde::Deserialize;
use tower::{Layer, Service};

use super::admission::Admission;
use super::metrics::LimitMetrics;
use super::permits::{Permit, Permits};
use crate::ConfigError;

/// Load shedding's settings: `max_concurrent` requests served at once, up
/// to `max_queue` more waiting at most `queue_timeout`; any other request
/// is answered `503 Service Unavailable` with `Retry-After: retry_after`
/// at once, before it reaches a handler.
///
/// ```
/// use meshguard::limit::ShedConfig;
///
/// let config: ShedConfig = toml::from_str(r#"
///     max_concurrent = 64
///     queue_timeout = "20ms"
/// "#).unwrap();
/// assert_eq!(config.max_concurrent(), 64);
///
/// let err = ShedConfig::builder().retry_after(std::time::Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.field(), "retry_after");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawShed")]
pub struct ShedConfig {
    max_concurrent: usize,
    max_queue: usize,
    queue_timeout: Duration,
    retry_after: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShed {
    #[serde(default)]
    max_concurrent: Option<usize>,
    #[serde(default)]
    max_queue: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    queue_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    retry_after: Option<Duration>,
}

impl TryFrom<RawShed> for ShedConfig {
    type Error = ConfigError;
    fn try_from(raw: RawShed) -> Result<Self, ConfigError> {
        let mut b = ShedConfig::builder();
        if let Some(n) = raw.max_concurrent {
            b.config.max_concurrent = n;
        }
        if let Some(n) = raw.max_queue {
            b.config.max_queue = n;
        }
        if let Some(d) = raw.queue_timeout {
            b.config.queue_timeout = d;
        }
        if let Some(d) = raw.retry_after {
            b.config.retry_after = d;
        }
        b.build()
    }
}

impl Default for ShedConfig {
    fn default() -> Self {
        ShedConfig::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl ShedConfig {
    /// A builder starting from the defaults: 128 requests at once, 1,024
    /// queued for at most 100 ms, `Retry-After: 1`.
    pub fn builder() -> ShedConfigBuilder {
        ShedConfigBuilder {
            config: ShedConfig {
                max_concurrent: 128,
                max_queue: 1024,
                queue_timeout: Duration::from_millis(100),
                retry_after: Duration::from_secs(1),
            },
        }
    }

    /// Requests served at once at most.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// Requests waiting at most.
    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// How long a request waits for a slot at most.
    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// The `Retry-After` of a shed request.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// Builds a [`ShedConfig`]; see [`ShedConfig::builder`] for the defaults.
#[derive(Debug, Clone)]
pub struct ShedConfigBuilder {
    config: ShedConfig,
}

impl ShedConfigBuilder {
    /// Requests served at once, at least 1 (default 128).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.config.max_concurrent = n;
        self
    }

    /// Requests that may wait for a slot (default 1,024).
    pub fn max_queue(mut self, n: usize) -> Self {
        self.config.max_queue = n;
        self
    }

    /// How long a request waits at most, more than zero and at most 1 min
    /// (default 100 ms).
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.config.queue_timeout = timeout;
        self
    }

    /// The `Retry-After` of a shed request, whole seconds from 1 s to 1 h
    /// (default 1 s).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.config.retry_after = after;
        self
    }

    /// Checks every value.
    pub fn build(self) -> Result<ShedConfig, ConfigError> {
        let c = self.config;
        if c.max_concurrent == 0 {
            return Err(ConfigError::new("max_concurrent", "must be at least 1"));
        }
        if c.queue_timeout.is_zero() || c.queue_timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "queue_timeout",
                format!("must be in (0, 1min], got {:?}", c.queue_timeout),
            ));
        }
        if c.retry_after.subsec_nanos() != 0 || !(1..=3600).contains(&c.retry_after.as_secs()) {
            return Err(ConfigError::new(
                "retry_after",
                format!("must be whole seconds in [1s, 1h], got {:?}", c.retry_after),
            ));
        }
        Ok(c)
    }
}

/// Applies [`Shed`] to a server's service (an axum `Router`, a hyper
/// service): one limit shared by every connection.
///
/// ```
/// use axum::{Router, routing::get};
/// use meshguard::limit::{ShedConfig, ShedLayer};
///
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "ada" }))
///     .layer(ShedLayer::new("user-service", ShedConfig::default()));
/// ```
#[derive(Debug, Clone)]
pub struct ShedLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    permits: Permits,
    config: ShedConfig,
    retry_after: HeaderValue,
    metrics: LimitMetrics,
}

impl ShedLayer {
    /// Load shedding for the server `name` (the `service` label of its
    /// metrics).
    pub fn new(name: &str, config: ShedConfig) -> Self {
        ShedLayer {
            shared: Arc::new(Shared {
                permits: Permits::new(config.max_concurrent),
                retry_after: HeaderValue::from(config.retry_after.as_secs()),
                config,
                metrics: LimitMetrics::new(name, "shed"),
            }),
        }
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.shared.permits.in_flight()
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.shared.permits.queued()
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            shared: self.shared.clone(),
            state: Admission::default(),
        }
    }
}

/// Serves at most `max_concurrent` requests at once, queues up to
/// `max_queue` more for at most `queue_timeout`, and answers any other
/// request `503 Service Unavailable` with `Retry-After` without calling
/// the inner service. A naive server queues without bound, so under twice
/// its capacity every request waits longer and longer until all of them
/// time out; a shedding server keeps serving its capacity at its normal
/// latency and tells the excess, at once, when to come back.
///
/// The 503 and its `Retry-After` are what meshguard's clients read as an
/// overload signal: their adaptive limit and throttling back off, and
/// their balancer takes the instance out of rotation for that long.
#[derive(Debug)]
pub struct Shed<S> {
    inner: S,
    shared: Arc<Shared>,
    state: Admission,
}

impl<S: Clone> Clone for Shed<S> {
    fn clone(&self) -> Self {
        Shed {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            state: Admission::default(),
        }
    }
}

impl<S, Req, B> Service<Req> for Shed<S>
where
    S: Service<Req, Response = Response<B>>,
    B: Default,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ShedFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let shared = &self.shared;
        ready!(self.state.poll(
            &shared.permits,
            shared.config.max_queue,
            shared.config.queue_timeout,
            cx
        ));
        if self.state.is_admitted() {
            self.inner.poll_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self.state.take() {
            Ok(permit) => ShedFuture {
                kind: Kind::Called {
                    future: self.inner.call(request),
                    permit: Some(permit),
                },
            },
            Err(refused) => {
                self.shared.metrics.refused(refused.reason());
                ShedFuture {
                    kind: Kind::Shed {
                        retry_after: Some(self.shared.retry_after.clone()),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// The future of a request through [`Shed`].
    #[derive(Debug)]
    pub struct ShedFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
        },
        Shed {
            retry_after: Option<HeaderValue>,
        },
    }
}

impl<F, B, E> Future for ShedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, permit } => {
                let out = ready!(future.poll(cx));
                permit.take();
                Poll::Ready(out)
            }
            KindProj::Shed { retry_after } => {
                ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                let mut response = Response::new(B::default());
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                let after = retry_after.take().expect("polled after completion");
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, after);
                Poll::Ready(Ok(response))
            }
        }
    }
}
