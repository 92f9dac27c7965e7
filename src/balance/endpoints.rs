//! The discovery adapter: [`Endpoints`] turns discovery changes into
//! endpoint services, each an [`EndpointService`] (the connected service
//! behind its own breaker) ranked by its load ([`Ranked`]).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::Service;

use super::ejection::EjectionPool;
use super::load::Ranked;
use super::view::ViewBatch;
use super::{BalanceConfig, BalanceView};
use crate::circuit_breaker::{
    BreakerOptions, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerService, OpenLimit,
    Rejection,
};
use crate::classify::Classify;
use crate::discovery::{Change, Endpoint};
use futures_core::TryStream;

/// Makes the service for one endpoint: `connect` in [`balance`](super::balance),
/// any `FnMut(&Endpoint) -> S`.
///
/// Public only in name, so that [`Balancer`](super::Balancer) can require
/// it; it cannot be named outside the crate (the `connect` closure is all
/// a caller writes).
pub trait ConnectEndpoint {
    /// The endpoint's service.
    type Service;

    /// The service for `endpoint`.
    fn connect(&mut self, endpoint: &Endpoint) -> Self::Service;
}

impl<F, S> ConnectEndpoint for F
where
    F: FnMut(&Endpoint) -> S,
{
    type Service = S;

    #[inline]
    fn connect(&mut self, endpoint: &Endpoint) -> S {
        self(endpoint)
    }
}

/// An endpoint's service behind its concurrency limit, when one is
/// configured ([`BalanceConfigBuilder::max_concurrent_per_endpoint`]):
/// tower's `ConcurrencyLimit`, whose readiness is what p2c reads (an
/// endpoint at its limit is not ready, and is woken when a call ends).
///
/// [`BalanceConfigBuilder::max_concurrent_per_endpoint`]: super::BalanceConfigBuilder::max_concurrent_per_endpoint
pub(crate) type Limited<S> = tower::util::Either<tower::limit::ConcurrencyLimit<S>, S>;

/// The future of a [`Limited`] endpoint's call.
pub(crate) type LimitedFuture<F> = tower::util::future::EitherResponseFuture<
    tower::limit::concurrency::future::ResponseFuture<F>,
    F,
>;

/// One endpoint as the balancer holds it: the connected service behind its
/// breaker (in [`Rejection::Wait`](crate::circuit_breaker::Rejection::Wait)
/// mode). Counted in the ejection pool while it lives.
pub(crate) struct EndpointService<S, C> {
    inner: CircuitBreakerService<Limited<S>, C>,
    pool: Arc<EjectionPool>,
}

impl<S, C> fmt::Debug for EndpointService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointService")
            .field("breaker", self.inner.breaker())
            .finish_non_exhaustive()
    }
}

impl<S, C> Drop for EndpointService<S, C> {
    fn drop(&mut self) {
        self.pool.remove_endpoint();
    }
}

impl<S, C, Req> Service<Req> for EndpointService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = <CircuitBreakerService<Limited<S>, C> as Service<Req>>::Error;
    type Future = <CircuitBreakerService<Limited<S>, C> as Service<Req>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}

pin_project! {
    /// Discovery changes turned into endpoint services; see
    /// [`balance`](super::balance).
    pub(crate) struct Endpoints<D, F, C> {
        #[pin]
        discover: D,
        connect: F,
        classify: C,
        name: Arc<str>,
        // The endpoint breakers' configuration, shared by all of them:
        // ejection's, or when ejection is off the default (they then only
        // record, for the failure ranking).
        breaker_config: Arc<CircuitBreakerConfig>,
        ejecting: bool,
        pool: Arc<EjectionPool>,
        default_rtt: Duration,
        decay_ns: f64,
        failure_penalty: Duration,
        // The longest a `Retry-After` ejects an endpoint; zero for never.
        hold_cap: Duration,
        // A concurrency limit per endpoint, if any.
        max_concurrent: Option<usize>,
        // Instance ids mapped to small keys: the ready set clones and hashes
        // a key whenever an endpoint comes and goes between ready and
        // pending, which for a `String` is an allocation.
        keys: std::collections::HashMap<String, u64>,
        next_key: u64,
        // The discovery stream has ended: tower keeps asking, answer at once.
        ended: bool,
        view: BalanceView,
        // The changes taken in since the view was last published.
        batch: ViewBatch,
    }
}

