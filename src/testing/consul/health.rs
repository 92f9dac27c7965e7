//! `GET /v1/health/service/:name`: blocking queries, `passing`, `tag`,
//! `filter`, and entries in the real wire shape.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::ConsulRegistry;
use super::filter::{Term, matches, parse_filter};
use super::params::{bad_request, go, param, parse_bool, parse_go_duration};
use super::state::{CheckKind, CheckStatus, DATACENTER, Instance, NODE, NODE_ID};

/// The longest blocking wait (Consul's `maxQueryTime`).
const MAX_WAIT: Duration = Duration::from_secs(600);
/// The wait of a blocking query that names none (`defaultQueryTime`).
const DEFAULT_WAIT: Duration = Duration::from_secs(300);

pub(super) async fn missing_name() -> Response {
    bad_request("Missing service name")
}

pub(super) async fn health_service(
    State(reg): State<ConsulRegistry>,
    Path(name): Path<String>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    let passing = match param(&ps, "passing") {
        None => false,
        Some("") => true,
        Some(v) => match parse_bool(v) {
            Some(b) => b,
            None => return bad_request("Invalid value for ?passing"),
        },
    };
    let index = match param(&ps, "index") {
        None => 0,
        Some(v) => match v.parse::<u64>() {
            Ok(i) => i,
            Err(_) => return bad_request("Invalid index"),
        },
    };
    let wait = match param(&ps, "wait") {
        None => None,
        Some(v) => match parse_go_duration(v) {
            Some(d) => Some(d),
            None => return bad_request("Invalid wait time"),
        },
    };
    if param(&ps, "stale").is_some() && param(&ps, "consistent").is_some() {
        return bad_request("Cannot specify ?stale with ?consistent, conflicting semantics.");
    }
    if let Some(dc) = param(&ps, "dc") {
        if !dc.is_empty() && dc != DATACENTER {
            return (StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter").into_response();
        }
    }
    let mut terms = match param(&ps, "filter").filter(|f| !f.trim().is_empty()) {
        None => Vec::new(),
        Some(f) => match parse_filter(f) {
            Ok(t) => t,
            Err(e) => return bad_request(e),
        },
    };
    // `tag` may repeat; an instance needs all of them.
    terms.extend(
        ps.iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| Term::HasTag(v.clone())),
    );

    if index > 0 {
        let timeout = match wait {
            Some(w) if w > MAX_WAIT => MAX_WAIT,
            Some(w) if !w.is_zero() => w,
            _ => DEFAULT_WAIT,
        };
        let jitter = Duration::from_nanos(fastrand::u64(0..=(timeout.as_nanos() / 16) as u64));
        let deadline = Instant::now() + timeout + jitter;
        let mut changes = reg.subscribe();
        loop {
            {
                let r = reg.lock();
                if r.index != index || r.fail_with_500 || r.malformed {
                    break;
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }

    let r = reg.lock();
    if r.fail_with_500 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "rpc error: injected failure",
        )
            .into_response();
    }
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", HeaderValue::from_static("application/json"));
    headers.insert("X-Consul-Index", HeaderValue::from(r.index.max(1)));
    headers.insert("X-Consul-Knownleader", HeaderValue::from_static("true"));
    headers.insert("X-Consul-Lastcontact", HeaderValue::from_static("0"));
    headers.insert(
        "X-Consul-Effective-Consistency",
        HeaderValue::from_static(if param(&ps, "stale").is_some() {
            "stale"
        } else {
            "leader"
        }),
    );
    headers.insert(
        "X-Consul-Query-Backend",
        HeaderValue::from_static("blocking-query"),
    );
    if r.malformed {
        return (StatusCode::OK, headers, "[{\"Node\": {\"ID\": ").into_response();
    }
    let body: Vec<Value> = r
        .instances
        .values()
        .filter(|i| i.name == name)
        .filter(|i| !passing || i.checks.iter().all(|c| c.status == CheckStatus::Passing))
        .filter(|i| matches(i, &terms))
        .map(entry)
        .collect();
    (StatusCode::OK, headers, Value::Array(body).to_string()).into_response()
}

/// One `/health/service` entry in the real wire shape (§9).
pub(super) fn entry(i: &Instance) -> Value {
    let node_check = json!({
        "Node": NODE, "CheckID": "serfHealth", "Name": "Serf Health Status",
        "Status": "passing", "Notes": "", "Output": "Agent alive and reachable",
        "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
        "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {},
        "CreateIndex": 1, "ModifyIndex": 1
    });
    let mut checks = vec![node_check];
    for c in &i.checks {
        let (kind, interval, timeout) = match &c.kind {
            CheckKind::Http {
                interval, timeout, ..
            } => ("http", go(*interval), go(*timeout)),
            CheckKind::Ttl { .. } => ("ttl", String::new(), String::new()),
            CheckKind::Maintenance => ("", String::new(), String::new()),
        };
        checks.push(json!({
            "Node": NODE, "CheckID": c.id, "Name": c.name, "Status": c.status.as_str(),
            "Notes": c.notes, "Output": c.output, "ServiceID": i.id, "ServiceName": i.name,
            "ServiceTags": i.tags, "Type": kind, "Interval": interval, "Timeout": timeout,
            "ExposedPort": 0, "Definition": {}, "CreateIndex": c.create_index,
            "ModifyIndex": c.modify_index
        }));
    }
    json!({
        "Node": {
            "ID": NODE_ID, "Node": NODE, "Address": "127.0.0.1", "Datacenter": DATACENTER,
            "TaggedAddresses": {"lan": "127.0.0.1", "lan_ipv4": "127.0.0.1", "wan": "127.0.0.1", "wan_ipv4": "127.0.0.1"},
            "Meta": {"consul-network-segment": "", "consul-version": "1.21.3"},
            "CreateIndex": 1, "ModifyIndex": 1
        },
        "Service": {
            "ID": i.id, "Service": i.name, "Tags": i.tags, "Address": i.address,
            "TaggedAddresses": if i.address.is_empty() { json!({}) } else { json!({
                "lan_ipv4": {"Address": i.address, "Port": i.port},
                "wan_ipv4": {"Address": i.address, "Port": i.port}
            }) },
            "Meta": if i.meta.is_empty() { Value::Null } else { json!(i.meta) },
            "Port": i.port, "Weights": {"Passing": i.weights.0, "Warning": i.weights.1},
            "EnableTagOverride": false,
            "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
            "Connect": {}, "PeerName": "",
            "CreateIndex": i.create_index, "ModifyIndex": i.modify_index
        },
        "Checks": checks
    })
}
