//! `PUT /v1/agent/check/register` and `PUT /v1/agent/check/deregister/:id`.
//! A check belongs to a registered service (`ServiceID`); node checks (no
//! `ServiceID`) are refused with 400, since every instance here shares one
//! node whose only check is `serfHealth`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::time::Instant;

use super::ConsulRegistry;
use super::checks::{expire_ttl, run_http_check};
use super::params::{bad_request, not_found, parse_go_duration};
use super::state::{Check, CheckKind, CheckStatus};

/// The body; Go decodes keys without regard to case, so the lowercase
/// spellings clients send (`serviceid`: python-consul2) are accepted too.
#[derive(Debug, Deserialize)]
struct CheckRegisterBody {
    #[serde(rename = "Name", alias = "name", default)]
    name: Option<String>,
    #[serde(rename = "CheckID", alias = "check_id", alias = "checkid", default)]
    check_id: Option<String>,
    #[serde(rename = "ID", alias = "id", default)]
    id: Option<String>,
    #[serde(
        rename = "ServiceID",
        alias = "service_id",
        alias = "serviceid",
        default
    )]
    service_id: Option<String>,
    #[serde(rename = "Notes", alias = "notes", default)]
    notes: Option<String>,
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
        alias = "deregistercriticalserviceafter",
        default
    )]
    deregister_after: Option<String>,
}

/// `PUT /v1/agent/check/register`: adds (or replaces) a check of a service.
pub(super) async fn register(State(reg): State<ConsulRegistry>, body: Bytes) -> Response {
    let body: CheckRegisterBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("Request decode failed: {e}")),
    };
    let Some(name) = body.name.filter(|n| !n.is_empty()) else {
        return bad_request("Missing check name");
    };
    let status = match body.status.as_deref() {
        None | Some("") => CheckStatus::Critical,
        Some(s) => match CheckStatus::parse(s) {
            Some(s) => s,
            None => return bad_request("Status for checks must 'passing', 'warning', 'critical'"),
        },
    };
    let duration = |v: &Option<String>| v.as_deref().and_then(parse_go_duration);
    let kind = match (&body.http, duration(&body.interval), duration(&body.ttl)) {
        (Some(url), Some(interval), _) if !interval.is_zero() => CheckKind::Http {
            url: url.clone(),
            method: body.method.clone().unwrap_or_else(|| "GET".into()),
            interval,
            timeout: duration(&body.timeout).unwrap_or(Duration::from_secs(10)),
        },
        (None, _, Some(ttl)) if !ttl.is_zero() => CheckKind::Ttl { ttl },
        _ => {
            return bad_request(
                "Must provide TTL or Script/DockerContainerID/HTTP/TCP and Interval",
            );
        }
    };
    let Some(service_id) = body.service_id.filter(|s| !s.is_empty()) else {
        return bad_request(
            "ServiceID is required: the in-process registry has no node checks besides serfHealth",
        );
    };
    let check_id = body
        .check_id
        .or(body.id)
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| name.clone());
    let mut r = reg.lock();
    let index = r.index + 1;
    let Some(instance) = r.instances.get_mut(&service_id) else {
        return bad_request(format!("ServiceID {service_id:?} does not exist"));
    };
    let registered_at = instance.create_index;
    instance.checks.retain(|c| c.id != check_id);
    instance.checks.push(Check {
        id: check_id.clone(),
        name,
        status,
        notes: body.notes.unwrap_or_default(),
        output: String::new(),
        kind: kind.clone(),
        critical_since: (status == CheckStatus::Critical).then(Instant::now),
        deregister_after: duration(&body.deregister_after).map(|d| d.max(Duration::from_secs(60))),
        ttl_epoch: 0,
        create_index: index,
        modify_index: index,
    });
    reg.bump(&mut r);
    drop(r);
    match kind {
        CheckKind::Http {
            url,
            method,
            interval,
            timeout,
        } => {
            tokio::spawn(run_http_check(
                reg.clone(),
                service_id,
                check_id,
                registered_at,
                url,
                method,
                interval,
                timeout,
            ));
        }
        CheckKind::Ttl { ttl } => {
            tokio::spawn(expire_ttl(reg.clone(), check_id, 0, ttl));
        }
        CheckKind::Maintenance => {}
    }
    StatusCode::OK.into_response()
}

/// `PUT /v1/agent/check/deregister/:check_id`.
pub(super) async fn deregister(
    State(reg): State<ConsulRegistry>,
    Path(id): Path<String>,
) -> Response {
    let mut r = reg.lock();
    let mut found = false;
    for i in r.instances.values_mut() {
        let before = i.checks.len();
        i.checks.retain(|c| c.id != id);
        found |= i.checks.len() != before;
    }
    if !found {
        return not_found(format!(
            "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
        ));
    }
    reg.bump(&mut r);
    StatusCode::OK.into_response()
}
