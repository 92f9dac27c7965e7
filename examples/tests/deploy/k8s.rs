//! The Kubernetes manifests are hardened: no Secret with a value, no
//! capability, the runtime's seccomp profile, no service-account token,
//! network policies so only the gateway reaches the internal services,
//! `/metrics` off the public load balancer, readiness distinct from
//! liveness, and a grace period that outlasts the drain.

use super::*;

fn deployments(docs: &[Value]) -> Vec<&Value> {
    of_kind(docs, "Deployment")
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap()
}

#[test]
fn no_manifest_applies_a_secret() {
    // `kubectl apply -f k8s/` would apply a placeholder key; the Secret is
    // created from a secret store instead, as the README says.
    assert!(of_kind(&manifests(), "Secret").is_empty());
    let readme = std::fs::read_to_string(format!("{DEPLOY}/README.md")).unwrap();
    assert!(readme.contains("kubectl create secret generic meshguard-examples"));
}

#[test]
fn every_pod_drops_all_capabilities_and_uses_the_runtime_default_seccomp_profile() {
    let docs = manifests();
    for d in deployments(&docs) {
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault",
            "{}",
            name(d)
        );
        for c in pod["containers"].as_sequence().unwrap() {
            let security = &c["securityContext"];
            assert_eq!(
                security["capabilities"]["drop"],
                serde_yaml::from_str::<Value>("[ALL]").unwrap(),
                "{}",
                name(d)
            );
            assert_eq!(security["allowPrivilegeEscalation"], false, "{}", name(d));
            assert_eq!(security["readOnlyRootFilesystem"], true, "{}", name(d));
        }
    }
}

#[test]
fn no_pod_mounts_a_service_account_token() {
    let docs = manifests();
    for d in deployments(&docs) {
        assert_eq!(
            d["spec"]["template"]["spec"]["automountServiceAccountToken"],
            false,
            "{}",
            name(d)
        );
    }
}

/// Whether `policy` applies to the pods labelled `app` (an empty selector
/// applies to all).
fn selects(policy: &Value, app: &str) -> bool {
    match policy["spec"]["podSelector"]["matchLabels"].as_mapping() {
        None => true,
        Some(labels) => {
            labels.is_empty() || policy["spec"]["podSelector"]["matchLabels"]["app"] == app
        }
    }
}

#[test]
fn only_the_gateway_reaches_the_internal_services() {
    let docs = manifests();
    let policies = of_kind(&docs, "NetworkPolicy");
    for d in deployments(&docs) {
        let app = name(d);
        if app == "gateway" {
            continue;
        }
        // The order service calls the user service over gRPC.
        let callers: &[&str] = match app {
            "user-service" => &["gateway", "order-service"],
            _ => &["gateway"],
        };
        let port = &d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"];
        let applying: Vec<_> = policies.iter().filter(|p| selects(p, app)).collect();
        assert!(!applying.is_empty(), "{app}: no NetworkPolicy");
        for p in applying {
            let types = p["spec"]["policyTypes"].as_sequence().unwrap();
            assert!(types.iter().any(|t| t == "Ingress"), "{app}: {}", name(p));
            for rule in p["spec"]["ingress"].as_sequence().unwrap() {
                let from = rule["from"].as_sequence();
                let from = from
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| panic!("{app}: a rule of {} admits every source", name(p)));
                for peer in from {
                    let pod = &peer["podSelector"]["matchLabels"]["app"];
                    let namespace =
                        &peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"];
                    let allowed = (callers.iter().any(|c| pod == *c)
                        && peer["namespaceSelector"].is_null())
                        || (namespace == "consul" && peer["podSelector"].is_null());
                    assert!(allowed, "{app}: {} admits {peer:?}", name(p));
                }
                let ports: Vec<&Value> = rule["ports"]
                    .as_sequence()
                    .unwrap_or_else(|| panic!("{app}: {} admits every port", name(p)))
                    .iter()
                    .map(|p| &p["port"])
                    .collect();
                assert_eq!(ports, [port], "{app}: {}", name(p));
            }
        }
    }
}

#[tokio::test]
async fn metrics_are_not_on_the_public_load_balancer() {
    let docs = manifests();
    let mut public = 0;
    for s in of_kind(&docs, "Service") {
        if s["spec"]["type"] != "LoadBalancer" {
            continue;
        }
        public += 1;
        let d = deployments(&docs)
            .into_iter()
            .find(|d| name(d) == name(s))
            .unwrap();
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        let command = container["command"][0].as_str().unwrap();
        for port in s["spec"]["ports"].as_sequence().unwrap() {
            // Every public port is the main port, whose router has no
            // /metrics.
            assert_eq!(port["targetPort"], container["ports"][0]["containerPort"]);
            let response = app_for(command)
                .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                404,
                "{} serves /metrics publicly",
                name(s)
            );
        }
    }
    assert_eq!(public, 1, "the gateway alone is public");
}

#[tokio::test]
async fn readiness_and_liveness_are_distinct_and_readiness_fails_while_draining() {
    let docs = manifests();
    for d in deployments(&docs) {
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        let command = container["command"][0].as_str().unwrap();
        let path = |probe: &str| {
            container[probe]["httpGet"]["path"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let (ready, live) = (path("readinessProbe"), path("livenessProbe"));
        assert_ne!(ready, live, "{}", name(d));
        let draining = Readiness::default();
        draining.set_draining();
        let app = with_readiness(api_for(command), &draining);
        let status = async |path: &str| {
            app.clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap()
                .status()
        };
        assert_eq!(
            status(&ready).await,
            503,
            "{}: {ready} while draining",
            name(d)
        );
        assert_eq!(
            status(&live).await,
            200,
            "{}: {live} while draining",
            name(d)
        );
    }
}

#[test]
fn the_grace_period_outlasts_the_drain() {
    let docs = manifests();
    let config = of_kind(&docs, "ConfigMap")[0];
    let drain_ms: u64 = config["data"]["DRAIN_MS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for d in deployments(&docs) {
        let grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        assert!(grace * 1000 > drain_ms, "{}: {grace} s", name(d));
    }
}
