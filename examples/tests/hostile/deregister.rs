//! Shutdown deregisters from Consul first, while the listener still
//! serves, and `GET /ready` turns 503 before it: a fake Consul agent asks
//! the instance for `/health` and `/ready` at the moment it is told to
//! deregister. Real time: the registration client is real.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use meshguard_examples::config::ServerConfig;
use meshguard_examples::server::{Instance, register, serve};
use tokio::net::TcpListener;

/// What the fake agent saw: the instance's address (set by the test), and
/// for each deregistration, the id and the statuses of `/health` and
/// `/ready` asked at that moment.
#[derive(Clone, Default)]
struct Agent {
    service: Arc<Mutex<Option<SocketAddr>>>,
    seen: Arc<Mutex<Vec<(String, u16, u16)>>>,
}

async fn deregister(State(agent): State<Agent>, Path(id): Path<String>) -> &'static str {
    let addr = agent.service.lock().unwrap().expect("the test set it");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let status = async |path: &str| match http.get(format!("http://{addr}{path}")).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    };
    let (health, ready) = (status("/health").await, status("/ready").await);
    agent.seen.lock().unwrap().push((id, health, ready));
    ""
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_deregisters_before_its_listener_closes() {
    let agent = Agent::default();
    let consul = Instance::start(
        Router::new()
            .route("/v1/agent/service/register", put(|| async { "" }))
            .route("/v1/agent/service/deregister/{id}", put(deregister))
            .with_state(agent.clone()),
    )
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *agent.service.lock().unwrap() = Some(addr);
    let guard = register(
        &consul.url(),
        "user-service",
        "user-1",
        "127.0.0.1",
        addr.port(),
    )
    .await
    .unwrap();
    let app = Router::new().route("/health", get(|| async { "ok" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        app,
        ServerConfig::default(),
        Some(guard),
        async {
            let _ = stopped.await;
        },
    ));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    // While deregistering: still live and serving, no longer ready.
    assert_eq!(
        *agent.seen.lock().unwrap(),
        [("user-1".to_string(), 200, 503)]
    );
    // After: the listener is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
