//! The health query's URL: `GET /v1/health/service/:name` with its
//! parameters, each one encoded.

use std::time::Duration;

use crate::discovery::registration::path_segment;

/// What every query of a watch asks, encoded once; [`Query::uri`] adds the
/// blocking part (`index`, `wait`).
#[derive(Debug, Clone)]
pub(super) struct Query {
    /// `<address>/v1/health/service/<name>?<fixed parameters>`
    prefix: String,
}

impl Query {
    /// The query for `service` at `address` (no trailing `/`): `passing`,
    /// `filter` (the tags as `"<tag>" in Service.Tags` terms, and the
    /// user's expression, joined by `and`), `dc` and `stale`, each
    /// form-encoded as Consul's Go server decodes them.
    pub(super) fn new(
        address: &str,
        service: &str,
        passing: bool,
        tags: &[String],
        filter: Option<&str>,
        datacenter: Option<&str>,
        stale: bool,
    ) -> Query {
        let mut terms: Vec<String> = tags
            .iter()
            .map(|t| format!("{} in Service.Tags", serde_json::Value::from(t.as_str())))
            .collect();
        if let Some(f) = filter {
            terms.push(format!("({f})"));
        }
        let mut params = form_urlencoded::Serializer::new(String::new());
        if passing {
            params.append_key_only("passing");
        }
        if !terms.is_empty() {
            params.append_pair("filter", &terms.join(" and "));
        }
        if let Some(dc) = datacenter {
            params.append_pair("dc", dc);
        }
        if stale {
            params.append_key_only("stale");
        }
        let params = params.finish();
        let mut prefix = format!(
            "{}/v1/health/service/{}?",
            address.trim_end_matches('/'),
            path_segment(service)
        );
        prefix.push_str(&params);
        Query { prefix }
    }

    /// The URL of one query: from `index` (0: at once) waiting at most
    /// `wait` (a Go duration: whole seconds, else milliseconds).
    pub(super) fn uri(&self, index: u64, wait: Duration) -> String {
        let mut uri = self.prefix.clone();
        if index > 0 {
            if !uri.ends_with('?') {
                uri.push('&');
            }
            if wait.subsec_millis() == 0 {
                uri.push_str(&format!("index={index}&wait={}s", wait.as_secs()));
            } else {
                uri.push_str(&format!("index={index}&wait={}ms", wait.as_millis()));
            }
        }
        uri.strip_suffix('?').map(str::to_owned).unwrap_or(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_form_encoded() {
        let q = Query::new(
            "http://consul:8500/",
            "orders api",
            true,
            &["v2".into(), "a\"b".into()],
            Some(r#"Service.Meta.zone == "eu-1&x""#),
            Some("dc 2"),
            true,
        );
        assert_eq!(
            q.uri(7, Duration::from_secs(300)),
            "http://consul:8500/v1/health/service/orders%20api?passing\
             &filter=%22v2%22+in+Service.Tags+and+%22a%5C%22b%22+in+Service.Tags\
             +and+%28Service.Meta.zone+%3D%3D+%22eu-1%26x%22%29\
             &dc=dc+2&stale&index=7&wait=300s"
        );
    }

    #[test]
    fn the_first_query_does_not_block() {
        let q = Query::new("http://consul:8500", "users", false, &[], None, None, false);
        assert_eq!(
            q.uri(0, Duration::from_secs(300)),
            "http://consul:8500/v1/health/service/users"
        );
        assert_eq!(
            q.uri(3, Duration::from_millis(1500)),
            "http://consul:8500/v1/health/service/users?index=3&wait=1500ms"
        );
    }
}
