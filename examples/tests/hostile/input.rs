//! Oversize, malformed and untrimmed input: refused with 400 or 413 and
//! nothing stored, or stored trimmed; stores with a capacity.

use std::sync::Arc;

use meshguard_examples::clients::Users;
use meshguard_examples::config::{Protocol, Upstream};
use meshguard_examples::events::UserCreated;
use meshguard_examples::order::OrderState;
use meshguard_examples::server::Instance;
use meshguard_examples::user::{MemoryStore, UserState, UserStore};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::System;

async fn post_user(system: &System, name: &str, email: &str) -> (u16, Value) {
    system
        .call(
            Method::POST,
            "/api/users",
            Some(json!({ "name": name, "email": email })),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_over_100_characters_is_400_and_nothing_is_stored() {
    let system = System::start(None).await;
    let (status, body) = post_user(&system, &"é".repeat(101), "ada@example.com").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "name must be at most 100 characters");
    assert!(system.store.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_over_254_bytes_is_400_and_nothing_is_stored() {
    let system = System::start(None).await;
    let email = format!("{}@example.com", "a".repeat(250));
    let (status, body) = post_user(&system, "Ada", &email).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "email must be at most 254 bytes");
    assert!(system.store.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_a_control_character_is_400_and_nothing_is_stored() {
    let system = System::start(None).await;
    let (status, body) = post_user(&system, "Ada\u{1b}[2J", "ada@example.com").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "name must not contain control characters");
    assert!(system.store.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_emails_are_stored_trimmed() {
    let system = System::start(None).await;
    let (status, created) = post_user(&system, "  Ada  ", "\tada@example.com \n").await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "Ada");
    assert_eq!(created["email"], "ada@example.com");
    let id = created["id"].as_u64().unwrap();
    let stored = system.store.get(id).unwrap();
    assert_eq!(
        (stored.name.as_str(), stored.email.as_str()),
        ("Ada", "ada@example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_of_100_characters_once_trimmed_is_accepted() {
    let system = System::start(None).await;
    let name = format!("   {}   ", "n".repeat(100));
    let (status, created) = post_user(&system, &name, "ada@example.com").await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"].as_str().unwrap().len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_item_over_100_characters_is_400_and_nothing_is_stored() {
    let system = System::start(None).await;
    let id = system.create_user("ada").await;
    let (status, body) = system.place_order(id, &"x".repeat(101)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "item must be at most 100 characters");
    assert_eq!(system.order_state.order_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_item_is_stored_trimmed() {
    let system = System::start(None).await;
    let id = system.create_user("ada").await;
    let (status, order) = system.place_order(id, "  book \t").await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["item"], "book");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mb_body_is_413_at_the_gateway_and_nothing_is_stored() {
    let system = System::start(None).await;
    let (status, body) = post_user(&system, "Ada", &"a".repeat(1 << 20)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "request body over 16 KiB");
    assert!(system.store.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mb_body_sent_to_the_user_service_itself_is_413() {
    let system = System::start(None).await;
    let r = system
        .http
        .post(format!("{}/users", system.users[0].url()))
        .header("content-type", "application/json")
        .body(json!({ "name": "Ada", "email": "a".repeat(1 << 20) }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "request body over 16 KiB");
    assert!(system.store.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_is_answered_with_at_most_200_characters_of_the_parsers_message() {
    let system = System::start(None).await;
    let r = system
        .http
        .post(format!("{}/orders", system.orders.url()))
        .header("content-type", "application/json")
        .body(json!({ "user_id": "9".repeat(10_000), "item": "book", "quantity": 1 }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(message.starts_with("invalid JSON body: "), "{message}");
    assert!(message.chars().count() <= "invalid JSON body: ".len() + 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_store_refuses_beyond_its_capacity_with_507() {
    let store = Arc::new(MemoryStore::with_capacity(3));
    let service = Instance::start(meshguard_examples::user::app(UserState {
        store: store.clone(),
        events: None,
    }))
    .await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for n in 0..4 {
        let r = http
            .post(format!("{}/users", service.url()))
            .header("content-type", "application/json")
            .body(
                json!({ "name": format!("u{n}"), "email": format!("u{n}@example.com") })
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 201, 507]);
    assert_eq!(store.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_store_refuses_beyond_its_capacity_with_507() {
    let store = Arc::new(MemoryStore::default());
    let user = store
        .insert(meshguard_examples::user::NewUser {
            name: "ada".into(),
            email: "ada@example.com".into(),
        })
        .unwrap();
    let users = Instance::start(meshguard_examples::user::app(UserState {
        store,
        events: None,
    }))
    .await;
    let state = OrderState::new(Users::new(
        Protocol::Http,
        &Upstream::Urls(vec![users.url()]),
    ))
    .with_max_orders(2);
    let orders = Instance::start(meshguard_examples::order::app(state.clone())).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = http
            .post(format!("{}/orders", orders.url()))
            .header("content-type", "application/json")
            .body(json!({ "user_id": user.id, "item": "book", "quantity": 1 }).to_string())
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 507]);
    assert_eq!(state.order_count(), 2);
}

#[tokio::test]
async fn the_event_fed_view_keeps_the_newest_users_and_caps_names() {
    let state = OrderState::new(Users::new(
        Protocol::Http,
        &Upstream::Urls(vec!["http://127.0.0.1:9".into()]),
    ))
    .with_max_known_users(3);
    for id in 1..=5 {
        state.apply(UserCreated {
            id,
            name: "n".repeat(10_000),
            email: "x@example.com".into(),
        });
    }
    let known = state.known_users.read().unwrap();
    assert_eq!(known.keys().copied().collect::<Vec<_>>(), [3, 4, 5]);
    assert!(known.values().all(|name| name.len() == 100));
}
