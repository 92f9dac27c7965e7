//! The overload scenario: three naive upstream instances offered twice
//! their capacity, open loop, each call with a 1 s deadline. Shared by the
//! integration test (tests/overload) and the bench (benches/overload.rs),
//! which prints the side-by-side table of docs/performance.md.
//!
//! Each instance serves 8 requests at a time in 10 ms each and queues the
//! rest without limit, as a naive service does (an axum handler behind a
//! semaphore): the fleet's capacity is 3 × 8 ÷ 10 ms = 2,400 requests a
//! second.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The fleet's capacity, requests per second.
pub const CAPACITY: f64 = 2400.0;
/// Each call's deadline.
pub const DEADLINE: Duration = Duration::from_secs(1);

/// The upstream instances and what they received.
pub struct Upstreams {
    pub addrs: Vec<SocketAddr>,
    /// Requests that reached a handler.
    pub requests: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Upstreams {
    pub fn urls(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("http://{a}")).collect()
    }
}

#[derive(Clone)]
struct Instance {
    slots: Arc<Semaphore>,
    requests: Arc<AtomicU64>,
}

async fn work(State(i): State<Instance>) -> &'static str {
    i.requests.fetch_add(1, Ordering::Relaxed);
    let _slot = i.slots.acquire().await.expect("never closed");
    tokio::time::sleep(Duration::from_millis(10)).await;
    "ok"
}

/// Starts `n` instances serving `slots` requests at a time, 10 ms each.
pub async fn upstreams(n: usize, slots: usize) -> Upstreams {
    let requests = Arc::new(AtomicU64::new(0));
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let instance = Instance {
            slots: Arc::new(Semaphore::new(slots)),
            requests: requests.clone(),
        };
        let app = Router::new().route("/work", get(work)).with_state(instance);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
    }
    Upstreams {
        addrs,
        requests,
        tasks,
    }
}

/// The fleet's capacity on this machine, requests a second: `slots`
/// requests kept in flight on each instance (closed loop, so nothing
/// queues), straight through hyper, for `duration`. Below the nominal
/// 2,400: tokio's timer rounds each 10 ms sleep up to its next
/// millisecond, and the machine's two cores also run the clients.
pub async fn capacity(up: &Upstreams, slots: usize, duration: Duration) -> f64 {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client =
        Client::builder(TokioExecutor::new()).build_http::<http_body_util::Empty<bytes::Bytes>>();
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + duration;
    let mut workers = Vec::new();
    for addr in &up.addrs {
        let uri: http::Uri = format!("http://{addr}/work").parse().unwrap();
        for _ in 0..slots {
            let (client, uri, done) = (client.clone(), uri.clone(), done.clone());
            workers.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let r = client.get(uri.clone()).await.expect("the upstream answers");
                    assert_eq!(r.status(), 200);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / duration.as_secs_f64()
}

/// How one call ended, as the client reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A 200.
    Ok,
    /// Refused by the client's own flow control, without being sent.
    Refused,
    /// Anything else: a timeout, the deadline, an error status.
    Failed,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub seconds: f64,
    pub offered: u64,
    pub successes: u64,
    /// Successes within the deadline, per second.
    pub goodput: f64,
    pub p50_ok: Duration,
    pub p99_ok: Duration,
    pub refused: u64,
    pub p99_refused: Duration,
    pub max_refused: Duration,
    pub failed: u64,
    /// Requests that reached an upstream handler, per call offered.
    pub attempts_per_call: f64,
    /// The fleet's capacity measured on this machine (see [`capacity`]).
    pub measured_capacity: f64,
}

impl Report {
    /// Goodput as a share of the fleet's nominal capacity (2,400/s).
    pub fn of_nominal(&self) -> f64 {
        self.goodput / CAPACITY
    }

    /// Goodput as a share of the fleet's capacity measured on this
    /// machine.
    pub fn of_measured(&self) -> f64 {
        self.goodput / self.measured_capacity
    }

    /// One row of the table in docs/performance.md.
    pub fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {:.0} | {:.0}% | {:.0}% | {:.1} ms | {:.1} ms | {} | {:.3} ms | {:.3} ms | {} | {:.2} |",
            self.goodput,
            self.of_nominal() * 100.0,
            self.of_measured() * 100.0,
            ms(self.p50_ok),
            ms(self.p99_ok),
            self.refused,
            ms(self.p99_refused),
            ms(self.max_refused),
            self.failed,
            self.attempts_per_call,
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The table's header.
pub const HEADER: &str = "| client | goodput/s | of 2,400/s (nominal) | of the measured capacity | p50 of successes | p99 of successes | refused locally | p99 of refusals | slowest refusal | failed | upstream attempts per call |\n|---|---|---|---|---|---|---|---|---|---|---|";

/// Offers `rate` calls a second for `duration`, open loop (a call starts
/// on time whether or not earlier ones have ended), each bounded by
/// [`DEADLINE`], and measures them. `requests` counts what reached the
/// upstreams; `measured_capacity` is the fleet's (see [`capacity`]).
pub async fn offer<F, Fut>(
    rate: u64,
    duration: Duration,
    requests: &AtomicU64,
    measured_capacity: f64,
    call: F,
) -> Report
where
    F: Fn() -> Fut,
    Fut: Future<Output = Ended> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Ended, Duration)>();
    let before = requests.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = rate * duration.as_millis() as u64 / 1000;
    let mut sent = 0u64;
    let mut ms = 0u64;
    while sent < total {
        tick.tick().await;
        ms += 1;
        // Calls due by the end of this millisecond.
        let due = (rate * ms / 1000).min(total);
        while sent < due {
            sent += 1;
            let fut = call();
            let tx = tx.clone();
            tokio::spawn(async move {
                let began = Instant::now();
                let ended = match tokio::time::timeout(DEADLINE, fut).await {
                    Ok(ended) => ended,
                    Err(_) => Ended::Failed,
                };
                let _ = tx.send((ended, began.elapsed()));
            });
        }
    }
    drop(tx);
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    let mut failed = 0u64;
    while let Some((ended, took)) = rx.recv().await {
        match ended {
            Ended::Ok if took <= DEADLINE => ok.push(took),
            Ended::Refused => refused.push(took),
            _ => failed += 1,
        }
    }
    let seconds = duration.as_secs_f64();
    let upstream = requests.load(Ordering::Relaxed) - before;
    Report {
        seconds,
        offered: total,
        successes: ok.len() as u64,
        goodput: ok.len() as f64 / seconds,
        p50_ok: percentile(&mut ok, 0.50),
        p99_ok: percentile(&mut ok, 0.99),
        refused: refused.len() as u64,
        p99_refused: percentile(&mut refused, 0.99),
        max_refused: refused.iter().max().copied().unwrap_or_default(),
        failed,
        attempts_per_call: upstream as f64 / total as f64,
        measured_capacity,
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}
