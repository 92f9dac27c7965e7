//! `GET /v1/health/service/:name`: blocking queries, `passing`, `tag`,
//! `filter`, and entries in the real wire shape, gzipped when asked.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::time::Instant;

use super::ConsulRegistry;
use super::encoding::{accepts_gzip, gzip};
use super::filter::{Term, matches, parse_filter};
use super::params::{bad_request, param, parse_bool, parse_go_duration};
use super::render::render;
use super::state::{CheckStatus, DATACENTER};

pub(super) async fn missing_name() -> Response {
    bad_request("Missing service name")
}

pub(super) async fn health_service(
    State(reg): State<ConsulRegistry>,
    Path(name): Path<String>,
    Query(ps): Query<Vec<(String, String)>>,
    request: HeaderMap,
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
        let deadline = super::blocking::gives_up_at(Instant::now(), wait);
        let mut changes = reg.subscribe();
        loop {
            {
                let r = reg.read();
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

    let compress = accepts_gzip(&request);
    let mut headers = HeaderMap::new();
    // gziphandler sends it whether it compresses or not (§3's capture).
    headers.insert("Vary", HeaderValue::from_static("Accept-Encoding"));
    // The lock is held only to read the state (and fill the render cache):
    // no await while it is.
    let state = {
        let mut guard = reg.read();
        let r = &mut *guard;
        if r.fail_with_500 {
            None
        } else {
            let rendered = (!r.malformed).then(|| {
                // Rendered once per state of the catalog and query shape; every
                // blocked query woken by the same change shares it.
                let shape = format!("{name}\n{passing}\n{terms:?}");
                let instances = &r.instances;
                r.rendered.get(r.version, shape, || {
                    render(
                        instances
                            .values()
                            .filter(|i| i.name == name)
                            .filter(|i| {
                                !passing
                                    || i.checks.iter().all(|c| c.status == CheckStatus::Passing)
                            })
                            .filter(|i| matches(i, &terms)),
                    )
                })
            });
            Some((r.index.max(1), rendered))
        }
    };
    let Some((index, rendered)) = state else {
        headers.insert(
            "Content-Type",
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let body = Bytes::from_static(b"rpc error: injected failure");
        return answer(StatusCode::INTERNAL_SERVER_ERROR, headers, body, compress).await;
    };
    headers.insert("X-Consul-Index", HeaderValue::from(index));
    headers.insert("Content-Type", HeaderValue::from_static("application/json"));
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
    let Some(rendered) = rendered else {
        let body = Bytes::from_static(b"[{\"Node\": {\"ID\": ");
        return answer(StatusCode::OK, headers, body, compress).await;
    };
    if compress {
        headers.insert("Content-Encoding", HeaderValue::from_static("gzip"));
        (StatusCode::OK, headers, rendered.gzip().await).into_response()
    } else {
        (StatusCode::OK, headers, rendered.plain.clone()).into_response()
    }
}

/// A body as is, or gzipped (with `Content-Encoding`) when asked.
async fn answer(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
    compress: bool,
) -> Response {
    if !compress {
        return (status, headers, body).into_response();
    }
    headers.insert("Content-Encoding", HeaderValue::from_static("gzip"));
    (status, headers, gzip(body).await).into_response()
}
