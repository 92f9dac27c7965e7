//! Loopback HTTP for the client benches: three axum servers answering one
//! user as JSON, a driver for `n` calls at a given concurrency, and paired
//! rounds of several ways of making the same calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::get;
use serde::{Deserialize, Serialize};

/// What the servers answer at `/users/7`.
#[derive(Debug, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
}

/// Three servers on one background thread; their addresses.
pub fn servers() -> Vec<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut addrs = Vec::new();
            for _ in 0..3 {
                let app = axum::Router::new().route(
                    "/users/7",
                    get(|| async {
                        Json(User {
                            id: 7,
                            name: "Ada Lovelace".into(),
                            email: "ada@example.com".into(),
                        })
                    }),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addrs.push(listener.local_addr().unwrap());
                // TCP_NODELAY, as a server of small answers should set it
                // (tonic's and Go's do; axum's `serve` does not): without
                // it, HTTP/2 calls from a client that sets it (meshguard's,
                // tonic's) stall on delayed ACKs, about 40 ms now and then
                // (docs/performance.md, "HTTP/2 and a server without
                // TCP_NODELAY"). `MESHGUARD_SERVER_NAGLE=1` leaves it off.
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

/// Runs `iters` calls of `call` spread over `concurrency` tasks; the wall
/// time.
pub async fn run<F, Fut>(iters: u64, concurrency: u64, call: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let next = Arc::new(AtomicUsize::new(0));
    for _ in 0..concurrency {
        let (call, next) = (call.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                if i >= iters {
                    break;
                }
                call(i).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    start.elapsed()
}

/// Instead of criterion: `rounds` rounds in which every variant makes
/// `calls` calls in turn (the order rotating each round), at 1 and at 16
/// in flight; prints each variant's median cost per call and, for every
/// later variant, the median of its per-round ratios to each earlier one.
/// Pairing rounds cancels the slow drifts of a shared VM that make
/// separate criterion runs of the same code differ by 20%.
pub fn paired(
    rounds: usize,
    calls: u64,
    names: &[&str],
    mut run_variant: impl FnMut(usize, u64, u64) -> Duration,
) {
    let n = names.len();
    // `MESHGUARD_PAIRED_CALLS` overrides the calls a turn makes: shorter
    // turns, more rounds, pair the variants more finely in time.
    let calls = std::env::var("MESHGUARD_PAIRED_CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c| c > 0)
        .unwrap_or(calls);
    for concurrency in [1u64, 16] {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); n];
        for round in 0..rounds {
            for k in 0..n {
                let which = (round + k) % n;
                let elapsed = run_variant(which, calls, concurrency);
                times[which].push(elapsed.as_nanos() as f64 / calls as f64);
            }
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let medians: Vec<String> = (0..n)
            .map(|k| format!("{} {:.1} us", names[k], median(times[k].clone()) / 1000.0))
            .collect();
        let mut ratios = Vec::new();
        for b in 1..n {
            for a in 0..b {
                let r: Vec<f64> = times[b].iter().zip(&times[a]).map(|(x, y)| x / y).collect();
                ratios.push(format!("{}/{} {:.3}", names[b], names[a], median(r)));
            }
        }
        println!(
            "concurrency {concurrency}: median per call: {}; median ratios: {} ({rounds} rounds of {calls} calls)",
            medians.join(", "),
            ratios.join(", "),
        );
    }
}
