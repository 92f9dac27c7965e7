use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tower::Layer;

use super::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerService};
use crate::classify::ErrorsAreFailures;

/// Wraps services in a circuit breaker.
///
/// [`CircuitBreakerLayer::new`] shares one breaker among every service it
/// wraps (one breaker per downstream service, the usual choice);
/// [`CircuitBreakerLayer::per_service`] gives each wrapped service its own
/// (one per endpoint, as a load balancer wants).
///
/// Outcomes are classified by [`ErrorsAreFailures`] unless
/// [`classify`](CircuitBreakerLayer::classify) says otherwise.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = ErrorsAreFailures> {
    source: Source,
    classify: C,
}

#[derive(Debug, Clone)]
enum Source {
    Shared(CircuitBreaker),
    PerService {
        name: String,
        config: CircuitBreakerConfig,
        next: Arc<AtomicU64>,
    },
}

impl CircuitBreakerLayer {
    /// Every wrapped service shares `breaker`.
    pub fn new(breaker: CircuitBreaker) -> Self {
        CircuitBreakerLayer {
            source: Source::Shared(breaker),
            classify: ErrorsAreFailures,
        }
    }

    /// Each wrapped service gets a breaker of its own, named `name-1`,
    /// `name-2`, … and reachable through
    /// [`CircuitBreakerService::breaker`].
    pub fn per_service(name: impl Into<String>, config: CircuitBreakerConfig) -> Self {
        CircuitBreakerLayer {
            source: Source::PerService {
                name: name.into(),
                config,
                next: Arc::new(AtomicU64::new(1)),
            },
            classify: ErrorsAreFailures,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Classifies outcomes with `classify` (for HTTP,
    /// [`HttpClassifier`](crate::classify::HttpClassifier)).
    pub fn classify<C2>(self, classify: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            source: self.source,
            classify,
        }
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let breaker = match &self.source {
            Source::Shared(b) => b.clone(),
            Source::PerService { name, config, next } => {
                let n = next.fetch_add(1, Ordering::Relaxed);
                CircuitBreaker::new(format!("{name}-{n}"), config.clone())
            }
        };
        CircuitBreakerService::new(inner, breaker, self.classify.clone())
    }
}
