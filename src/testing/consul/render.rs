//! `/health/service` answers in the real wire shape (§9), serialised once
//! per state of the catalog and query shape, and kept, plain and gzipped,
//! for every query that asks the same until the catalog changes.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::OnceCell;

use super::encoding::gzip;
use super::params::go;
use super::state::{CheckKind, DATACENTER, Instance, NODE, NODE_ID};

/// Answers rendered for one version of the catalog, by query shape.
#[derive(Default)]
pub(super) struct RenderCache {
    version: u64,
    answers: HashMap<String, Arc<Rendered>>,
}

impl std::fmt::Debug for RenderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderCache")
            .field("version", &self.version)
            .field("answers", &self.answers.len())
            .finish()
    }
}

impl RenderCache {
    /// The answer for `shape` at catalog `version`, rendered by `render`
    /// unless this version already has it.
    pub(super) fn get(
        &mut self,
        version: u64,
        shape: String,
        render: impl FnOnce() -> Bytes,
    ) -> Arc<Rendered> {
        if self.version != version {
            self.version = version;
            self.answers.clear();
        }
        self.answers
            .entry(shape)
            .or_insert_with(|| {
                Arc::new(Rendered {
                    plain: render(),
                    gzip: OnceCell::new(),
                })
            })
            .clone()
    }
}

/// One rendered answer; its gzip form made on first demand, once.
pub(super) struct Rendered {
    pub(super) plain: Bytes,
    gzip: OnceCell<Bytes>,
}

impl Rendered {
    /// The body gzipped, as Consul sends it to a client that asks.
    pub(super) async fn gzip(&self) -> Bytes {
        self.gzip
            .get_or_init(|| gzip(self.plain.clone()))
            .await
            .clone()
    }
}

/// The JSON array of `instances`' entries.
pub(super) fn render<'a>(instances: impl Iterator<Item = &'a Instance>) -> Bytes {
    let entries: Vec<Entry<'a>> = instances.map(entry).collect();
    let mut out = Vec::with_capacity(64 + entries.len() * 1400);
    serde_json::to_writer(&mut out, &entries).expect("serialising to memory");
    Bytes::from(out)
}

/// A braced struct without fields: `{}`.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Entry<'a> {
    node: Node,
    service: Service<'a>,
    checks: Vec<Check<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(rename = "ID")]
    id: &'static str,
    node: &'static str,
    address: &'static str,
    datacenter: &'static str,
    tagged_addresses: NodeAddresses,
    meta: NodeMeta,
    create_index: u64,
    modify_index: u64,
}

#[derive(Serialize)]
struct NodeAddresses {
    lan: &'static str,
    lan_ipv4: &'static str,
    wan: &'static str,
    wan_ipv4: &'static str,
}

#[derive(Serialize)]
struct NodeMeta {
    #[serde(rename = "consul-network-segment")]
    segment: &'static str,
    #[serde(rename = "consul-version")]
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Service<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    service: &'a str,
    tags: &'a [String],
    address: &'a str,
    tagged_addresses: ServiceAddresses<'a>,
    meta: Option<&'a BTreeMap<String, String>>,
    port: u16,
    weights: Weights,
    enable_tag_override: bool,
    proxy: Proxy,
    connect: Empty,
    peer_name: &'static str,
    create_index: u64,
    modify_index: u64,
}

#[derive(Serialize)]
struct ServiceAddresses<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    lan_ipv4: Option<TaggedAddress<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wan_ipv4: Option<TaggedAddress<'a>>,
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "PascalCase")]
struct TaggedAddress<'a> {
    address: &'a str,
    port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Weights {
    passing: u32,
    warning: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Proxy {
    mode: &'static str,
    mesh_gateway: Empty,
    expose: Empty,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Check<'a> {
    node: &'static str,
    #[serde(rename = "CheckID")]
    check_id: &'a str,
    name: &'a str,
    status: &'static str,
    notes: &'a str,
    output: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: &'a [String],
    #[serde(rename = "Type")]
    kind: &'static str,
    interval: Cow<'static, str>,
    timeout: Cow<'static, str>,
    exposed_port: u16,
    definition: Empty,
    create_index: u64,
    modify_index: u64,
}

/// One `/health/service` entry in the real wire shape (§9): the node, the
/// service, the node's `serfHealth` check and the service's checks.
fn entry(i: &Instance) -> Entry<'_> {
    let mut checks = Vec::with_capacity(i.checks.len() + 1);
    checks.push(Check {
        node: NODE,
        check_id: "serfHealth",
        name: "Serf Health Status",
        status: "passing",
        notes: "",
        output: "Agent alive and reachable",
        service_id: "",
        service_name: "",
        service_tags: &[],
        kind: "",
        interval: Cow::Borrowed(""),
        timeout: Cow::Borrowed(""),
        exposed_port: 0,
        definition: Empty {},
        create_index: 1,
        modify_index: 1,
    });
    for c in &i.checks {
        let (kind, interval, timeout) = match &c.kind {
            CheckKind::Http {
                interval, timeout, ..
            } => ("http", Cow::Owned(go(*interval)), Cow::Owned(go(*timeout))),
            CheckKind::Ttl { .. } => ("ttl", Cow::Borrowed(""), Cow::Borrowed("")),
            CheckKind::Maintenance => ("", Cow::Borrowed(""), Cow::Borrowed("")),
        };
        checks.push(Check {
            node: NODE,
            check_id: &c.id,
            name: &c.name,
            status: c.status.as_str(),
            notes: &c.notes,
            output: &c.output,
            service_id: &i.id,
            service_name: &i.name,
            service_tags: &i.tags,
            kind,
            interval,
            timeout,
            exposed_port: 0,
            definition: Empty {},
            create_index: c.create_index,
            modify_index: c.modify_index,
        });
    }
    let tagged = (!i.address.is_empty()).then_some(TaggedAddress {
        address: &i.address,
        port: i.port,
    });
    Entry {
        node: Node {
            id: NODE_ID,
            node: NODE,
            address: "127.0.0.1",
            datacenter: DATACENTER,
            tagged_addresses: NodeAddresses {
                lan: "127.0.0.1",
                lan_ipv4: "127.0.0.1",
                wan: "127.0.0.1",
                wan_ipv4: "127.0.0.1",
            },
            meta: NodeMeta {
                segment: "",
                version: "1.21.3",
            },
            create_index: 1,
            modify_index: 1,
        },
        service: Service {
            id: &i.id,
            service: &i.name,
            tags: &i.tags,
            address: &i.address,
            tagged_addresses: ServiceAddresses {
                lan_ipv4: tagged,
                wan_ipv4: tagged,
            },
            meta: (!i.meta.is_empty()).then_some(&i.meta),
            port: i.port,
            weights: Weights {
                passing: i.weights.0,
                warning: i.weights.1,
            },
            enable_tag_override: false,
            proxy: Proxy {
                mode: "",
                mesh_gateway: Empty {},
                expose: Empty {},
            },
            connect: Empty {},
            peer_name: "",
            create_index: i.create_index,
            modify_index: i.modify_index,
        },
        checks,
    }
}