impl<D, F, C> fmt::Debug for Endpoints<D, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoints")
            .field("name", &self.name)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl<D, F, C> Endpoints<D, F, C> {
    /// Endpoints from `discover`, connected with `connect`, their breakers
    /// named `<name>/<id>` and configured by `config`, listed in `view`.
    pub(super) fn new(
        name: &str,
        discover: D,
        connect: F,
        classify: C,
        config: BalanceConfig,
        view: BalanceView,
    ) -> Self {
        let pool = Arc::new(EjectionPool::new(name, &config));
        let ejection = config.ejection.map(|mut c| {
            c.rejection = Rejection::Wait;
            c
        });
        // Ejection off: the breakers never open, on request neither.
        let hold_cap = match ejection {
            Some(_) => config.max_retry_after_ejection,
            None => Duration::ZERO,
        };
        let ejecting = ejection.is_some();
        Endpoints {
            discover,
            connect,
            classify,
            name: name.into(),
            breaker_config: Arc::new(ejection.unwrap_or_default()),
            ejecting,
            pool,
            default_rtt: config.default_rtt,
            decay_ns: config.decay.as_nanos() as f64,
            failure_penalty: config.failure_penalty,
            hold_cap,
            max_concurrent: config.max_concurrent_per_endpoint,
            keys: std::collections::HashMap::new(),
            next_key: 0,
            ended: false,
            view,
            batch: ViewBatch::default(),
        }
    }
}

/// What [`Endpoints`] yields.
type EndpointsItem<D, F, C> = Result<
    tower::discover::Change<u64, Ranked<<F as ConnectEndpoint>::Service, C>>,
    <D as TryStream>::Error,
>;

impl<D, F, C> Endpoints<D, F, C>
where
    D: TryStream<Ok = Change>,
    F: ConnectEndpoint,
    C: Clone,
{
    /// The change path, out of line: tower polls discovery on every
    /// `poll_ready`, so the common "nothing new" answer must stay small.
    #[inline(never)]
    fn poll_change(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<EndpointsItem<D, F, C>>> {
        let mut this = self.project();
        // Loops only past removals of instances never inserted.
        loop {
            let poll = this.discover.as_mut().try_poll_next(cx);
            if !matches!(poll, Poll::Ready(Some(Ok(_)))) {
                // Discovery has nothing more ready (or has failed, or
                // ended): the batch ends here, the view shows it.
                this.batch.publish(this.view);
            }
            return match poll {
                Poll::Ready(Some(Ok(Change::Insert(id, endpoint)))) => {
                    let key = match this.keys.get(&id) {
                        Some(k) => *k,
                        None => {
                            *this.next_key += 1;
                            this.keys.insert(id.clone(), *this.next_key);
                            *this.next_key
                        }
                    };
                    let inner = match *this.max_concurrent {
                        Some(n) => tower::util::Either::Left(tower::limit::ConcurrencyLimit::new(
                            this.connect.connect(&endpoint),
                            n,
                        )),
                        None => tower::util::Either::Right(this.connect.connect(&endpoint)),
                    };
                    let name = format!("{}/{}", this.name, id);
                    let options = BreakerOptions {
                        open_limit: Some(this.pool.clone() as Arc<dyn OpenLimit>),
                        // Endpoints are ranked by their recent failures.
                        track_failures: true,
                        // A `Retry-After` ejects the endpoint that long.
                        hold_cap: *this.hold_cap,
                        // One of thousands, each with a share of the calls.
                        single_stripe: true,
                    };
                    let breaker =
                        CircuitBreaker::with_options(name, this.breaker_config.clone(), options);
                    if !*this.ejecting {
                        // Records (for the failure ranking) and never opens.
                        breaker.metrics_only();
                    }
                    this.pool.add_endpoint();
                    let svc = EndpointService {
                        inner: CircuitBreakerService::new(
                            inner,
                            breaker.clone(),
                            this.classify.clone(),
                        ),
                        pool: this.pool.clone(),
                    };
                    let ranked = Ranked::new(
                        svc,
                        breaker,
                        *this.default_rtt,
                        *this.decay_ns,
                        *this.failure_penalty,
                    );
                    this.batch.insert(id, endpoint, ranked.breaker().clone());
                    Poll::Ready(Some(Ok(tower::discover::Change::Insert(key, ranked))))
                }
                Poll::Ready(Some(Ok(Change::Remove(id)))) => match this.keys.remove(&id) {
                    Some(key) => {
                        this.batch.remove(id);
                        Poll::Ready(Some(Ok(tower::discover::Change::Remove(key))))
                    }
                    // Never inserted: nothing to remove; look for the next change.
                    None => continue,
                },
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    *this.ended = true;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl<D, F, C> futures_core::Stream for Endpoints<D, F, C>
where
    D: TryStream<Ok = Change>,
    F: ConnectEndpoint,
    C: Clone,
{
    type Item = EndpointsItem<D, F, C>;

    #[inline]
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if *self.as_mut().project().ended {
            return Poll::Ready(None);
        }
        self.poll_change(cx)
    }
}
