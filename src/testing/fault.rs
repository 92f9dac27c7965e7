//! [`FaultLayer`]: faults injected into an HTTP service at run time, as
//! Polly's Simmy chaos strategies do, for tests and demos.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};

/// What the wrapped service does to the requests it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Nothing: requests pass.
    #[default]
    None,
    /// Each request waits this long before it is handled.
    Delay(Duration),
    /// Each request is answered with this status at once, unhandled.
    Status(StatusCode),
}

/// Switches the fault of the services a [`FaultLayer`] wraps; clones share it.
#[derive(Clone, Default)]
pub struct FaultHandle {
    fault: Arc<ArcSwap<Fault>>,
}

impl fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FaultHandle").field(&self.get()).finish()
    }
}

impl FaultHandle {
    /// No fault.
    pub fn new() -> Self {
        FaultHandle::default()
    }

    /// Injects `fault` from the next request on.
    pub fn set(&self, fault: Fault) {
        self.fault.store(Arc::new(fault));
    }

    /// Back to normal.
    pub fn clear(&self) {
        self.set(Fault::None);
    }

    /// The fault now.
    pub fn get(&self) -> Fault {
        **self.fault.load()
    }

    /// A layer injecting this handle's fault.
    pub fn layer(&self) -> FaultLayer {
        FaultLayer {
            handle: self.clone(),
        }
    }
}

/// Injects the [`Fault`] its [`FaultHandle`] holds into every request.
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use meshguard::testing::{Fault, FaultHandle};
///
/// let faults = FaultHandle::new();
/// let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(faults.layer());
/// faults.set(Fault::Delay(Duration::from_millis(300))); // slow from now on
/// faults.set(Fault::Status(http::StatusCode::INTERNAL_SERVER_ERROR)); // failing
/// faults.clear();
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct FaultLayer {
    handle: FaultHandle,
}

impl<S> Layer<S> for FaultLayer {
    type Service = FaultService<S>;

    fn layer(&self, inner: S) -> FaultService<S> {
        FaultService {
            inner,
            handle: self.handle.clone(),
        }
    }
}

/// The service a [`FaultLayer`] makes.
#[derive(Debug, Clone)]
pub struct FaultService<S> {
    inner: S,
    handle: FaultHandle,
}

// Boxed: a test utility, where a hand-written future would buy nothing.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> Service<Request<B>> for FaultService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.handle.get() {
            Fault::None => Box::pin(self.inner.call(req)),
            Fault::Status(status) => {
                let mut response = Response::new(ResBody::default());
                *response.status_mut() = status;
                Box::pin(std::future::ready(Ok(response)))
            }
            Fault::Delay(d) => {
                // The service was made ready for this request: take it along.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move {
                    tokio::time::sleep(d).await;
                    inner.call(req).await
                })
            }
        }
    }
}
