//! Cost of one request through the balancer (pick + dispatch), beside bare
//! `tower::balance::p2c` over `tower::load::PeakEwma`, at 3, 100 and 1,000
//! endpoints.
//!
//! Run: `cargo bench --bench balance`. Each figure is `poll_ready` (the
//! p2c pick), `call`, and one `poll` of the response future of an endpoint
//! service that answers at once.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use meshguard::balance::{BalanceConfig, balance};
use meshguard::classify::ErrorsAreFailures;
use meshguard::discovery::{Endpoint, Scheme, StaticDiscovery};
use tower::Service;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover};

mod support;

type Endpoints = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;

fn endpoint_service() -> Endpoints {
    tower::service_fn((|x| ready(Ok(x))) as fn(u64) -> Ready<Result<u64, Infallible>>)
}

fn once<S: Service<u64>>(lb: &mut S, cx: &mut Context<'_>, x: u64) -> bool {
    match lb.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => return false,
    }
    let fut = pin!(lb.call(x));
    matches!(fut.poll(cx), Poll::Ready(Ok(_)))
}

fn bare(n: usize) -> impl Service<u64, Response = u64> {
    let services: Vec<Endpoints> = (0..n).map(|_| endpoint_service()).collect();
    let list = tower::discover::ServiceList::new::<u64>(services);
    let discover = PeakEwmaDiscover::new::<u64>(
        list,
        Duration::from_millis(30),
        Duration::from_secs(10),
        CompleteOnResponse::default(),
    );
    tower::balance::p2c::Balance::new(discover)
}

fn ours(n: usize) -> impl Service<u64, Response = u64> {
    let endpoints: Vec<Endpoint> = (0..n)
        .map(|i| Endpoint::new(format!("e{i}"), Scheme::Http, "10.0.0.1", 8000 + i as u16))
        .collect();
    balance::<_, _, _, _, u64>(
        "bench",
        StaticDiscovery::new(endpoints),
        |_| endpoint_service(),
        ErrorsAreFailures,
        BalanceConfig::default(),
    )
}

/// Instruction counts, free of the machine's timing noise:
/// `MESHGUARD_COUNT=bare:100:100000 valgrind --tool=callgrind <bench binary>`
/// runs 100,000 requests through one balancer (`bare` or `ours`, over 100
/// endpoints) and exits. Two request counts give the cost per request
/// without the setup: (total(2N) - total(N)) / N.
fn count(spec: &str) {
    let mut parts = spec.split(':');
    let which = parts.next().expect("MESHGUARD_COUNT=bare:100:100000");
    let n: usize = parts
        .next()
        .and_then(|p| p.parse().ok())
        .expect("endpoints");
    let requests: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(100_000);
    let rt = support::runtime();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut ok = 0u64;
    match which {
        "bare" => {
            let mut lb = bare(n);
            for i in 0..requests {
                ok += once(&mut lb, &mut cx, i) as u64;
            }
        }
        _ => {
            let mut lb = ours(n);
            for i in 0..requests {
                ok += once(&mut lb, &mut cx, i) as u64;
            }
        }
    }
    assert_eq!(ok, requests);
}

fn bench(c: &mut Criterion) {
    if let Ok(spec) = std::env::var("MESHGUARD_COUNT") {
        count(&spec);
        std::process::exit(0);
    }
    let rt = support::runtime();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut g = c.benchmark_group("balance");
    for n in [3usize, 100, 1_000] {
        let mut bare = bare(n);
        assert!(once(&mut bare, &mut cx, 1));
        g.bench_with_input(BenchmarkId::new("tower_p2c_peak_ewma", n), &n, |b, _| {
            b.iter(|| once(&mut bare, &mut cx, black_box(1)))
        });

        let mut ours = ours(n);
        assert!(once(&mut ours, &mut cx, 1));
        g.bench_with_input(BenchmarkId::new("meshguard_balance", n), &n, |b, _| {
            b.iter(|| once(&mut ours, &mut cx, black_box(1)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = support::config();
    targets = bench
}
criterion_main!(benches);
