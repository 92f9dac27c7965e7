//! The order service calls the user service over gRPC (`users.Users/Get`
//! through `meshguard::grpc::Channel`), in process: three user-service
//! instances found through the Consul-compatible registry, the order
//! service on 127.0.0.1:0.
//!
//! Real time, as in tests/e2e.rs: real servers, one killed under real
//! traffic; waits are bounded and fail with a message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use meshguard::testing::ConsulRegistry;
use meshguard_examples::clients::Users;
use meshguard_examples::config::{Protocol, Upstream};
use meshguard_examples::grpc::{GET, UsersClient};
use meshguard_examples::order::OrderState;
use meshguard_examples::server::Instance;
use meshguard_examples::user::{MemoryStore, NewUser, User, UserState, UserStore};
use tokio::sync::{Barrier, oneshot};

/// A user-service instance and the `users.Users/Get` calls it received.
struct UserInstance {
    server: Instance,
    calls: Arc<AtomicU64>,
}

impl UserInstance {
    async fn start(store: Arc<MemoryStore>) -> UserInstance {
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let api = meshguard_examples::user::routes(UserState {
            store,
            events: None,
        })
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            if req.uri().path() == GET {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            next.run(req)
        }));
        let server = Instance::start(meshguard_examples::user::with_operations(api)).await;
        UserInstance { server, calls }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Three user-service instances sharing a store with `users` users,
/// registered (passing) in a registry, and the order service finding them
/// there, calling them over `protocol`.
struct System {
    _consul: ConsulRegistry,
    users: Vec<UserInstance>,
    orders: Instance,
    http: reqwest::Client,
}

impl System {
    async fn start(users: u64, protocol: Protocol) -> System {
        let consul = ConsulRegistry::start().await;
        let store = Arc::new(MemoryStore::default());
        for n in 0..users {
            store
                .insert(NewUser {
                    name: format!("user{n}"),
                    email: format!("user{n}@example.com"),
                })
                .expect("room in the store");
        }
        let mut instances = Vec::new();
        for n in 1..=3 {
            let instance = UserInstance::start(store.clone()).await;
            consul.register_passing(
                "user-service",
                &format!("user-{n}"),
                "127.0.0.1",
                instance.server.addr.port(),
            );
            instances.push(instance);
        }
        let upstream = Upstream::Consul {
            address: consul.url(),
            service: "user-service".into(),
        };
        let state = OrderState::new(Users::new(protocol, &upstream));
        let orders = Instance::start(meshguard_examples::order::app(state)).await;
        System {
            _consul: consul,
            users: instances,
            orders,
            http: reqwest::Client::new(),
        }
    }

    /// `POST /orders` for `user_id`: the status and the body.
    async fn place_order(&self, user_id: u64) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}/orders", self.orders.url()))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"user_id":{user_id},"item":"book","quantity":1}}"#
            ))
            .send()
            .await
            .expect("the order service answers");
        (r.status().as_u16(), r.text().await.unwrap())
    }

    fn calls(&self) -> Vec<u64> {
        self.users.iter().map(UserInstance::calls).collect()
    }
}

