//! The flow-control layers a client was configured with, stacked over its
//! breaker and balancer: shared by `ServiceClient` and `grpc::Channel`.
#![cfg_attr(not(feature = "client"), allow(dead_code))]

use tower::ServiceBuilder;
use tower::util::Either;

use super::{
    AdaptiveLimit, AdaptiveLimitConfig, AdaptiveLimitLayer, Bulkhead, BulkheadConfig,
    BulkheadLayer, Throttle, ThrottleConfig, ThrottleLayer,
};

/// The adaptive limit over `S`, if configured.
pub(crate) type Adaptive<S, C> = Either<AdaptiveLimit<S, C>, S>;

/// The bulkhead over that, if configured.
pub(crate) type Bulkheaded<S, C> = Either<Bulkhead<Adaptive<S, C>>, Adaptive<S, C>>;

/// Throttling over that, if configured: the flow-control part of a stack.
pub(crate) type Limited<S, C> = Either<Throttle<Bulkheaded<S, C>, C>, Bulkheaded<S, C>>;

/// The flow-control layers of one client, each optional, judging results
/// with the client's classifier `C`.
#[derive(Debug)]
pub(crate) struct FlowControl<C> {
    throttle: Option<ThrottleLayer<C>>,
    bulkhead: Option<BulkheadLayer>,
    adaptive: Option<AdaptiveLimitLayer<C>>,
}

impl<C: Clone> FlowControl<C> {
    pub(crate) fn new(
        name: &str,
        bulkhead: Option<BulkheadConfig>,
        adaptive: Option<AdaptiveLimitConfig>,
        throttle: Option<ThrottleConfig>,
        classify: C,
    ) -> Self {
        FlowControl {
            throttle: throttle.map(|c| ThrottleLayer::new(name, c).classify(classify.clone())),
            bulkhead: bulkhead.map(|c| BulkheadLayer::new(name, c)),
            adaptive: adaptive.map(|c| AdaptiveLimitLayer::new(name, c).classify(classify)),
        }
    }

    /// Throttle, bulkhead, adaptive limit, outermost first, over `inner`;
    /// an absent one adds no layer.
    pub(crate) fn wrap<S>(self, inner: S) -> Limited<S, C> {
        ServiceBuilder::new()
            .option_layer(self.throttle)
            .option_layer(self.bulkhead)
            .option_layer(self.adaptive)
            .service(inner)
    }
}
