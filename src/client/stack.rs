//! The layers one call passes through, outermost first: one `ServiceBuilder`
//! chain.
//!
//! ```text
//! deadline    crate::deadline    merges the call's, the caller's and the client's deadlines; ends the call by them
//! retry       crate::retry       budget, backoff, Retry-After; reads each attempt's Outcome
//! breaker     crate::circuit_breaker  the service's, fail fast (absent when configured off)
//! balance     crate::balance     shared p2c over PeakEwma: readiness, "no endpoints", waiters, the wait's timeout
//! endpoint    crate::balance     each endpoint behind its ejecting breaker
//! transport   client/transport   hyper-util; the attempt's timer; the body read; errors classified
//! ```

use tower::ServiceBuilder;
use tower::util::{Either, MapErr};

use super::call::Call;
use super::source::Source;
use super::transport::EndpointTransport;
use crate::BoxError;
use crate::balance::{Balancer, SharedBalancer};
use crate::circuit_breaker::{BreakerError, CircuitBreaker, CircuitBreakerService};
use crate::classify::HttpClassifier;
use crate::deadline::{DeadlineLayer, DeadlineService};
use crate::discovery::Endpoint;
use crate::retry::{HttpRetryOn, Retry, RetryLayer};

/// How the balancer connects to a new endpoint.
pub(crate) type Connect = Box<dyn FnMut(&Endpoint) -> EndpointTransport + Send>;

/// The balancer every clone of a client shares.
pub(crate) type Balanced = SharedBalancer<Balancer<Source, Connect, HttpClassifier, Call>>;

/// The service breaker over the balancer, its error boxed (tower's
/// `Either` needs both sides to fail alike).
type Broken = MapErr<CircuitBreakerService<Balanced, HttpClassifier>, ToBoxError>;
type ToBoxError = fn(BreakerError<BoxError>) -> BoxError;

/// The whole stack.
pub(crate) type Stack = DeadlineService<Retry<Either<Broken, Balanced>, HttpRetryOn>>;

/// Stacks the layers over the shared balancer.
pub(crate) fn stack(
    balanced: Balanced,
    deadline: DeadlineLayer,
    retry: RetryLayer<HttpRetryOn>,
    breaker: Option<CircuitBreaker>,
    classify: HttpClassifier,
) -> Stack {
    ServiceBuilder::new()
        .layer(deadline)
        .layer(retry)
        .option_layer(breaker.map(|b| {
            ServiceBuilder::new()
                .map_err(BoxError::from as ToBoxError)
                .layer(b.layer().classify(classify))
        }))
        .service(balanced)
}
