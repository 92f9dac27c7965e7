//! A registry started with a required ACL token refuses requests without
//! it (403, §5), accepts it in each of Consul's three places, and never
//! shows it.

use meshguard::testing::ConsulRegistry;

const TOKEN: &str = "9f2c0b1e-acl-test-token";

async fn with_token() -> ConsulRegistry {
    ConsulRegistry::builder()
        .acl_token(TOKEN)
        .start()
        .await
        .unwrap()
}

async fn status(req: reqwest::RequestBuilder) -> (u16, String) {
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_request_without_a_token_is_403_permission_denied() {
    let consul = with_token().await;
    let (code, body) =
        status(reqwest::Client::new().get(format!("{}/v1/catalog/services", consul.url()))).await;
    assert_eq!(code, 403);
    assert!(body.starts_with("Permission denied"), "{body}");
}

#[tokio::test]
async fn a_wrong_token_is_403_acl_not_found() {
    let consul = with_token().await;
    let req = reqwest::Client::new()
        .get(format!("{}/v1/health/service/users", consul.url()))
        .header("X-Consul-Token", "wrong");
    assert_eq!(status(req).await, (403, "ACL not found".to_string()));
}

#[tokio::test]
async fn the_token_is_accepted_in_the_header_as_bearer_and_in_the_query() {
    let consul = with_token().await;
    consul.register_passing("users", "users-1", "10.0.0.1", 8081);
    let http = reqwest::Client::new();
    let url = format!("{}/v1/agent/services", consul.url());
    let header = http.get(&url).header("X-Consul-Token", TOKEN);
    let bearer = http.get(&url).bearer_auth(TOKEN);
    let query = http.get(format!("{url}?token={TOKEN}"));
    for req in [header, bearer, query] {
        let (code, body) = status(req).await;
        assert_eq!(code, 200);
        assert!(body.contains("users-1"), "{body}");
    }
}

#[tokio::test]
async fn a_write_without_the_token_changes_nothing() {
    let consul = with_token().await;
    let req = reqwest::Client::new()
        .put(format!("{}/v1/agent/service/register", consul.url()))
        .body(r#"{"Name":"users","ID":"users-1","Port":1}"#);
    assert_eq!(status(req).await.0, 403);
    assert!(!consul.is_registered("users-1"));
}

#[tokio::test]
async fn status_endpoints_need_no_token() {
    let consul = with_token().await;
    let req = reqwest::Client::new().get(format!("{}/v1/status/leader", consul.url()));
    assert_eq!(status(req).await.0, 200);
}

#[tokio::test]
async fn the_token_is_not_in_debug_output_or_answers() {
    let consul = with_token().await;
    assert!(!format!("{consul:?}").contains(TOKEN));
    let req = reqwest::Client::new()
        .get(format!("{}/v1/agent/self", consul.url()))
        .header("X-Consul-Token", "wrong");
    assert!(!status(req).await.1.contains(TOKEN));
}

#[tokio::test]
async fn without_a_required_token_any_request_passes() {
    let consul = ConsulRegistry::builder().start().await.unwrap();
    let req = reqwest::Client::new().get(format!("{}/v1/agent/services", consul.url()));
    assert_eq!(status(req).await, (200, "{}".to_string()));
}
