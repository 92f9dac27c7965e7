//! Cost of one call through the flow-control layers (`meshguard::limit`),
//! beside a raw tower service and tower's `ConcurrencyLimit`.
//!
//! Run: `cargo bench --bench limit`. Each figure is one call of a service
//! that succeeds at once: `poll_ready` (where the limits take their slot),
//! `call` and one `poll` of the response future. The raw service and
//! tower's limit are called the same way. The `coarse_clock/` cases set
//! the adaptive limit's and the throttle's `coarse_clock`; beside the
//! cases without it they show what tokio's clock reads cost.

use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Waker};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use meshguard::limit::{
    AdaptiveLimitConfig, AdaptiveLimitLayer, BulkheadConfig, BulkheadLayer, LimitAlgorithm,
    ShedConfig, ShedLayer, ThrottleConfig, ThrottleLayer,
};
use tower::{Layer, Service, ServiceBuilder};

mod support;
use support::{ready_call_once, ready_caller, run_two};

/// A service that succeeds at once (a closure, so the compiler sees
/// through it in the raw and the wrapped cases alike).
fn raw()
-> impl Service<u64, Response = u64, Error = &'static str, Future = Ready<Result<u64, &'static str>>>
+ Clone
+ Send {
    tower::service_fn(|x| ready(Result::Ok(x)))
}

/// A server's handler that answers at once, for [`ShedLayer`].
fn http_raw() -> impl Service<
    u64,
    Response = http::Response<()>,
    Error = &'static str,
    Future = Ready<Result<http::Response<()>, &'static str>>,
> + Clone
+ Send {
    tower::service_fn(|_: u64| ready(Ok(http::Response::new(()))))
}

/// tower's limit at the bulkhead's default, 64 in flight.
fn tower_semaphore() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(
        BulkheadConfig::default().max_concurrent(),
    ))
}

fn adaptive(algorithm: LimitAlgorithm) -> AdaptiveLimitLayer {
    adaptive_clock(algorithm, false)
}

/// With `coarse`, the layer reads the coarse clock: the difference from
/// [`adaptive`] is what the two clock reads of a call cost.
fn adaptive_clock(algorithm: LimitAlgorithm, coarse: bool) -> AdaptiveLimitLayer {
    let config = AdaptiveLimitConfig::builder()
        .algorithm(algorithm)
        .coarse_clock(coarse)
        .build()
        .unwrap();
    AdaptiveLimitLayer::new("bench", config)
}

fn bulkhead() -> BulkheadLayer {
    BulkheadLayer::new("bench", BulkheadConfig::default())
}

fn throttle() -> ThrottleLayer {
    throttle_clock(false)
}

fn throttle_clock(coarse: bool) -> ThrottleLayer {
    let config = ThrottleConfig::builder()
        .coarse_clock(coarse)
        .build()
        .unwrap();
    ThrottleLayer::new("bench", config)
}

fn shed() -> ShedLayer {
    ShedLayer::new("bench", ShedConfig::default())
}

/// The three client layers in `ServiceClient`'s order: throttling, the
/// bulkhead, the adaptive limit.
fn stacked(
    throttle: &ThrottleLayer,
    bulkhead: &BulkheadLayer,
    adaptive: &AdaptiveLimitLayer,
) -> impl Service<u64, Response = u64> + Send + use<> {
    ServiceBuilder::new()
        .layer(throttle.clone())
        .layer(bulkhead.clone())
        .layer(adaptive.clone())
        .service(raw())
}

/// Benchmarks `svc` after checking that a call completes in one poll.
fn one<S: Service<u64>>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    cx: &mut Context<'_>,
    name: &str,
    mut svc: S,
) {
    assert!(
        ready_call_once(&mut svc, cx, 1),
        "{name}: completes in one poll"
    );
    g.bench_function(name, |b| {
        b.iter(|| ready_call_once(&mut svc, cx, black_box(1)))
    });
}

