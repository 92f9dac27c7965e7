//! Latency of a typed call through the whole `ServiceClient` stack
//! (deadline, retry with budget, service breaker, p2c over PeakEwma with
//! per-endpoint gate breakers, a buffer, hyper-util's pool, JSON decode,
//! propagation headers) beside bare reqwest making the same calls (round
//! robin over the same three endpoints, same JSON decode), and bare
//! hyper-util (the transport alone), at 1 and 16 calls in flight; and the
//! same over HTTP/2 with prior knowledge (bare hyper-util and
//! `ServiceClient` with `HttpProtocol::Http2`).
//!
//! Run: `cargo bench --bench client --features client`. The three endpoints are axum
//! servers on 127.0.0.1 on their own thread; the callers run on a
//! current-thread runtime. A figure is the wall time of `iters` calls made
//! by `concurrency` tasks, divided by `iters`: at concurrency 1 the latency
//! of one call, at 16 the cost per call when 16 share the time.
// Wall time is what a benchmark measures: the real clock, not tokio's.
#![allow(clippy::disallowed_types)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group};
use http_body_util::{BodyExt, Empty};
use meshguard::client::{HttpProtocol, ServiceClient};
use meshguard::propagation::{CallContext, TraceParent};

mod support;
use support::loopback::{User, run, servers};

/// The three ways of making the call, over the same three servers.
#[derive(Clone)]
struct Callers {
    reqwest: reqwest::Client,
    hyper: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Empty<Bytes>,
    >,
    ours: ServiceClient,
    /// HTTP/2 with prior knowledge (h2c), one connection per server.
    hyper_h2: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Empty<Bytes>,
    >,
    ours_h2: ServiceClient,
    urls: Arc<Vec<String>>,
    uris: Arc<Vec<http::Uri>>,
}

/// The variants, in the order of [`Callers::call`]'s `which`.
const VARIANTS: [&str; 5] = [
    "bare_reqwest",
    "bare_hyper_util",
    "service_client",
    "bare_hyper_util_h2",
    "service_client_h2",
];

impl Callers {
    /// Starts the servers and a current-thread runtime, and builds the
    /// three clients in it.
    fn new() -> (Callers, tokio::runtime::Runtime) {
        let urls: Vec<String> = servers().iter().map(|a| format!("http://{a}")).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (ours, ours_h2) = rt.block_on(async {
            let client = |protocol| {
                ServiceClient::builder("users")
                    .urls(urls.clone())
                    .protocol(protocol)
                    .build()
                    .unwrap()
            };
            (client(HttpProtocol::Http1), client(HttpProtocol::Http2))
        });
        let user_urls: Vec<String> = urls.iter().map(|u| format!("{u}/users/7")).collect();
        let callers = Callers {
            reqwest: reqwest::Client::new(),
            hyper:
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http(),
            ours,
            hyper_h2: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .http2_only(true)
            .build_http(),
            ours_h2,
            uris: Arc::new(user_urls.iter().map(|u| u.parse().unwrap()).collect()),
            urls: Arc::new(user_urls),
        };
        (callers, rt)
    }

    /// Call `i` of variant `which`: fetch user 7 and decode it.
    async fn call(&self, which: usize, i: u64) -> User {
        let at = i as usize % 3;
        match which {
            0 => {
                let r = self.reqwest.get(&self.urls[at]).send().await.unwrap();
                serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
            }
            1 | 3 => {
                let hyper = if which == 1 {
                    &self.hyper
                } else {
                    &self.hyper_h2
                };
                let r = hyper.get(self.uris[at].clone()).await.unwrap();
                let body = r.into_body().collect().await.unwrap().to_bytes();
                serde_json::from_slice(&body).unwrap()
            }
            2 => self.ours.get("/users/7").send().await.unwrap(),
            _ => self.ours_h2.get("/users/7").send().await.unwrap(),
        }
    }

    /// `iters` calls of variant `which` by `concurrency` tasks; the wall time.
    async fn run(&self, which: usize, iters: u64, concurrency: u64) -> Duration {
        let callers = self.clone();
        run(iters, concurrency, move |i| {
            let callers = callers.clone();
            async move {
                std::hint::black_box(callers.call(which, i).await);
            }
        })
        .await
    }
}

fn client(c: &mut Criterion) {
    let (callers, rt) = Callers::new();
    let mut group = c.benchmark_group("client");
    for concurrency in [1u64, 16] {
        for (which, name) in VARIANTS.iter().enumerate() {
            group.bench_with_input(
                BenchmarkId::new(*name, concurrency),
                &concurrency,
                |b, &n| {
                    b.to_async(&rt)
                        .iter_custom(|iters| callers.run(which, iters, n))
                },
            );
        }
    }
    group.finish();
}

/// `MESHGUARD_PAIRED=<rounds>`: instead of criterion, paired rounds of
/// 2,000 calls of each variant (see `support::loopback::paired`).
fn paired(rounds: usize) {
    let (callers, rt) = Callers::new();
    support::loopback::paired(rounds, 2000, &VARIANTS, |which, calls, concurrency| {
        rt.block_on(callers.run(which, calls, concurrency))
    });
}

