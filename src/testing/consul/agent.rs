//! Agent service endpoints: register, deregister, maintenance mode.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::time::Instant;

use super::ConsulRegistry;
use super::checks::{expire_ttl, run_http_check};
use super::params::{bad_request, not_found, param, parse_bool, parse_go_duration};
use super::state::{Check, CheckKind, CheckStatus, Instance};

#[derive(Debug, Deserialize)]
struct RegisterBody {
    #[serde(rename = "Name", alias = "name")]
    name: Option<String>,
    #[serde(rename = "ID", alias = "id", default)]
    id: Option<String>,
    #[serde(rename = "Tags", alias = "tags", default)]
    tags: Option<Vec<String>>,
    #[serde(rename = "Address", alias = "address", default)]
    address: Option<String>,
    #[serde(rename = "Port", alias = "port", default)]
    port: Option<u16>,
    #[serde(rename = "Meta", alias = "meta", default)]
    meta: Option<BTreeMap<String, String>>,
    #[serde(rename = "Weights", alias = "weights", default)]
    weights: Option<WeightsBody>,
    #[serde(rename = "Check", alias = "check", default)]
    check: Option<CheckBody>,
    #[serde(rename = "Checks", alias = "checks", default)]
    checks: Option<Vec<CheckBody>>,
}

#[derive(Debug, Deserialize)]
struct WeightsBody {
    #[serde(rename = "Passing", alias = "passing", default)]
    passing: Option<u32>,
    #[serde(rename = "Warning", alias = "warning", default)]
    warning: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct CheckBody {
    #[serde(rename = "CheckID", alias = "check_id", default)]
    check_id: Option<String>,
    #[serde(rename = "Name", alias = "name", default)]
    name: Option<String>,
    #[serde(rename = "HTTP", alias = "http", default)]
    http: Option<String>,
    #[serde(rename = "Method", alias = "method", default)]
    method: Option<String>,
    #[serde(rename = "Interval", alias = "interval", default)]
    interval: Option<String>,
    #[serde(rename = "Timeout", alias = "timeout", default)]
    timeout: Option<String>,
    #[serde(rename = "TTL", alias = "ttl", default)]
    ttl: Option<String>,
    #[serde(rename = "Status", alias = "status", default)]
    status: Option<String>,
    #[serde(
        rename = "DeregisterCriticalServiceAfter",
        alias = "deregister_critical_service_after",
        default
    )]
    deregister_after: Option<String>,
}

