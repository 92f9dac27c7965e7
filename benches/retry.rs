//! Cost of one successful call through the retry layer, beside tower's
//! `Retry` with a policy that does nothing.
//!
//! Run: `cargo bench --bench retry`. Each figure is one call of a service
//! that succeeds at once: `call` plus one `poll` of the response future.

use std::future::{Ready, ready};
use std::hint::black_box;
use std::task::{Context, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use meshguard::BoxError;
use meshguard::deadline::DeadlineLayer;
use meshguard::retry::{ErrorsOnly, NoReplay, Replay, RetryLayer, RetryPolicy};
use tower::{Layer, Service};

mod support;
use support::{call_once, run_two};

/// A request that is copied as cheaply as possible, so the figures show the
/// layers' own cost.
#[derive(Debug, Clone, Copy)]
struct Req(u64);

impl meshguard::deadline::HasDeadline for Req {}

impl Replay for Req {
    fn replay(&self, _: bool) -> Result<Self, NoReplay> {
        Ok(*self)
    }
}

fn raw()
-> impl Service<Req, Response = u64, Error = BoxError, Future = Ready<Result<u64, BoxError>>> + Clone
{
    tower::service_fn(|r: Req| ready(Ok(r.0)))
}

fn http_raw() -> impl Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = BoxError,
    Future = Ready<Result<http::Response<()>, BoxError>>,
> + Clone {
    tower::service_fn(|_: http::Request<()>| ready(Ok(http::Response::new(()))))
}

/// tower's baseline: keeps a copy of the request, never retries.
#[derive(Clone, Copy)]
struct DoNothing;

impl<Q: Clone, Res, E> tower::retry::Policy<Q, Res, E> for DoNothing {
    type Future = Ready<()>;
    fn retry(&mut self, _: &mut Q, _: &mut Result<Res, E>) -> Option<Ready<()>> {
        None
    }
    fn clone_request(&mut self, req: &Q) -> Option<Q> {
        Some(req.clone())
    }
}

fn one_thread(c: &mut Criterion) {
    let rt = support::runtime();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut g = c.benchmark_group("retry/one_thread");

    let mut svc = raw();
    g.bench_function("raw_service_fn", |b| {
        b.iter(|| call_once(&mut svc, &mut cx, Req(black_box(1))))
    });
    let mut svc = tower::retry::Retry::new(DoNothing, raw());
    g.bench_function("tower_retry_do_nothing", |b| {
        b.iter(|| call_once(&mut svc, &mut cx, Req(black_box(1))))
    });
    let mut svc = RetryLayer::new(RetryPolicy::default())
        .retry_on(ErrorsOnly)
        .layer(raw());
    assert!(call_once(&mut svc, &mut cx, Req(1)));
    g.bench_function("meshguard_retry", |b| {
        b.iter(|| call_once(&mut svc, &mut cx, Req(black_box(1))))
    });
    let request = || http::Request::get("http://upstream/").body(()).unwrap();
    let mut svc = tower::retry::Retry::new(DoNothing, http_raw());
    g.bench_function("http/tower_retry_do_nothing", |b| {
        b.iter(|| call_once(&mut svc, &mut cx, request()))
    });
    let mut svc = RetryLayer::new(RetryPolicy::default()).layer(http_raw());
    assert!(call_once(&mut svc, &mut cx, request()));
    g.bench_function("http/meshguard_retry", |b| {
        b.iter(|| call_once(&mut svc, &mut cx, request()))
    });
    // The deadline layer above it: a clock read, the deadline written into
    // the request, a timer made (and dropped unarmed: the call is ready at
    // once).
    let mut svc = DeadlineLayer::new(Duration::from_secs(10))
        .layer(RetryLayer::new(RetryPolicy::default()).layer(http_raw()));
    assert!(call_once(&mut svc, &mut cx, request()));
    g.bench_function("http/meshguard_deadline_and_retry", |b| {
        b.iter(|| call_once(&mut svc, &mut cx, request()))
    });
    g.finish();
}

/// Two threads calling clones of one service (one shared budget) at once;
/// wall time divided by the calls each thread made.
fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("retry/two_threads");
    let tower_retry = tower::retry::Retry::new(DoNothing, raw());
    g.bench_function("tower_retry_do_nothing", |b| {
        b.iter_custom(|iters| run_two(iters, || retry_caller(tower_retry.clone())))
    });
    let ours = RetryLayer::new(RetryPolicy::default())
        .retry_on(ErrorsOnly)
        .layer(raw());
    g.bench_function("meshguard_retry", |b| {
        b.iter_custom(|iters| run_two(iters, || retry_caller(ours.clone())))
    });
    g.finish();
}

/// One call with a `Req` as a closure for [`run_two`].
fn retry_caller<S: Service<Req>>(mut svc: S) -> impl FnMut(&mut Context<'_>, u64) -> bool {
    move |cx: &mut Context<'_>, i: u64| call_once(&mut svc, cx, Req(i))
}

criterion_group! {
    name = benches;
    config = support::config();
    targets = one_thread, two_threads
}
criterion_main!(benches);
