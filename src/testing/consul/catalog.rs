//! `GET /v1/catalog/services` (service name to tags) and
//! `GET /v1/catalog/service/:name` (its catalog nodes), both blocking
//! queries (§2); `tag` and `filter` as in `/v1/health/service`.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::Value;

use super::ConsulRegistry;
use super::blocking::{block, json_answer};
use super::filter::{Term, matches, parse_filter};
use super::params::{bad_request, param};
use super::shapes::catalog_node;

/// `GET /v1/catalog/services`: every registered service's name, with the
/// union of its instances' tags.
pub(super) async fn services(
    State(reg): State<ConsulRegistry>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(answer) = block(&reg, &ps).await {
        return answer;
    }
    let r = reg.lock();
    let mut names: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in r.instances.values() {
        names
            .entry(&i.name)
            .or_default()
            .extend(i.tags.iter().map(String::as_str));
    }
    let body = serde_json::to_string(&names).expect("a map of strings");
    json_answer(r.index, &ps, body)
}

/// `GET /v1/catalog/service/:name`: its instances, healthy or not.
pub(super) async fn service(
    State(reg): State<ConsulRegistry>,
    Path(name): Path<String>,
    Query(ps): Query<Vec<(String, String)>>,
) -> Response {
    let mut terms = match param(&ps, "filter").filter(|f| !f.trim().is_empty()) {
        None => Vec::new(),
        Some(f) => match parse_filter(f) {
            Ok(t) => t,
            Err(e) => return bad_request(e),
        },
    };
    terms.extend(
        ps.iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| Term::HasTag(v.clone())),
    );
    if let Err(answer) = block(&reg, &ps).await {
        return answer;
    }
    let r = reg.lock();
    let body: Vec<Value> = r
        .instances
        .values()
        .filter(|i| i.name == name && matches(i, &terms))
        .map(catalog_node)
        .collect();
    json_answer(r.index, &ps, Value::Array(body).to_string())
}

/// `GET /v1/catalog/service/` without a name.
pub(super) async fn missing_name() -> Response {
    bad_request("Missing service name")
}
