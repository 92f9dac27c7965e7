//! The in-process Consul-compatible registry behaves as the Consul API
//! facts in tests/fixtures/consul/README.md say (section numbers refer to
//! it).

use std::time::Duration;
use tokio::time::Instant;

use meshguard::testing::{CheckStatus, ConsulRegistry};
use serde_json::Value;

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(consul: &ConsulRegistry) -> Api {
        Api {
            base: consul.url(),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (u16, Option<u64>, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let index = r
            .headers()
            .get("x-consul-index")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        (r.status().as_u16(), index, r.text().await.unwrap())
    }

    async fn put(&self, path: &str, body: &str) -> (u16, String) {
        let r = self
            .http
            .put(format!("{}{path}", self.base))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn ids(&self, path: &str) -> Vec<String> {
        let (status, _, body) = self.get(path).await;
        assert_eq!(status, 200, "{body}");
        let entries: Vec<Value> = serde_json::from_str(&body).unwrap();
        entries
            .iter()
            .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
            .collect()
    }
}

#[tokio::test]
async fn a_blocking_query_returns_at_once_on_a_change() {
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    let (_, index, _) = api.get("/v1/health/service/users").await;
    let index = index.unwrap();
    let start = Instant::now();
    let path = format!("/v1/health/service/users?index={index}&wait=10s");
    let query = api.get(&path);
    let register = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        consul.register_passing("users", "users-1", "10.0.0.1", 80);
    };
    let ((status, new_index, body), ()) = tokio::join!(query, register);
    assert_eq!(status, 200);
    assert!(new_index.unwrap() > index);
    assert!(body.contains("users-1"));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

// Real time: under a paused clock, tokio moves time on whenever the
// runtime waits for the socket, to whichever timer comes first (hyper's
// 30 s header read timeout), which made this test fail on a loaded
// machine. The jitter's exact bounds are a unit test of the registry's
// `gives_up_at`.
#[tokio::test]
async fn a_blocking_query_times_out_with_200_and_the_same_index() {
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    let (_, index, _) = api.get("/v1/health/service/users").await;
    let index = index.unwrap();
    let start = Instant::now();
    let (status, again, body) = api
        .get(&format!("/v1/health/service/users?index={index}&wait=1s"))
        .await;
    let took = start.elapsed();
    assert_eq!((status, again, body.as_str()), (200, Some(index), "[]"));
    // The query's own wait, not the default of 5 minutes.
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn the_index_is_never_0_and_an_unknown_service_is_an_empty_list() {
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    let (status, index, body) = api.get("/v1/health/service/nobody").await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    assert!(index.unwrap() >= 1);
}

#[tokio::test]
async fn passing_drops_instances_with_any_check_not_passing() {
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    for (id, status) in [
        ("ok", CheckStatus::Passing),
        ("warn", CheckStatus::Warning),
        ("down", CheckStatus::Critical),
    ] {
        consul.register_passing("users", id, "10.0.0.1", 80);
        consul.set_health(id, status);
    }
    assert_eq!(api.ids("/v1/health/service/users?passing").await, ["ok"]);
    assert_eq!(api.ids("/v1/health/service/users?passing=1").await, ["ok"]);
    assert_eq!(
        api.ids("/v1/health/service/users").await,
        ["down", "ok", "warn"]
    );
    assert_eq!(
        api.ids("/v1/health/service/users?passing=false").await,
        ["down", "ok", "warn"]
    );
}

#[tokio::test]
async fn bad_parameters_get_400_with_consuls_texts() {
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    for (query, text) in [
        ("?passing=maybe", "Invalid value for ?passing"),
        ("?index=abc", "Invalid index"),
        ("?index=5&wait=5parsecs", "Invalid wait time"),
        (
            "?stale&consistent",
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ),
    ] {
        let (status, _, body) = api.get(&format!("/v1/health/service/users{query}")).await;
        assert_eq!((status, body.as_str()), (400, text), "{query}");
    }
    let (status, _, body) = api.get("/v1/health/service/").await;
    assert_eq!((status, body.as_str()), (400, "Missing service name"));
}

#[tokio::test]
async fn the_docs_registration_sample_is_accepted_and_listed() {
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    let sample =
        std::fs::read_to_string("tests/fixtures/consul/agent-service-register.json").unwrap();
    let (status, body) = api.put("/v1/agent/service/register", &sample).await;
    assert_eq!((status, body.as_str()), (200, ""));
    let (_, _, body) = api.get("/v1/health/service/redis").await;
    let entries: Vec<Value> = serde_json::from_str(&body).unwrap();
    let service = &entries[0]["Service"];
    assert_eq!(service["ID"], "redis1");
    assert_eq!(service["Tags"], serde_json::json!(["primary", "v1"]));
    assert_eq!(service["Meta"]["redis_version"], "4.0");
    assert_eq!(service["Weights"]["Passing"], 10);
    // A new HTTP check starts critical (§8), so `passing` hides it.
    let check = &entries[0]["Checks"][1];
    assert_eq!(check["CheckID"], "service:redis1");
    assert_eq!(check["Status"], "critical");
    assert!(api.ids("/v1/health/service/redis?passing").await.is_empty());
    // And rs-consul reads what the registry writes.
    let _: Vec<rs_consul::ServiceNode> = serde_json::from_str(&body).unwrap();
}

#[tokio::test]
async fn an_http_check_turns_passing_when_the_health_route_answers() {
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    let body = serde_json::json!({
        "Name": "web", "ID": "web-1", "Address": "127.0.0.1", "Port": addr.port(),
        "Check": {"HTTP": format!("http://{addr}/health"), "Interval": "100ms", "Timeout": "1s"}
    });
    assert_eq!(
        api.put("/v1/agent/service/register", &body.to_string())
            .await
            .0,
        200
    );
    let start = Instant::now();
    while consul.check_status("service:web-1") != Some(CheckStatus::Passing) {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "check never passed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(api.ids("/v1/health/service/web?passing").await, ["web-1"]);
}

#[tokio::test]
async fn registration_errors_get_400() {
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    for (body, text) in [
        (r#"{"Port": 80}"#, "Missing service name"),
        (
            r#"{"Name": "a", "Address": "0.0.0.0"}"#,
            "Invalid service address",
        ),
        (
            r#"{"Name": "a", "Check": {"HTTP": "http://x/health"}}"#,
            "Must provide TTL or Script/DockerContainerID/HTTP/TCP and Interval",
        ),
        (
            r#"{"Name": "a", "Check": {"TTL": "10s", "Status": "fine"}}"#,
            "Status for checks must 'passing', 'warning', 'critical'",
        ),
    ] {
        assert_eq!(
            api.put("/v1/agent/service/register", body).await,
            (400, text.to_string()),
            "{body}"
        );
    }
    let (status, text) = api.put("/v1/agent/service/register", "{nope").await;
    assert_eq!(status, 400);
    assert!(text.starts_with("Request decode failed"), "{text}");
}

#[tokio::test]
async fn deregistering_an_unknown_id_is_404() {
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    assert_eq!(
        api.put("/v1/agent/service/deregister/ghost", "").await,
        (
            404,
            "Unknown service ID \"ghost\". Ensure that the service ID is passed, not the service name."
                .to_string()
        )
    );
    consul.register_passing("users", "users-1", "10.0.0.1", 80);
    assert_eq!(
        api.put("/v1/agent/service/deregister/users-1", "").await.0,
        200
    );
    assert!(!consul.is_registered("users-1"));
}

#[tokio::test]
async fn an_id_in_a_path_is_the_rest_of_the_path_percent_decoded() {
    // As Consul's agent: the suffix of the decoded path, so an escaped
    // `/` or `%` is part of the id, and so is an unescaped `/`.
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    for id in ["web/1", "a%b c"] {
        consul.register_passing("web", id, "10.0.0.1", 80);
    }
    assert_eq!(
        api.put("/v1/agent/service/deregister/a%25b%20c", "")
            .await
            .0,
        200
    );
    assert!(!consul.is_registered("a%b c"));
    assert_eq!(
        api.put("/v1/agent/service/deregister/web/1", "").await.0,
        200
    );
    assert!(!consul.is_registered("web/1"));
}

#[tokio::test(start_paused = true)]
async fn ttl_checks_are_set_by_pass_warn_fail_and_expire() {
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    let body = r#"{"Name": "job", "ID": "job-1", "Check": {"TTL": "1s"}}"#;
    assert_eq!(api.put("/v1/agent/service/register", body).await.0, 200);
    let check = "service:job-1";
    assert_eq!(consul.check_status(check), Some(CheckStatus::Critical));
    assert_eq!(
        api.put(&format!("/v1/agent/check/pass/{check}"), "")
            .await
            .0,
        200
    );
    assert_eq!(consul.check_status(check), Some(CheckStatus::Passing));
    assert_eq!(
        api.put(&format!("/v1/agent/check/warn/{check}"), "")
            .await
            .0,
        200
    );
    assert_eq!(consul.check_status(check), Some(CheckStatus::Warning));
    let update = r#"{"Status": "passing", "Output": "fine"}"#;
    assert_eq!(
        api.put(&format!("/v1/agent/check/update/{check}"), update)
            .await
            .0,
        200
    );
    assert_eq!(consul.check_status(check), Some(CheckStatus::Passing));
    assert_eq!(
        api.put(
            &format!("/v1/agent/check/update/{check}"),
            r#"{"Status": "ok"}"#
        )
        .await,
        (400, "Invalid check status: 'ok'".to_string())
    );
    assert_eq!(
        api.put("/v1/agent/check/pass/nope", "").await,
        (
            404,
            "Unknown check ID \"nope\". Ensure that the check ID is passed, not the check name."
                .to_string()
        )
    );
    // Critical exactly when a TTL has passed since the last update.
    tokio::time::sleep(Duration::from_millis(999)).await;
    assert_eq!(consul.check_status(check), Some(CheckStatus::Passing));
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(consul.check_status(check), Some(CheckStatus::Critical));
}

#[tokio::test]
async fn maintenance_mode_adds_a_critical_check_and_hides_from_passing() {
    let consul = ConsulRegistry::start().await;
    let api = Api::new(&consul);
    consul.register_passing("users", "users-1", "10.0.0.1", 80);
    assert_eq!(
        api.put("/v1/agent/service/maintenance/users-1", "").await,
        (400, "Missing value for enable".to_string())
    );
    let (status, _) = api
        .put(
            "/v1/agent/service/maintenance/users-1?enable=true&reason=deploy",
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert!(api.ids("/v1/health/service/users?passing").await.is_empty());
    assert_eq!(api.ids("/v1/health/service/users").await, ["users-1"]);
    assert_eq!(
        consul.check_status("_service_maintenance:users-1"),
        Some(CheckStatus::Critical)
    );
    assert_eq!(
        api.put("/v1/agent/service/maintenance/users-1?enable=false", "")
            .await
            .0,
        200
    );
    assert_eq!(
        api.ids("/v1/health/service/users?passing").await,
        ["users-1"]
    );
}
