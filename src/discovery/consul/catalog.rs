//! Endpoints from catalog data (`GET /v1/catalog/service/:name`): the
//! address rule of Consul's catalog API (§6 of
//! `tests/fixtures/consul/README.md`), checked against its samples. Built
//! for tests only: the watch reads the health API, which has health.

use crate::ConfigError;
use crate::discovery::{Endpoint, Scheme};

/// One entry of `GET /v1/catalog/service/:name`, the fields that locate an
/// instance (the catalog has no health: prefer `ConsulDiscovery`, which
/// reads the health API, for traffic).
#[derive(Debug, serde::Deserialize)]
struct CatalogEntry {
    #[serde(rename = "Address")]
    address: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    #[serde(rename = "ServiceAddress", default)]
    service_address: String,
    #[serde(rename = "ServicePort")]
    service_port: u16,
    #[serde(rename = "ServiceTags", default)]
    service_tags: Option<Vec<String>>,
}

/// Endpoints from a `GET /v1/catalog/service/:name` body:
/// `ServiceAddress`, or the node's `Address` when it is empty (§6). A body
/// that is not a catalog answer is an error naming it, never a panic.
pub(crate) fn catalog_endpoints(body: &str, scheme: Scheme) -> Result<Vec<Endpoint>, ConfigError> {
    let entries: Vec<CatalogEntry> = serde_json::from_str(body)
        .map_err(|e| ConfigError::new("catalog", format!("not a catalog answer: {e}")))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let host = if e.service_address.is_empty() {
                e.address
            } else {
                e.service_address
            };
            Endpoint::new(e.service_id, scheme, host, e.service_port)
                .with_tags(e.service_tags.unwrap_or_default())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(file: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/consul/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn the_service_address_is_used_when_set() {
        let endpoints = catalog_endpoints(&sample("catalog-service.json"), Scheme::Http).unwrap();
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].base_url(), "http://172.17.0.3:5000");
    }

    #[test]
    fn the_node_address_is_used_when_the_service_address_is_empty() {
        let body = sample("catalog-service-empty-address.json");
        let endpoints = catalog_endpoints(&body, Scheme::Http).unwrap();
        let urls: Vec<String> = endpoints.iter().map(|e| e.base_url()).collect();
        assert_eq!(
            urls,
            [
                "http://198.18.0.1:9090",
                "http://198.18.0.2:9090",
                "http://198.18.0.4:9090"
            ]
        );
        assert_eq!(endpoints[0].tags(), ["tag"]);
    }

    #[test]
    fn a_body_that_is_not_a_catalog_answer_is_an_error_naming_it() {
        let err = catalog_endpoints("{\"oops\": 1}", Scheme::Http).unwrap_err();
        assert_eq!(err.field(), "catalog");
    }

    #[test]
    fn null_tags_are_no_tags() {
        let body = r#"[{"Address": "10.0.0.1", "ServiceID": "web-1", "ServiceAddress": "",
                       "ServicePort": 80, "ServiceTags": null}]"#;
        let endpoints = catalog_endpoints(body, Scheme::Http).unwrap();
        assert_eq!(endpoints[0].base_url(), "http://10.0.0.1:80");
        assert!(endpoints[0].tags().is_empty());
    }
}
