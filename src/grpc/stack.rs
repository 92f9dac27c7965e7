//! The layers a gRPC call passes through, outermost first, as the
//! `ServiceClient`'s (client/stack.rs), over [`GrpcTransport`]s:
//!
//! ```text
//! deadline   crate::deadline    the call's grpc-timeout, the caller's deadline and the channel's, merged once
//! retry      crate::retry       GrpcRetryOn: trailers-only UNAVAILABLE (pushback honoured), connections refused or closed
//! breaker    crate::circuit_breaker  the service's, fail fast (absent when configured off)
//! balance    crate::balance     shared p2c over PeakEwma, endpoints behind their ejecting breakers
//! transport  grpc/transport     one HTTP/2 connection per endpoint (grpc/link); the attempt's timer to the head; the deadline on the body
//! ```

use tower::ServiceBuilder;
use tower::util::Either;

use super::call::GrpcCall;
use super::classify::{GrpcClassifier, GrpcRetryOn};
use super::transport::GrpcTransport;
use crate::balance::{Balancer, SharedBalancer};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerService};
use crate::client::{BoxErrors, Source};
use crate::deadline::{DeadlineLayer, DeadlineService};
use crate::discovery::Endpoint;
use crate::limit::{FlowControl, Limited};
use crate::retry::{Retry, RetryLayer};

/// How the balancer connects to a new endpoint.
pub(crate) type Connect = Box<dyn FnMut(&Endpoint) -> GrpcTransport + Send>;

/// The balancer every clone of a channel shares.
pub(crate) type Balanced = SharedBalancer<Balancer<Source, Connect, GrpcClassifier, GrpcCall>>;

type Broken = BoxErrors<CircuitBreakerService<Balanced, GrpcClassifier>>;

/// The whole stack.
pub(crate) type Stack =
    DeadlineService<Retry<Limited<Either<Broken, Balanced>, GrpcClassifier>, GrpcRetryOn>>;

pub(crate) fn stack(
    balanced: Balanced,
    deadline: DeadlineLayer,
    retry: RetryLayer<GrpcRetryOn>,
    limits: FlowControl<GrpcClassifier>,
    breaker: Option<CircuitBreaker>,
    classify: GrpcClassifier,
) -> Stack {
    let guarded = ServiceBuilder::new()
        .option_layer(breaker.map(|b| {
            ServiceBuilder::new()
                .layer_fn(BoxErrors)
                .layer(b.layer().classify(classify))
        }))
        .service(balanced);
    ServiceBuilder::new()
        .layer(deadline)
        .layer(retry)
        .service(limits.wrap(guarded))
}
