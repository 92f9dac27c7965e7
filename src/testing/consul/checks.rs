//! Checks at work: HTTP checks run on their interval, TTL checks expire,
//! and the TTL endpoints (`pass`, `warn`, `fail`, `update`) set them.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ConsulRegistry;
use super::params::{bad_request, not_found, param};
use super::state::{CheckKind, CheckStatus, set_status};

/// Runs an HTTP check on its interval, as the agent does: 2xx passing, 429
/// warning, anything else (or no answer) critical. Stops when the instance
/// is deregistered or registered again.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_http_check(
    reg: ConsulRegistry,
    service_id: String,
    check_id: String,
    registered_at: u64,
    url: String,
    method: String,
    interval: Duration,
    timeout: Duration,
) {
    loop {
        let outcome = tokio::time::timeout(timeout, probe(&url, &method)).await;
        let (status, output) = match outcome {
            Ok(Ok(code)) if (200..300).contains(&code) => {
                (CheckStatus::Passing, format!("HTTP {method} {url}: {code}"))
            }
            Ok(Ok(429)) => (CheckStatus::Warning, format!("HTTP {method} {url}: 429")),
            Ok(Ok(code)) => (
                CheckStatus::Critical,
                format!("HTTP {method} {url}: {code}"),
            ),
            Ok(Err(e)) => (CheckStatus::Critical, format!("Get {url}: {e}")),
            Err(_) => (CheckStatus::Critical, format!("Get {url}: timeout")),
        };
        {
            let mut r = reg.lock();
            let index = r.index + 1;
            let Some(instance) = r
                .instances
                .get_mut(&service_id)
                .filter(|i| i.create_index == registered_at)
            else {
                // Deregistered, or registered again with checks of its own.
                return;
            };
            let Some(check) = instance.checks.iter_mut().find(|c| c.id == check_id) else {
                return;
            };
            let changed = check.status != status;
            set_status(check, status, index);
            check.output = output;
            let reap = match (check.critical_since, check.deregister_after) {
                (Some(since), Some(after)) => since.elapsed() >= after,
                _ => false,
            };
            if reap {
                r.instances.remove(&service_id);
                reg.bump(&mut r);
                return;
            }
            if changed {
                reg.bump(&mut r);
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// One HTTP/1.1 request over a fresh connection; the status code.
pub(super) async fn probe(url: &str, method: &str) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// checks are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream
        .write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..]).await?;
        if n == 0 {
            break;
        }
        read += n;
    }
    std::str::from_utf8(&head[..read])
        .ok()
        .and_then(|s| s.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

/// Turns a TTL check critical when it is not updated within `ttl` of the
/// update that started this timer (epoch `epoch`).
pub(super) async fn expire_ttl(reg: ConsulRegistry, check_id: String, epoch: u64, ttl: Duration) {
    tokio::time::sleep(ttl).await;
    let mut r = reg.lock();
    let index = r.index + 1;
    let Some(check) = r
        .instances
        .values_mut()
        .flat_map(|i| i.checks.iter_mut())
        .find(|c| c.id == check_id)
    else {
        return;
    };
    if check.ttl_epoch != epoch || check.status == CheckStatus::Critical {
        return;
    }
    set_status(check, CheckStatus::Critical, index);
    check.output = "TTL expired".into();
    reg.bump(&mut r);
}

/// `PUT /v1/agent/check/{pass,warn,fail}/:check_id` (optional `?note=`).
pub(super) async fn check_set(
    State(reg): State<ConsulRegistry>,
    Path((action, id)): Path<(String, String)>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    let status = match action.as_str() {
        "pass" => CheckStatus::Passing,
        "warn" => CheckStatus::Warning,
        "fail" => CheckStatus::Critical,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ttl_update(&reg, &id, status, param(&ps, "note"))
}

#[derive(Debug, Deserialize)]
struct UpdateBody {
    #[serde(rename = "Status", alias = "status", default)]
    status: String,
    #[serde(rename = "Output", alias = "output", default)]
    output: Option<String>,
}

pub(super) async fn check_update(
    State(reg): State<ConsulRegistry>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body: UpdateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("Request decode failed: {e}")),
    };
    match CheckStatus::parse(&body.status) {
        Some(status) => ttl_update(&reg, &id, status, body.output.as_deref()),
        None => bad_request(format!("Invalid check status: '{}'", body.status)),
    }
}

/// Sets a TTL check's status and restarts its TTL clock.
pub(super) fn ttl_update(
    reg: &ConsulRegistry,
    id: &str,
    status: CheckStatus,
    note: Option<&str>,
) -> Response {
    let mut r = reg.lock();
    let index = r.index + 1;
    let found = r
        .instances
        .values_mut()
        .flat_map(|i| i.checks.iter_mut())
        .find(|c| c.id == id);
    let Some(check) = found else {
        return not_found(format!(
            "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
        ));
    };
    let CheckKind::Ttl { ttl } = check.kind else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("CheckID {id:?} does not have associated TTL"),
        )
            .into_response();
    };
    let changed = check.status != status;
    set_status(check, status, index);
    check.output = note.unwrap_or_default().chars().take(4096).collect();
    check.ttl_epoch += 1;
    let epoch = check.ttl_epoch;
    if changed {
        reg.bump(&mut r);
    }
    drop(r);
    tokio::spawn(expire_ttl(reg.clone(), id.to_string(), epoch, ttl));
    StatusCode::OK.into_response()
}
