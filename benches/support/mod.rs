//! Helpers shared by the benches.
// Wall time is what a benchmark measures: the real clock, not tokio's.
#![allow(clippy::disallowed_types)]
#![allow(dead_code)]

use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tower::Service;

pub mod loopback;

/// The criterion settings every bench uses: short runs, so the three
/// benches finish in a few minutes on two cores.
pub fn config() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// A current-thread runtime with timers: services that read tokio's clock
/// (PeakEwma, the breaker's slow-call detection) need one entered.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// One `call` of `svc` and one poll of its future; whether it succeeded.
#[inline]
pub fn call_once<S: Service<Q>, Q>(svc: &mut S, cx: &mut Context<'_>, req: Q) -> bool {
    let fut = pin!(svc.call(req));
    matches!(fut.poll(cx), Poll::Ready(Ok(_)))
}

/// `poll_ready`, then [`call_once`]: for services that take their slot in
/// `poll_ready` (the limits), where a `call` without it panics.
#[inline]
pub fn ready_call_once<S: Service<Q>, Q>(svc: &mut S, cx: &mut Context<'_>, req: Q) -> bool {
    matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))) && call_once(svc, cx, req)
}

/// [`ready_call_once`] as a closure for [`run_two`].
pub fn ready_caller<S: Service<u64>>(mut svc: S) -> impl FnMut(&mut Context<'_>, u64) -> bool {
    move |cx: &mut Context<'_>, x: u64| ready_call_once(&mut svc, cx, x)
}

/// One service call as a closure for [`run_two`].
pub fn service_caller<S: Service<u64>>(mut svc: S) -> impl FnMut(&mut Context<'_>, u64) -> bool {
    move |cx: &mut Context<'_>, x: u64| call_once(&mut svc, cx, x)
}

/// Runs `iters` calls on each of two threads at once, each thread with its
/// own caller from `make` (inside a tokio runtime, as services expect), and
/// returns the wall time from the moment both are ready: the latency of a
/// call while the other thread does the same.
pub fn run_two<M, F>(iters: u64, make: M) -> Duration
where
    M: Fn() -> F + Sync,
    F: FnMut(&mut Context<'_>, u64) -> bool + Send,
{
    let barrier = std::sync::Barrier::new(2);
    let start = std::sync::Mutex::new(None::<Instant>);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let mut caller = make();
            let (barrier, start) = (&barrier, &start);
            s.spawn(move || {
                let rt = runtime();
                let _guard = rt.enter();
                let mut cx = Context::from_waker(Waker::noop());
                barrier.wait();
                start.lock().unwrap().get_or_insert_with(Instant::now);
                for i in 0..iters {
                    black_box(caller(&mut cx, i));
                }
            });
        }
    });
    start.into_inner().unwrap().unwrap().elapsed()
}
