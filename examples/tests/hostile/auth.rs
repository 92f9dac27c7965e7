//! Tokens: a missing key stops the gateway; a token without issuer,
//! audience or issue time, expired, not yet valid, living too long or
//! unsigned is 401 with a fixed body; the scheme in any case; and what a
//! user may reach (their own records only).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use meshguard_examples::gateway::now;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{SECRET, System};

/// `claims` signed with the gateway's key, as the caller wrote them.
fn signed(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// Valid claims for an admin, less or more what `change` does.
fn claims(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let now = now();
    let mut c = json!({
        "sub": "mallory",
        "iss": "meshguard-examples",
        "aud": "meshguard-gateway",
        "iat": now,
        "exp": now + 600,
        "roles": ["admin"],
    });
    change(c.as_object_mut().unwrap());
    c
}

/// What the gateway answers `GET /api/users/1` with `token`.
async fn answer(system: &System, token: &str) -> (u16, Value) {
    system
        .call_as(
            &format!("Bearer {token}"),
            Method::GET,
            "/api/users/1",
            None,
        )
        .await
}

async fn assert_refused(token: String) {
    let system = System::start(None).await;
    let (status, body) = answer(&system, &token).await;
    assert_eq!(status, 401);
    // The same body whatever the reason: no library error text.
    assert_eq!(body, json!({ "error": "invalid token" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_passes() {
    let system = System::start(None).await;
    let (status, body) = answer(&system, &signed(&claims(|_| {}))).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_an_audience_is_401() {
    assert_refused(signed(&claims(|c| {
        c.remove("aud");
    })))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_is_401() {
    assert_refused(signed(&claims(|c| {
        c.insert("aud".into(), json!("another-service"));
    })))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_an_issuer_is_401() {
    assert_refused(signed(&claims(|c| {
        c.remove("iss");
    })))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_an_issue_time_is_401() {
    assert_refused(signed(&claims(|c| {
        c.remove("iat");
    })))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_401() {
    assert_refused(signed(&claims(|c| {
        c.insert("iat".into(), json!(now() - 700));
        c.insert("exp".into(), json!(now() - 100));
    })))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expired_within_the_leeway_passes() {
    let system = System::start(None).await;
    let token = signed(&claims(|c| {
        c.insert("iat".into(), json!(now() - 600));
        c.insert("exp".into(), json!(now() - 10));
    }));
    assert_eq!(answer(&system, &token).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_valid_before_a_later_time_is_401() {
    assert_refused(signed(&claims(|c| {
        c.insert("nbf".into(), json!(now() + 120));
    })))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_in_the_future_is_401() {
    assert_refused(signed(&claims(|c| {
        c.insert("iat".into(), json!(now() + 120));
        c.insert("exp".into(), json!(now() + 600));
    })))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_living_longer_than_the_maximum_is_401() {
    assert_refused(signed(&claims(|c| {
        c.insert("exp".into(), json!(now() + 3601));
    })))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_token_is_401() {
    let token = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(claims(|_| {}).to_string().as_bytes())
    );
    assert_refused(token).await;
}

/// Unpadded base64url, as JWTs use.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let system = System::start(None).await;
    let token = system.jwt.token("e2e", &["admin"]);
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let (status, body) = system
            .call_as(
                &format!("{scheme} {token}"),
                Method::GET,
                "/api/users/1",
                None,
            )
            .await;
        assert_eq!(status, 404, "{scheme}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reads_their_own_record_and_not_anothers() {
    let system = System::start(None).await;
    let (ada, bob) = (
        system.create_user("ada").await,
        system.create_user("bob").await,
    );
    let auth = system.user_auth(ada);
    let (status, own) = system
        .call_as(&auth, Method::GET, &format!("/api/users/{ada}"), None)
        .await;
    assert_eq!((status, &own["name"]), (200, &json!("ada")));
    let (status, body) = system
        .call_as(&auth, Method::GET, &format!("/api/users/{bob}"), None)
        .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "a user may only read their own record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_create_users() {
    let system = System::start(None).await;
    let body = json!({ "name": "eve", "email": "eve@example.com" });
    let (status, _) = system
        .call_as(&system.user_auth(1), Method::POST, "/api/users", Some(body))
        .await;
    assert_eq!(status, 403);
    assert!(system.store.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_order_for_another_user() {
    let system = System::start(None).await;
    let (ada, bob) = (
        system.create_user("ada").await,
        system.create_user("bob").await,
    );
    let body = json!({ "user_id": bob, "item": "book", "quantity": 1 });
    let (status, _) = system
        .call_as(
            &system.user_auth(ada),
            Method::POST,
            "/api/orders",
            Some(body),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(system.order_state.order_count(), 0);
    let own = json!({ "user_id": ada, "item": "book", "quantity": 1 });
    let (status, _) = system
        .call_as(
            &system.user_auth(ada),
            Method::POST,
            "/api/orders",
            Some(own),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_order_is_404_to_a_user() {
    let system = System::start(None).await;
    let (ada, bob) = (
        system.create_user("ada").await,
        system.create_user("bob").await,
    );
    let (_, order) = system.place_order(bob, "pen").await;
    let id = order["id"].as_u64().unwrap();
    for path in [
        format!("/api/orders/{id}"),
        format!("/api/order-details/{id}"),
    ] {
        let (status, _) = system
            .call_as(&system.user_auth(ada), Method::GET, &path, None)
            .await;
        assert_eq!(status, 404, "ada: {path}");
        let (status, _) = system
            .call_as(&system.user_auth(bob), Method::GET, &path, None)
            .await;
        assert_eq!(status, 200, "bob: {path}");
    }
}

/// The gateway binary, run with `env` and no inherited `JWT_*` variable.
fn gateway(env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"));
    command
        .env_remove("JWT_SECRET")
        .env("PORT", "0")
        .env("METRICS_PORT", "0");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the gateway binary runs")
}

#[test]
fn the_gateway_refuses_to_start_without_a_secret() {
    let out = gateway(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("JWT_SECRET is not set"), "{stderr}");
    assert!(out.stdout.is_empty(), "no token printed");
}

#[test]
fn the_gateway_refuses_to_start_with_a_short_secret() {
    let out = gateway(&[("JWT_SECRET", "short")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_the_gateways_token_command_is_a_users_token() {
    let system = System::start(None).await;
    let ada = system.create_user("ada").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["token", &ada.to_string()])
        .env("JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let auth = format!("Bearer {}", String::from_utf8(out.stdout).unwrap().trim());
    let (status, _) = system
        .call_as(&auth, Method::GET, &format!("/api/users/{ada}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = system
        .call_as(&auth, Method::GET, "/api/users/999", None)
        .await;
    assert_eq!(status, 403);
}
