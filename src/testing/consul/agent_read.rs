//! The agent's and the health API's read endpoints beside
//! `/v1/health/service`: `GET /v1/agent/services`, `/v1/agent/checks`,
//! `/v1/agent/self` (what Prometheus reads its datacenter from) and
//! `/v1/health/checks/:service` (a blocking query, §2).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::ConsulRegistry;
use super::blocking::{block, json_answer};
use super::filter::{matches, parse_filter};
use super::params::{bad_request, param};
use super::shapes::{agent_service, check};
use super::state::{DATACENTER, NODE, NODE_ID};

/// `GET /v1/agent/services`: an object keyed by service ID; `filter` as in
/// `/v1/health/service`.
pub(super) async fn services(
    State(reg): State<ConsulRegistry>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    let terms = match param(&ps, "filter").filter(|f| !f.trim().is_empty()) {
        None => Vec::new(),
        Some(f) => match parse_filter(f) {
            Ok(t) => t,
            Err(e) => return bad_request(e),
        },
    };
    let r = reg.lock();
    let body: Map<String, Value> = r
        .instances
        .values()
        .filter(|i| matches(i, &terms))
        .map(|i| (i.id.clone(), agent_service(i)))
        .collect();
    json_answer(r.index, &ps, Value::Object(body).to_string())
}

/// `GET /v1/agent/checks`: an object keyed by check ID.
pub(super) async fn checks(
    State(reg): State<ConsulRegistry>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    let r = reg.lock();
    let body: Map<String, Value> = r
        .instances
        .values()
        .flat_map(|i| i.checks.iter().map(move |c| (c.id.clone(), check(i, c))))
        .collect();
    json_answer(r.index, &ps, Value::Object(body).to_string())
}

/// `GET /v1/agent/self`: the agent's `Config` and `Member`, the fields
/// clients read (datacenter, node name, version).
pub(super) async fn agent_self(
    State(reg): State<ConsulRegistry>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    let body = json!({
        "Config": {
            "Datacenter": DATACENTER, "PrimaryDatacenter": DATACENTER, "NodeName": NODE,
            "NodeID": NODE_ID, "Revision": "meshguard", "Server": true, "Version": "1.21.3"
        },
        "Member": {
            "Name": NODE, "Addr": "127.0.0.1", "Port": 8301,
            "Tags": {"dc": DATACENTER, "role": "consul", "build": "1.21.3"},
            "Status": 1
        },
        "Meta": {"consul-network-segment": "", "consul-version": "1.21.3"}
    });
    let index = reg.lock().index;
    json_answer(index, &ps, body.to_string())
}

/// `GET /v1/health/checks/:service`: the checks of every instance of the
/// service, as an array.
pub(super) async fn health_checks(
    State(reg): State<ConsulRegistry>,
    Path(name): Path<String>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(answer) = block(&reg, &ps).await {
        return answer;
    }
    let r = reg.lock();
    let body: Vec<Value> = r
        .instances
        .values()
        .filter(|i| i.name == name)
        .flat_map(|i| i.checks.iter().map(move |c| check(i, c)))
        .collect();
    json_answer(r.index, &ps, Value::Array(body).to_string())
}
