// A binary of its own: its counting `#[global_allocator]` serves the whole process.
//! A call through the breaker allocates nothing, closed or open.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::ready;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Duration;

use meshguard::backoff::Backoff;
use meshguard::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, State};
use tower::{Layer, Service};

struct Counting;

std::thread_local! {
    // Per thread, so tests running in parallel do not count each other's.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `calls` calls of `svc`, after a warm-up.
fn allocations_per_calls<S: Service<bool>>(svc: &mut S, ok: bool, calls: usize) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut one = |svc: &mut S| {
        let fut = pin!(svc.call(ok));
        let _ = fut.poll(&mut cx);
    };
    // Warm-up: thread-locals and the first checkpoint may allocate once.
    for _ in 0..1_000 {
        one(svc);
    }
    let before = allocations();
    for _ in 0..calls {
        one(svc);
    }
    allocations() - before
}

fn service() -> impl Service<bool, Response = (), Error = ()> {
    tower::service_fn(|ok: bool| ready(if ok { Ok(()) } else { Err(()) }))
}

#[test]
fn closed_calls_allocate_nothing() {
    for config in [
        CircuitBreakerConfig::default(),
        CircuitBreakerConfig::builder()
            .time_window(Duration::from_secs(1), 10)
            .slow_call_duration(Duration::from_secs(1))
            .build()
            .unwrap(),
    ] {
        let breaker = CircuitBreaker::new("alloc", config);
        breaker.metrics_only(); // stays closed-like whatever the outcomes
        let mut svc = breaker.layer().layer(service());
        assert_eq!(allocations_per_calls(&mut svc, true, 10_000), 0);
        breaker.reset();
        assert_eq!(allocations_per_calls(&mut svc, true, 10_000), 0);
        assert_eq!(breaker.state(), State::Closed);
    }
}

#[test]
fn open_rejections_allocate_nothing() {
    let breaker = CircuitBreaker::new(
        "alloc-open",
        CircuitBreakerConfig::builder()
            .count_window(1, 1)
            .minimum_calls(1)
            .open_duration(Backoff::constant(Duration::from_secs(3600)))
            .build()
            .unwrap(),
    );
    let mut svc = breaker.layer().layer(service());
    let mut cx = Context::from_waker(Waker::noop());
    let _ = pin!(svc.call(false)).poll(&mut cx);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(allocations_per_calls(&mut svc, true, 10_000), 0);
    assert_eq!(breaker.state(), State::Open);
}
