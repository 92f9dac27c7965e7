//! The deployment files agree with the services: every Kubernetes probe asks
//! a route the service really answers, on the port it listens on; every
//! command the manifests, the compose file and the Dockerfile run is a
//! binary this crate builds. And they are hardened: see [`k8s`] (secrets,
//! pod security, network policies, what is public), [`compose`] and
//! [`image`].

mod compose;
mod image;
mod k8s;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use http::Request;
use meshguard_examples::clients::{Users, service_client};
use meshguard_examples::config::{Protocol, Upstream};
use meshguard_examples::gateway::{GatewayState, JwtConfig};
use meshguard_examples::order::OrderState;
use meshguard_examples::server::{Readiness, with_readiness};
use meshguard_examples::user::{MemoryStore, UserState};
use serde::Deserialize;
use serde_yaml::Value;
use tower::ServiceExt;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

/// The YAML documents in `path`, merge keys (`<<: *anchor`) applied.
fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let mut v = Value::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}"));
            // A merged anchor may merge another (`x-service` merges
            // `x-limits`): one pass per level.
            for _ in 0..3 {
                v.apply_merge().unwrap_or_else(|e| panic!("{path}: {e}"));
            }
            v
        })
        .collect()
}

/// The compose file.
fn compose() -> Value {
    documents(&format!("{DEPLOY}/docker-compose.yml")).remove(0)
}

fn manifests() -> Vec<Value> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(format!("{DEPLOY}/k8s")).unwrap() {
        let path = entry.unwrap().path();
        all.extend(documents(path.to_str().unwrap()));
    }
    all
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The binaries this crate's Cargo.toml declares.
fn binaries() -> BTreeSet<String> {
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap(),
    )
    .unwrap();
    manifest["bin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// The router the binary `command` serves on its main port (with
/// `/ready`, which `server::serve` adds).
fn app_for(command: &str) -> axum::Router {
    with_readiness(api_for(command), &Readiness::default())
}

fn api_for(command: &str) -> axum::Router {
    let nowhere = Upstream::Urls(vec!["http://127.0.0.1:9".into()]);
    match command {
        "user_service" => meshguard_examples::user::app(UserState {
            store: Arc::new(MemoryStore::default()),
            events: None,
        }),
        "order_service" => meshguard_examples::order::app(OrderState::new(Users::new(
            Protocol::default(),
            &nowhere,
        ))),
        "gateway" => meshguard_examples::gateway::app(GatewayState::new(
            service_client("user-service", &nowhere),
            service_client("order-service", &nowhere),
            JwtConfig::random(),
            10,
        )),
        other => panic!("no service for command {other:?}"),
    }
}

/// The port the binary `command` listens on by default.
fn default_port(command: &str) -> u64 {
    match command {
        "gateway" => 8080,
        "user_service" => 8081,
        "order_service" => 8082,
        other => panic!("no service for command {other:?}"),
    }
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

#[tokio::test]
async fn every_probe_asks_a_route_the_service_answers_on_its_port() {
    let docs = manifests();
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 3);
    for d in deployments {
        let name = d["metadata"]["name"].as_str().unwrap();
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        let command = container["command"][0].as_str().unwrap();
        let port = container["ports"][0]["containerPort"].as_u64().unwrap();
        assert_eq!(port, default_port(command), "{name}: containerPort");
        assert_eq!(
            env_value(container, "PORT"),
            Some(port.to_string().as_str()),
            "{name}: PORT"
        );
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["port"].as_u64(), Some(port), "{name}: {probe} port");
            let path = get["path"].as_str().unwrap();
            let response = app_for(command)
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{name}: {probe} {path}");
        }
    }
}

#[test]
fn every_service_targets_its_deployments_port() {
    let docs = manifests();
    for s in of_kind(&docs, "Service") {
        let name = s["metadata"]["name"].as_str().unwrap();
        let deployment = of_kind(&docs, "Deployment")
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Deployment for Service {name}"));
        assert_eq!(
            s["spec"]["selector"]["app"],
            deployment["spec"]["template"]["metadata"]["labels"]["app"]
        );
        let container_port =
            &deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"];
        assert_eq!(
            &s["spec"]["ports"][0]["targetPort"], container_port,
            "{name}"
        );
    }
}

#[test]
fn every_container_has_limits_runs_as_non_root_and_reads_its_secret() {
    let docs = manifests();
    for d in of_kind(&docs, "Deployment") {
        let name = d["metadata"]["name"].as_str().unwrap();
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        let container = &pod["containers"][0];
        for (kind, key) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "cpu"),
            ("limits", "memory"),
        ] {
            assert!(
                !container["resources"][kind][key].is_null(),
                "{name}: resources.{kind}.{key}"
            );
        }
        let sources: Vec<&Value> = container["envFrom"].as_sequence().unwrap().iter().collect();
        assert!(
            sources
                .iter()
                .any(|s| s["secretRef"]["name"] == "meshguard-examples"),
            "{name}: secret"
        );
        assert!(d["spec"]["replicas"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn every_command_the_deployment_files_run_is_a_built_binary() {
    let binaries = binaries();
    let docs = manifests();
    for d in of_kind(&docs, "Deployment") {
        let command = d["spec"]["template"]["spec"]["containers"][0]["command"][0]
            .as_str()
            .unwrap();
        assert!(binaries.contains(command), "k8s runs {command}");
    }
    let compose = compose();
    let mut image_services = 0;
    for (name, service) in compose["services"].as_mapping().unwrap() {
        if let Some(command) = service["command"]
            .as_str()
            .filter(|_| service["image"] == "meshguard-examples")
        {
            assert!(
                binaries.contains(command),
                "compose {name:?} runs {command}"
            );
            let port: u64 = service["environment"]["PORT"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(port, default_port(command), "compose {name:?} PORT");
            image_services += 1;
        }
    }
    assert_eq!(
        image_services, 3,
        "the compose file runs the three services"
    );
    let dockerfile = std::fs::read_to_string(format!("{DEPLOY}/Dockerfile")).unwrap();
    let built: BTreeSet<String> = dockerfile
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_string())
        .collect();
    assert_eq!(
        built,
        ["gateway", "order_service", "user_service"]
            .map(String::from)
            .into()
    );
    assert!(built.iter().all(|b| binaries.contains(b)));
    assert!(
        dockerfile.contains("USER 10001"),
        "the image runs as a non-root user"
    );
}
