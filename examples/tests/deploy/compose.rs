//! The compose file: Consul's UI published on localhost only (a dev agent
//! has no ACLs), only the gateway's API otherwise; every container with a
//! health check and limits; the example services without capabilities,
//! read-only, checked by their own binary; no key in the file.

use super::*;

fn services() -> Vec<(String, Value)> {
    compose()["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone()))
        .collect()
}

fn published(service: &Value) -> Vec<String> {
    service["ports"]
        .as_sequence()
        .map(|p| p.iter().map(|p| p.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn consul_is_published_on_localhost_only() {
    let (_, consul) = services().into_iter().find(|(n, _)| n == "consul").unwrap();
    let ports = published(&consul);
    assert!(!ports.is_empty());
    for p in ports {
        assert!(p.starts_with("127.0.0.1:"), "consul published as {p}");
    }
}

#[test]
fn only_the_gateways_api_is_published_beyond_localhost() {
    for (name, service) in services() {
        for p in published(&service)
            .iter()
            .filter(|p| !p.starts_with("127.0.0.1:"))
        {
            assert_eq!((name.as_str(), p.as_str()), ("gateway", "8080:8080"));
        }
    }
}

#[test]
fn every_container_has_a_health_check_and_limits() {
    for (name, service) in services() {
        assert!(
            service["healthcheck"]["test"].as_sequence().is_some(),
            "{name}: healthcheck"
        );
        let limits = &service["deploy"]["resources"]["limits"];
        assert!(!limits["cpus"].is_null(), "{name}: cpus");
        assert!(!limits["memory"].is_null(), "{name}: memory");
    }
}

#[test]
fn the_example_services_run_without_capabilities_on_a_read_only_root() {
    for (name, service) in services() {
        let Some(command) = service["command"]
            .as_str()
            .filter(|_| service["image"] == "meshguard-examples")
        else {
            continue;
        };
        assert_eq!(service["read_only"], true, "{name}");
        assert_eq!(
            service["cap_drop"],
            serde_yaml::from_str::<Value>("[ALL]").unwrap(),
            "{name}"
        );
        let test: Vec<&str> = service["healthcheck"]["test"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(test, ["CMD", command, "healthcheck"], "{name}");
    }
}

#[test]
fn the_gateways_key_comes_from_the_environment_and_is_required() {
    let (_, gateway) = services()
        .into_iter()
        .find(|(n, _)| n == "gateway")
        .unwrap();
    let secret = gateway["environment"]["JWT_SECRET"].as_str().unwrap();
    assert!(secret.starts_with("${JWT_SECRET:?"), "{secret}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_command_tells_a_serving_service_from_a_dead_one() {
    use meshguard_examples::server::{Instance, healthcheck};
    let instance = Instance::start(app_for("user_service")).await;
    let port = instance.addr.port();
    let serving = tokio::task::spawn_blocking(move || healthcheck(port))
        .await
        .unwrap();
    assert_eq!(serving, 0);
    instance.kill();
    drop(instance);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let dead = tokio::task::spawn_blocking(move || healthcheck(port))
        .await
        .unwrap();
    assert_eq!(dead, 1);
}
