//! The service definition sent to `PUT /v1/agent/service/register`, in
//! Consul's field names.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::config::{HealthCheck, RegistrationConfig};

/// The service definition sent to the agent (Consul's field names).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct Definition {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    address: String,
    port: u16,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    meta: BTreeMap<String, String>,
    check: Check,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
struct Check {
    #[serde(rename = "CheckID")]
    check_id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    http: Option<String>,
    #[serde(rename = "Method", skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(rename = "Interval", skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(rename = "Timeout", skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(rename = "DeregisterCriticalServiceAfter")]
    deregister_after: String,
}

/// Consul's duration format, whole milliseconds or seconds.
fn go(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The JSON body sent to `PUT /v1/agent/service/register` for `config`.
pub(super) fn body(config: &RegistrationConfig) -> String {
    let mut check = Check {
        check_id: check_id(config.id()),
        name: format!("Service '{}' check", config.service()),
        http: None,
        method: None,
        interval: None,
        timeout: None,
        ttl: None,
        status: None,
        deregister_after: go(config.deregister_critical_after()),
    };
    match config.check() {
        HealthCheck::Http {
            url,
            interval,
            timeout,
        } => {
            check.http = Some(url.clone());
            check.method = Some("GET".into());
            check.interval = Some(go(*interval));
            check.timeout = Some(go(*timeout));
        }
        HealthCheck::Ttl { ttl } => {
            check.ttl = Some(go(*ttl));
            // Passing from the start: the heartbeat follows at once.
            check.status = Some("passing".into());
        }
    }
    let definition = Definition {
        id: config.id().to_string(),
        name: config.service().to_string(),
        tags: config.tags().to_vec(),
        address: config.address().to_string(),
        port: config.port(),
        meta: config.meta().clone(),
        check,
    };
    serde_json::to_string(&definition).expect("a definition serializes")
}

/// The id of the instance's check: Consul's default, `service:<id>`.
pub(super) fn check_id(id: &str) -> String {
    format!("service:{id}")
}
