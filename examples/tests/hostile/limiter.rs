//! The gateway's rate limiter under many distinct clients: its map stays
//! within its bound, the clients it tracks keep their allowance, and room
//! frees up as allowances refill. On tokio's paused clock.

use std::time::Duration;

use meshguard_examples::clients::service_client;
use meshguard_examples::config::Upstream;
use meshguard_examples::gateway::{GatewayState, JwtConfig, KeyedLimiter, Limited};
use meshguard_examples::server::Instance;

#[tokio::test(start_paused = true)]
async fn ten_thousand_distinct_clients_leave_at_most_max_keys_in_the_map() {
    let limiter = KeyedLimiter::new(10, 100);
    let admitted = (0..10_000)
        .filter(|n| limiter.check(&format!("client-{n}")).is_ok())
        .count();
    assert_eq!(admitted, 100);
    assert_eq!(limiter.len(), 100);
}

#[tokio::test(start_paused = true)]
async fn a_new_client_of_a_full_limiter_is_told_when_room_frees_up() {
    let limiter = KeyedLimiter::new(10, 2);
    limiter.check("a").unwrap();
    tokio::time::advance(Duration::from_millis(30)).await;
    limiter.check("b").unwrap();
    assert_eq!(
        limiter.check("c"),
        Err(Limited::Full {
            retry_after: Duration::from_millis(70)
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_limiter_still_serves_the_clients_it_tracks() {
    let limiter = KeyedLimiter::new(10, 2);
    limiter.check("a").unwrap();
    limiter.check("b").unwrap();
    assert!(limiter.check("c").is_err());
    // "a" has nine more in its burst of ten.
    for _ in 0..9 {
        limiter.check("a").unwrap();
    }
    assert_eq!(
        limiter.check("a"),
        Err(Limited::Rate {
            retry_after: Duration::from_millis(100)
        })
    );
}

#[tokio::test(start_paused = true)]
async fn clients_whose_allowance_refilled_are_pruned_for_new_ones() {
    let limiter = KeyedLimiter::new(10, 100);
    for n in 0..100 {
        limiter.check(&format!("old-{n}")).unwrap();
    }
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(limiter.check("new-0").is_err());
    tokio::time::advance(Duration::from_millis(1)).await;
    for n in 0..100 {
        limiter.check(&format!("new-{n}")).unwrap();
    }
    assert_eq!(limiter.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_limiter_map_stays_bounded_after_many_clients() {
    let jwt = JwtConfig::random();
    let nowhere = Upstream::Urls(vec!["http://127.0.0.1:9".into()]);
    let state = GatewayState::new(
        service_client("user-service", &nowhere),
        service_client("order-service", &nowhere),
        jwt.clone(),
        1,
    )
    .with_max_clients(5);
    let gateway = Instance::start(meshguard_examples::gateway::app(state.clone())).await;
    let http = reqwest::Client::new();
    let mut too_many = 0;
    for n in 0..50 {
        // User n asks for another user's record: 403 once admitted.
        let r = http
            .get(format!("{}/api/users/0", gateway.url()))
            .bearer_auth(jwt.token(&(n + 1).to_string(), &[]))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            403 => {}
            429 => {
                too_many += 1;
                assert!(r.headers().contains_key("retry-after"));
                let body: serde_json::Value =
                    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                assert_eq!(body["error"], "too many active clients");
            }
            other => panic!("client {n}: {other}"),
        }
        assert!(state.limiter().len() <= 5);
    }
    // One request a second each: the map fills within the first second.
    assert!(too_many > 0);
}