fn one_thread(c: &mut Criterion) {
    let rt = support::runtime();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let cx = &mut cx;
    let mut g = c.benchmark_group("limit/one_thread");

    // What the layers are made of: a clock read (tokio's, with the
    // test-util feature the dev-dependencies turn on), an uncontended
    // read-modify-write, and an `Arc` clone and drop (two of them).
    g.bench_function("clock_read_floor", |b| b.iter(tokio::time::Instant::now));
    let counter = AtomicU64::new(0);
    g.bench_function("atomic_fetch_add_floor", |b| {
        b.iter(|| black_box(&counter).fetch_add(1, Ordering::Relaxed))
    });
    let arc = Arc::new(0u64);
    g.bench_function("arc_clone_drop_floor", |b| {
        b.iter(|| drop(black_box(Arc::clone(black_box(&arc)))))
    });

    one(&mut g, cx, "raw_service_fn", raw());
    one(
        &mut g,
        cx,
        "tower_concurrency_limit",
        tower::limit::ConcurrencyLimit::with_semaphore(raw(), tower_semaphore()),
    );
    one(&mut g, cx, "bulkhead", bulkhead().layer(raw()));
    one(
        &mut g,
        cx,
        "adaptive_gradient",
        adaptive(LimitAlgorithm::Gradient).layer(raw()),
    );
    one(
        &mut g,
        cx,
        "adaptive_aimd",
        adaptive(LimitAlgorithm::Aimd).layer(raw()),
    );
    one(&mut g, cx, "throttle", throttle().layer(raw()));
    one(
        &mut g,
        cx,
        "stacked_throttle_bulkhead_adaptive",
        stacked(
            &throttle(),
            &bulkhead(),
            &adaptive(LimitAlgorithm::Gradient),
        ),
    );
    one(
        &mut g,
        cx,
        "coarse_clock/adaptive_gradient",
        adaptive_clock(LimitAlgorithm::Gradient, true).layer(raw()),
    );
    one(
        &mut g,
        cx,
        "coarse_clock/adaptive_aimd",
        adaptive_clock(LimitAlgorithm::Aimd, true).layer(raw()),
    );
    one(
        &mut g,
        cx,
        "coarse_clock/throttle",
        throttle_clock(true).layer(raw()),
    );
    one(
        &mut g,
        cx,
        "coarse_clock/stacked_throttle_bulkhead_adaptive",
        stacked(
            &throttle_clock(true),
            &bulkhead(),
            &adaptive_clock(LimitAlgorithm::Gradient, true),
        ),
    );
    one(&mut g, cx, "http/raw_service_fn", http_raw());
    one(&mut g, cx, "http/shed", shed().layer(http_raw()));
    g.finish();
}

/// Benchmarks two threads calling services from `make` (one limiter
/// shared by both) at once: wall time divided by the calls each thread
/// made.
fn two<S, M>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, make: M)
where
    S: Service<u64> + Send,
    M: Fn() -> S + Sync,
{
    g.bench_function(name, |b| {
        b.iter_custom(|iters| run_two(iters, || ready_caller(make())))
    });
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("limit/two_threads");
    // One read-modify-write of a line both threads write: the floor of
    // any limit both threads share (a slot taken and given back is two).
    let shared = AtomicU64::new(0);
    g.bench_function("shared_atomic_fetch_add_floor", |b| {
        b.iter_custom(|iters| {
            run_two(iters, || {
                let c = &shared;
                move |_: &mut Context<'_>, _: u64| c.fetch_add(1, Ordering::Relaxed) > 0
            })
        })
    });
    two(&mut g, "raw_service_fn", raw);
    let semaphore = tower_semaphore();
    two(&mut g, "tower_concurrency_limit", || {
        tower::limit::ConcurrencyLimit::with_semaphore(raw(), semaphore.clone())
    });
    let layer = bulkhead();
    two(&mut g, "bulkhead", || layer.layer(raw()));
    let layer = adaptive(LimitAlgorithm::Gradient);
    two(&mut g, "adaptive_gradient", || layer.layer(raw()));
    let layer = adaptive(LimitAlgorithm::Aimd);
    two(&mut g, "adaptive_aimd", || layer.layer(raw()));
    let layer = throttle();
    two(&mut g, "throttle", || layer.layer(raw()));
    let (t, b, a) = (throttle(), bulkhead(), adaptive(LimitAlgorithm::Gradient));
    two(&mut g, "stacked_throttle_bulkhead_adaptive", || {
        stacked(&t, &b, &a)
    });
    let layer = adaptive_clock(LimitAlgorithm::Gradient, true);
    two(&mut g, "coarse_clock/adaptive_gradient", || {
        layer.layer(raw())
    });
    let layer = adaptive_clock(LimitAlgorithm::Aimd, true);
    two(&mut g, "coarse_clock/adaptive_aimd", || layer.layer(raw()));
    let layer = throttle_clock(true);
    two(&mut g, "coarse_clock/throttle", || layer.layer(raw()));
    let (t, b, a) = (
        throttle_clock(true),
        bulkhead(),
        adaptive_clock(LimitAlgorithm::Gradient, true),
    );
    two(
        &mut g,
        "coarse_clock/stacked_throttle_bulkhead_adaptive",
        || stacked(&t, &b, &a),
    );
    two(&mut g, "http/raw_service_fn", http_raw);
    let layer = shed();
    two(&mut g, "http/shed", || layer.layer(http_raw()));
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::config();
    targets = one_thread, two_threads
}
criterion_main!(benches);
