//! The registry's catalog, agent-read, health-checks, check-registration
//! and status endpoints answer in the shapes Consul's API docs give.

use std::time::Duration;
use tokio::time::Instant;

use meshguard::testing::{CheckStatus, ConsulRegistry};
use serde_json::{Value, json};

async fn get(consul: &ConsulRegistry, path: &str) -> (u16, Option<u64>, Value) {
    get_with(&reqwest::Client::new(), consul, path).await
}

async fn get_with(
    http: &reqwest::Client,
    consul: &ConsulRegistry,
    path: &str,
) -> (u16, Option<u64>, Value) {
    let r = http
        .get(format!("{}{path}", consul.url()))
        .send()
        .await
        .unwrap();
    let index = r
        .headers()
        .get("x-consul-index")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, index, json)
}

async fn put(consul: &ConsulRegistry, path: &str, body: Value) -> (u16, String) {
    let r = reqwest::Client::new()
        .put(format!("{}{path}", consul.url()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn register_tagged(consul: &ConsulRegistry, id: &str, tags: &[&str]) {
    let body = json!({"Name": "users", "ID": id, "Address": "10.0.0.1", "Port": 8081,
        "Tags": tags, "Meta": {"v": "1"}, "Check": {"TTL": "30s", "Status": "passing"}});
    assert_eq!(put(consul, "/v1/agent/service/register", body).await.0, 200);
}

#[tokio::test]
async fn agent_services_is_an_object_keyed_by_service_id() {
    let consul = ConsulRegistry::start().await;
    register_tagged(&consul, "users-1", &["a"]).await;
    let (status, _, body) = get(&consul, "/v1/agent/services").await;
    assert_eq!(status, 200);
    let s = &body["users-1"];
    assert_eq!(s["ID"], "users-1");
    assert_eq!(s["Service"], "users");
    assert_eq!(s["Tags"], json!(["a"]));
    assert_eq!(s["Meta"], json!({"v": "1"}));
    assert_eq!(s["Port"], 8081);
    assert_eq!(s["Address"], "10.0.0.1");
    assert_eq!(s["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(s["EnableTagOverride"], false);
    assert_eq!(s["Datacenter"], "dc1");
}

#[tokio::test]
async fn agent_checks_is_an_object_keyed_by_check_id() {
    let consul = ConsulRegistry::start().await;
    register_tagged(&consul, "users-1", &["a"]).await;
    let (status, _, body) = get(&consul, "/v1/agent/checks").await;
    assert_eq!(status, 200);
    let c = &body["service:users-1"];
    assert_eq!(c["CheckID"], "service:users-1");
    assert_eq!(c["Node"], "meshguard-test-node");
    assert_eq!(c["Status"], "passing");
    assert_eq!(c["ServiceID"], "users-1");
    assert_eq!(c["ServiceName"], "users");
    assert_eq!(c["ServiceTags"], json!(["a"]));
    assert_eq!(c["Type"], "ttl");
    assert!(c["Notes"].is_string() && c["Output"].is_string() && c["Name"].is_string());
}

#[tokio::test]
async fn catalog_services_maps_names_to_the_union_of_tags() {
    let consul = ConsulRegistry::start().await;
    register_tagged(&consul, "users-1", &["a"]).await;
    register_tagged(&consul, "users-2", &["b", "a"]).await;
    consul.register_passing("orders", "orders-1", "10.0.0.2", 8082);
    let (status, index, body) = get(&consul, "/v1/catalog/services").await;
    assert_eq!(status, 200);
    assert!(index.unwrap() >= 1);
    assert_eq!(body, json!({"orders": [], "users": ["a", "b"]}));
}

#[tokio::test]
async fn catalog_services_blocks_until_a_change() {
    let consul = ConsulRegistry::start().await;
    let (_, index, _) = get(&consul, "/v1/catalog/services").await;
    let index = index.unwrap();
    let path = format!("/v1/catalog/services?index={index}&wait=10s");
    let start = Instant::now();
    let query = get(&consul, &path);
    let register = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        consul.register_passing("users", "users-1", "10.0.0.1", 80);
    };
    let ((status, new_index, body), ()) = tokio::join!(query, register);
    assert_eq!((status, body), (200, json!({"users": []})));
    assert!(new_index.unwrap() > index);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn catalog_services_times_out_with_the_same_index() {
    let consul = ConsulRegistry::start().await;
    // One client: the timed query reuses the first one's connection.
    let http = reqwest::Client::new();
    let (_, index, _) = get_with(&http, &consul, "/v1/catalog/services").await;
    let start = Instant::now();
    let path = format!("/v1/catalog/services?index={}&wait=1s", index.unwrap());
    let (status, again, body) = get_with(&http, &consul, &path).await;
    let took = start.elapsed();
    assert_eq!((status, again, body), (200, index, json!({})));
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(
        took <= Duration::from_millis(1_062) + Duration::from_micros(500),
        "{took:?}"
    );
}

#[tokio::test]
async fn catalog_service_lists_catalog_nodes_healthy_or_not() {
    let consul = ConsulRegistry::start().await;
    register_tagged(&consul, "users-1", &["a"]).await;
    consul.register_passing("users", "users-2", "10.0.0.3", 8083);
    consul.set_health("users-2", CheckStatus::Critical);
    let (status, _, body) = get(&consul, "/v1/catalog/service/users").await;
    assert_eq!(status, 200);
    let nodes = body.as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    let n = &nodes[0];
    for field in [
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "NodeMeta",
        "ServiceKind",
        "ServiceID",
        "ServiceName",
        "ServiceTags",
        "ServiceAddress",
        "ServiceWeights",
        "ServiceMeta",
        "ServicePort",
        "ServiceEnableTagOverride",
        "CreateIndex",
        "ModifyIndex",
    ] {
        assert!(n.get(field).is_some(), "{field} missing in {n}");
    }
    assert_eq!(n["ServiceID"], "users-1");
    assert_eq!(n["ServiceAddress"], "10.0.0.1");
    assert_eq!(n["ServicePort"], 8081);
    assert_eq!(n["ServiceTags"], json!(["a"]));
    assert_eq!(nodes[1]["ServiceID"], "users-2");
}

#[tokio::test]
async fn catalog_service_filters_by_tag() {
    let consul = ConsulRegistry::start().await;
    register_tagged(&consul, "users-1", &["a"]).await;
    register_tagged(&consul, "users-2", &["b"]).await;
    let (_, _, body) = get(&consul, "/v1/catalog/service/users?tag=b").await;
    let ids: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["ServiceID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["users-2"]);
}

#[tokio::test]
async fn health_checks_lists_the_checks_of_a_services_instances() {
    let consul = ConsulRegistry::start().await;
    register_tagged(&consul, "users-1", &[]).await;
    consul.register_passing("orders", "orders-1", "10.0.0.2", 8082);
    let (status, index, body) = get(&consul, "/v1/health/checks/users").await;
    assert_eq!(status, 200);
    assert!(index.is_some());
    let checks = body.as_array().unwrap();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["CheckID"], "service:users-1");
    assert_eq!(checks[0]["ServiceName"], "users");
    assert_eq!(get(&consul, "/v1/health/checks/nobody").await.2, json!([]));
}

#[tokio::test]
async fn status_leader_is_a_json_string() {
    let consul = ConsulRegistry::start().await;
    let (status, _, body) = get(&consul, "/v1/status/leader").await;
    assert_eq!((status, body), (200, json!("127.0.0.1:8300")));
}

#[tokio::test]
async fn a_registered_ttl_check_joins_its_service_and_can_be_passed() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-1", "10.0.0.1", 8081);
    let body = json!({"Name": "disk", "ID": "disk-1", "ServiceID": "users-1", "TTL": "30s"});
    assert_eq!(put(&consul, "/v1/agent/check/register", body).await.0, 200);
    assert_eq!(consul.check_status("disk-1"), Some(CheckStatus::Critical));
    let (_, _, health) = get(&consul, "/v1/health/service/users?passing").await;
    assert_eq!(health, json!([]));
    assert_eq!(
        put(&consul, "/v1/agent/check/pass/disk-1", json!(null))
            .await
            .0,
        200
    );
    assert_eq!(consul.check_status("disk-1"), Some(CheckStatus::Passing));
}

#[tokio::test]
async fn a_check_id_defaults_to_its_name() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-1", "10.0.0.1", 8081);
    let body = json!({"Name": "mem", "ServiceID": "users-1", "TTL": "30s", "Status": "warning"});
    assert_eq!(put(&consul, "/v1/agent/check/register", body).await.0, 200);
    assert_eq!(consul.check_status("mem"), Some(CheckStatus::Warning));
}

#[tokio::test]
async fn a_deregistered_check_leaves_its_service() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-1", "10.0.0.1", 8081);
    let body = json!({"Name": "disk", "ServiceID": "users-1", "TTL": "30s"});
    put(&consul, "/v1/agent/check/register", body).await;
    assert_eq!(
        put(&consul, "/v1/agent/check/deregister/disk", json!(null))
            .await
            .0,
        200
    );
    assert_eq!(consul.check_status("disk"), None);
    let (status, text) = put(&consul, "/v1/agent/check/deregister/disk", json!(null)).await;
    assert_eq!(status, 404, "{text}");
}

#[tokio::test]
async fn a_check_without_ttl_or_http_or_a_known_service_is_400() {
    let consul = ConsulRegistry::start().await;
    consul.register_passing("users", "users-1", "10.0.0.1", 8081);
    for body in [
        json!({"Name": "x", "ServiceID": "users-1"}),
        json!({"Name": "x", "ServiceID": "nobody", "TTL": "10s"}),
        json!({"Name": "x", "TTL": "10s"}),
        json!({"ServiceID": "users-1", "TTL": "10s"}),
    ] {
        let (status, text) = put(&consul, "/v1/agent/check/register", body).await;
        assert_eq!(status, 400, "{text}");
    }
}
