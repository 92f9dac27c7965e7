//! The whole example system in one process, under traffic and faults.
//!
//! ```sh
//! cargo run -p meshguard-examples --bin mesh_demo
//! ```
//!
//! Starts the in-process Consul-compatible registry, three user-service
//! instances, the order service and the gateway (each registered in the
//! registry with an HTTP health check, found through it by the others; the
//! gateway calls the user service over HTTP, the order service over gRPC),
//! drives steady traffic through the gateway, then: makes user-2 slow,
//! makes user-3 answer 500s, heals it, kills user-1, and lets the system
//! recover.
//! Every second it prints a table per user-service instance (the gateway's
//! view of it: breaker state; what the instance served: requests, success
//! rate, p50/p99 latency; ejections) and the client-visible outcome, then a
//! summary. It exits 0 only if no request a client made failed.
//!
//! `MESH_DEMO_PHASE_SECS` sets each phase's length (default 4 s).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use meshguard::circuit_breaker::{Event, State};
use meshguard::discovery::registration::RegistrationConfig;
use meshguard::testing::{ConsulRegistry, Fault, FaultHandle};
use meshguard_examples::clients::{Users, service_client};
use meshguard_examples::config::{Protocol, Upstream, env_num};
use meshguard_examples::gateway::{ADMIN, GatewayState, JwtConfig};
use meshguard_examples::order::OrderState;
use meshguard_examples::server::Instance;
use meshguard_examples::user::{MemoryStore, UserState};

/// What a phase does to the instances as it starts.
type Inject = Box<dyn Fn(&[UserInstance])>;
const USERS: u64 = 20;

/// What one instance served in the current second, and in all.
#[derive(Default)]
struct Stats {
    latencies_us: Mutex<Vec<u64>>,
    ok: AtomicU64,
    failed: AtomicU64,
    total: AtomicU64,
}

impl Stats {
    fn take(&self) -> (Vec<u64>, u64, u64) {
        let mut l = std::mem::take(&mut *self.latencies_us.lock().unwrap());
        l.sort_unstable();
        (
            l,
            self.ok.swap(0, Ordering::Relaxed),
            self.failed.swap(0, Ordering::Relaxed),
        )
    }
}

async fn record(stats: Arc<Stats>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let response = next.run(req).await;
    stats
        .latencies_us
        .lock()
        .unwrap()
        .push(start.elapsed().as_micros() as u64);
    let counter = if response.status().is_server_error() || grpc_server_error(&response) {
        &stats.failed
    } else {
        &stats.ok
    };
    counter.fetch_add(1, Ordering::Relaxed);
    stats.total.fetch_add(1, Ordering::Relaxed);
    response
}

/// A gRPC answer whose status is the server's trouble (trailers-only: the
/// status is in the headers).
fn grpc_server_error(response: &Response) -> bool {
    response
        .headers()
        .get("grpc-status")
        .is_some_and(|s| matches!(s.as_bytes(), b"2" | b"4" | b"13" | b"14" | b"15"))
}

/// A failing instance answers gRPC calls as a gRPC server fails them: with
/// a status (INTERNAL, trailers-only), not with an HTTP error.
async fn as_grpc_status(req: Request, next: Next) -> Response {
    let grpc = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let response = next.run(req).await;
    if grpc && response.status().is_server_error() {
        return tonic::Status::internal(format!("injected fault: {}", response.status()))
            .into_http();
    }
    response
}

struct UserInstance {
    id: String,
    server: Instance,
    faults: FaultHandle,
    stats: Arc<Stats>,
    ejections: Arc<AtomicU64>,
    watching: AtomicBool,
}

/// Registers an instance with an HTTP check every second; the guard
/// deregisters it when dropped.
async fn register(
    consul: &ConsulRegistry,
    name: &str,
    id: &str,
    port: u16,
) -> meshguard::discovery::registration::RegistrationGuard {
    RegistrationConfig::builder()
        .agent(consul.url())
        .service(name)
        .id(id)
        .address("127.0.0.1")
        .port(port)
        .http_check(
            format!("http://127.0.0.1:{port}/health"),
            Duration::from_secs(1),
            Duration::from_millis(500),
        )
        .build()
        .expect("a valid registration")
        .register()
        .await
        .expect("the registry accepts the registration")
}