/// `MESHGUARD_COUNT=<reqwest|hyper|headers|p2c|ours|ours_ctx|hyper_h2|ours_h2>:<calls> valgrind --tool=callgrind
/// <bench binary>` makes that many calls one after another (after 100 to
/// warm the pools) and exits: two call counts give the instructions per
/// call, servers included, without the setup. `p2c` is bare hyper-util
/// behind tower's p2c over PeakEwma (what meshguard's balancer builds on),
/// with no other layer: the share of the client's cost that is balancing.
/// `headers` is bare hyper-util sending the headers a call inside a served
/// request sends (`accept`, `x-request-id`, `traceparent`,
/// `x-deadline-ms`): the share that is propagation. `ours` calls with no
/// context current (it sends `accept` and `x-deadline-ms`); `ours_ctx`
/// calls inside a request's context, as a handler does.
fn count(spec: &str) {
    let (which, calls) = spec.split_once(':').expect("MESHGUARD_COUNT=ours:1000");
    let calls: u64 = calls.parse().expect("a call count");
    let (callers, rt) = Callers::new();
    if which == "p2c" {
        rt.block_on(count_p2c(&callers, calls));
        return;
    }
    if which == "headers" {
        rt.block_on(count_headers(&callers, calls));
        return;
    }
    if which == "ours_ctx" {
        // Calls made while serving a request: its context (request id,
        // trace, deadline) current, as `PropagationLayer` makes it for a
        // handler, so each call sends all four headers.
        let context = CallContext::new()
            .with_request_id(http::HeaderValue::from_static(
                "0af76519-16cd-43dd-8448-eb211c80319c",
            ))
            .with_trace(
                TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                    .expect("a valid traceparent"),
            );
        rt.block_on(context.scope(async {
            for i in 0..100 + calls {
                std::hint::black_box(callers.call(2, i).await);
            }
        }));
        return;
    }
    let which = match which {
        "reqwest" => 0,
        "hyper" => 1,
        "hyper_h2" => 3,
        "ours_h2" => 4,
        _ => 2,
    };
    rt.block_on(async {
        for i in 0..100 + calls {
            std::hint::black_box(callers.call(which, i).await);
        }
    });
}

/// Bare hyper-util sending the four headers a `ServiceClient` call inside a
/// served request sends by default (`accept`, `x-request-id`,
/// `traceparent`, `x-deadline-ms`; fixed values, neither generated nor
/// allocated): what
/// those headers cost to send and for the server to parse, apart from the
/// layers.
async fn count_headers(callers: &Callers, calls: u64) {
    for i in 0..100 + calls {
        use http::header::{ACCEPT, HeaderName, HeaderValue};
        const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
        const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
        const DEADLINE: HeaderName = HeaderName::from_static("x-deadline-ms");
        let mut req = http::Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = callers.uris[i as usize % 3].clone();
        let headers = req.headers_mut();
        headers.reserve(5);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            REQUEST_ID,
            HeaderValue::from_static("9a1f3c2e-6b7d-4e8f-a0b1-c2d3e4f5a6b7"),
        );
        headers.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        headers.insert(DEADLINE, HeaderValue::from_static("9998"));
        let r = callers.hyper.request(req).await.unwrap();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let user: User = serde_json::from_slice(&body).unwrap();
        std::hint::black_box(user);
    }
}

/// Bare hyper-util behind tower's p2c over PeakEwma, one call at a time.
async fn count_p2c(callers: &Callers, calls: u64) {
    use tower::{Service, ServiceExt};
    let endpoints: Vec<_> = callers
        .uris
        .iter()
        .map(|uri| {
            let (hyper, uri) = (callers.hyper.clone(), uri.clone());
            let svc = tower::service_fn(move |()| {
                let (hyper, uri) = (hyper.clone(), uri.clone());
                async move {
                    let r = hyper.get(uri).await?;
                    let body = r.into_body().collect().await?.to_bytes();
                    Ok::<_, meshguard::BoxError>(body)
                }
            });
            tower::load::PeakEwma::new(
                svc,
                Duration::from_millis(30),
                Duration::from_secs(10).as_nanos() as f64,
                tower::load::CompleteOnResponse::default(),
            )
        })
        .collect();
    let mut lb = tower::balance::p2c::Balance::new(tower::discover::ServiceList::new(endpoints));
    for _ in 0..100 + calls {
        let body = lb.ready().await.unwrap().call(()).await.unwrap();
        let user: User = serde_json::from_slice(&body).unwrap();
        std::hint::black_box(user);
    }
}

criterion_group! {
    name = benches;
    // Longer than the other benches: a network round trip on this VM
    // varies far more from moment to moment than an in-memory call.
    config = support::config()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = client
}
fn main() {
    if let Ok(spec) = std::env::var("MESHGUARD_COUNT") {
        count(&spec);
        return;
    }
    if let Some(rounds) = std::env::var("MESHGUARD_PAIRED")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        paired(rounds);
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
