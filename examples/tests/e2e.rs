//! The example system end to end, in process: the Consul-compatible
//! registry, three user-service instances, the order service and the
//! gateway on 127.0.0.1:0, and a real redis-server started by the test on a
//! free port (append-only file on, so a restart keeps the stream).
//!
//! Real time throughout: these are real servers and a real Redis; waits
//! poll with a bound and fail with a message. Hostile input has its own
//! binary, tests/hostile.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Redis, SECRET, System, eventually};
use meshguard::testing::ConsulRegistry;
use meshguard_examples::clients::service_client;
use meshguard_examples::config::Upstream;
use meshguard_examples::events::Publisher;
use meshguard_examples::gateway::{ADMIN, GatewayState, JwtConfig};
use meshguard_examples::server::Instance;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_through_the_gateway_reaches_the_order_service_and_orders() {
    let redis = Redis::start().await;
    let system = System::start(Some(&redis)).await;
    let id = system.create_user("ada").await;

    // The user.created event reaches the order service's view...
    eventually("order-service consumed user.created", async || {
        system.knows(id)
    })
    .await;
    let known = system
        .http
        .get(format!("{}/known-users/{id}", system.orders.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(known.status(), 200);

    // ...and an order for the user goes through the gateway.
    let (status, order) = system
        .call(
            reqwest::Method::POST,
            "/api/orders",
            Some(serde_json::json!({ "user_id": id, "item": "book", "quantity": 2 })),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let (status, details) = system
        .call(
            reqwest::Method::GET,
            &format!("/api/order-details/{}", order["id"]),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(details["user"]["name"], "ada");
    assert_eq!(details["degraded"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_user_instance_mid_traffic_fails_no_idempotent_request() {
    let system = Arc::new(System::start(None).await);
    let ids: Vec<u64> = {
        let mut ids = Vec::new();
        for n in 0..10 {
            ids.push(system.create_user(&format!("user{n}")).await);
        }
        ids
    };
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut traffic = tokio::task::JoinSet::new();
    for t in 0..4 {
        let (system, ids, sent, failed) =
            (system.clone(), ids.clone(), sent.clone(), failed.clone());
        traffic.spawn(async move {
            for n in 0..150usize {
                let id = ids[(n + t) % ids.len()];
                let (status, body) = system
                    .call(reqwest::Method::GET, &format!("/api/users/{id}"), None)
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
                if status != 200 || body["id"] != id {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    // Mid-traffic: one instance dies, connections and all, still listed in
    // Consul (no check caught it yet).
    eventually("traffic under way", async || {
        sent.load(Ordering::Relaxed) >= 150
    })
    .await;
    system.users[0].kill();
    while traffic.join_next().await.is_some() {}
    assert_eq!(sent.load(Ordering::Relaxed), 600);
    assert_eq!(failed.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_across_a_redis_restart_are_not_lost() {
    let mut redis = Redis::start().await;
    let system = System::start(Some(&redis)).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(system.create_user(&format!("before{n}")).await);
    }
    eventually("the first events consumed", async || {
        ids.iter().all(|id| system.knows(*id))
    })
    .await;

    // Redis crashes; users are still created (201), their events wait.
    redis.down();
    for n in 0..5 {
        ids.push(system.create_user(&format!("during{n}")).await);
    }
    assert!(
        system
            .publishers
            .iter()
            .map(Publisher::pending)
            .sum::<usize>()
            > 0
    );

    // Redis comes back with its append-only file: every event arrives.
    redis.up().await;
    for n in 0..5 {
        ids.push(system.create_user(&format!("after{n}")).await);
    }
    eventually("all 15 events consumed", async || {
        ids.iter().all(|id| system.knows(*id))
    })
    .await;
    assert_eq!(
        system
            .publishers
            .iter()
            .map(Publisher::pending)
            .sum::<usize>(),
        0
    );
    assert_eq!(system.order_state.known_users.read().unwrap().len(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_for_an_unknown_user_is_422() {
    let system = System::start(None).await;
    let (status, body) = system.place_order(999, "book").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "unknown user 999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_details_degrade_when_the_user_service_is_down() {
    let system = System::start(None).await;
    let id = system.create_user("grace").await;
    let (_, order) = system.place_order(id, "pen").await;
    for u in &system.users {
        u.kill();
    }
    let (status, details) = system
        .call(
            reqwest::Method::GET,
            &format!("/api/order-details/{}", order["id"]),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(details["degraded"], true);
    assert_eq!(details["user"], Value::Null);
    assert_eq!(details["order"]["item"], "pen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_rejects_a_missing_or_forged_token() {
    let system = System::start(None).await;
    let url = format!("{}/api/users/1", system.gateway.url());
    let none = system.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let forged = system
        .http
        .get(&url)
        .header(
            "authorization",
            format!("Bearer {}", JwtConfig::random().token("mallory", &[ADMIN])),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_limits_each_clients_rate() {
    let system = System::start(None).await;
    let gateway = Instance::start(meshguard_examples::gateway::app(GatewayState::new(
        service_client("user-service", &Upstream::Urls(vec![system.users[1].url()])),
        service_client("order-service", &Upstream::Urls(vec![system.orders.url()])),
        JwtConfig::new(SECRET).unwrap(),
        2,
    )))
    .await;
    let url = format!("{}/api/users/1", gateway.url());
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = system
            .http
            .get(&url)
            .header("authorization", &system.auth)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    // Two a second (404: no user 1 yet), then 429.
    assert_eq!(statuses, [404, 404, 429]);
    // Another client has its own allowance.
    let other = system
        .http
        .get(&url)
        .header(
            "authorization",
            format!("Bearer {}", system.jwt.token("other", &[ADMIN])),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_while_the_user_services_breaker_is_open_is_503_with_retry_after() {
    let system = System::start(None).await;
    system
        .order_state
        .users
        .breaker()
        .expect("the user client has a service breaker")
        .force_open();
    let r = system
        .http
        .post(format!("{}/orders", system.orders.url()))
        .header("content-type", "application/json")
        .body(r#"{"user_id":1,"item":"book","quantity":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_while_no_user_instance_answers_is_503() {
    let system = System::start(None).await;
    for u in &system.users {
        u.kill();
    }
    let (status, body) = system.place_order(1, "book").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "user-service is unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_400_with_a_clear_message() {
    let system = System::start(None).await;
    let (status, body) = system
        .call(
            reqwest::Method::POST,
            "/api/users",
            Some(serde_json::json!({ "name": "Ada", "email": "not-an-address" })),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "email \"not-an-address\" is not an address");
    let (status, body) = system.place_order(1, "").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "item must be named and quantity at least 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_registers_itself_and_deregisters_at_shutdown() {
    let consul = ConsulRegistry::start().await;
    let guard = meshguard_examples::server::register(
        &consul.url(),
        "user-service",
        "user-7",
        "127.0.0.1",
        8081,
    )
    .await
    .unwrap();
    assert!(consul.is_registered("user-7"));
    guard.deregister().await.unwrap();
    assert!(!consul.is_registered("user-7"));
}