fn percentile(sorted: &[u64], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    let us = sorted[i];
    if us >= 1000 {
        format!("{:.0}ms", us as f64 / 1000.0)
    } else {
        format!("{us}us")
    }
}

/// Sums a counter family in the Prometheus text for one label value.
fn prometheus_sum(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::main]
async fn main() {
    let metrics = meshguard_examples::telemetry::prometheus();
    let phase = Duration::from_secs(env_num("MESH_DEMO_PHASE_SECS", 4));
    let consul = ConsulRegistry::start().await;
    let upstream = |service: &str| Upstream::Consul {
        address: consul.url(),
        service: service.into(),
    };

    // Three user-service instances sharing one store (their "database").
    let store = Arc::new(MemoryStore::default());
    let mut instances = Vec::new();
    // Registered for the whole demo: a crashed instance is found by its check.
    let mut registrations = Vec::new();
    for n in 1..=3 {
        let (faults, stats) = (FaultHandle::new(), Arc::new(Stats::default()));
        // Faults on the API only (HTTP for the gateway, gRPC for the order
        // service): /health keeps answering, so Consul keeps listing a
        // failing instance and outlier ejection has to act.
        let api = meshguard_examples::user::routes(UserState {
            store: store.clone(),
            events: None,
        })
        .layer(faults.layer())
        .layer(middleware::from_fn(as_grpc_status))
        .layer(middleware::from_fn({
            let stats = stats.clone();
            move |req, next| record(stats.clone(), req, next)
        }));
        let app = meshguard_examples::user::with_operations(api);
        let server = Instance::start(app).await;
        let id = format!("user-{n}");
        registrations.push(register(&consul, "user-service", &id, server.addr.port()).await);
        instances.push(UserInstance {
            id,
            server,
            faults,
            stats,
            ejections: Arc::default(),
            watching: AtomicBool::new(false),
        });
    }
    let order_state = OrderState::new(Users::new(Protocol::Grpc, &upstream("user-service")));
    let orders = Instance::start(meshguard_examples::order::app(order_state)).await;
    registrations.push(register(&consul, "order-service", "order-1", orders.addr.port()).await);
    // A random JWT key made for this run: the gateway in this process
    // checks tokens with it, the demo's clients sign theirs with it (as
    // admins: they read every user and order for any). Nothing to set up.
    let jwt = JwtConfig::random();
    let gateway_state = GatewayState::new(
        service_client("user-service", &upstream("user-service")),
        service_client("order-service", &upstream("order-service")),
        jwt.clone(),
        10_000,
    );
    let gateway_users = gateway_state.users.clone();
    let gateway = Instance::start(meshguard_examples::gateway::app(gateway_state)).await;
    let base = gateway.url();
    println!("registry {}  gateway {}", consul.url(), base);
    println!("JWT key: random, made for this run (the gateway binary needs JWT_SECRET)");

    // Some users and an order to read.
    // Timeouts on every call (reqwest has none by default): the gateway's
    // own deadline is 3 s, so 5 s only ends a call the gateway lost.
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    let auth = format!("Bearer {}", jwt.token("setup", &[ADMIN]));
    for i in 1..=USERS {
        let r = http
            .post(format!("{base}/api/users"))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"name":"user {i}","email":"u{i}@example.com"}}"#
            ))
            .send()
            .await
            .expect("the gateway answers");
        assert_eq!(r.status(), 201, "creating user {i}");
    }

    // Traffic: eight clients, each with its own token.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = tokio::task::JoinSet::new();
    let traffic_started = Instant::now();
    for c in 0..8 {
        let (http, base, stop, sent, failed) = (
            http.clone(),
            base.clone(),
            stop.clone(),
            sent.clone(),
            failed.clone(),
        );
        let auth = format!("Bearer {}", jwt.token(&format!("client-{c}"), &[ADMIN]));
        clients.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let user = 1 + (n * 7 + c) % USERS;
                let req = if n % 10 == 0 {
                    http.post(format!("{base}/api/orders"))
                        .header("content-type", "application/json")
                        .body(format!(
                            r#"{{"user_id":{user},"item":"book","quantity":1}}"#
                        ))
                } else {
                    http.get(format!("{base}/api/users/{user}"))
                };
                let what = if n % 10 == 0 {
                    "POST /api/orders"
                } else {
                    "GET /api/users"
                };
                let failure = match req.header("authorization", &auth).send().await {
                    Ok(r) if r.status().is_success() => None,
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        Some(format!(
                            "{what}: {status} {}",
                            body.chars().take(200).collect::<String>()
                        ))
                    }
                    Err(e) => Some(format!("{what}: {e}")),
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if let Some(failure) = failure {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "client-{c}: failed at t={:.1}s: {failure}",
                        traffic_started.elapsed().as_secs_f64()
                    );
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }

    // One fault at a time: with two of three instances failing at once
    // (one dead, one answering 500s and not yet ejected), p2c can draw the
    // two failing ones for every attempt of a request (docs/balancing.md,
    // "Two failing instances of three"); each phase shows one mechanism.
    let phases: [(&str, Inject); 6] = [
        ("steady traffic", Box::new(|_| {})),
        (
            "user-2 slow (300 ms)",
            Box::new(|i| i[1].faults.set(Fault::Delay(Duration::from_millis(300)))),
        ),
        (
            "user-2 healed; user-3 answers 500",
            Box::new(|i| {
                i[1].faults.clear();
                i[2].faults
                    .set(Fault::Status(http::StatusCode::INTERNAL_SERVER_ERROR));
            }),
        ),
        ("user-3 healed", Box::new(|i| i[2].faults.clear())),
        ("user-1 killed", Box::new(|i| i[0].server.kill())),
        ("recovery", Box::new(|_| {})),
    ];
    let started = Instant::now();
    for (name, inject) in &phases {
        inject(&instances);
        println!("\n== {name} ==");
        let until = Instant::now() + phase;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            print_table(
                &instances,
                &gateway_users,
                &metrics.render(),
                &sent,
                &failed,
                started,
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    while clients.join_next().await.is_some() {}

    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let text = metrics.render();
    println!("\n== summary ==");
    println!(
        "{sent} client requests, {failed} failed; retries to user-service (gateway and \
         order service): {}; \
         retries refused by the budget: {}",
        prometheus_sum(&text, "meshguard_retries_total", "service=\"user-service\""),
        prometheus_sum(
            &text,
            "meshguard_retry_budget_exhausted_total",
            "service=\"user-service\""
        ),
    );
    for i in &instances {
        println!(
            "{:<7} served {:>6} requests, ejected {} times",
            i.id,
            i.stats.total.load(Ordering::Relaxed),
            i.ejections.load(Ordering::Relaxed)
        );
    }
    if failed > 0 {
        println!("FAILED: {failed} requests failed where clients could see it");
        std::process::exit(1);
    }
    println!("OK: no client-visible failure through slowness, errors and a crash");
}

fn print_table(
    instances: &[UserInstance],
    users: &meshguard::client::ServiceClient,
    metrics: &str,
    sent: &AtomicU64,
    failed: &AtomicU64,
    started: Instant,
) {
    let endpoints = users.endpoints();
    println!(
        "t={:>4.1}s  {:<7} {:<10} {:>6} {:>8} {:>7} {:>7} {:>9}",
        started.elapsed().as_secs_f64(),
        "endpoint",
        "state",
        "served",
        "success",
        "p50",
        "p99",
        "ejections"
    );
    for i in instances {
        let breaker = endpoints
            .iter()
            .find(|e| e.id == i.id)
            .map(|e| e.breaker.clone());
        if let Some(b) = &breaker {
            // Count ejections from the breaker's events, once per endpoint.
            if !i.watching.swap(true, Ordering::Relaxed) {
                let (mut events, count) = (b.subscribe(), i.ejections.clone());
                tokio::spawn(async move {
                    while let Ok(e) = events.recv().await {
                        if let Event::StateChanged {
                            to: State::Open, ..
                        } = e
                        {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        }
        let state = match &breaker {
            Some(b) if b.state() == State::Open => "ejected".to_string(),
            Some(b) => b.state().to_string(),
            None => "gone".to_string(),
        };
        let (lat, ok, bad) = i.stats.take();
        let served = ok + bad;
        let success = if served == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * ok as f64 / served as f64)
        };
        println!(
            "         {:<7} {:<10} {:>6} {:>8} {:>7} {:>7} {:>9}",
            i.id,
            state,
            served,
            success,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            i.ejections.load(Ordering::Relaxed)
        );
    }
    println!(
        "         clients: {} sent, {} failed; retries {}",
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        prometheus_sum(
            metrics,
            "meshguard_retries_total",
            "service=\"user-service\""
        )
    );
}
