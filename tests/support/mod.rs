//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod http;
#[cfg(feature = "client")]
pub mod tls;
pub mod transport;
pub mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use meshguard::circuit_breaker::{BreakerError, CircuitBreaker, CircuitBreakerService};
use tower::{Layer, Service, ServiceExt};

/// What the test service does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Ok,
    Fail,
    /// Succeeds after this long (paused time).
    Slow(Duration),
    /// Fails after this long.
    SlowFail(Duration),
    /// Never finishes.
    Hang,
}

pub type TestService =
    CircuitBreakerService<tower::util::BoxCloneService<Call, &'static str, &'static str>>;

pub fn scripted() -> tower::util::BoxCloneService<Call, &'static str, &'static str> {
    tower::util::BoxCloneService::new(tower::service_fn(|call: Call| async move {
        match call {
            Call::Ok => Ok("ok"),
            Call::Fail => Err("boom"),
            Call::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok("slow")
            }
            Call::SlowFail(d) => {
                tokio::time::sleep(d).await;
                Err("slow boom")
            }
            Call::Hang => std::future::pending().await,
        }
    }))
}

pub fn wrap(breaker: &CircuitBreaker) -> TestService {
    breaker.layer().layer(scripted())
}

/// Makes one call and returns how it ended.
pub async fn call(
    svc: &mut TestService,
    c: Call,
) -> Result<&'static str, BreakerError<&'static str>> {
    svc.ready().await?.call(c).await
}

/// Whether the call was rejected by the breaker.
pub async fn rejected(svc: &mut TestService, c: Call) -> bool {
    matches!(call(svc, c).await, Err(BreakerError::Open(_)))
}

pub const MS: fn(u64) -> Duration = Duration::from_millis;
pub const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A task stand-in that counts its wake-ups, for polling `poll_ready` by
/// hand.
#[derive(Clone, Default)]
pub struct Task(Arc<AtomicUsize>);

impl std::task::Wake for Task {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Task {
    /// Runs `f` with a context whose waker is this task.
    pub fn poll<T>(&self, f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        let waker = Waker::from(Arc::new(self.clone()));
        f(&mut Context::from_waker(&waker))
    }

    /// Whether the task was woken since it was made.
    pub fn is_woken(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}
