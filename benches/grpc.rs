//! A unary gRPC call through `meshguard::grpc::Channel` beside bare
//! `tonic::transport::Channel` (tonic's own p2c over the same three
//! endpoints), over loopback h2c, at 1 and 16 calls in flight.
//!
//! Run: `cargo bench -p meshguard --all-features --bench grpc`; paired
//! rounds (the figure to compare) with `MESHGUARD_PAIRED=<rounds>
//! target/release/deps/grpc-* --bench`; instructions per call with
//! `MESHGUARD_COUNT=<0|1>:<calls>[:<in flight>] valgrind --tool=callgrind
//! target/release/deps/grpc-* --bench`.
// Wall time is what a benchmark measures: the real clock, not tokio's.
#![allow(clippy::disallowed_types)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group};
use http::uri::PathAndQuery;
use tonic::Status;
use tonic_prost::ProstCodec;

mod support;
use support::loopback::run;

#[derive(Clone, PartialEq, prost::Message)]
struct GetUser {
    #[prost(uint64, tag = "1")]
    id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct User {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    email: String,
}

#[derive(Clone)]
struct Get;

impl tonic::server::UnaryService<GetUser> for Get {
    type Response = User;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<User>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<GetUser>) -> Self::Future {
        let id = request.into_inner().id;
        Box::pin(async move {
            Ok(tonic::Response::new(User {
                id,
                name: "Ada Lovelace".into(),
                email: "ada@example.com".into(),
            }))
        })
    }
}

/// Three tonic servers (h2c) on one background thread; their addresses.
fn servers() -> Vec<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut addrs = Vec::new();
            for _ in 0..3 {
                let get = tower::service_fn(|req: http::Request<axum::body::Body>| async move {
                    let mut grpc = tonic::server::Grpc::new(ProstCodec::<User, GetUser>::default());
                    Ok::<_, Infallible>(grpc.unary(Get, req).await)
                });
                let app = axum::Router::new().route_service("/users.Users/Get", get);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addrs.push(listener.local_addr().unwrap());
                // TCP_NODELAY, as tonic's own server sets it (axum's `serve`
                // does not); `MESHGUARD_SERVER_NAGLE=1` leaves it off (see
                // `support::loopback::servers`).
                let nagle = std::env::var("MESHGUARD_SERVER_NAGLE").is_ok();
                let listener = {
                    use axum::serve::ListenerExt;
                    listener.tap_io(move |tcp| {
                        if !nagle {
                            let _ = tcp.set_nodelay(true);
                        }
                    })
                };
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            }
            tx.send(addrs).unwrap();
            std::future::pending::<()>().await
        });
    });
    rx.recv().unwrap()
}

const VARIANTS: [&str; 2] = ["bare_tonic_channel", "meshguard_channel"];

#[derive(Clone)]
struct Channels {
    tonic: tonic::transport::Channel,
    ours: meshguard::grpc::Channel,
}

impl Channels {
    fn new() -> (Channels, tokio::runtime::Runtime) {
        let urls: Vec<String> = servers().iter().map(|a| format!("http://{a}")).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channels = rt.block_on(async {
            let endpoints = urls
                .iter()
                .map(|u| tonic::transport::Endpoint::from_shared(u.clone()).unwrap());
            Channels {
                tonic: tonic::transport::Channel::balance_list(endpoints),
                // `MESHGUARD_GRPC_NO_TIMERS=1`: no attempt timeout and no
                // deadline, to show what the two timers a call arms cost.
                ours: if std::env::var("MESHGUARD_GRPC_NO_TIMERS").is_ok() {
                    meshguard::grpc::Channel::builder("users")
                        .urls(urls.clone())
                        .timeout(None)
                        .deadline(None)
                        .build()
                        .unwrap()
                } else {
                    meshguard::grpc::Channel::builder("users")
                        .urls(urls.clone())
                        .build()
                        .unwrap()
                },
            }
        });
        (channels, rt)
    }

    async fn call(&self, which: usize, id: u64) -> User {
        let path = PathAndQuery::from_static("/users.Users/Get");
        let codec = ProstCodec::<GetUser, User>::default();
        let request = tonic::Request::new(GetUser { id });
        let response = if which == 0 {
            let mut grpc = tonic::client::Grpc::new(self.tonic.clone());
            grpc.ready().await.unwrap();
            grpc.unary(request, path, codec).await
        } else {
            let mut grpc = tonic::client::Grpc::new(self.ours.clone());
            grpc.ready().await.unwrap();
            grpc.unary(request, path, codec).await
        };
        response.unwrap().into_inner()
    }

    async fn run(&self, which: usize, iters: u64, concurrency: u64) -> Duration {
        let channels = self.clone();
        run(iters, concurrency, move |i| {
            let channels = channels.clone();
            async move {
                std::hint::black_box(channels.call(which, i).await);
            }
        })
        .await
    }
}

fn grpc(c: &mut Criterion) {
    let (channels, rt) = Channels::new();
    let mut group = c.benchmark_group("grpc_unary");
    for concurrency in [1u64, 16] {
        for (which, name) in VARIANTS.iter().enumerate() {
            group.bench_with_input(
                BenchmarkId::new(*name, concurrency),
                &concurrency,
                |b, &n| {
                    b.to_async(&rt)
                        .iter_custom(|iters| channels.run(which, iters, n))
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::config()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = grpc
}

fn main() {
    if let Ok(spec) = std::env::var("MESHGUARD_COUNT") {
        // `<which>:<calls>[:<in flight>]`.
        let mut parts = spec
            .split(':')
            .map(|p| p.parse::<u64>().expect("MESHGUARD_COUNT=1:1000"));
        let (which, calls) = (parts.next().unwrap() as usize, parts.next().unwrap());
        let concurrency = parts.next().unwrap_or(1);
        let (channels, rt) = Channels::new();
        rt.block_on(channels.run(which, 100, concurrency));
        rt.block_on(channels.run(which, calls, concurrency));
        return;
    }
    if let Some(rounds) = std::env::var("MESHGUARD_PAIRED")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        let (channels, rt) = Channels::new();
        support::loopback::paired(rounds, 2000, &VARIANTS, |which, calls, concurrency| {
            rt.block_on(channels.run(which, calls, concurrency))
        });
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
