//! What `meshguard::reqwest::Resilience` costs a reqwest_middleware client:
//! the same calls (round robin over three loopback axum servers, the JSON
//! decoded) through a `ClientWithMiddleware` with no middleware, with
//! meshguard's, and with reqwest-retry's `RetryTransientMiddleware`
//! (exponential backoff, 3 retries), at 1 and 16 calls in flight.
//!
//! Run: `cargo bench -p meshguard --all-features --bench reqwest`, or
//! paired rounds (the figure to compare: the VM drifts between criterion
//! runs) with `MESHGUARD_PAIRED=<rounds> target/release/deps/reqwest-* --bench`.
// Wall time is what a benchmark measures: the real clock, not tokio's.
#![allow(clippy::disallowed_types)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group};
use meshguard::reqwest::Resilience;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;

mod support;
use support::loopback::{User, run, servers};

/// The variants, in the order of [`Clients::clients`].
const VARIANTS: [&str; 3] = ["bare_middleware_client", "meshguard", "reqwest_retry"];

#[derive(Clone)]
struct Clients {
    clients: Arc<[ClientWithMiddleware; 3]>,
    urls: Arc<Vec<String>>,
}

impl Clients {
    fn new() -> (Clients, tokio::runtime::Runtime) {
        let urls = servers()
            .iter()
            .map(|a| format!("http://{a}/users/7"))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reqwest = reqwest::Client::new();
        let clients = [
            ClientBuilder::new(reqwest.clone()).build(),
            ClientBuilder::new(reqwest.clone())
                .with(Resilience::builder().build().unwrap())
                .build(),
            ClientBuilder::new(reqwest)
                .with(RetryTransientMiddleware::new_with_policy(
                    ExponentialBackoff::builder().build_with_max_retries(3),
                ))
                .build(),
        ];
        let clients = Clients {
            clients: Arc::new(clients),
            urls: Arc::new(urls),
        };
        (clients, rt)
    }

    /// Call `i` of variant `which`: fetch user 7 and decode it.
    async fn call(&self, which: usize, i: u64) -> User {
        let url = &self.urls[i as usize % self.urls.len()];
        let response = self.clients[which].get(url).send().await.unwrap();
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }

    async fn run(&self, which: usize, iters: u64, concurrency: u64) -> Duration {
        let clients = self.clone();
        run(iters, concurrency, move |i| {
            let clients = clients.clone();
            async move {
                std::hint::black_box(clients.call(which, i).await);
            }
        })
        .await
    }
}

fn middleware(c: &mut Criterion) {
    let (clients, rt) = Clients::new();
    let mut group = c.benchmark_group("reqwest_middleware");
    for concurrency in [1u64, 16] {
        for (which, name) in VARIANTS.iter().enumerate() {
            group.bench_with_input(
                BenchmarkId::new(*name, concurrency),
                &concurrency,
                |b, &n| {
                    b.to_async(&rt)
                        .iter_custom(|iters| clients.run(which, iters, n))
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Longer than the in-memory benches: a loopback round trip varies far
    // more from moment to moment.
    config = support::config()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = middleware
}

fn main() {
    // `MESHGUARD_COUNT=<0|1|2>:<calls> valgrind --tool=callgrind <bench>`:
    // that many calls of one variant one after another (after 100 to warm
    // the pool), then exit; two counts give the instructions per call.
    if let Ok(spec) = std::env::var("MESHGUARD_COUNT") {
        let (which, calls) = spec.split_once(':').expect("MESHGUARD_COUNT=1:1000");
        let (which, calls): (usize, u64) = (which.parse().unwrap(), calls.parse().unwrap());
        let (clients, rt) = Clients::new();
        rt.block_on(async {
            for i in 0..100 + calls {
                std::hint::black_box(clients.call(which, i).await);
            }
        });
        return;
    }
    if let Some(rounds) = std::env::var("MESHGUARD_PAIRED")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        let (clients, rt) = Clients::new();
        support::loopback::paired(rounds, 2000, &VARIANTS, |which, calls, concurrency| {
            rt.block_on(clients.run(which, calls, concurrency))
        });
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
