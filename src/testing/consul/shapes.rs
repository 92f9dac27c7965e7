//! The JSON shapes of the endpoints added beside `/v1/health/service`, as
//! Consul's API docs give them: an agent service, a check, a catalog node.

use serde_json::{Value, json};

use super::params::go;
use super::state::{Check, CheckKind, DATACENTER, Instance, NODE, NODE_ID};

/// A check as `/v1/agent/checks` and `/v1/health/checks/:service` list it.
pub(super) fn check(i: &Instance, c: &Check) -> Value {
    let (kind, interval, timeout) = match &c.kind {
        CheckKind::Http {
            interval, timeout, ..
        } => ("http", go(*interval), go(*timeout)),
        CheckKind::Ttl { .. } => ("ttl", String::new(), String::new()),
        CheckKind::Maintenance => ("", String::new(), String::new()),
    };
    json!({
        "Node": NODE, "CheckID": c.id, "Name": c.name, "Status": c.status.as_str(),
        "Notes": c.notes, "Output": c.output, "ServiceID": i.id, "ServiceName": i.name,
        "ServiceTags": i.tags, "Type": kind, "Interval": interval, "Timeout": timeout,
        "ExposedPort": 0, "Definition": {}, "Namespace": "",
        "CreateIndex": c.create_index, "ModifyIndex": c.modify_index
    })
}

fn tagged_addresses(i: &Instance) -> Value {
    if i.address.is_empty() {
        json!({})
    } else {
        json!({
            "lan_ipv4": {"Address": i.address, "Port": i.port},
            "wan_ipv4": {"Address": i.address, "Port": i.port}
        })
    }
}

/// A service as `/v1/agent/services` maps it (keyed by its ID).
pub(super) fn agent_service(i: &Instance) -> Value {
    json!({
        "ID": i.id, "Service": i.name, "Tags": i.tags, "Meta": i.meta,
        "Port": i.port, "Address": i.address, "TaggedAddresses": tagged_addresses(i),
        "Weights": {"Passing": i.weights.0, "Warning": i.weights.1},
        "EnableTagOverride": false, "Datacenter": DATACENTER, "Kind": "",
        "ContentHash": format!("{:016x}", i.modify_index)
    })
}

/// One node of `/v1/catalog/service/:name`.
pub(super) fn catalog_node(i: &Instance) -> Value {
    json!({
        "ID": NODE_ID, "Node": NODE, "Address": "127.0.0.1", "Datacenter": DATACENTER,
        "TaggedAddresses": {"lan": "127.0.0.1", "lan_ipv4": "127.0.0.1", "wan": "127.0.0.1", "wan_ipv4": "127.0.0.1"},
        "NodeMeta": {"consul-network-segment": "", "consul-version": "1.21.3"},
        "ServiceKind": "", "ServiceID": i.id, "ServiceName": i.name, "ServiceTags": i.tags,
        "ServiceAddress": i.address, "ServiceTaggedAddresses": tagged_addresses(i),
        "ServiceWeights": {"Passing": i.weights.0, "Warning": i.weights.1},
        "ServiceMeta": i.meta, "ServicePort": i.port, "ServiceEnableTagOverride": false,
        "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {}, "CreateIndex": i.create_index, "ModifyIndex": i.modify_index
    })
}