pub(super) async fn register(State(reg): State<ConsulRegistry>, body: Bytes) -> Response {
    let body: RegisterBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("Request decode failed: {e}")),
    };
    let Some(name) = body.name.filter(|n| !n.is_empty()) else {
        return bad_request("Missing service name");
    };
    let address = body.address.unwrap_or_default();
    if address == "0.0.0.0" || address == "::" {
        return bad_request("Invalid service address");
    }
    let id = body.id.filter(|i| !i.is_empty()).unwrap_or(name.clone());
    let mut bodies: Vec<CheckBody> = body.check.into_iter().collect();
    bodies.extend(body.checks.unwrap_or_default());
    let numbered = bodies.len() > 1;
    let mut r = reg.lock();
    let index = r.index + 1;
    let mut checks = Vec::new();
    for (n, c) in bodies.into_iter().enumerate() {
        let status = match c.status.as_deref() {
            None | Some("") => CheckStatus::Critical,
            Some(s) => match CheckStatus::parse(s) {
                Some(s) => s,
                None => {
                    return bad_request("Status for checks must 'passing', 'warning', 'critical'");
                }
            },
        };
        let duration = |v: &Option<String>| v.as_deref().and_then(parse_go_duration);
        let kind = match (&c.http, duration(&c.interval), duration(&c.ttl)) {
            (Some(url), Some(interval), _) if !interval.is_zero() => CheckKind::Http {
                url: url.clone(),
                method: c.method.clone().unwrap_or_else(|| "GET".into()),
                interval,
                timeout: duration(&c.timeout).unwrap_or(Duration::from_secs(10)),
            },
            (None, _, Some(ttl)) if !ttl.is_zero() => CheckKind::Ttl { ttl },
            _ => {
                return bad_request(
                    "Must provide TTL or Script/DockerContainerID/HTTP/TCP and Interval",
                );
            }
        };
        let deregister_after =
            duration(&c.deregister_after).map(|d| d.max(Duration::from_secs(60)));
        checks.push(Check {
            id: c.check_id.unwrap_or_else(|| {
                if numbered {
                    format!("service:{id}:{}", n + 1)
                } else {
                    format!("service:{id}")
                }
            }),
            name: c.name.unwrap_or_else(|| format!("Service '{name}' check")),
            status,
            notes: String::new(),
            output: String::new(),
            kind,
            critical_since: (status == CheckStatus::Critical).then(Instant::now),
            deregister_after,
            ttl_epoch: 0,
            create_index: index,
            modify_index: index,
        });
    }
    let weights = body
        .weights
        .map(|w| (w.passing.unwrap_or(1), w.warning.unwrap_or(1)))
        .unwrap_or((1, 1));
    let runners: Vec<Check> = checks.clone();
    r.instances.insert(
        id.clone(),
        Instance {
            id: id.clone(),
            name,
            address,
            port: body.port.unwrap_or(0),
            tags: body.tags.unwrap_or_default(),
            meta: body.meta.unwrap_or_default(),
            weights,
            checks,
            create_index: index,
            modify_index: index,
        },
    );
    reg.bump(&mut r);
    drop(r);
    for check in runners {
        match check.kind {
            CheckKind::Http {
                url,
                method,
                interval,
                timeout,
            } => {
                tokio::spawn(run_http_check(
                    reg.clone(),
                    id.clone(),
                    check.id,
                    index,
                    url,
                    method,
                    interval,
                    timeout,
                ));
            }
            CheckKind::Ttl { ttl } => {
                tokio::spawn(expire_ttl(reg.clone(), check.id, 0, ttl));
            }
            CheckKind::Maintenance => {}
        }
    }
    StatusCode::OK.into_response()
}

pub(super) async fn deregister(
    State(reg): State<ConsulRegistry>,
    Path(id): Path<String>,
) -> Response {
    if reg.deregister(&id) {
        StatusCode::OK.into_response()
    } else {
        not_found(format!(
            "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
        ))
    }
}

pub(super) async fn maintenance(
    State(reg): State<ConsulRegistry>,
    Path(id): Path<String>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    let enable = match param(&ps, "enable") {
        None => return bad_request("Missing value for enable"),
        Some(v) => match parse_bool(v) {
            Some(b) => b,
            None => return bad_request(format!("Invalid value for enable: {v:?}")),
        },
    };
    let reason = param(&ps, "reason").filter(|r| !r.is_empty()).map_or_else(
        || "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.".to_string(),
        str::to_string,
    );
    let mut r = reg.lock();
    let index = r.index + 1;
    let Some(instance) = r.instances.get_mut(&id) else {
        return not_found(format!(
            "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
        ));
    };
    let check_id = format!("_service_maintenance:{id}");
    let present = instance.checks.iter().any(|c| c.id == check_id);
    if enable && !present {
        instance.checks.push(Check {
            id: check_id,
            name: "Service Maintenance Mode".into(),
            status: CheckStatus::Critical,
            notes: reason,
            output: String::new(),
            kind: CheckKind::Maintenance,
            critical_since: None,
            deregister_after: None,
            ttl_epoch: 0,
            create_index: index,
            modify_index: index,
        });
        reg.bump(&mut r);
    } else if !enable && present {
        instance.checks.retain(|c| c.id != check_id);
        reg.bump(&mut r);
    }
    StatusCode::OK.into_response()
}
