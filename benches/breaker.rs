//! Cost of one call through the circuit breaker, beside a raw tower service.
//!
//! Run: `cargo bench --bench breaker`. Each figure is one call of a service
//! that succeeds at once: `call` plus one `poll` of the response future.

use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use meshguard::backoff::Backoff;
use meshguard::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerService};
use tower::Service;

mod support;
use support::{call_once, run_two, service_caller};

/// A service that succeeds at once. A closure, not a function pointer, so
/// the compiler sees through it in both the raw and the wrapped case.
fn raw()
-> impl Service<u64, Response = u64, Error = &'static str, Future = Ready<Result<u64, &'static str>>>
+ Clone
+ Send {
    tower::service_fn(|x| ready(Result::Ok(x)))
}

fn wrapped(
    config: CircuitBreakerConfig,
) -> CircuitBreakerService<
    impl Service<u64, Response = u64, Error = &'static str, Future = Ready<Result<u64, &'static str>>>
    + Clone,
> {
    tower::Layer::layer(&CircuitBreaker::new("bench", config).layer(), raw())
}

fn configs() -> Vec<(&'static str, CircuitBreakerConfig)> {
    vec![
        ("count_window", CircuitBreakerConfig::default()),
        (
            "count_window_big_bucket",
            CircuitBreakerConfig::builder()
                .count_window(10000, 10)
                .build()
                .unwrap(),
        ),
        (
            "time_window",
            CircuitBreakerConfig::builder()
                .time_window(Duration::from_secs(10), 10)
                .build()
                .unwrap(),
        ),
        (
            "slow_call_on",
            CircuitBreakerConfig::builder()
                .slow_call_duration(Duration::from_secs(1))
                .build()
                .unwrap(),
        ),
        (
            "time_window_coarse_clock",
            CircuitBreakerConfig::builder()
                .time_window(Duration::from_secs(10), 10)
                .coarse_clock(true)
                .build()
                .unwrap(),
        ),
        (
            "slow_call_on_coarse_clock",
            CircuitBreakerConfig::builder()
                .slow_call_duration(Duration::from_secs(1))
                .coarse_clock(true)
                .build()
                .unwrap(),
        ),
    ]
}

fn single_thread(c: &mut Criterion) {
    let rt = support::runtime();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut g = c.benchmark_group("breaker/one_thread");

    let counter = AtomicU64::new(0);
    g.bench_function("atomic_fetch_add_floor", |b| {
        b.iter(|| black_box(&counter).fetch_add(1, Ordering::Relaxed))
    });

    g.bench_function("clock_read_floor", |b| b.iter(tokio::time::Instant::now));

    let mut svc = raw();
    g.bench_function("raw_service_fn", |b| {
        b.iter(|| call_once(&mut svc, &mut cx, black_box(1)))
    });

    for (name, config) in configs() {
        let mut svc = wrapped(config);
        assert!(call_once(&mut svc, &mut cx, 1), "completes in one poll");
        g.bench_function(name, |b| {
            b.iter(|| call_once(&mut svc, &mut cx, black_box(1)))
        });
    }

    // Peers, each on its defaults (a 100-call ring or window, 50%).
    let recloser = recloser::Recloser::default();
    g.bench_function("peer_recloser", |b| {
        b.iter(|| recloser.call(|| Ok::<u64, ()>(black_box(1))).is_ok())
    });
    let failsafe = failsafe::Config::new().build();
    g.bench_function("peer_failsafe", |b| {
        b.iter(|| failsafe::CircuitBreaker::call(&failsafe, || Ok::<u64, ()>(black_box(1))).is_ok())
    });
    let mut resilience = peer_tower_resilience();
    assert!(
        call_once(&mut resilience, &mut cx, 1),
        "completes in one poll"
    );
    g.bench_function("peer_tower_resilience", |b| {
        b.iter(|| call_once(&mut resilience, &mut cx, black_box(1)))
    });

    let mut svc = wrapped(CircuitBreakerConfig::default());
    svc.breaker().disable();
    g.bench_function("disabled", |b| {
        b.iter(|| call_once(&mut svc, &mut cx, black_box(1)))
    });

    // Open: tripped by failures, with an open period longer than the run.
    for (name, coarse) in [
        ("open_rejection", false),
        ("open_rejection_coarse_clock", true),
    ] {
        let breaker = CircuitBreaker::new(
            "open",
            CircuitBreakerConfig::builder()
                .count_window(1, 1)
                .minimum_calls(1)
                .open_duration(Backoff::constant(Duration::from_secs(3600)))
                .coarse_clock(coarse)
                .build()
                .unwrap(),
        );
        let mut failing = tower::Layer::layer(
            &breaker.layer(),
            tower::service_fn(|_: u64| ready(Err::<u64, _>("down"))),
        );
        call_once(&mut failing, &mut cx, 0);
        assert_eq!(breaker.state(), meshguard::circuit_breaker::State::Open);
        let mut open = tower::Layer::layer(&breaker.layer(), raw());
        g.bench_function(name, |b| {
            b.iter(|| call_once(&mut open, &mut cx, black_box(1)))
        });
    }
    g.finish();
}

/// tower-resilience's breaker layer on its defaults, around the same service.
fn peer_tower_resilience() -> impl Service<u64, Response = u64> + Clone + Send {
    let layer = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .unwrap();
    tower::Layer::layer(&layer, raw())
}

/// Two threads calling clones of one service (one breaker) at once; the
/// figure is wall time divided by the calls each thread made, i.e. the
/// latency of a call while the other thread hammers the same breaker.
fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker/two_threads");
    g.bench_function("raw_service_fn", |b| {
        b.iter_custom(|iters| run_two(iters, || service_caller(raw())))
    });
    let breaker = CircuitBreaker::new("shared", CircuitBreakerConfig::default());
    g.bench_function("count_window", |b| {
        b.iter_custom(|iters| {
            run_two(iters, || {
                service_caller(tower::Layer::layer(&breaker.layer(), raw()))
            })
        })
    });
    let recloser = recloser::Recloser::default();
    g.bench_function("peer_recloser", |b| {
        b.iter_custom(|iters| {
            run_two(iters, || {
                let r = &recloser;
                move |_: &mut Context<'_>, x: u64| r.call(|| Ok::<u64, ()>(x)).is_ok()
            })
        })
    });
    let failsafe = failsafe::Config::new().build();
    g.bench_function("peer_failsafe", |b| {
        b.iter_custom(|iters| {
            run_two(iters, || {
                let f = failsafe.clone();
                move |_: &mut Context<'_>, x: u64| {
                    failsafe::CircuitBreaker::call(&f, || Ok::<u64, ()>(x)).is_ok()
                }
            })
        })
    });
    let resilience = peer_tower_resilience();
    g.bench_function("peer_tower_resilience", |b| {
        b.iter_custom(|iters| run_two(iters, || service_caller(resilience.clone())))
    });
    let shared_counter = AtomicU64::new(0);
    g.bench_function("shared_atomic_fetch_add", |b| {
        b.iter_custom(|iters| {
            run_two(iters, || {
                let c = &shared_counter;
                move |_: &mut Context<'_>, _: u64| c.fetch_add(1, Ordering::Relaxed) > 0
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::config();
    targets = single_thread, two_threads
}
criterion_main!(benches);