const CALLERS: u64 = 4;
/// Each caller's calls until the pause, the kill among them.
const BEFORE_PAUSE: u64 = 150;
/// Each caller's calls after the pause.
const AFTER_PAUSE: u64 = 50;
/// Caller 0 asks for the kill after this many calls of its own.
const KILL_AFTER: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_user_instance_mid_traffic_fails_no_grpc_call() {
    let system = Arc::new(System::start(10, Protocol::Grpc).await);
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Every caller and the test meet at the pause (after the kill, all
    // calls before it answered), and again to go on.
    let (paused, resumed) = (
        Arc::new(Barrier::new(CALLERS as usize + 1)),
        Arc::new(Barrier::new(CALLERS as usize + 1)),
    );
    let (kill_tx, kill_rx) = oneshot::channel();
    let mut kill_tx = Some(kill_tx);
    let mut traffic = tokio::task::JoinSet::new();
    for c in 0..CALLERS {
        let (system, sent, failed) = (system.clone(), sent.clone(), failed.clone());
        let (paused, resumed) = (paused.clone(), resumed.clone());
        let mut kill = if c == 0 { kill_tx.take() } else { None };
        traffic.spawn(async move {
            for n in 0..BEFORE_PAUSE + AFTER_PAUSE {
                if n == BEFORE_PAUSE {
                    paused.wait().await;
                    resumed.wait().await;
                }
                let user_id = 1 + (n + c) % 10;
                let (status, body) = system.place_order(user_id).await;
                sent.fetch_add(1, Ordering::SeqCst);
                if status != 201 {
                    failed.fetch_add(1, Ordering::SeqCst);
                    eprintln!("caller {c}, call {n}: {status} {body}");
                }
                if n + 1 == KILL_AFTER {
                    if let Some(kill) = kill.take() {
                        kill.send(()).unwrap();
                    }
                }
            }
        });
    }

    // Mid-traffic, one instance dies, connections and all, still listed in
    // the registry (no check caught it yet).
    tokio::time::timeout(Duration::from_secs(30), kill_rx)
        .await
        .expect("caller 0 made its first calls in 30 s")
        .unwrap();
    let calls_at_kill = system.users[0].calls();
    system.users[0].server.kill();
    let sent_at_kill = sent.load(Ordering::SeqCst);

    paused.wait().await;
    let calls_at_pause = system.calls();
    resumed.wait().await;
    while let Some(caller) = traffic.join_next().await {
        caller.unwrap();
    }
    let calls_at_end = system.calls();

    // Every call answered 201: the user check over gRPC never failed.
    assert_eq!(
        sent.load(Ordering::SeqCst),
        CALLERS * (BEFORE_PAUSE + AFTER_PAUSE)
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    // The kill came under traffic: the killed instance had served calls,
    // and most calls came after it.
    assert!(calls_at_kill > 0);
    assert!(sent_at_kill < CALLERS * BEFORE_PAUSE);
    // The killed instance took no call after it died (beyond the ones
    // already received, at most one per caller, whose handlers may still
    // run), and none at all after the pause.
    assert!(calls_at_pause[0] - calls_at_kill <= CALLERS);
    assert_eq!(calls_at_end[0], calls_at_pause[0]);
    // The two survivors answered everything after the pause: each call
    // reached one of them at least once (more only if an attempt timed
    // out and was retried).
    let survivors_after_pause: Vec<u64> = (1..3)
        .map(|i| calls_at_end[i] - calls_at_pause[i])
        .collect();
    assert!(survivors_after_pause.iter().all(|&n| n > 0));
    assert!(survivors_after_pause.iter().sum::<u64>() >= CALLERS * AFTER_PAUSE);
    // And over the whole run, every call reached an instance.
    assert!(calls_at_end.iter().sum::<u64>() >= CALLERS * (BEFORE_PAUSE + AFTER_PAUSE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_service_answers_grpc_and_http_on_one_port() {
    let system = System::start(1, Protocol::Grpc).await;
    let instance = &system.users[0].server;
    let grpc = UsersClient::new(&Upstream::Urls(vec![instance.url()]));
    let expected = User {
        id: 1,
        name: "user0".into(),
        email: "user0@example.com".into(),
    };
    assert_eq!(grpc.get(1).await.unwrap(), Some(expected.clone()));
    // NOT_FOUND is no such user, as 404 is over HTTP.
    assert_eq!(grpc.get(2).await.unwrap(), None);
    let http = system
        .http
        .get(format!("{}/users/1", instance.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(http.status(), 200);
    let user: User = serde_json::from_slice(&http.bytes().await.unwrap()).unwrap();
    assert_eq!(user, expected);
    assert_eq!(system.calls(), [2, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_for_an_unknown_user_is_422_over_grpc() {
    let system = System::start(1, Protocol::Grpc).await;
    let (status, body) = system.place_order(999).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body, r#"{"error":"unknown user 999"}"#);
    assert_eq!(system.calls().iter().sum::<u64>(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_path_is_kept_behind_the_protocol_switch() {
    let system = System::start(1, Protocol::Http).await;
    let (status, body) = system.place_order(1).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = system.place_order(999).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body, r#"{"error":"unknown user 999"}"#);
    // No gRPC call: the order service asked `GET /users/{id}`.
    assert_eq!(system.calls(), [0, 0, 0]);
}
